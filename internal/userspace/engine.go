package userspace

import (
	"bytes"
	"cmp"
	"slices"
	"sync"
	"time"
)

// Engine runs the userspace side of flow tracking over a Table: the clock, the sweep
// that ends flows on their timeouts, the queue of ended flows, lookups and counters.
//
// The engine owns its lock. A datapath hands it work in batches and never takes the
// lock itself: the Go datapath a batch of packets to count (Count), the kernel's a
// batch of events (Apply), the clock's owner a new reading (Tick). Ended flows are
// queued and handed out with [Engine.TakeEnded], so the code that runs callbacks never
// holds the lock; Count returns right after a flow ends, so that its callback runs
// before the next packet is counted.
type Engine struct {
	mu      sync.Mutex
	table   Table
	shared  SharedTable // table, when it is the kernel's map
	timeout Timeouts
	// sweepMu: one sweep of a shared table at a time. Stats holds it too, so that
	// no flow is between the table, which a sweep removes it from, and the ended
	// counts, which the sweep adds it to after.
	sweepMu sync.Mutex
	walks   walks // Stats' walks of a shared table, shared by concurrent callers
	// external reads the counters of a datapath outside the engine (the kernel's)
	// for Stats; nil when the datapath is the engine's own.
	external func() (DatapathCounters, bool)

	sweepEvery time.Duration
	now        int64         // the clock, ns since the epoch; never goes backwards
	start      int64         // the clock's first reading
	nextSweep  int64         // sweeps run at most every sweepEvery,
	nextDue    int64         // and only once a flow can have ended: no flow ends before this
	wake       int64         // max(nextSweep, nextDue): the clock's next stop
	collecting time.Duration // wall time spent in sweeps

	ended    []Record
	counts   EngineCounts
	counters DatapathCounters // the Go datapath's, which it counts under the lock
	scratch  []Record         // reused by every sweep
	order    []endOrder

	hist *histories // per-packet history, nil when off
}

// EngineCounts are the engine's own counters.
type EngineCounts struct {
	FlowsEnded               [EndEvicted + 1]uint64 // by reason
	EndedPackets, EndedBytes uint64                 // in the flows that ended
	// EndedByDatapath are the flows of FlowsEnded that the datapath ended and
	// started anew in place (DatapathCounters.Restarts, once their end has come
	// through): the others left the table.
	EndedByDatapath uint64
	Sweeps          SweepHistogram
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
	e := &Engine{table: table, timeout: t, sweepEvery: every}
	e.shared, _ = table.(SharedTable)
	return e
}

// Timeouts returns the timeouts in force.
func (e *Engine) Timeouts() Timeouts { return e.timeout }

// Batch is packets for the engine to count, in order: the Go datapath's.
type Batch interface {
	// Len is the number of packets in the batch.
	Len() int
	// Time is packet i's capture time, ns since the epoch.
	Time(i int) int64
	// Count counts packet i into the table at the engine's clock now, telling the
	// engine through tx what it did.
	Count(i int, now int64, tx Tx)
}

// Tx is the engine as a datapath sees it while the engine counts its packets: valid
// only inside Batch.Count, with the engine's lock held.
type Tx struct{ e *Engine }

// Count counts the packets of b from the i-th on, moving the clock to each one's time
// first (it never goes backwards) and sweeping when a sweep is due. It returns the
// index of the first packet it did not count: b.Len(), or earlier when a flow ended,
// whether the clock ended it before that packet or the packet before ended it. The
// caller hands the ended flows out (TakeEnded) and calls Count again from there, so a
// flow's callback runs before the next packet counts.
func (e *Engine) Count(b Batch, i int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	tx := Tx{e}
	queued := len(e.ended)
	for n := b.Len(); i < n; i++ {
		now := e.advance(b.Time(i))
		if len(e.ended) > queued {
			return i // ended by the clock: before packet i
		}
		b.Count(i, now, tx)
		if len(e.ended) > queued {
			return i + 1
		}
	}
	return i
}

