package fparser_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testnet"
)

// TestLiveKill9LeavesNothingAttached: fparser killed with SIGKILL while attached (XDP
// and TCX links) leaves no program on the interface: the kernel drops bpf_links with
// the last file descriptor.
func TestLiveKill9LeavesNothingAttached(t *testing.T) {
	liveSkip(t)
	bin := buildCLI(t, t.TempDir())
	host, _ := liveNamespaces(t)
	attached := func() string {
		out, err := testharness.Command(host, roleAttached).CombinedOutput()
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
	stderr := &testnet.Buffer{}
	cmd := exec.Command("ip", "netns", "exec", host, bin, "-i", liveIface, "-v")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 30*time.Second, "fparser's readiness line", func() bool { return strings.Contains(stderr.String(), "fparser: counting on ") })
	if got := attached(); got != "xdp=true tcx-ingress=0 tcx-egress=1" {
		t.Errorf("while running in auto mode: %s", got)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if got := attached(); got != "xdp=false tcx-ingress=0 tcx-egress=0" {
		t.Errorf("after kill -9: %s", got)
	}
}

// roleAttached prints what is attached to the test interface.
var roleAttached = testharness.Role("attached", liveAttachedPrograms)

func liveAttachedPrograms(t testing.TB) {
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

// TestLiveInterfaceDownUpDeleted: the interface goes down, comes up, then is deleted
// while the parser runs. Down and up are logged and counting goes on; deleted, the
// parser logs it, reports its flows and ends with ErrInterfaceGone.
func TestLiveInterfaceDownUpDeleted(t *testing.T) {
	liveSkip(t)
	host := liveNamespacesAndServer(t)
	out, err := testharness.Command(host, roleFlap).CombinedOutput()
	t.Logf("in %s:\n%s", host, out)
	if err != nil {
		t.Fatal(err)
	}
}

// roleFlap is TestLiveInterfaceDownUpDeleted inside the namespace.
var roleFlap = testharness.Role("flap", liveInterfaceFlap)

func liveInterfaceFlap(t testing.TB) {
	logged := &testnet.Buffer{}
	var flows flowLog
	p, err := fparser.Open(liveIface, &fparser.Options{OnUDP: flows.add, OnTCP: flows.add, Logger: slog.New(slog.NewTextHandler(logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	udpEcho(t, 41300, 3, 100)
	defer func() { t.Logf("log:\n%s", logged.String()) }()
	testharness.Sh(t, "ip", "link", "set", liveIface, "down")
	testharness.WaitFor(t, 5*time.Second, "the log of the interface going down", func() bool { return strings.Contains(logged.String(), "the interface is down") })
	testharness.Sh(t, "ip", "link", "set", liveIface, "up")
	testharness.WaitFor(t, 5*time.Second, "the log of the interface coming up", func() bool { return strings.Contains(logged.String(), "the interface is up again") })
	// Until the link carries traffic again, probed from another port.
	testharness.WaitFor(t, 5*time.Second, "an echo across the link", func() bool {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(liveHostAddr), Port: 41301}, &net.UDPAddr{IP: net.ParseIP(livePeerAddr), Port: liveUDPPort})
		if err != nil {
			return false
		}
		defer c.Close()
		c.Write([]byte("probe"))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err = c.Read(make([]byte, 64))
		return err == nil
	})
	udpEcho(t, 41300, 2, 100)
	testharness.Sh(t, "ip", "link", "del", liveIface)
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the parser did not end after its interface was deleted")
	}
	if err := p.Wait(); !errors.Is(err, fparser.ErrInterfaceGone) {
		t.Errorf("Wait: %v, want ErrInterfaceGone", err)
	}
	if !strings.Contains(logged.String(), "the interface was deleted") {
		t.Errorf("log:\n%s", logged.String())
	}
	found := false
	for _, f := range flows.snapshot() {
		if f.Src.Port() == 41300 {
			found = true
			if f.Fwd.Packets != 5 || f.Rev.Packets != 5 || f.EndReason != fparser.EndStopped {
				t.Errorf("the flow across down and up: %d/%d packets, %v; want 5/5, stopped", f.Fwd.Packets, f.Rev.Packets, f.EndReason)
			}
		}
	}
	if !found {
		t.Errorf("the flow was not reported: %+v", flows.snapshot())
	}
}

// TestLivePinAdoptsAfterKill9: fparser --pin is killed with SIGKILL mid-flow; the
// pinned programs go on counting while nothing runs; a new fparser with the same
// --pin adopts the maps and links, and at its stop the flow has every packet sent
// before, between and after, once. The pins are 0600 and a clean stop removes them.
func TestLivePinAdoptsAfterKill9(t *testing.T) {
	liveSkip(t)
	bin := buildCLI(t, t.TempDir())
	host := liveNamespacesAndServer(t)
	// A BPF filesystem of the test's own, visible inside the namespace.
	fs := t.TempDir()
	testharness.Sh(t, "mount", "-t", "bpf", "bpf", fs)
	t.Cleanup(func() { exec.Command("umount", fs).Run() })
	pin := fs + "/fparser"

	start := func() (*exec.Cmd, *testnet.Buffer, *testnet.Buffer) {
		stdout, stderr := &testnet.Buffer{}, &testnet.Buffer{}
		cmd := exec.Command("ip", "netns", "exec", host, bin, "-i", liveIface, "--pin", pin, "-o", "csv", "-v")
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testharness.WaitFor(t, 30*time.Second, "fparser's readiness line", func() bool { return strings.Contains(stderr.String(), "fparser: counting on ") })
		return cmd, stdout, stderr
	}
	traffic := func(n int) {
		out, err := testharness.Command(host, rolePinTraffic, fmt.Sprintf("%s=%d", envPinN, n)).CombinedOutput()
		if err != nil {
			t.Fatalf("traffic: %v\n%s", err, out)
		}
	}

	first, _, _ := start()
	traffic(3)
	for _, m := range []string{"flows", "events", "stats", "frags", "link-" + liveIface + "-xdp", "link-" + liveIface + "-tcx-egress"} {
		fi, err := os.Stat(pin + "/" + m)
		if err != nil {
			t.Fatalf("pin %s: %v", m, err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("pin %s has mode %v; want no access for group and others", m, perm)
		}
	}
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	traffic(2) // nobody runs: the pinned programs count

	second, stdout, stderr := start()
	if !strings.Contains(stderr.String(), "adopted") {
		t.Errorf("the restart did not say it adopted the pins:\n%s", stderr.String())
	}
	traffic(1)
	second.Process.Signal(os.Interrupt)
	if err := second.Wait(); err != nil {
		t.Fatalf("second run: %v\n%s", err, stderr.String())
	}
	var rows []string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.Contains(l, ",41400,") {
			rows = append(rows, l)
		}
	}
	want := "udp," + liveHostAddr + ",41400," + livePeerAddr + ",9000,0,6,768,6,768,"
	if len(rows) != 1 || !strings.HasPrefix(rows[0], want) {
		t.Errorf("the flow across the restart: %q; want one row starting %q\n%s", rows, want, stderr.String())
	}
	if entries, err := os.ReadDir(pin); err == nil {
		t.Errorf("after a clean stop the pins remain: %v", entries)
	}
}

// rolePinTraffic sends FPARSER_PIN_N echoes from port 41400.
var rolePinTraffic = testharness.Role("pin-traffic", func(t testing.TB) {
	n := 0
	fmt.Sscan(os.Getenv(envPinN), &n)
	udpEcho(t, 41400, n, 100)
})

const envPinN = "FPARSER_PIN_N"
