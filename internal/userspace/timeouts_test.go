package userspace

import (
	"fmt"
	"math"
	"testing"
	"time"
)

const sec = int64(time.Second)

func state(first, last int64, marks uint8) State {
	return State{Dir: [2]Counters{{Packets: 1, First: first, Last: first}, {Packets: 1, First: last, Last: last}}, Marks: marks}
}

func TestExpired(t *testing.T) {
	to := Timeouts{Idle: 600 * time.Second, FIN: 30 * time.Second}
	active := Timeouts{Idle: 600 * time.Second, FIN: 30 * time.Second, Active: 120 * time.Second}
	for _, tc := range []struct {
		name   string
		t      Timeouts
		s      State
		now    int64
		reason EndReason
		end    int64
	}{
		{"fresh", to, state(0, 10*sec, 0), 20 * sec, 0, 0},
		{"idle just before", to, state(0, 10*sec, 0), 610*sec - 1, 0, 0},
		{"idle at the instant", to, state(0, 10*sec, 0), 610 * sec, EndIdle, 610 * sec},
		{"idle long after", to, state(0, 10*sec, 0), 5000 * sec, EndIdle, 610 * sec},
		{"fin before", to, state(0, 10*sec, MarkFIN), 40*sec - 1, 0, 0},
		{"fin at", to, state(0, 10*sec, MarkFIN), 40 * sec, EndFIN, 40 * sec},
		{"rst at", to, state(0, 10*sec, MarkRST), 40 * sec, EndRST, 40 * sec},
		{"rst wins over fin", to, state(0, 10*sec, MarkFIN|MarkRST), 41 * sec, EndRST, 40 * sec},
		{"fin beats idle", to, state(0, 10*sec, MarkFIN), 700 * sec, EndFIN, 40 * sec},
		{"active off", to, state(0, 500*sec, 0), 600 * sec, 0, 0},
		{"active before", active, state(0, 100*sec, 0), 120*sec - 1, 0, 0},
		{"active at", active, state(0, 100*sec, 0), 120 * sec, EndActive, 120 * sec},
		{"the earliest deadline wins", active, state(0, 0, 0), 700 * sec, EndActive, 120 * sec},
		{"idle earlier than active", Timeouts{Idle: 60 * time.Second, FIN: 30 * time.Second, Active: 120 * time.Second}, state(0, 0, 0), 700 * sec, EndIdle, 60 * sec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, end, ok := tc.t.Expired(&tc.s, tc.now)
			if ok != (tc.reason != 0) || r != tc.reason || end != tc.end {
				t.Errorf("Expired = %v, %d, %v; want %v, %d", r, end, ok, tc.reason, tc.end)
			}
		})
	}
}

// TestSweepOnSyntheticClock ends flows by their own timeouts as the clock moves, hands
// them out in end order, and flushes the rest.
func TestSweepOnSyntheticClock(t *testing.T) {
	tab := NewFlowTable(8)
	e := NewEngine(tab, Timeouts{Idle: 10 * time.Second, FIN: 2 * time.Second})
	add := func(i int, last int64, marks uint8) {
		k := testKey(i)
		s, _, _ := tab.Upsert(&k)
		*s = state(last, last, marks)
		if marks != 0 {
			e.schedule(last + int64(e.Timeouts().FIN)) // as a datapath does
		}
	}
	e.Tick(1 * sec)
	add(1, 1*sec, 0)       // idle: ends at 11 s
	add(2, 1*sec, MarkFIN) // fin: ends at 3 s
	add(3, 2*sec, MarkRST) // rst: ends at 4 s
	add(4, 5*sec, 0)       // idle: ends at 15 s
	e.Tick(3 * sec)
	got := e.TakeEnded(nil)
	if len(got) != 1 || got[0].Reason != EndFIN || got[0].End != 3*sec {
		t.Fatalf("at 3 s: %+v", got)
	}
	e.Tick(2 * sec) // backwards: clamped, nothing happens
	if e.TakeEnded(nil) != nil {
		t.Fatal("a clock going backwards ended flows")
	}
	e.Tick(12 * sec)
	got = e.TakeEnded(nil)
	if len(got) != 2 || got[0].Reason != EndRST || got[0].End != 4*sec || got[1].Reason != EndIdle || got[1].End != 11*sec {
		t.Fatalf("at 12 s: %+v", got)
	}
	e.flushChunk(EndEndOfCapture)
	got = e.TakeEnded(nil)
	if len(got) != 1 || got[0].Reason != EndEndOfCapture || got[0].End != 12*sec || tab.Len() != 0 {
		t.Fatalf("flush: %+v, %d left", got, tab.Len())
	}
	st := e.Stats()
	if st.Counts.FlowsEnded[EndFIN] != 1 || st.Counts.FlowsEnded[EndRST] != 1 || st.Counts.FlowsEnded[EndIdle] != 1 || st.Counts.FlowsEnded[EndEndOfCapture] != 1 {
		t.Errorf("ended counts %v", st.Counts.FlowsEnded)
	}
}