// Tick moves the clock to now, or keeps it where it is when now is earlier, and
// sweeps when a sweep is due: live, the wall clock's reading; in a paced replay, the
// time the next packet waits for. A shared table is swept at every Tick, and without
// the engine's lock: the lock is taken only to queue the flows that ended.
func (e *Engine) Tick(now int64) {
	if e.shared != nil {
		e.sweepShared(now)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advance(now)
}

// SharedTable is a Table that the datapath writes from elsewhere, the kernel's map,
// and that is safe to read and sweep from any goroutine. The engine reads it without
// holding its lock, so that lookups, snapshots and statistics never keep the reader
// of the kernel's events waiting, and sweeps it at every Tick: Expire then does a
// bounded slice of work, ending the flows it finds due, and may leave others due
// for later calls.
type SharedTable interface {
	Table
	// Mark tells the table that a FIN or RST marked the flow with key k, which may
	// end as early as t: the kernel's event, so that the flow ends on time.
	Mark(k *Key, t int64)
}

// sweepShared is Tick for a shared table.
func (e *Engine) sweepShared(now int64) {
	e.sweepMu.Lock()
	defer e.sweepMu.Unlock()
	e.mu.Lock()
	if e.start == 0 {
		e.start = now
	}
	e.now = max(e.now, now)
	now = e.now
	e.mu.Unlock()

	began := time.Now()
	batch := e.scratch[:0]
	e.shared.Expire(now, func(k *Key, s *State, st *FlowStats, reason EndReason, end int64) {
		batch = append(batch, Record{Key: *k, State: *s, Stats: copyStats(st), Reason: reason, End: min(end, now)})
	})
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hist.newSweep()
	for i := range batch {
		batch[i].History = e.hist.take(&batch[i].Key, &batch[i].State)
	}
	e.queue(batch)
	took := time.Since(began)
	e.collecting += took
	e.counts.Sweeps.observe(took)
}

// advance moves the clock to t, or keeps it where it is when t is earlier, and sweeps
// when a sweep is due. It returns the clock. The common case, no sweep due, is small
// enough to inline.
func (e *Engine) advance(t int64) int64 {
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
		e.nextDue = After(t, e.timeout.unmarked())
	} else {
		e.sweep() // sets nextDue
	}
	e.nextSweep = After(t, e.sweepEvery)
	e.wake = max(e.nextSweep, e.nextDue)
}

// schedule tells the engine that a flow may end as early as t: a FIN or RST first
// marked it.
func (e *Engine) schedule(t int64) {
	e.nextDue = min(e.nextDue, t)
	e.wake = max(e.nextSweep, e.nextDue)
}

// Schedule tells the engine that a flow may end as early as t: the datapath calls it
// when a FIN or RST first marks a flow, as the kernel sends an event.
func (tx Tx) Schedule(t int64) { tx.e.schedule(t) }

// End queues a flow that the datapath ended, with its statistics (nil when they are
// not kept), which it copies.
func (tx Tx) End(k *Key, s *State, st *FlowStats, reason EndReason, end int64) {
	tx.e.end(k, s, st, reason, end)
	tx.e.counts.EndedByDatapath++
}

// Record adds a packet the datapath has just counted to the history of its flow.
func (tx Tx) Record(k *Key, r *PacketRecord) { tx.e.record(k, r) }

// Counters are the Go datapath's counters, which it keeps in the engine so that they
// agree with the flows at every instant (Stats).
func (tx Tx) Counters() *DatapathCounters { return &tx.e.counters }

func (e *Engine) end(k *Key, s *State, st *FlowStats, reason EndReason, end int64) {
	e.ended = append(e.ended, Record{Key: *k, State: *s, Stats: copyStats(st), Reason: reason, End: end, History: e.hist.take(k, s)})
	e.counts.ended(&e.ended[len(e.ended)-1])
}

// EventKind says what a kernel event is.
type EventKind uint8

// The kinds of events the kernel's datapath sends.
const (
	EventMark   EventKind = 1 // a FIN or RST first marked the flow at Time
	EventEnded  EventKind = 2 // the kernel ended the flow (Reason, at Time) and started it anew
	EventPacket EventKind = 3 // a packet of the flow, for its history (Packet)
)

// Event is one of the kernel datapath's events. Only the fields its kind uses are
// set.
type Event struct {
	Kind   EventKind
	Reason EndReason
	Time   int64 // the kernel's monotonic clock, ns
	Key    Key
	State  State        // EventEnded: the flow's final counters
	Stats  FlowStats    // EventEnded: its statistics, zero unless kept
	Packet PacketRecord // EventPacket: the packet, Time included
}

