package loader

import (
	"net/netip"
	"testing"
	"unsafe"

	"github.com/fparser/fparser/internal/userspace"
)

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