// decideFirstTable expires as the kernel's table does: it decides which flows are due
// first, then removes each and reads its final state, from which the reason comes.
type decideFirstTable struct{ *FlowTable }

func (t decideFirstTable) Expire(now int64, ended func(*Key, *State, *FlowStats, EndReason, int64)) int64 {
	var keys []Key
	t.FlowTable.Range(func(k *Key, s *State, _ *FlowStats) bool {
		if _, end := t.wheel.timeouts.Deadline(s); end <= now {
			keys = append(keys, *k)
		}
		return true
	})
	for i := range keys {
		s, st, _ := t.Lookup(&keys[i])
		t.Delete(&keys[i])
		reason, end := t.wheel.timeouts.Deadline(&s)
		ended(&keys[i], &s, st, reason, end)
	}
	return math.MaxInt64
}

// TestSweepReasonsComeFromEachFlow: with a table that decides first, each ended flow
// still carries its own reason and end time.
func TestSweepReasonsComeFromEachFlow(t *testing.T) {
	tab := decideFirstTable{NewFlowTable(8)}
	e := NewEngine(tab, Timeouts{Idle: 10 * time.Second, FIN: 2 * time.Second})
	e.Tick(1 * sec)
	for i, marks := range []uint8{MarkRST, 0, MarkFIN} {
		k := testKey(i)
		s, _, _ := tab.Upsert(&k)
		*s = state(sec, sec, marks)
	}
	e.schedule(3 * sec)
	e.Tick(20 * sec)
	got := map[EndReason]int64{}
	for _, r := range e.TakeEnded(nil) {
		got[r.Reason] = r.End
	}
	if want := map[EndReason]int64{EndRST: 3 * sec, EndIdle: 11 * sec, EndFIN: 3 * sec}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ended %v, want %v", got, want)
	}
}

// TestAfterSaturates: a deadline past the last instant int64 ns hold is that instant,
// not a time long past.
func TestAfterSaturates(t *testing.T) {
	for _, c := range []struct {
		t    int64
		d    time.Duration
		want int64
	}{
		{100, 5, 105},
		{math.MaxInt64 - 10, 10, math.MaxInt64},
		{math.MaxInt64 - 10, 11, math.MaxInt64},
		{math.MaxInt64, math.MaxInt64, math.MaxInt64},
		{math.MinInt64 + 10, -11, math.MinInt64},
		{-100, -5, -105},
	} {
		if got := After(c.t, c.d); got != c.want {
			t.Errorf("After(%d, %d) = %d, want %d", c.t, c.d, got, c.want)
		}
	}
	to := DefaultTimeouts
	var s State
	s.Dir[0].First, s.Dir[0].Last, s.Dir[0].Packets = math.MaxInt64-1e9, math.MaxInt64-1e9, 1
	if _, _, over := to.Expired(&s, math.MaxInt64-1); over {
		t.Error("a flow 1 s before the last instant expired by its idle timeout")
	}
}
