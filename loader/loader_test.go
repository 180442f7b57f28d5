package loader

import (
	"os"
	"testing"

	"github.com/cilium/ebpf/rlimit"
)

// requireBPF skips a test that needs to load programs when this process cannot.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root (or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON): kernel tests skipped")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("BPF is not usable here: %v", err)
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
