package userspace

import (
	"slices"
	"sync"
	"time"
)

// Engine runs the userspace side of flow tracking over a Table: the clock, the sweep
// that ends flows on their timeouts, the queue of ended flows, lookups and counters.
//
// The datapath and the engine share one lock. A datapath that runs in Go takes it once
// per batch of packets with [Engine.Do], never per packet; lookups take it briefly.
// Ended flows are queued under the lock and handed out with [Engine.TakeEnded], so the
// code that runs callbacks never holds it.
type Engine struct {
	mu      sync.Mutex
	table   Table
	timeout Timeouts

	sweepEvery time.Duration
	now        int64         // the clock, ns since the epoch; never goes backwards
	start      int64         // the clock's first reading
	nextSweep  int64         // sweeps run at most every sweepEvery,
	nextDue    int64         // and only once a flow can have ended: no flow ends before this
	wake       int64         // max(nextSweep, nextDue): the clock's next stop
	collecting time.Duration // wall time spent in sweeps

	ended   []Record
	counts  EngineCounts
	scratch []Record // reused by every sweep
	order   []int32

	hist *histories // per-packet history, nil when off
}

// EngineCounts are the engine's own counters.
type EngineCounts struct {
	FlowsEnded               [EndEvicted + 1]uint64 // by reason
	EndedPackets, EndedBytes uint64                 // in the flows that ended
	Sweeps                   SweepHistogram
}

// SweepBounds are the upper bounds of SweepHistogram's buckets: 10 µs to 10 s, a
// factor of √10 apart, then everything longer.
var SweepBounds = [...]time.Duration{
	10 * time.Microsecond, 32 * time.Microsecond, 100 * time.Microsecond, 316 * time.Microsecond,
	time.Millisecond, 3162 * time.Microsecond, 10 * time.Millisecond, 31623 * time.Microsecond,
	100 * time.Millisecond, 316228 * time.Microsecond, time.Second, 3162278 * time.Microsecond, 10 * time.Second,
}

// SweepHistogram counts sweeps by duration: Counts[i] those up to SweepBounds[i],
// the last those longer than every bound.
type SweepHistogram struct {
	Counts [len(SweepBounds) + 1]uint64
	Sum    time.Duration
}

func (h *SweepHistogram) observe(d time.Duration) {
	i := 0
	for i < len(SweepBounds) && d > SweepBounds[i] {
		i++
	}
	h.Counts[i]++
	h.Sum += d
}

// ended counts a flow that ended.
func (c *EngineCounts) ended(r *Record) {
	c.FlowsEnded[r.Reason]++
	c.EndedPackets += r.State.Packets()
	c.EndedBytes += r.State.Dir[0].Bytes + r.State.Dir[1].Bytes
}

// NewEngine returns an engine over table with the given timeouts. Zero durations take
// the defaults, except Active where zero means off.
func NewEngine(table Table, t Timeouts) *Engine {
	if t.Idle <= 0 {
		t.Idle = DefaultTimeouts.Idle
	}
	if t.FIN <= 0 {
		t.FIN = DefaultTimeouts.FIN
	}
	// Sweeps only free memory and deliver ended flows on time: the datapath ends an
	// expired flow itself when a packet arrives for it, so results do not depend on
	// the sweep interval.
	every := min(time.Second, t.shortest())
	if tt, ok := table.(interface{ SetTimeouts(Timeouts) }); ok {
		tt.SetTimeouts(t) // its deadlines follow the engine's timeouts
	}
	return &Engine{table: table, timeout: t, sweepEvery: every}
}

// Timeouts returns the timeouts in force.
func (e *Engine) Timeouts() Timeouts { return e.timeout }

// Do runs fn with the engine locked. Methods whose names end in Locked may be called
// only inside fn.
func (e *Engine) Do(fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn()
}

// AdvanceLocked moves the clock to t, or keeps it where it is when t is earlier, and
// sweeps when a sweep is due. It returns the clock. The common case, no sweep due, is
// small enough to inline into the datapath.
func (e *Engine) AdvanceLocked(t int64) int64 {
	if t > e.now {
		if t < e.wake {
			e.now = t
			return t
		}
		e.advanceSlow(t)
	}
	return e.now
}

func (e *Engine) advanceSlow(t int64) {
	e.now = t
	if e.start == 0 {
		e.start = t
		e.nextDue = t + int64(e.timeout.unmarked())
	} else {
		e.sweepLocked() // sets nextDue
	}
	e.nextSweep = t + int64(e.sweepEvery)
	e.wake = max(e.nextSweep, e.nextDue)
}

// ScheduleLocked tells the engine that a flow may end as early as t: the datapath
// calls it when a FIN or RST first marks a flow, as the kernel sends an event.
func (e *Engine) ScheduleLocked(t int64) {
	e.nextDue = min(e.nextDue, t)
	e.wake = max(e.nextSweep, e.nextDue)
}

// EndLocked queues a flow that the datapath ended, with its statistics (nil when
// they are not kept), which it copies.
func (e *Engine) EndLocked(k *Key, s *State, st *FlowStats, reason EndReason, end int64) {
	e.ended = append(e.ended, Record{Key: *k, State: *s, Stats: copyStats(st), Reason: reason, End: end, History: e.hist.take(k, s)})
	e.counts.ended(&e.ended[len(e.ended)-1])
}

