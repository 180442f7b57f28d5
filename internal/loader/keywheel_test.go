package loader

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/fparser/fparser/internal/userspace"
)

func wheelKey(i int) userspace.Key {
	a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return userspace.KeyOf(userspace.ProtoUDP, 0, netip.AddrPortFrom(a, 5000), netip.AddrPortFrom(benchB, 53))
}

// liveHeap is the live heap after a collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestKeyWheelLetsGoOfABurst: once the 200,000 keys of a burst have been filed and
// taken but for a few, the wheel holds room for those few only, and each key still
// comes out once, at its time.
func TestKeyWheelLetsGoOfABurst(t *testing.T) {
	const burst, stay = 200_000, 100
	var w keyWheel
	base := liveHeap()
	for round := range 3 {
		now := int64(round) * 100 * sec
		w.take(now, nil)
		for i := range burst {
			k := wheelKey(i)
			at := now + sec + int64(i%20)*wheelWidth // over 20 buckets
			if i%(burst/stay) == 0 {
				at = now + 50*sec
			}
			w.add(&k, at)
		}
		peak := liveHeap()
		got := w.take(now+10*sec, nil)
		if len(got) != burst-stay {
			t.Fatalf("round %d: %d keys taken at +10 s, want %d", round, len(got), burst-stay)
		}
		got = nil
		kept := liveHeap()
		t.Logf("round %d: heap %d KiB above the baseline with %d keys filed, %d KiB with %d", round, (peak-base)>>10, burst, (kept-base)>>10, stay)
		if kept > base+1<<20 {
			t.Errorf("round %d: with %d keys filed of %d, the heap stays %d KiB above its baseline (%d KiB at the peak)", round, stay, burst, (kept-base)>>10, (peak-base)>>10)
		}
		if got = w.take(now+49*sec, nil); len(got) != 0 {
			t.Fatalf("round %d: %d keys taken before their time", round, len(got))
		}
		got = w.take(now+50*sec, nil)
		if len(got) != stay {
			t.Fatalf("round %d: %d keys taken at +50 s, want %d", round, len(got), stay)
		}
		for j, k := range got {
			if k != wheelKey(j*(burst/stay)) {
				t.Fatalf("round %d: key %d taken is %v", round, j, k)
			}
		}
	}
}
