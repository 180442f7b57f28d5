package userspace

import (
	"cmp"
	"math/rand/v2"
	"testing"
)

// keyTaker is a FlowTable seen only through Table and Remove, as the kernel's table
// is: Flush orders it span by span.
type keyTaker struct {
	*FlowTable
	takes int
	busy  bool // a datapath still writes it: not Quiet
}

func (t *keyTaker) Quiet() bool { return !t.busy }

func (t *keyTaker) Remove(keys []Key, removed func(i int)) {
	for i := range keys {
		if t.Delete(&keys[i]) {
			t.takes++
			removed(i)
		}
	}
}

// TestFlushByKeyOrder fills a table taken by key with more flows than several spans,
// with many flows sharing a last packet's time (a tie a span must not split), and
// checks that Flush ends each exactly once, removed by key, in the order of the last packet,
// then the first, and hands them out a chunk at a time.
func TestFlushByKeyOrder(t *testing.T) {
	const flows = 3*flushSpan + 12345
	rng := rand.New(rand.NewPCG(3, 4))
	tab := &keyTaker{FlowTable: NewFlowTable(16)}
	for i := range flows {
		k := testKey(i)
		s, _, _ := tab.Upsert(&k)
		first := int64(rng.IntN(1000)) * 1e6
		s.Dir[0] = Counters{Packets: 1, First: first, Last: first + int64(rng.IntN(50))*1e6}
	}
	e := NewEngine(tab, Timeouts{})
	var got []Record
	chunks := 0
	e.Flush(EndStopped, func() {
		out := e.TakeEnded(nil)
		if len(out) > FlushChunk {
			t.Fatalf("a hand-out of %d flows; at most %d", len(out), FlushChunk)
		}
		got = append(got, out...)
		chunks++
	})
	if len(got) != flows || tab.takes != flows || tab.Len() != 0 {
		t.Fatalf("%d flows ended, %d taken by key, %d left; want %d, %d, 0", len(got), tab.takes, tab.Len(), flows, flows)
	}
	seen := make(map[Key]bool, flows)
	for i := range got {
		if seen[got[i].Key] {
			t.Fatalf("flow %v ended twice", got[i].Key)
		}
		seen[got[i].Key] = true
		if i > 0 {
			a, b := &got[i-1].State, &got[i].State
			if c := cmp.Or(cmp.Compare(a.LastSeen(), b.LastSeen()), cmp.Compare(a.FirstSeen(), b.FirstSeen())); c > 0 {
				t.Fatalf("flow %d (last %d, first %d) ended after flow %d (last %d, first %d)", i-1, a.LastSeen(), a.FirstSeen(), i, b.LastSeen(), b.FirstSeen())
			}
		}
	}
	if chunks < flows/FlushChunk {
		t.Errorf("%d hand-outs for %d flows", chunks, flows)
	}
}

// TestFlushNotQuietDrains: while a datapath may still write the table (the programs
// could not be detached), Flush never reads a flow in one call and removes it in
// another: it drains the table, each flow read as it is removed, every flow once.
func TestFlushNotQuietDrains(t *testing.T) {
	tab := &keyTaker{FlowTable: NewFlowTable(16), busy: true}
	const flows = 5000
	for i := range flows {
		k := testKey(i)
		s, _, _ := tab.Upsert(&k)
		s.Dir[0] = Counters{Packets: 1, First: int64(i), Last: int64(i)}
	}
	e := NewEngine(tab, Timeouts{})
	seen := map[Key]bool{}
	e.Flush(EndStopped, func() {
		for _, r := range e.TakeEnded(nil) {
			if seen[r.Key] {
				t.Fatalf("flow %v ended twice", r.Key)
			}
			seen[r.Key] = true
		}
	})
	if len(seen) != flows || tab.takes != 0 || tab.Len() != 0 {
		t.Fatalf("%d flows ended, %d removed by key, %d left; want %d, 0, 0", len(seen), tab.takes, tab.Len(), flows)
	}
}