func (e *Engine) sweepLocked() {
	began := time.Now()
	now := e.now
	batch := e.scratch[:0]
	hs := e.hist
	late := hs != nil && hs.cfg.Late
	next := e.table.Expire(now, func(k *Key, s *State, st *FlowStats, reason EndReason, end int64) {
		batch = append(batch, Record{Key: *k, State: *s, Stats: copyStats(st), Reason: reason, End: min(end, now), History: hs.take(k, s)})
	})
	if late {
		e.table.Range(func(k *Key, _ *State, _ *FlowStats) bool {
			hs.sawActive(k)
			return true
		})
		hs.endSweep()
	}
	// Flows created from now on live at least the unmarked timeout; those that
	// stay set their own bound.
	e.nextDue = min(now+int64(e.timeout.unmarked()), next)
	e.wake = max(e.nextSweep, e.nextDue)
	e.queue(batch)
	took := time.Since(began)
	e.collecting += took
	e.counts.Sweeps.observe(took)
}

// FlushChunk is how many flows FlushLocked ends at a time: the queue of ended flows
// never holds more than this many at the end of a capture, however many are active.
const FlushChunk = 4096

// FlushLocked ends up to FlushChunk flows of the table with the given reason, at the
// clock, and reports whether flows remain: call it, hand out the ended flows, and
// repeat until it returns false. They all end at once, so they are queued in the
// table's order, which depends only on the packets: a replay always reports in the
// same order.
func (e *Engine) FlushLocked(reason EndReason) (more bool) {
	return e.table.Drain(FlushChunk, func(k *Key, s *State, st *FlowStats) {
		e.ended = append(e.ended, Record{Key: *k, State: *s, Stats: copyStats(st), Reason: reason, End: e.now, History: e.hist.take(k, s)})
		e.counts.ended(&e.ended[len(e.ended)-1])
	})
}

// Flush ends every flow with the given reason, a chunk of FlushChunk at a time, and
// calls handOut after each chunk, outside the lock, so the queue never holds more than
// a chunk however many flows are active.
func (e *Engine) Flush(reason EndReason, handOut func()) {
	for more := true; more; {
		e.Do(func() { more = e.FlushLocked(reason) })
		handOut()
	}
}

// queue appends a batch of ended flows to the queue in the order they ended. Flows
// that ended at the same instant keep the table's order, which depends only on the
// packets, so a replay always reports in the same order. It sorts indices, not the
// records, which are large.
func (e *Engine) queue(batch []Record) {
	order := e.order[:0]
	for i := range batch {
		order = append(order, int32(i))
		e.counts.ended(&batch[i])
	}
	slices.SortStableFunc(order, func(a, b int32) int {
		return cmpInt64(batch[a].End, batch[b].End)
	})
	e.ended = slices.Grow(e.ended, len(batch))
	for _, i := range order {
		e.ended = append(e.ended, batch[i])
	}
	e.scratch, e.order = batch[:0], order[:0]
}

// TakeEnded returns the flows ended since the last call, in end order, and gives the
// engine buf to fill next; when none ended it returns nil and keeps its own buffer.
// The caller owns the returned slice.
func (e *Engine) TakeEnded(buf []Record) []Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.ended) == 0 {
		return nil
	}
	out := e.ended
	e.ended = buf[:0]
	return out
}

// Lookup returns the state of the active flow with key k.
func (e *Engine) Lookup(k *Key) (State, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, _, ok := e.table.Lookup(k)
	return s, ok
}

// Snapshot appends every active flow to dst and returns it. The flows are copies taken
// under the lock, so the caller may do anything with them, including calling back
// into the engine.
func (e *Engine) Snapshot(dst []Record) []Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.table.Range(func(k *Key, s *State, st *FlowStats) bool {
		dst = append(dst, Record{Key: *k, State: *s, Stats: copyStats(st), History: e.hist.copyOf(k)})
		return true
	})
	return dst
}

// LookupRecord returns the active flow with key k, with a copy of its history.
func (e *Engine) LookupRecord(k *Key) (Record, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, st, ok := e.table.Lookup(k)
	if !ok {
		return Record{}, false
	}
	return Record{Key: *k, State: s, Stats: st, History: e.hist.copyOf(k)}, true
}

// Stats describes the engine at one instant.
type Stats struct {
	TCPFlows, UDPFlows     int    // active
	TCPPackets, UDPPackets uint64 // in active flows
	TCPBytes, UDPBytes     uint64 // in active flows
	Start, Now             int64  // the clock's first and current readings
	Collecting             time.Duration
	Counts                 EngineCounts
}

// StatsLocked reads the engine's statistics. It walks the table, so it costs one visit
// per active flow.
func (e *Engine) StatsLocked() Stats {
	st := Stats{Start: e.start, Now: e.now, Collecting: e.collecting, Counts: e.counts}
	e.table.Range(func(k *Key, s *State, _ *FlowStats) bool {
		if k.Proto == ProtoTCP {
			st.TCPFlows++
			st.TCPPackets += s.Packets()
			st.TCPBytes += s.Dir[0].Bytes + s.Dir[1].Bytes
		} else {
			st.UDPFlows++
			st.UDPPackets += s.Packets()
			st.UDPBytes += s.Dir[0].Bytes + s.Dir[1].Bytes
		}
		return true
	})
	return st
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
