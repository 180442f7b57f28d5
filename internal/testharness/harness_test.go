package testharness

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

var (
	rolePass = Role("pass", func(t testing.TB) {
		t.Cleanup(func() { fmt.Println("cleanup 1") })
		t.Cleanup(func() { fmt.Println("cleanup 2") })
		if os.Getenv(EnvRole) != "" {
			t.Errorf("the role sees %s", EnvRole)
		}
		fmt.Println("value", os.Getenv("HARNESS_VALUE"))
		t.Logf("logged")
	})
	roleFail = Role("fail", func(t testing.TB) {
		t.Cleanup(func() { fmt.Println("cleaned up") })
		_, _, line, _ := runtime.Caller(0)
		fmt.Printf("the helper is called on line %d\n", line+2)
		helperFails(t)
		t.Error("went on")
		t.Fatalf("fatal")
		fmt.Println("not reached")
	})
	roleSkip = Role("skip", func(t testing.TB) { t.Skip("no") })
	roleWait = Role("wait", func(t testing.TB) {
		fmt.Println("starting")
		fmt.Println("ready now")
		bufio.NewReader(os.Stdin).ReadString('\n')
		fmt.Println("after")
	})
	roleSilent = Role("silent", func(t testing.TB) {
		fmt.Fprintln(os.Stderr, "something went wrong")
	})
)

func helperFails(t testing.TB) {
	t.Helper()
	t.Errorf("from the helper")
}

func TestRolePasses(t *testing.T) {
	out, err := Command("", rolePass, "HARNESS_VALUE=42").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"value 42\n", "pass: harness_test.go:", ": logged\n", "cleanup 2\ncleanup 1\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "PASS") || strings.Contains(string(out), "RUN") {
		t.Errorf("ran the tests:\n%s", out)
	}
}

func TestRoleFails(t *testing.T) {
	out, err := Command("", roleFail).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit %v, want status 1\n%s", err, out)
	}
	s := string(out)
	// The helper's error is reported at its caller's line.
	var line int
	for _, l := range strings.Split(s, "\n") {
		fmt.Sscanf(l, "the helper is called on line %d", &line)
	}
	for _, want := range []string{fmt.Sprintf("fail: harness_test.go:%d: from the helper", line), "went on", "fatal", "cleaned up", "--- FAIL: role fail"} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in\n%s", want, s)
		}
	}
	if strings.Contains(s, "not reached") {
		t.Errorf("went on after Fatalf:\n%s", s)
	}
	if out, err := Command("", roleSkip).CombinedOutput(); err == nil || !strings.Contains(string(out), "a role cannot skip") {
		t.Errorf("a skipping role: %v\n%s", err, out)
	}
}

func TestStartReadsToTheReadyLine(t *testing.T) {
	cmd := Command("", roleWait)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := Start(t, cmd, "ready")
	in.Close()
	if !lines.Scan() || lines.Text() != "after" {
		t.Errorf("after the ready line: %q", lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Error(err)
	}
}

// TestStartFailsWithoutTheReadyLine runs Start in a child test binary, so that its
// failure is the child's.
func TestStartFailsWithoutTheReadyLine(t *testing.T) {
	if os.Getenv("HARNESS_START_FAILS") != "" {
		Start(t, Command("", roleSilent), "ready")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestStartFailsWithoutTheReadyLine$", "-test.v")
	cmd.Env = append(os.Environ(), "HARNESS_START_FAILS=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `(role silent) did not say "ready"`) || !strings.Contains(string(out), "something went wrong") {
		t.Errorf("%v\n%s", err, out)
	}
}

func TestPoll(t *testing.T) {
	n := 0
	if !Poll(time.Second, func() bool { n++; return n == 3 }) || n != 3 {
		t.Errorf("Poll stopped after %d checks", n)
	}
	began := time.Now()
	if Poll(50*time.Millisecond, func() bool { return false }) {
		t.Error("Poll said a false condition held")
	}
	if d := time.Since(began); d < 50*time.Millisecond || d > time.Second {
		t.Errorf("Poll gave up after %v, want 50 ms", d)
	}
}

// TestRImplementsTB: R defines every exported method of testing.TB itself, so that
// none falls to the nil interface R embeds (a method a newer Go adds to testing.TB
// would, and panic when called).
func TestRImplementsTB(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "role.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv != nil {
			if star, ok := fn.Recv.List[0].Type.(*ast.StarExpr); ok && star.X.(*ast.Ident).Name == "R" {
				defined[fn.Name.Name] = true
			}
		}
	}
	tb := reflect.TypeFor[testing.TB]()
	for i := range tb.NumMethod() {
		if m := tb.Method(i); m.IsExported() && !defined[m.Name] {
			t.Errorf("R does not define testing.TB's %s", m.Name)
		}
	}
}