// Apply hands the engine a batch of the kernel's events, in the order the kernel sent
// them, under one hold of its lock. stats says the kernel keeps statistics, so that
// ended flows carry them.
func (e *Engine) Apply(evs []Event, stats bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range evs {
		ev := &evs[i]
		switch ev.Kind {
		case EventPacket:
			e.record(&ev.Key, &ev.Packet)
		case EventEnded:
			var st *FlowStats
			if stats {
				st = &ev.Stats
			}
			e.end(&ev.Key, &ev.State, st, ev.Reason, ev.Time)
			e.counts.EndedByDatapath++
		case EventMark:
			if e.shared != nil {
				e.shared.Mark(&ev.Key, After(ev.Time, e.timeout.FIN))
			} else {
				e.schedule(After(ev.Time, e.timeout.FIN))
			}
		}
	}
}

func (e *Engine) sweep() {
	began := time.Now()
	now := e.now
	start := len(e.ended)
	hs := e.hist
	next := e.table.Expire(now, func(k *Key, s *State, st *FlowStats, reason EndReason, end int64) {
		e.ended = append(e.ended, Record{Key: *k, State: *s, Stats: copyStats(st), Reason: reason, End: min(end, now), History: hs.take(k, s)})
	})
	// Flows created from now on live at least the unmarked timeout; those that
	// stay set their own bound.
	e.nextDue = min(After(now, e.timeout.unmarked()), next)
	e.wake = max(e.nextSweep, e.nextDue)
	e.sortEnded(start)
	took := time.Since(began)
	e.collecting += took
	e.counts.Sweeps.observe(took)
}

// FlushChunk is how many flows Flush ends at a time: the queue of ended flows never
// holds more than this many at the end of a capture, however many are active.
const FlushChunk = 1024

// flushChunk ends up to FlushChunk flows of the table with the given reason, at the
// clock, and reports whether flows remain. They all end at once, so they are queued
// in the table's order, which depends only on the packets: a replay always reports in
// the same order.
func (e *Engine) flushChunk(reason EndReason) (more bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.table.Drain(FlushChunk, func(k *Key, s *State, st *FlowStats) {
		e.end(k, s, st, reason, e.now)
	})
}

// Flush ends every flow with the given reason, a chunk of FlushChunk at a time, and
// calls handOut after each chunk, outside the lock, so the queue never holds more than
// a chunk however many flows are active. It is the end: no packet record may come
// after it (live, the reader has taken the last event), so it no longer remembers
// ended flows for records that come late.
//
// The flows end in the order of their last packet, then their first, as a reader of
// the output expects, not in the table's order: the table is read for the order and
// emptied in it, which a FlowTable does in place and the kernel's table a span of
// time at a time (see flushKeys).
// What a table adds meanwhile, and every flow of a table that can do neither, follows
// in the table's order.
func (e *Engine) Flush(reason EndReason, handOut func()) {
	e.mu.Lock()
	e.hist.noLateRecords()
	e.mu.Unlock()
	end := func(k *Key, s *State, st *FlowStats) { e.end(k, s, st, reason, e.now) }
	if ft, ok := e.table.(*FlowTable); ok {
		e.flushEntries(ft, end, handOut)
	} else if remover, ok := e.table.(keyRemover); ok && remover.Quiet() {
		e.flushKeys(remover, end, handOut)
	}
	for more := true; more; {
		more = e.flushChunk(reason)
		handOut()
	}
}

// flushEntries ends the flows of ft in Flush's order, with their entries standing
// for their keys: 24 bytes a flow, and no hash lookup to take one.
func (e *Engine) flushEntries(ft *FlowTable, end func(*Key, *State, *FlowStats), handOut func()) {
	e.mu.Lock()
	order := make([]entryOrder, 0, ft.Len())
	ft.rangeEntries(func(idx int32, s *State) {
		order = append(order, entryOrder{last: s.LastSeen(), first: s.FirstSeen(), idx: idx})
	})
	e.mu.Unlock()
	slices.SortFunc(order, func(a, b entryOrder) int {
		return cmp.Or(cmp.Compare(a.last, b.last), cmp.Compare(a.first, b.first), cmp.Compare(a.idx, b.idx))
	})
	for len(order) > 0 {
		chunk := order[:min(len(order), FlushChunk)]
		order = order[len(chunk):]
		e.mu.Lock()
		for _, o := range chunk {
			ft.takeEntry(o.idx, end)
		}
		e.mu.Unlock()
		handOut()
	}
}

