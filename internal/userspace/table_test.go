package userspace

import (
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

func testKey(i int) Key {
	var k Key
	k.A[15], k.A[14] = byte(i), byte(i>>8)
	k.B[15] = 1
	k.PortA = uint16(i >> 16)
	k.Proto = ProtoUDP
	return k
}

// TestFlowTableAgainstMap drives the table and a Go map with the same random inserts,
// deletes and reaps, and checks they hold the same flows after every step.
func TestFlowTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tab := NewFlowTable(4)
	model := map[Key]uint64{}
	for step := range 200000 {
		k := testKey(rng.IntN(3000))
		switch op := rng.IntN(10); {
		case op < 6:
			s, _, created := tab.Upsert(&k)
			_, had := model[k]
			if created == had {
				t.Fatalf("step %d: created=%v but model had=%v", step, created, had)
			}
			s.Dir[0].Packets++
			model[k]++
		case op < 9:
			_, had := model[k]
			if tab.Delete(&k) != had {
				t.Fatalf("step %d: delete disagrees (model had %v)", step, had)
			}
			delete(model, k)
		default:
			// Reap every flow with an odd count.
			n := 0
			tab.Reap(func(_ *Key, s *State) bool { return s.Dir[0].Packets%2 == 1 }, func(k *Key, s *State, _ *FlowStats) {
				if model[*k] != s.Dir[0].Packets {
					t.Fatalf("step %d: reaped %d packets, model %d", step, s.Dir[0].Packets, model[*k])
				}
				delete(model, *k)
				n++
			})
		}
		if tab.Len() != len(model) {
			t.Fatalf("step %d: len %d, model %d", step, tab.Len(), len(model))
		}
	}
	for k, n := range model {
		s, _, ok := tab.Lookup(&k)
		if !ok || s.Dir[0].Packets != n {
			t.Fatalf("lookup %v: %v %v, want %d", k, s.Dir[0].Packets, ok, n)
		}
	}
	seen := 0
	tab.Range(func(k *Key, s *State, _ *FlowStats) bool {
		if model[*k] != s.Dir[0].Packets {
			t.Fatalf("range: %v has %d, model %d", *k, s.Dir[0].Packets, model[*k])
		}
		seen++
		return true
	})
	if seen != len(model) {
		t.Fatalf("range saw %d of %d", seen, len(model))
	}
}

