package userspace

import (
	"math"
	"math/bits"
	"unsafe"
)

// deadlines is a FlowTable's deadline index: a timer wheel that finds the flows due to
// end without visiting the others. Each flow is filed in one bucket of the wheel, the
// one of a time at or before its deadline. A packet that moves a flow's deadline
// later changes nothing here: the flow is looked at again when its bucket comes due,
// and filed further on then if it is not due. Only a FIN or RST, which brings a
// deadline closer, files a flow again at once (FlowTable.Track). So a sweep costs in
// proportion to the flows that end, and to those whose bucket came due while they
// were busy, never to the whole table.
//
// A bucket is an array of entry indices, which a sweep reads in order, loading the
// entries well ahead of looking at them. Each entry's stamp, beside the entries, names
// the bucket it is filed in: filing a flow again leaves its index in the old bucket,
// where the sweep skips it, so that refiling costs one append.
type deadlines struct {
	timeouts Timeouts
	width    int64     // ns of deadline per bucket
	buckets  [][]int32 // per slot: the indices of the entries filed there
	used     []uint64  // a bit per slot whose bucket has entries
	// cursor is the absolute number (time / width) of the earliest bucket that may
	// hold entries; every entry's bucket lies in [cursor, cursor+wheelBuckets).
	cursor  int64
	started bool      // cursor is set
	keep    []pending // reused by every Expire
}

// pending is a flow a sweep met and keeps, with its deadline.
type pending struct {
	idx int32
	end int64
}

// wheelBuckets is the number of buckets.
const wheelBuckets = 4096

// notFiled is the stamp of an entry filed nowhere: free, drained, new and not tracked
// yet, or in the hands of a sweep.
const notFiled = math.MinInt32

func newDeadlines(t Timeouts) *deadlines {
	// A deadline is at most one idle timeout after the clock, and the clock at most
	// one idle timeout after the last sweep (the engine sweeps at the latest then):
	// two idle timeouts and the cursor's own bucket cover every deadline.
	const ms = 1_000_000
	width := max(ms, (2*int64(min(t.Idle, math.MaxInt64/4))+wheelBuckets-3)/(wheelBuckets-2))
	return &deadlines{
		timeouts: t,
		width:    width,
		buckets:  make([][]int32, wheelBuckets),
		used:     make([]uint64, wheelBuckets/64),
	}
}

// floor is the absolute bucket of time d.
func (w *deadlines) floor(d int64) int64 {
	b := d / w.width
	if d < 0 && d%w.width != 0 {
		b--
	}
	return b
}

// start sets the cursor, once, from the first clock reading the wheel meets.
func (w *deadlines) start(now int64) {
	if !w.started {
		w.started, w.cursor = true, w.floor(now)
	}
}

// bucket is the absolute bucket of deadline d, kept within the wheel: a deadline
// beyond its end goes into its last bucket, earlier than due, which is safe (the flow
// is looked at then, and filed further on).
func (w *deadlines) bucket(d int64) int64 {
	// Before any sweep: a deadline is at most an idle timeout after the clock.
	w.start(After(d, -w.timeouts.Idle))
	return min(max(w.floor(d), w.cursor), w.cursor+wheelBuckets-1)
}

// stamp is the stamp of absolute bucket b. Buckets a multiple of 2^32 apart would
// share it, but the wheel spans 4096.
func stamp(b int64) int32 {
	s := int32(b)
	if s == notFiled {
		s++ // a bucket whose stamp would say "nowhere": the one after shares its stamp
	}
	return s
}

func (t *FlowTable) stampOf(i int32) *int32 { return &t.stamps[i>>pageShift][i&pageMask] }

// file files entry i in bucket b (absolute).
func (t *FlowTable) file(i int32, b int64) {
	w := t.wheel
	*t.stampOf(i) = stamp(b)
	slot := b & (wheelBuckets - 1)
	w.buckets[slot] = append(w.buckets[slot], i)
	w.used[slot>>6] |= 1 << (slot & 63)
}

// take returns the indices filed in bucket b's slot and empties it; give hands the
// array back for the slot to reuse.
func (t *FlowTable) take(b int64) []int32 {
	w := t.wheel
	slot := b & (wheelBuckets - 1)
	w.used[slot>>6] &^= 1 << (slot & 63)
	return w.buckets[slot]
}

func (t *FlowTable) give(b int64, idx []int32) {
	w := t.wheel
	slot := b & (wheelBuckets - 1)
	if len(w.buckets[slot]) == len(idx) && len(idx) > 0 && &w.buckets[slot][0] == &idx[0] {
		w.buckets[slot] = idx[:0] // nothing was filed here meanwhile
	}
}

// nextUsed returns the first bucket at or after b (absolute) that holds entries, or
// false when none does before the wheel's end.
func (w *deadlines) nextUsed(b int64) (int64, bool) {
	end := w.cursor + wheelBuckets
	for b < end {
		slot := b & (wheelBuckets - 1)
		if word := w.used[slot>>6] >> (slot & 63); word != 0 {
			b += int64(bits.TrailingZeros64(word))
			return b, b < end
		}
		b += 64 - slot&63
	}
	return 0, false
}

// Track files flow i under its deadline: the datapath calls it when the flow starts,
// and when a FIN or RST brings its deadline closer. Packets that only move the
// deadline later need no call. It does nothing without SetTimeouts.
func (t *FlowTable) Track(i int32) {
	if t.wheel == nil {
		return
	}
	_, d := t.wheel.timeouts.Deadline(&t.entry(int(i)).state)
	t.file(i, t.wheel.bucket(d))
}

