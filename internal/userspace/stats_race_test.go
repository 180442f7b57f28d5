package userspace

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sharedMap is a SharedTable in Go: a map that another goroutine, the "kernel",
// fills while the engine sweeps and walks it.
type sharedMap struct {
	mu       sync.Mutex
	m        map[Key]State
	newFlows atomic.Uint64 // as the kernel's counter: after the insert
	timeouts Timeouts
}

func (t *sharedMap) insert(k Key, s State) {
	t.mu.Lock()
	t.m[k] = s
	t.mu.Unlock()
	t.newFlows.Add(1)
}

func (t *sharedMap) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func (t *sharedMap) Lookup(k *Key) (State, *FlowStats, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[*k]
	return s, nil, ok
}

func (t *sharedMap) Range(yield func(*Key, *State, *FlowStats) bool) {
	t.mu.Lock()
	snap := make(map[Key]State, len(t.m))
	for k, s := range t.m {
		snap[k] = s
	}
	t.mu.Unlock()
	for k, s := range snap {
		if !yield(&k, &s, nil) {
			return
		}
	}
}

// Expire removes the due flows one at a time and yields between them, so that a
// walk can come between a flow's removal and its end's being counted.
func (t *sharedMap) Expire(now int64, ended func(*Key, *State, *FlowStats, EndReason, int64)) int64 {
	t.mu.Lock()
	var due []Key
	for k, s := range t.m {
		if _, end := t.timeouts.Deadline(&s); end <= now {
			due = append(due, k)
		}
	}
	t.mu.Unlock()
	for _, k := range due {
		t.mu.Lock()
		s, ok := t.m[k]
		delete(t.m, k)
		t.mu.Unlock()
		runtime.Gosched()
		if ok {
			reason, end := t.timeouts.Deadline(&s)
			ended(&k, &s, nil, reason, end)
		}
	}
	return math.MaxInt64
}

func (t *sharedMap) Drain(max int, ended func(*Key, *State, *FlowStats)) bool { return false }
func (t *sharedMap) Mark(k *Key, at int64)                                    {}
func (t *sharedMap) SetTimeouts(to Timeouts)                                  { t.timeouts = to }

// TestStatsNeverMissAFlowASweepTook sweeps a shared table that another goroutine keeps
// filling with flows already due, while Stats is read in a loop: every flow created
// must be active or ended in every reading, never neither (which Info would report
// as evicted), however the walk and the sweep interleave.
func TestStatsNeverMissAFlowASweepTook(t *testing.T) {
	tab := &sharedMap{m: map[Key]State{}}
	e := NewEngine(tab, Timeouts{Idle: time.Second})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the kernel
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if tab.Len() >= 256 { // a bounded backlog: the sweeps keep up
				runtime.Gosched()
				continue
			}
			var s State
			s.Dir[0] = Counters{Packets: 1, Bytes: 60, First: 1, Last: 1}
			tab.insert(testKey(i), s)
		}
	}()
	go func() { // the live loop
		defer wg.Done()
		for now := int64(10 * time.Second); ; now += int64(time.Millisecond) {
			select {
			case <-stop:
				return
			default:
			}
			e.Tick(now)
			e.TakeEnded(nil)
		}
	}()
	e.SetDatapathCounters(func() (DatapathCounters, bool) { return DatapathCounters{NewFlows: tab.newFlows.Load()}, true })
	deadline := time.Now().Add(time.Second)
	reads := 0
	for time.Now().Before(deadline) {
		st := e.Stats()
		var ended uint64
		for _, n := range st.Counts.FlowsEnded {
			ended += n
		}
		if active := uint64(st.TCPFlows + st.UDPFlows); st.Datapath.NewFlows > ended+active {
			close(stop)
			wg.Wait()
			t.Fatalf("reading %d: %d flows created, %d ended, %d active: %d neither", reads, st.Datapath.NewFlows, ended, active, st.Datapath.NewFlows-ended-active)
		}
		reads++
	}
	close(stop)
	wg.Wait()
	if reads < 10 {
		t.Errorf("only %d readings", reads)
	}
}
