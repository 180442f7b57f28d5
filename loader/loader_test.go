package loader

import (
	"os"
	"testing"

	"github.com/cilium/ebpf/rlimit"
)

// requireBPF skips a test that needs to load programs when this process cannot.
func requireBPF(t testing.TB) {
	t.Helper()
	// CI must run the kernel tests: there a reason to skip is a failure.
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("loading BPF programs needs root (or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON): kernel tests skipped")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		skip("BPF is not usable here: %v", err)
	}
}

func TestLoadPassesTheVerifier(t *testing.T) {
	requireBPF(t)
	d, err := Load(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
