package loader

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/fparser/fparser/internal/cgroups"
	"github.com/fparser/fparser/internal/kerneltest"
	"github.com/fparser/fparser/internal/userspace"
)

// TestLoadWithAttribution: with cgroup v2 mounted, the programs load with
// attribution and the socket program attaches to its root (in the VM of CI's older
// kernel too).
func TestLoadWithAttribution(t *testing.T) {
	requireBPF(t)
	if _, err := cgroups.Mount(); err != nil {
		kerneltest.Skip(t, "no cgroup v2 mounted: %v", err)
	}
	d, err := Load(Config{Owners: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if attributing, processes, err := d.Attribution(); !attributing || !processes || err != nil {
		t.Errorf("attributing %v, processes %v: %v", attributing, processes, err)
	}
}

// TestSenders: userspace takes a direction's sender from the kernel's map only when
// the kernel said it found one, and only if it is this flow's (written for the
// direction's first packet, not an earlier flow's of the same key); an ended flow's
// sender is removed.
func TestSenders(t *testing.T) {
	d := loadForTest(t, Config{Owners: true})
	k := userspace.Key{A: netip.MustParseAddr("::ffff:10.0.0.1").As16(), B: netip.MustParseAddr("::ffff:10.0.0.2").As16(), PortA: 40000, PortB: 80, Proto: 6}
	put := func(dir int, since int64, pid uint32, comm string) {
		key := *(*[unsafe.Sizeof(k)]byte)(unsafe.Pointer(&k))
		key[len(key)-1] = byte(dir)
		v := fparserSender{Since: since, Cgroup: 7, Pid: pid}
		for i := range comm {
			v.Comm[i] = int8(comm[i])
		}
		if err := d.objs.Owners.Put(&key, &v); err != nil {
			t.Fatal(err)
		}
	}
	put(0, 100, 42, "curl")
	put(1, 150, 43, "stale")
	s := userspace.State{Owner: ownerDecided | ownerFound | ownerDecided<<1 | ownerFound<<1}
	s.Dir[0].First, s.Dir[1].First = 100, 200 // direction 1's entry is an earlier flow's
	got, ok := d.Senders(&k, &s, false)
	if !ok[0] || got[0] != (Sender{PID: 42, Comm: "curl", Cgroup: 7}) || ok[1] {
		t.Errorf("senders %+v (found %v), want curl's for direction 0 only", got, ok)
	}
	s.Owner = ownerDecided | ownerDecided<<1 // looked for, found in neither
	if _, ok := d.Senders(&k, &s, false); ok[0] || ok[1] {
		t.Errorf("found %v where the kernel found none", ok)
	}
	s.Owner = ownerDecided | ownerFound
	d.Senders(&k, &s, true) // the flow ended
	if _, ok := d.Senders(&k, &s, false); ok[0] {
		t.Error("an ended flow's sender is still in the map")
	}
}

// TestSockCreatePin: with a pin directory, the socket program's cgroup link is
// pinned, a datapath loaded while the pin is there adopts it (one program stays
// attached to the cgroup, not two), and a clean stop detaches it and removes the
// pin.
func TestSockCreatePin(t *testing.T) {
	requireBPF(t)
	root, err := cgroups.Mount()
	if err != nil {
		kerneltest.Skip(t, "no cgroup v2 mounted: %v", err)
	}
	fs := t.TempDir()
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", fs).CombinedOutput(); err != nil {
		t.Fatalf("mount a BPF filesystem: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", fs).Run() })
	pin := filepath.Join(fs, "fparser")
	cg, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	attached := func() int {
		r, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: ebpf.AttachCGroupInetSockCreate})
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Programs)
	}
	before := attached()
	first, err := Load(Config{Owners: true, PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(pin, sockCreatePin)); err != nil || attached() != before+1 {
		t.Fatalf("after the first load: pin %v, %d programs on the cgroup (%d before)", err, attached(), before)
	}
	// As a restart after kill -9 finds it: the pins of a process whose links are
	// still there.
	second, err := Load(Config{Owners: true, PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	if _, processes, err := second.Attribution(); !processes || err != nil || attached() != before+1 {
		t.Errorf("adopting: processes %v (%v), %d programs on the cgroup, want %d", processes, err, attached(), before+1)
	}
	first.cfg.PinDir = "" // it was killed: only the second stops cleanly
	first.Close()
	second.Close()
	if _, err := os.Stat(filepath.Join(pin, sockCreatePin)); !errors.Is(err, os.ErrNotExist) || attached() != before {
		t.Errorf("after a clean stop: pin %v, %d programs on the cgroup, want %d", err, attached(), before)
	}
}

// TestOwnerDecided: a direction whose packets bring no socket (a test run's have
// none) is looked at for its first OWNER_TRIES packets, four, then decided
// unattributed; the XDP program never looks.
func TestOwnerDecided(t *testing.T) {
	d := loadForTest(t, Config{Owners: true})
	if attributing, _, err := d.Attribution(); !attributing {
		kerneltest.Skip(t, "attribution is off here: %v", err)
	}
	owner := func() uint32 {
		var bits []uint32
		d.Table().Range(func(_ *userspace.Key, s *userspace.State, _ *userspace.FlowStats) bool {
			bits = append(bits, s.Owner)
			return true
		})
		if len(bits) != 1 {
			t.Fatalf("%d flows, want 1", len(bits))
		}
		return bits[0]
	}
	frame := tcpFrame(benchA, 40000, 0x10)
	for i := 1; i <= 4; i++ {
		if _, _, err := d.objs.FparserTcEgress.Benchmark(frame, 1, nil); err != nil {
			t.Fatal(err)
		}
		want := uint32(0)
		if i == 4 {
			want = ownerDecided // direction 0: benchA sorts first
		}
		if got := owner(); got != want {
			t.Fatalf("after %d packets at TC egress: owner bits %#x, want %#x", i, got, want)
		}
	}
	clearMaps(t, d)
	for range 5 {
		d.objs.FparserXdp.Benchmark(frame, 1, nil)
	}
	if got := owner(); got != 0 {
		t.Errorf("after 5 packets through XDP: owner bits %#x, want 0", got)
	}
}
