package testharness

import (
	"os"
	"os/exec"
	"testing"

	"github.com/fparser/fparser/internal/kerneltest"
)

// Skip skips the test, saying why, or fails it when CI=true: CI must run every
// test. It is internal/kerneltest's rule, which the other packages' tests call, so
// that there is one.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	kerneltest.Skip(t, format, args...)
}

// Require skips the test (fails it under CI), saying why, unless ok.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		Skip(t, format, args...)
	}
}

// RequireRoot skips the test (fails it under CI) unless it runs as root with the
// given programs on the PATH. what names the tests, for the reason: "live tests
// (network namespaces, BPF)" gives "live tests (network namespaces, BPF) need root
// (or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON): skipped".
func RequireRoot(t testing.TB, what string, tools ...string) {
	t.Helper()
	kerneltest.RequireRoot(t, what, tools...)
}

// HasTool says whether the program is on the PATH.
func HasTool(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// OptIn returns the value of the environment variable env, which asks for a test
// that does not run by default; unset, it skips the test with how to ask for it:
// "set env=example to run what". Never a failure, under CI or not: it is not the
// machine that lacks something, and CI asks for what it wants to run.
func OptIn(t testing.TB, env, example, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		t.Skipf("set %s=%s to run %s", env, example, what)
	}
	return v
}
