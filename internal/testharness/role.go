package testharness

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// R is the testing.TB of a role: what a test's helpers need, in a process that runs
// no test. It logs to standard error, each line with the role's name and the
// caller's file and line (skipping the functions that called Helper); Fail marks the
// role failed, so that the process exits 1; FailNow (Fatal, Fatalf) also ends the
// role's goroutine, as it ends a test's. Cleanup, TempDir, Setenv, Chdir and Context
// behave as a test's. A role cannot skip: Skip fails it.
type R struct {
	// testing.TB has an unexported method, so that only the testing package
	// implements it; the embedded interface, always nil, supplies that one. R
	// defines every exported method itself (TestRImplementsTB checks that none is
	// left to the nil interface).
	testing.TB

	name   string
	out    io.Writer
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	failed   bool
	cleanups []func()
	helpers  map[string]bool // functions that called Helper
}

func newR(name string, out io.Writer) *R {
	r := &R{name: name, out: out, helpers: map[string]bool{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// runRole runs fn as the role name and then its cleanups, last registered first,
// each in a goroutine of its own (as a test's, so that FailNow ends only it), and
// returns the process's exit status.
func runRole(name string, fn func(testing.TB)) int {
	r := newR(name, os.Stderr)
	r.run(func() { fn(r) })
	r.cancel()
	for f := r.popCleanup(); f != nil; f = r.popCleanup() {
		r.run(f)
	}
	if r.Failed() {
		fmt.Fprintf(r.out, "--- FAIL: role %s\n", name)
		return 1
	}
	return 0
}

// run runs f in a goroutine and waits until it returns or calls runtime.Goexit.
func (r *R) run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

func (r *R) popCleanup() func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.cleanups)
	if n == 0 {
		return nil
	}
	f := r.cleanups[n-1]
	r.cleanups = r.cleanups[:n-1]
	return f
}

// log writes s, said by the caller of the R method that calls log, or by the
// first caller up the stack that is not a helper.
func (r *R) log(s string) {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(3, pcs) // runtime.Callers, log, the R method
	frames := runtime.CallersFrames(pcs[:n])
	r.mu.Lock()
	where := "?"
	for {
		f, more := frames.Next()
		if !r.helpers[f.Function] || !more {
			where = fmt.Sprintf("%s:%d", filepath.Base(f.File), f.Line)
			break
		}
	}
	r.mu.Unlock()
	s = strings.TrimSuffix(s, "\n")
	fmt.Fprintf(r.out, "    %s: %s: %s\n", r.name, where, strings.ReplaceAll(s, "\n", "\n        "))
}

func (r *R) Helper() {
	pc, _, _, ok := runtime.Caller(1)
	if !ok {
		return
	}
	name := runtime.FuncForPC(pc).Name()
	r.mu.Lock()
	r.helpers[name] = true
	r.mu.Unlock()
}

func (r *R) Name() string { return r.name }

func (r *R) Log(args ...any)                 { r.log(fmt.Sprintln(args...)) }
func (r *R) Logf(format string, args ...any) { r.log(fmt.Sprintf(format, args...)) }

func (r *R) Fail() {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
}

func (r *R) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// FailNow marks the role failed and ends the goroutine that calls it, which must
// be the role's own (or a cleanup's), as for a test.
func (r *R) FailNow() {
	r.Fail()
	runtime.Goexit()
}

func (r *R) Error(args ...any) {
	r.log(fmt.Sprintln(args...))
	r.Fail()
}

func (r *R) Errorf(format string, args ...any) {
	r.log(fmt.Sprintf(format, args...))
	r.Fail()
}

func (r *R) Fatal(args ...any) {
	r.log(fmt.Sprintln(args...))
	r.FailNow()
}

func (r *R) Fatalf(format string, args ...any) {
	r.log(fmt.Sprintf(format, args...))
	r.FailNow()
}

// Skip fails the role: the test that runs it decided that it runs.
func (r *R) Skip(args ...any) {
	r.log("a role cannot skip: " + fmt.Sprintln(args...))
	r.FailNow()
}

// Skipf fails the role, as Skip.
func (r *R) Skipf(format string, args ...any) {
	r.log("a role cannot skip: " + fmt.Sprintf(format, args...))
	r.FailNow()
}

// SkipNow fails the role, as Skip.
func (r *R) SkipNow() {
	r.log("a role cannot skip")
	r.FailNow()
}

func (r *R) Skipped() bool { return false }

func (r *R) Cleanup(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

// TempDir returns a new directory, removed once the role has returned.
func (r *R) TempDir() string {
	dir, err := os.MkdirTemp("", "fparser-role-"+r.name+"-")
	if err != nil {
		r.log(err.Error())
		r.FailNow()
	}
	r.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ArtifactDir returns a TempDir: a role keeps no artifacts.
func (r *R) ArtifactDir() string { return r.TempDir() }

// Setenv sets the variable until the role has returned.
func (r *R) Setenv(key, value string) {
	prev, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		r.log(err.Error())
		r.FailNow()
	}
	r.Cleanup(func() {
		if had {
			os.Setenv(key, prev)
		} else {
			os.Unsetenv(key)
		}
	})
}

// Chdir changes the working directory until the role has returned.
func (r *R) Chdir(dir string) {
	prev, err := os.Getwd()
	if err == nil {
		err = os.Chdir(dir)
	}
	if err != nil {
		r.log(err.Error())
		r.FailNow()
	}
	r.Cleanup(func() { os.Chdir(prev) })
}

// Context is canceled once the role has returned, before its cleanups run.
func (r *R) Context() context.Context { return r.ctx }

// Attr logs the attribute.
func (r *R) Attr(key, value string) { r.log(fmt.Sprintf("attr %s %s", key, value)) }

// Output writes to the role's log, unprefixed.
func (r *R) Output() io.Writer { return r.out }