// flushKeys ends the flows of the kernel's table, a table whose flows are removed by
// key, in Flush's order. Keeping every flow for the order would cost 56 bytes a
// flow for the key alone, and as much again in garbage while the flows are handed
// out: 200 MB at a stop with a million flows. So it counts the flows, reads the
// table once for the last packets' times alone (8 bytes a flow), cuts their sorted
// order into at most flushPasses spans of time, and for each span reads the table
// again for the flows in it, sorts them, and removes them in batches. Memory is 8
// bytes a flow and one span's flows; the price is a read of the table per span, at a
// stop: 2.5 to 5 s for a million flows (TestSoak).
//
// A flow ends with the state the span's read found, so the table must not change
// meanwhile: Flush calls it only once the table is Quiet.
func (e *Engine) flushKeys(remover keyRemover, end func(*Key, *State, *FlowStats), handOut func()) {
	// Sized once, by counting first: growing it would leave garbage of its own size.
	e.mu.Lock()
	lasts := make([]int64, 0, e.table.Len()+FlushChunk)
	e.table.Range(func(_ *Key, s *State, _ *FlowStats) bool {
		lasts = append(lasts, s.LastSeen())
		return true
	})
	e.mu.Unlock()
	slices.Sort(lasts)
	span := max(flushSpan, (len(lasts)+flushPasses-1)/flushPasses)
	var (
		flows = make([]spanFlow, 0, min(span, len(lasts))) // more only for a tie at its end
		stats []FlowStats
		keys  = make([]Key, 0, FlushChunk)
	)
	for len(lasts) > 0 {
		// The span ends after every flow whose last packet came at its last time,
		// so the next span begins with a later one.
		lo, hi := lasts[0], lasts[min(span, len(lasts))-1]
		n, _ := slices.BinarySearch(lasts, hi+1)
		lasts = lasts[n:]
		flows, stats = flows[:0], stats[:0]
		e.mu.Lock()
		e.table.Range(func(k *Key, s *State, st *FlowStats) bool {
			if t := s.LastSeen(); t >= lo && t <= hi {
				f := spanFlow{key: *k, state: *s, stats: -1}
				if st != nil {
					if stats == nil {
						stats = make([]FlowStats, 0, cap(flows))
					}
					f.stats = int32(len(stats))
					stats = append(stats, *st)
				}
				flows = append(flows, f)
			}
			return true
		})
		e.mu.Unlock()
		slices.SortFunc(flows, func(a, b spanFlow) int {
			return cmp.Or(cmp.Compare(a.state.LastSeen(), b.state.LastSeen()), cmp.Compare(a.state.FirstSeen(), b.state.FirstSeen()), compareKeys(&a.key, &b.key))
		})
		for chunk := range slices.Chunk(flows, FlushChunk) {
			keys = keys[:0]
			for i := range chunk {
				keys = append(keys, chunk[i].key)
			}
			e.mu.Lock()
			remover.Remove(keys, func(i int) {
				f := &chunk[i]
				var st *FlowStats
				if f.stats >= 0 {
					st = &stats[f.stats]
				}
				end(&f.key, &f.state, st)
			})
			e.mu.Unlock()
			handOut()
		}
	}
}

// keyRemover is a table whose flows flushKeys removes by key, once it is Quiet: no
// datapath writes it any more. Until then (the programs could not be detached), a
// flow read in one call and removed in another could lose a packet counted between
// them, so Flush drains it in the table's order, each flow read as it is removed.
type keyRemover interface {
	Remove(keys []Key, removed func(i int))
	Quiet() bool
}

// spanFlow is a flow of flushKeys' span: its key, its state, and the index of its
// statistics in the span's, or -1.
type spanFlow struct {
	key   Key
	state State
	stats int32
}

// flushSpan and flushPasses bound flushKeys: a span holds at least flushSpan flows,
// and there are at most flushPasses of them, so a million flows take 10 reads of
// the table (the kernel reads all its buckets, full or empty) and hold 17 MB of
// flows at a time (37 MB with statistics).
const (
	flushSpan   = 1 << 16
	flushPasses = 8
)

// entryOrder is a flow's place in Flush's order: by its last packet, then its first,
// then its entry, so that a replay always ends them in the same order.
type entryOrder struct {
	last, first int64
	idx         int32
}