// SetTimeouts gives the table the timeouts that decide its flows' deadlines, and
// turns its deadline index on, for Expire. Call it while the table is empty.
func (t *FlowTable) SetTimeouts(to Timeouts) {
	t.wheel = newDeadlines(to)
}

// sweepAhead is how many indices ahead of the one it looks at a sweep loads an entry.
const sweepAhead = 8

// expireBucket looks at the entries filed in bucket b: it ends those due at now, and
// keeps the others to file again.
func (t *FlowTable) expireBucket(b int64, now int64, ended func(*Key, *State, *FlowStats, EndReason, int64)) {
	w := t.wheel
	s := stamp(b)
	idx := t.take(b)
	for j, i := range idx {
		// The entry eight ahead, and the slot of the one four ahead, whose entry
		// is at hand by now: most flows a sweep meets end, and their removal
		// touches the slot.
		if j+sweepAhead < len(idx) {
			t.prefetchEntry(idx[j+sweepAhead])
		}
		if j+sweepAhead/2 < len(idx) {
			t.PrefetchSlot(t.hash(&t.entry(int(idx[j+sweepAhead/2])).key))
		}
		if *t.stampOf(i) != s {
			continue // filed again elsewhere since, or no longer a flow
		}
		e := t.entry(int(i))
		reason, d := w.timeouts.Deadline(&e.state)
		if d > now {
			*t.stampOf(i) = notFiled
			w.keep = append(w.keep, pending{i, d})
			continue
		}
		ended(&e.key, &e.state, t.statsOf(int(i)), reason, d)
		t.removeEntry(int(i))
	}
	t.give(b, idx)
}

// prefetchEntry starts loading entry i, both its cache lines, and its stamp.
func (t *FlowTable) prefetchEntry(i int32) {
	e := uintptr(unsafe.Pointer(t.entry(int(i))))
	prefetch(e)
	prefetch(e + 64)
	prefetch(uintptr(unsafe.Pointer(t.stampOf(i))))
}

// Expire removes the flows whose deadline is at or before now, passing each one's final
// state, end reason and deadline to ended, and returns the earliest deadline of the
// flows left (math.MaxInt64 when none is left). SetTimeouts must have been called.
func (t *FlowTable) Expire(now int64, ended func(*Key, *State, *FlowStats, EndReason, int64)) (next int64) {
	if t.scan {
		return t.expireByScan(now, ended)
	}
	w := t.wheel
	w.start(now)
	w.keep = w.keep[:0]
	for _, i := range t.unfiled { // new flows nobody tracked: Upsert's
		if *t.stampOf(i) == notFiled && !t.entry(int(i)).free() {
			t.Track(i)
		}
	}
	t.unfiled = t.unfiled[:0]
	target := w.floor(now)
	last := min(target, w.cursor+wheelBuckets-1)
	for b, ok := w.nextUsed(w.cursor); ok && b <= last; b, ok = w.nextUsed(b + 1) {
		t.expireBucket(b, now, ended)
	}
	// Every bucket up to the clock's is empty now, even after a gap in time longer
	// than the wheel: the flows not due are filed from the clock's bucket on.
	w.cursor = max(w.cursor, target)
	for _, p := range w.keep {
		t.file(p.idx, w.bucket(p.end))
	}
	t.shrink()
	next = t.earliest()
	if cap(w.keep) > pageSize {
		w.keep = nil // a burst's: the next sweep makes one its size
	}
	return next
}

// earliest returns the earliest deadline among the flows, exactly: it looks into the
// first bucket that holds a flow whose deadline lies in it, filing further on the
// flows it meets on the way whose deadline has moved later.
func (t *FlowTable) earliest() int64 {
	w := t.wheel
	for b, ok := w.nextUsed(w.cursor); ok; b, ok = w.nextUsed(b + 1) {
		next := int64(math.MaxInt64)
		s := stamp(b)
		idx := t.take(b)
		keep := w.keep[:0]
		for _, i := range idx {
			if *t.stampOf(i) != s {
				continue
			}
			_, d := w.timeouts.Deadline(&t.entry(int(i)).state)
			if db := w.bucket(d); db > b {
				t.file(i, db)
				continue
			}
			next = min(next, d)
			*t.stampOf(i) = notFiled // filed again below, once
			keep = append(keep, pending{i, d})
		}
		t.give(b, idx)
		for _, p := range keep {
			t.file(p.idx, b)
		}
		w.keep = keep[:0]
		if next != math.MaxInt64 {
			return next
		}
	}
	return math.MaxInt64
}

// expireByScan is Expire by a walk of the whole table, the way sweeps worked before
// the deadline index: kept as the reference that tests hold the index to.
func (t *FlowTable) expireByScan(now int64, ended func(*Key, *State, *FlowStats, EndReason, int64)) (next int64) {
	next = math.MaxInt64
	to := &t.wheel.timeouts
	for i := t.n - 1; i >= t.base; i-- {
		e := t.entry(i)
		if e.free() {
			continue
		}
		reason, d := to.Deadline(&e.state)
		if d > now {
			next = min(next, d)
			continue
		}
		ended(&e.key, &e.state, t.statsOf(i), reason, d)
		t.removeEntry(i)
	}
	t.shrink()
	return next
}

// ScanExpiry makes Expire walk the whole table instead of using the deadline index:
// the reference that tests hold the index to.
func (t *FlowTable) ScanExpiry() { t.scan = true }
