package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	pb "github.com/fparser/fparser/internal/pktbuild"
)

// writeSlowCapture writes a capture of 8 s: UDP flows of different rates and sizes,
// for the live view to show while it is replayed at its own pace.
func writeSlowCapture(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "slow.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for ms := 0; ms < 8000; ms += 10 {
		for i := 1; i <= 6; i++ {
			if ms%(10*i) != 0 {
				continue // flow i sends every 10·i ms
			}
			src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
			dst := netip.AddrFrom4([4]byte{203, 0, 113, 1})
			frame := pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoUDP}.Build(pb.UDP(uint16(40000+i), 53, make([]byte, 100*i))))
			ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(ms) * time.Millisecond), CaptureLength: len(frame), Length: len(frame)}
			if err := w.WritePacket(ci, frame); err != nil {
				t.Fatal(err)
			}
		}
	}
	return path
}

// tmuxSession runs command in a detached tmux session of 80 by 24 on a server of its
// own, and returns a function that prints the pane.
func tmuxSession(t *testing.T, command string) (pane func() string, keys func(...string), alive func() bool) {
	sock := fmt.Sprintf("fpt-top-%d", os.Getpid())
	tmux := func(args ...string) ([]byte, error) {
		return exec.Command("tmux", append([]string{"-L", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
	}
	if out, err := tmux("new-session", "-d", "-s", "top", "-x", "80", "-y", "24", command); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	t.Cleanup(func() { tmux("kill-server") })
	pane = func() string {
		out, err := tmux("capture-pane", "-p", "-t", "top")
		if err != nil {
			t.Fatalf("capture-pane: %v\n%s", err, out)
		}
		return string(out)
	}
	keys = func(k ...string) {
		if out, err := tmux(append([]string{"send-keys", "-t", "top"}, k...)...); err != nil {
			t.Fatalf("send-keys: %v\n%s", err, out)
		}
	}
	alive = func() bool {
		_, err := tmux("has-session", "-t", "top")
		return err == nil
	}
	return pane, keys, alive
}

// waitPane waits until the pane shows want, and returns it.
func waitPane(t *testing.T, pane func() string, want string) string {
	t.Helper()
	var s string
	for range 50 {
		if s = pane(); strings.Contains(s, want) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the pane never showed %q:\n%s", want, s)
	return ""
}

// TestTopInTmux uses fparser top as a person would, in an 80-column tmux pane: it
// replays a capture at its own pace, shows the flows sorted, changes the sort with a
// key, pauses, and quits with q.
func TestTopInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("needs tmux")
	}
	bin := buildCommand(t)
	capture := writeSlowCapture(t)
	// Not on a terminal: refused, saying why.
	if out, err := exec.Command(bin, "top", "-r", capture).CombinedOutput(); err == nil || !strings.Contains(string(out), "not a terminal") {
		t.Errorf("top with standard output in a pipe: %v, %q", err, out)
	}
	pane, keys, alive := tmuxSession(t, bin+" top -r "+capture)

	waitPane(t, pane, "198.51.100.6")
	time.Sleep(1200 * time.Millisecond) // a second refresh, with rates
	s := pane()
	t.Logf("the view, sorted by bytes:\n%s", s)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if len([]rune(l)) > 80 {
			t.Errorf("line %d is %d columns: %q", i, len([]rune(l)), l)
		}
	}
	if !strings.Contains(s, "sort: bytes") || !strings.Contains(s, "PROTO") || !strings.Contains(s, "flows 6 (tcp 0, udp 6)") {
		t.Fatalf("the view lacks its header or flows:\n%s", s)
	}
	// By bytes, flow 1 (every 10 ms, 128 bytes) leads flow 6 (every 60 ms, 628).
	if i1, i6 := strings.Index(s, "198.51.100.1:40001"), strings.Index(s, "198.51.100.6:40006"); i1 < 0 || i6 < 0 || i1 > i6 {
		t.Errorf("by bytes, flow 1 should come before flow 6:\n%s", s)
	}

	keys("n")
	waitPane(t, pane, "sort: packets")
	keys(" ")
	s = waitPane(t, pane, "[paused]")
	frozen := s
	time.Sleep(1500 * time.Millisecond)
	if s = pane(); s != frozen {
		t.Errorf("the paused view changed:\n%s\nthen\n%s", frozen, s)
	}
	keys(" ")
	waitPane(t, pane, "sort: packets  ")
	keys("q")
	for i := 0; alive(); i++ {
		if i == 50 {
			t.Fatalf("fparser top did not quit on q:\n%s", pane())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