// compareKeys orders keys by address A, address B, the ports, the VLAN and the
// protocol: any fixed order makes Flush's repeatable.
func compareKeys(a, b *Key) int {
	if c := bytes.Compare(a.A[:], b.A[:]); c != 0 {
		return c
	}
	if c := bytes.Compare(a.B[:], b.B[:]); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.PortA, b.PortA), cmp.Compare(a.PortB, b.PortB), cmp.Compare(a.VLAN, b.VLAN), cmp.Compare(a.Proto, b.Proto))
}

// queue appends a batch of ended flows to the queue in the order they ended (see
// sortEnded).
func (e *Engine) queue(batch []Record) {
	start := len(e.ended)
	e.ended = append(e.ended, batch...)
	e.sortEnded(start)
	e.scratch = Recycle(batch)
}

// KeepRecords is the most records a buffer of ended flows keeps room for from one use
// to the next. A burst that ends more flows at once grows a larger buffer, which is
// let go once they are handed out, so that the memory the burst took returns when it
// is over; growing one again costs O(1) a flow.
const KeepRecords = 4 * FlushChunk

// Recycle readies a buffer of ended flows (or of anything kept per ended flow) that
// has been used up for the next use: it zeroes the elements, so that the buffer no
// longer keeps what they pointed to (histories, statistics) alive, and returns it
// empty, or nil when it has room for more than KeepRecords.
func Recycle[T any](buf []T) []T {
	clear(buf)
	if cap(buf) > KeepRecords {
		return nil
	}
	return buf[:0]
}

// sortEnded counts the flows queued from start on, and puts them in the order they
// ended. Flows that ended at the same instant keep the order they were queued in,
// which depends only on the packets, so a replay always reports in the same order.
// A sweep finds flows in about the order of their deadlines, often exactly: then
// nothing moves. Otherwise it sorts the end times with the places, apart from the
// records, which are large.
func (e *Engine) sortEnded(start int) {
	tail := e.ended[start:]
	sorted := true
	for i := range tail {
		e.counts.ended(&tail[i])
		if i > 0 && tail[i].End < tail[i-1].End {
			sorted = false
		}
	}
	if sorted {
		return
	}
	order := e.order[:0]
	for i := range tail {
		order = append(order, endOrder{tail[i].End, int32(i)})
	}
	slices.SortFunc(order, func(a, b endOrder) int {
		if a.end != b.end {
			return cmpInt64(a.end, b.end)
		}
		return int(a.i - b.i)
	})
	copied := append(e.scratch[:0], tail...)
	for j, o := range order {
		tail[j] = copied[o.i]
	}
	e.scratch, e.order = Recycle(copied), Recycle(order)
}

// endOrder is a record of a sweep's batch to queue: its end time, and its place in
// the batch, which orders flows that ended at the same instant.
type endOrder struct {
	end int64
	i   int32
}

// TakeEnded returns the flows ended since the last call, in end order, and gives the
// engine buf to fill next; when none ended it returns nil and keeps its own buffer.
// The caller owns the returned slice: once it has handed the flows out, it passes it
// through Recycle before it gives it back, so that it keeps nothing of them.
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

// Snapshot appends every active flow to dst and returns it. The flows are copies, so
// the caller may do anything with them, including calling back into the engine. A
// shared table is read without the engine's lock, which is taken afterwards to copy
// the histories, snapshotChunk flows at a time, so that the reader of the kernel's
// events never waits long for it.
func (e *Engine) Snapshot(dst []Record) []Record {
	first := len(dst)
	add := func(k *Key, s *State, st *FlowStats) bool {
		dst = append(dst, Record{Key: *k, State: *s, Stats: copyStats(st)})
		return true
	}
	if e.shared == nil {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.table.Range(add)
		for i := first; i < len(dst); i++ {
			dst[i].History = e.hist.copyOf(&dst[i].Key)
		}
		return dst
	}
	e.table.Range(add)
	if e.HistoryOn() {
		for i := first; i < len(dst); i += snapshotChunk {
			e.mu.Lock()
			for j := i; j < min(i+snapshotChunk, len(dst)); j++ {
				dst[j].History = e.hist.copyOf(&dst[j].Key)
			}
			e.mu.Unlock()
		}
	}
	return dst
}

// snapshotChunk is how many histories Snapshot copies per hold of the engine's lock.
const snapshotChunk = 256

