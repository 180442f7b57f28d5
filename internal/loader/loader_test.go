package loader

import (
	"testing"

	"github.com/cilium/ebpf/rlimit"

	"github.com/fparser/fparser/internal/kerneltest"
)

// requireBPF skips a test that needs to load programs when this process cannot.
func requireBPF(t testing.TB) {
	t.Helper()
	kerneltest.RequireRoot(t, "kernel tests (loading BPF programs)")
	if err := rlimit.RemoveMemlock(); err != nil {
		kerneltest.Skip(t, "BPF is not usable here: %v", err)
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
