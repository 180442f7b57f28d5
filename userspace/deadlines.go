package userspace

import (
	"math"
	"math/bits"
	"unsafe"
)

// deadlines is a FlowTable's deadline index: a timer wheel that finds the flows due to
// end without visiting the others. Each flow sits in one bucket of the wheel, the one
// of a time at or before its deadline. A packet that moves a flow's deadline later
// changes nothing here: the flow is looked at again when its bucket comes due, and
// filed further on then if it is not due. Only a FIN or RST, which brings a deadline
// closer, moves a flow at once (FlowTable.Track). So a sweep costs in proportion to
// the flows that end, and to those whose bucket came due while they were busy, never
// to the whole table.
//
// The buckets are lists threaded through an array beside the table's entries (one
// wheelLink per entry, in pages like the entries), so the index allocates nothing per
// flow and leaves the entries, which every packet touches, two cache lines each. A new entry goes first into a list
// of its own, the unfiled one, which every sweep files before anything else, so a
// flow is never missed even if nobody tracks it.
type deadlines struct {
	timeouts Timeouts
	width    int64    // ns of deadline per bucket
	heads    []int32  // per bucket, then the unfiled list: the first entry's index + 1; 0: empty
	used     []uint64 // a bit per bucket that has entries
	// cursor is the absolute number (time / width) of the earliest bucket that may
	// hold entries; every entry's bucket lies in [cursor, cursor+wheelBuckets).
	cursor  int64
	started bool      // cursor is set
	keep    []pending // reused by every Expire
}

// pending is a flow a sweep met and keeps, with its deadline.
type pending struct {
	idx    int32
	reason EndReason
	end    int64
}

// wheelBuckets is the number of buckets; unfiled is the slot of the unfiled list.
const (
	wheelBuckets = 4096
	unfiled      = wheelBuckets
)

func newDeadlines(t Timeouts) *deadlines {
	// A deadline is at most one idle timeout after the clock, and the clock at most
	// one idle timeout after the last sweep (the engine sweeps at the latest then):
	// two idle timeouts and the cursor's own bucket cover every deadline.
	const ms = 1_000_000
	width := max(ms, (2*int64(t.Idle)+wheelBuckets-3)/(wheelBuckets-2))
	return &deadlines{
		timeouts: t,
		width:    width,
		heads:    make([]int32, wheelBuckets+1),
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
	w.start(d - int64(w.timeouts.Idle))
	return min(max(w.floor(d), w.cursor), w.cursor+wheelBuckets-1)
}

// wheelLink is an entry's place in the deadline index's lists: next is the next
// entry's index + 1 (0: last); prev the previous entry's index + 1, or when the entry
// comes first, -(its list's slot + 1); 0 when in no list.
type wheelLink struct{ next, prev int32 }

func (t *FlowTable) linkOf(i int32) *wheelLink { return &t.links[i>>pageShift][i&pageMask] }

// linkSlot puts entry i first in the list of slot.
func (t *FlowTable) linkSlot(i, slot int32) {
	w := t.wheel
	e := t.linkOf(i)
	first := w.heads[slot]
	e.next, e.prev = first, -(slot + 1)
	if first != 0 {
		t.linkOf(first - 1).prev = i + 1
	}
	w.heads[slot] = i + 1
	if slot < wheelBuckets {
		w.used[slot>>6] |= 1 << (slot & 63)
	}
}

// link puts entry i into bucket b (absolute).
func (t *FlowTable) link(i int32, b int64) {
	t.linkSlot(i, int32(b&(wheelBuckets-1)))
}

// unlink takes entry i out of its list, if it is in one.
func (t *FlowTable) unlink(i int32) {
	w := t.wheel
	if w == nil {
		return
	}
	e := t.linkOf(i)
	switch {
	case e.prev > 0:
		t.linkOf(e.prev - 1).next = e.next
	case e.prev < 0:
		slot := -e.prev - 1
		w.heads[slot] = e.next
		if e.next == 0 && slot < wheelBuckets {
			w.used[slot>>6] &^= 1 << (slot & 63)
		}
	default:
		return // in no list
	}
	if e.next != 0 {
		t.linkOf(e.next - 1).prev = e.prev
	}
	e.next, e.prev = 0, 0
}

// take empties the list of slot and returns its first entry's index + 1; the rest
// follow through next.
func (t *FlowTable) take(slot int32) int32 {
	w := t.wheel
	first := w.heads[slot]
	w.heads[slot] = 0
	if slot < wheelBuckets {
		w.used[slot>>6] &^= 1 << (slot & 63)
	}
	return first
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
	t.unlink(i)
	t.link(i, t.wheel.bucket(d))
}

// SetTimeouts gives the table the timeouts that decide its flows' deadlines, and
// turns its deadline index on, for Expire. Call it while the table is empty.
func (t *FlowTable) SetTimeouts(to Timeouts) {
	t.wheel = newDeadlines(to)
}

// expireList visits the entries of a list taken from the wheel, unlinking each: it
// ends those due at now, and keeps the others to file again.
func (t *FlowTable) expireList(i int32, now int64, ended func(*Key, *State, *FlowStats, EndReason, int64)) {
	w := t.wheel
	for i != 0 {
		idx := i - 1
		l := t.linkOf(idx)
		i = l.next
		l.next, l.prev = 0, 0
		if i != 0 {
			// The next entry's state, while this one is looked at.
			prefetch(uintptr(unsafe.Pointer(&t.entry(int(i - 1)).state)))
		}
		e := t.entry(int(idx))
		reason, d := w.timeouts.Deadline(&e.state)
		if d > now {
			w.keep = append(w.keep, pending{idx, reason, d})
			continue
		}
		h := t.hash(&e.key)
		t.PrefetchSlot(h) // the removal's, while the flow is handed out
		ended(&e.key, &e.state, t.statsOf(int(idx)), reason, d)
		t.removeEntryHash(int(idx), h)
	}
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
	t.expireList(t.take(unfiled), now, ended)
	target := w.floor(now)
	last := min(target, w.cursor+wheelBuckets-1)
	for b, ok := w.nextUsed(w.cursor); ok && b <= last; b, ok = w.nextUsed(b + 1) {
		t.expireList(t.take(int32(b&(wheelBuckets-1))), now, ended)
	}
	// Every bucket up to the clock's is empty now, even after a gap in time longer
	// than the wheel: the flows not due are filed from the clock's bucket on.
	w.cursor = max(w.cursor, target)
	for _, p := range w.keep {
		t.link(p.idx, w.bucket(p.end))
	}
	return t.earliest()
}

// earliest returns the earliest deadline among the flows, exactly: it looks into the
// first bucket that holds a flow whose deadline lies in it, filing further on the
// flows it meets on the way whose deadline has moved later.
func (t *FlowTable) earliest() int64 {
	w := t.wheel
	for b, ok := w.nextUsed(w.cursor); ok; b, ok = w.nextUsed(b + 1) {
		next := int64(math.MaxInt64)
		for i := t.take(int32(b & (wheelBuckets - 1))); i != 0; {
			idx := i - 1
			i = t.linkOf(idx).next
			_, d := w.timeouts.Deadline(&t.entry(int(idx)).state)
			db := w.bucket(d)
			if db <= b {
				next = min(next, d)
				db = b
			}
			t.link(idx, db)
		}
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
	return next
}

// ScanExpiry makes Expire walk the whole table instead of using the deadline index:
// the reference that tests hold the index to.
func (t *FlowTable) ScanExpiry() { t.scan = true }