func TestFlowTableUpsertAllocatesNothing(t *testing.T) {
	tab := NewFlowTable(1 << 12)
	keys := make([]Key, 1<<11)
	for i := range keys {
		keys[i] = testKey(i)
		tab.Upsert(&keys[i])
	}
	i := 0
	allocs := testing.AllocsPerRun(10000, func() {
		s, _, _ := tab.Upsert(&keys[i%len(keys)])
		s.Dir[0].Packets++
		i++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per hit", allocs)
	}
}

// TestDrainInChunks drains a table that has had removals, a chunk at a time: every
// flow comes out once, those not yet drained are still found, drained ones are not,
// and the emptied table takes new flows.
func TestDrainInChunks(t *testing.T) {
	tab := NewFlowTable(16)
	left := map[Key]bool{}
	for i := range 10000 {
		k := testKey(i)
		tab.Upsert(&k)
		left[k] = true
	}
	for i := 0; i < 10000; i += 7 {
		k := testKey(i)
		tab.Delete(&k)
		delete(left, k)
	}
	var order []Key
	for more := true; more; {
		more = tab.Drain(1000, func(k *Key, _ *State, _ *FlowStats) {
			if !left[*k] {
				t.Fatalf("%v drained twice or never inserted", *k)
			}
			delete(left, *k)
			order = append(order, *k)
		})
		if tab.Len() != len(left) || more != (len(left) > 0) {
			t.Fatalf("len %d, %d left, more %v", tab.Len(), len(left), more)
		}
		for k := range left {
			if _, _, ok := tab.Lookup(&k); !ok {
				t.Fatalf("undrained %v not found", k)
			}
		}
		for _, k := range order[max(0, len(order)-50):] {
			if _, _, ok := tab.Lookup(&k); ok {
				t.Fatalf("drained %v still found", k)
			}
		}
	}
	k := testKey(1)
	if _, _, created := tab.Upsert(&k); !created || tab.Len() != 1 {
		t.Fatal("the drained table does not take a new flow")
	}
}

// TestFlowTableStatisticsFollowTheirFlow: with statistics kept, each flow's stay with
// it when reaping moves entries into the holes, and a reinserted key starts from zero.
func TestFlowTableStatisticsFollowTheirFlow(t *testing.T) {
	tab := NewFlowTable(4)
	tab.KeepStatistics()
	for i := range 10000 {
		k := testKey(i)
		s, st, created := tab.Upsert(&k)
		if !created || st == nil || *st != (FlowStats{}) {
			t.Fatalf("insert %d: created %v, stats %v", i, created, st)
		}
		s.Dir[0].Packets = uint64(i)
		st.Dir[1].GapSum = uint64(i)
	}
	tab.Reap(func(_ *Key, s *State) bool { return s.Dir[0].Packets%3 == 0 }, func(_ *Key, s *State, st *FlowStats) {
		if st.Dir[1].GapSum != s.Dir[0].Packets {
			t.Fatalf("reaped flow %d has the statistics of %d", s.Dir[0].Packets, st.Dir[1].GapSum)
		}
	})
	n := 0
	tab.Range(func(_ *Key, s *State, st *FlowStats) bool {
		n++
		if st.Dir[1].GapSum != s.Dir[0].Packets {
			t.Fatalf("flow %d has the statistics of %d", s.Dir[0].Packets, st.Dir[1].GapSum)
		}
		return true
	})
	k := testKey(3)
	if _, st, created := tab.Upsert(&k); n != 6666 || !created || *st != (FlowStats{}) {
		t.Fatalf("%d flows left; reinserted key: created %v, stats %v", n, created, st)
	}
	if _, st, _ := NewFlowTable(4).Upsert(&k); st != nil {
		t.Fatal("a table without statistics returned some")
	}
}

// tableMemory is what a table holds in pages, index, free list and deadline buckets,
// in bytes.
func tableMemory(t *FlowTable) int {
	entry, stats := int(unsafe.Sizeof(flowEntry{})+unsafe.Sizeof(int32(0))), int(unsafe.Sizeof(FlowStats{})) // with its stamp
	n := len(t.pages)*pageSize*entry + len(t.stats)*pageSize*stats + 8*len(t.slots) + 4*cap(t.free) + 4*cap(t.unfiled)
	if w := t.wheel; w != nil {
		for _, b := range w.buckets {
			n += 4 * cap(b)
		}
		n += int(unsafe.Sizeof(pending{})) * cap(w.keep)
	}
	return n
}

// TestFlowTableShrinksWhenFlowsEnd: once a burst of 100,000 flows has ended but for a
// few, the table holds memory for those few only; they keep their state, statistics
// and deadlines, and end when they are due, in the order they would have; the table
// then takes a burst again.
func TestFlowTableShrinksWhenFlowsEnd(t *testing.T) {
	const burst, stay = 100_000, 100
	to := Timeouts{Idle: 10e9, FIN: 1e9}
	tab := NewFlowTable(1024)
	tab.KeepStatistics()
	tab.SetTimeouts(to)
	// What a new table holding the flows that stay has.
	few := NewFlowTable(1024)
	few.KeepStatistics()
	for i := range stay {
		k := testKey(i)
		few.Upsert(&k)
	}
	small := tableMemory(few)
	for round := range 3 {
		now := int64(round) * 100e9
		for i := range burst {
			k := testKey(i)
			s, st, created := tab.Upsert(&k)
			if !created {
				t.Fatalf("round %d: flow %d was still there", round, i)
			}
			s.Dir[0].Packets, s.Dir[0].First, s.Dir[0].Last = 1, now, now
			if i%(burst/stay) == 0 {
				s.Dir[0].Last = now + 5e9 + int64(i) // stays past the burst, ending in key order
			}
			st.Dir[0].GapSum = uint64(i)
		}
		peak := tableMemory(tab)
		var ended []int
		check := func(k *Key, s *State, st *FlowStats, reason EndReason, end int64) {
			i := int(k.A[15]) | int(k.A[14])<<8 | int(k.PortA)<<16
			if st.Dir[0].GapSum != uint64(i) || reason != EndIdle || end != s.LastSeen()+10e9 {
				t.Fatalf("round %d: flow %d ended with the statistics of %d, reason %v at %d", round, i, st.Dir[0].GapSum, reason, end)
			}
			ended = append(ended, i)
		}
		next := tab.Expire(now+10e9, check)
		if len(ended) != burst-stay || tab.Len() != stay || next != now+15e9 {
			t.Fatalf("round %d: %d ended, %d left, next deadline %d; want %d, %d, %d", round, len(ended), tab.Len(), next, burst-stay, stay, now+15e9)
		}
		if m := tableMemory(tab); m > 2*small {
			t.Errorf("round %d: with %d flows left of %d, the table holds %d KiB (%d KiB at its peak, %d KiB in a new table with them)", round, stay, burst, m>>10, peak>>10, small>>10)
		}
		for i := 0; i < burst; i += burst / stay {
			k := testKey(i)
			if s, st, ok := tab.Lookup(&k); !ok || s.Dir[0].Last != now+5e9+int64(i) || st.Dir[0].GapSum != uint64(i) {
				t.Fatalf("round %d: flow %d after the shrink: found %v, last %d, statistics of %d", round, i, ok, s.Dir[0].Last, st.Dir[0].GapSum)
			}
		}
		ended = ended[:0]
		if next := tab.Expire(now+20e9, check); next != math.MaxInt64 || tab.Len() != 0 || len(ended) != stay {
			t.Fatalf("round %d: %d of the last flows ended, %d left, next %d", round, len(ended), tab.Len(), next)
		}
		for j, i := range ended {
			if i != j*(burst/stay) {
				t.Fatalf("round %d: the last flows ended in the order %v", round, ended)
			}
		}
	}
}
