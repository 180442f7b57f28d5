// Package kerneltest holds what the tests that need the kernel share: the rule that
// they skip, saying why, where the machine cannot run them, but fail under CI, which
// must run them.
package kerneltest

import (
	"os"
	"os/exec"
	"testing"
)

// Skip skips the test with the reason, or fails it when CI=true.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot skips (or, under CI, fails) the test unless it runs as root with the
// given programs on the PATH.
func RequireRoot(t testing.TB, what string, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "%s need root (or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON): skipped", what)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Skip(t, "%s need %s: skipped", what, tool)
		}
	}
}
