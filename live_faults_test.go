package fparser_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// TestLiveKill9LeavesNothingAttached: fparser killed with SIGKILL while attached (XDP
// and TCX links) leaves no program on the interface: the kernel drops bpf_links with
// the last file descriptor.
func TestLiveKill9LeavesNothingAttached(t *testing.T) {
	if os.Getenv(envRole) != "" {
		t.Skip("inside a namespace")
	}
	liveSkip(t)
	bin := buildCLI(t, t.TempDir())
	host, _ := liveNamespaces(t)
	attached := func() string {
		out, err := reexec(host, "TestLiveAttachedPrograms", envRole+"=attached").CombinedOutput()
		if err != nil {
			t.Fatalf("query: %v\n%s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(l), "attached:"); ok {
				return strings.TrimSpace(s)
			}
		}
		t.Fatalf("no answer in\n%s", out)
		return ""
	}
	if got := attached(); got != "xdp=false tcx-ingress=0 tcx-egress=0" {
		t.Fatalf("before: %s", got)
	}
	stderr := &lockedBuffer{}
	cmd := exec.Command("ip", "netns", "exec", host, bin, "-i", liveIface, "-v")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "attached") })
	if got := attached(); got != "xdp=true tcx-ingress=0 tcx-egress=1" {
		t.Errorf("while running in auto mode: %s", got)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if got := attached(); got != "xdp=false tcx-ingress=0 tcx-egress=0" {
		t.Errorf("after kill -9: %s", got)
	}
}

// TestLiveAttachedPrograms prints what is attached to the test interface.
func TestLiveAttachedPrograms(t *testing.T) {
	if os.Getenv(envRole) != "attached" {
		t.Skip("run by TestLiveKill9LeavesNothingAttached")
	}
	ifc, err := net.InterfaceByName(liveIface)
	if err != nil {
		t.Fatal(err)
	}
	count := func(at ebpf.AttachType) int {
		r, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: at})
		if err != nil {
			return -1
		}
		return len(r.Programs)
	}
	out, err := exec.Command("ip", "-d", "link", "show", liveIface).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	xdp := strings.Contains(string(out), "prog/xdp") || strings.Contains(string(out), "xdpgeneric") || strings.Contains(string(out), " xdp ")
	fmt.Printf("attached: xdp=%v tcx-ingress=%d tcx-egress=%d\n", xdp, count(ebpf.AttachTCXIngress), count(ebpf.AttachTCXEgress))
}
