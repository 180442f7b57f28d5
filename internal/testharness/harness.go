// Package testharness runs the tests that need more than one process: live tests in
// network namespaces, the soak test, the veth benchmark. A test re-executes its own
// test binary, in a namespace, as a role: a plain function registered with Role,
// which the binary's TestMain (Main) runs instead of the tests when the environment
// names it (the helper-process pattern). Roles report as tests do, through a
// testing.TB (R), and exit with a status that says whether they failed.
//
// The package also holds the rule for tests that the machine cannot run: they skip,
// saying why, except under CI (CI=true), which must run them all and so fails
// instead (Skip, Require, RequireRoot); and waiting for a condition, with a deadline,
// rather than sleeping (Poll, WaitFor, Start's readiness line).
package testharness

import (
	"bufio"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser/internal/testnet"
)

// EnvRole names, in a child's environment, the role the test binary runs.
const EnvRole = "FPARSER_TEST_ROLE"

// roles are the registered roles, by name. Role fills it while the test package's
// variables are initialised, before Main reads it.
var roles = map[string]func(t testing.TB){}

// Role registers fn as the role name and returns name, for Command:
//
//	var roleServer = testharness.Role("live-server", liveServer)
//
// A name registered twice panics.
func Role(name string, fn func(t testing.TB)) string {
	if name == "" || fn == nil {
		panic("testharness: a role needs a name and a function")
	}
	if _, dup := roles[name]; dup {
		panic("testharness: role " + name + " registered twice")
	}
	roles[name] = fn
	return name
}

// Main is the test binary's TestMain:
//
//	func TestMain(m *testing.M) { testharness.Main(m) }
//
// When the environment names a role (EnvRole), it runs that role alone, no test,
// and exits 0 if the role did not fail, 1 if it did. Otherwise it runs the tests.
func Main(m *testing.M) {
	if name := os.Getenv(EnvRole); name != "" {
		os.Unsetenv(EnvRole) // what the role runs in turn is not a role
		flag.Parse()         // for the testing package's own flags, which a role may read
		fn, ok := roles[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "%s=%s: no such role; roles: %s\n", EnvRole, name, strings.Join(slices.Sorted(maps.Keys(roles)), ", "))
			os.Exit(2)
		}
		os.Exit(runRole(name, fn))
	}
	os.Exit(m.Run())
}

// Command returns the command that runs role in a new process of this test binary:
// inside the network namespace ns (through ip netns exec), or in this process's when
// ns is "". env is added to this process's environment. No -test.run is needed: Main
// runs the role and no test.
func Command(ns, role string, env ...string) *exec.Cmd {
	if _, ok := roles[role]; !ok {
		panic("testharness: no role " + role + " registered")
	}
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	var cmd *exec.Cmd
	if ns == "" {
		cmd = exec.Command(exe)
	} else {
		cmd = exec.Command("ip", "netns", "exec", ns, exe)
	}
	cmd.Env = append(append(os.Environ(), env...), EnvRole+"="+role)
	return cmd
}

// ReadyWithin bounds how long Start waits for a child's readiness line: loading the
// BPF programs takes seconds on a busy machine, and more with a map of millions of
// entries.
const ReadyWithin = time.Minute

// Start starts cmd and reads its standard output up to the first line that contains
// ready: the child is ready then. It returns the reader of the rest of the output.
// A child that ends, or says nothing of the kind within ReadyWithin, fails the test,
// with what it said. The child is killed at the end of the test if it still runs;
// its standard error, unless cmd sends it elsewhere, is logged if the test failed.
func Start(t testing.TB, cmd *exec.Cmd, ready string) *bufio.Scanner {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr *testnet.Buffer
	if cmd.Stderr == nil {
		stderr = &testnet.Buffer{}
		cmd.Stderr = stderr
	}
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 5 * time.Second // a grandchild holding its standard error
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if stderr != nil && t.Failed() && stderr.String() != "" {
			t.Logf("%s, standard error:\n%s", describe(cmd), stderr)
		}
	})
	lines := bufio.NewScanner(out)
	var said strings.Builder
	found := make(chan bool, 1)
	go func() {
		for lines.Scan() {
			if strings.Contains(lines.Text(), ready) {
				found <- true
				return
			}
			said.WriteString(lines.Text() + "\n")
		}
		found <- false
	}()
	timeout := time.NewTimer(ReadyWithin)
	defer timeout.Stop()
	var ok bool
	select {
	case ok = <-found:
	case <-timeout.C:
		cmd.Process.Kill()
		out.Close()
		<-found
	}
	if !ok {
		var errText string
		if stderr != nil {
			errText = "standard error:\n" + stderr.String()
		}
		t.Fatalf("%s did not say %q (waited up to %v); it said:\n%s%s", describe(cmd), ready, ReadyWithin, &said, errText)
	}
	return lines
}

// describe names cmd and, if it runs one, its role.
func describe(cmd *exec.Cmd) string {
	for _, e := range slices.Backward(cmd.Env) {
		if role, ok := strings.CutPrefix(e, EnvRole+"="); ok {
			return fmt.Sprintf("%s (role %s)", cmd, role)
		}
	}
	return cmd.String()
}