// LookupRecord returns the active flow with key k, with a copy of its history. A
// shared table is read without the engine's lock.
func (e *Engine) LookupRecord(k *Key) (Record, bool) {
	var s State
	var st *FlowStats
	var ok bool
	if e.shared != nil {
		if s, st, ok = e.table.Lookup(k); !ok {
			return Record{}, false
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shared == nil {
		if s, st, ok = e.table.Lookup(k); !ok {
			return Record{}, false
		}
	}
	return Record{Key: *k, State: s, Stats: st, History: e.hist.copyOf(k)}, true
}

// Counters returns the Go datapath's counters (Tx.Counters).
func (e *Engine) Counters() DatapathCounters {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counters
}

// Stats describes the engine at one instant.
type Stats struct {
	TCPFlows, UDPFlows     int    // active
	TCPPackets, UDPPackets uint64 // in active flows
	TCPBytes, UDPBytes     uint64 // in active flows
	Start, Now             int64  // the clock's first and current readings
	Collecting             time.Duration
	Counts                 EngineCounts
	Datapath               DatapathCounters // the Go datapath's (Tx.Counters), or SetDatapathCounters'
	History                HistoryStats
}

// SetDatapathCounters gives the engine the reading of a datapath's counters outside
// it (the kernel's), which Stats then reports as Datapath. Call it before the first
// Stats.
func (e *Engine) SetDatapathCounters(read func() (DatapathCounters, bool)) { e.external = read }

// Stats reads the engine's statistics. It walks the table, so it costs one visit per
// active flow. A shared table is walked without the engine's lock, and callers that
// come while a walk is under way share the next one, its reading of the counters
// included: however many ask at once, the lock is taken once per walk.
//
// The datapath's counters (SetDatapathCounters) are read before the walk of a shared
// table begins: a flow created after the read is then active rather than created,
// never created and not found, so created − ended − active never counts a flow that
// is still there. The walk waits for a sweep under way, and a sweep for the walk: a
// flow a sweep has taken from the table counts as ended by the time the walk can
// miss it.
func (e *Engine) Stats() Stats {
	if e.shared != nil {
		return e.walks.get(func() Stats {
			e.sweepMu.Lock()
			defer e.sweepMu.Unlock()
			var c DatapathCounters
			ok := false
			if e.external != nil {
				c, ok = e.external()
			}
			act := walk(e.table)
			e.mu.Lock()
			defer e.mu.Unlock()
			st := e.stats(act)
			if ok {
				st.Datapath = c
			}
			return st
		})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats(walk(e.table))
}

func (e *Engine) stats(act active) Stats {
	return Stats{
		TCPFlows: act.tcpFlows, UDPFlows: act.udpFlows, TCPPackets: act.tcpPackets, UDPPackets: act.udpPackets,
		TCPBytes: act.tcpBytes, UDPBytes: act.udpBytes,
		Start: e.start, Now: e.now, Collecting: e.collecting, Counts: e.counts, Datapath: e.counters, History: e.historyStats(),
	}
}

// active are the totals of the active flows.
type active struct {
	tcpFlows, udpFlows     int
	tcpPackets, udpPackets uint64
	tcpBytes, udpBytes     uint64
}

func walk(t Table) active {
	var a active
	t.Range(func(k *Key, s *State, _ *FlowStats) bool {
		if k.Proto == ProtoTCP {
			a.tcpFlows++
			a.tcpPackets += s.Packets()
			a.tcpBytes += s.Dir[0].Bytes + s.Dir[1].Bytes
		} else {
			a.udpFlows++
			a.udpPackets += s.Packets()
			a.udpBytes += s.Dir[0].Bytes + s.Dir[1].Bytes
		}
		return true
	})
	return a
}

// walks shares the walks of a shared table among concurrent callers: a caller gets
// the result of a walk that began after it called, its own or one it waited for, so
// however many ask at once, one walk runs at a time.
type walks struct {
	mu       sync.Mutex
	cond     *sync.Cond
	running  bool
	started  uint64 // walks begun
	finished uint64 // the number of the last walk that ended
	last     Stats  // its result
}

func (w *walks) get(walk func() Stats) Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cond == nil {
		w.cond = sync.NewCond(&w.mu)
	}
	want := w.started + 1 // a walk that begins from now on
	for {
		if w.finished >= want {
			return w.last
		}
		if !w.running {
			w.running = true
			w.started++
			n := w.started
			w.mu.Unlock()
			st := walk()
			w.mu.Lock()
			w.running, w.finished, w.last = false, n, st
			w.cond.Broadcast()
			return st
		}
		w.cond.Wait()
	}
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
