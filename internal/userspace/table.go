package userspace

import (
	"math/bits"
	"math/rand/v2"
	"unsafe"
)

// Table is the flow table as the engine sees it: the kernel's LRU map on the live path,
// a [FlowTable] on the offline path. The datapath writes it; the engine only reads and
// removes.
//
// The statistics passed with a state are nil when the table keeps none.
type Table interface {
	// Len is the number of flows in the table.
	Len() int
	// Lookup returns the state of the flow with key k, and a copy of its statistics.
	Lookup(k *Key) (State, *FlowStats, bool)
	// Range calls yield for every flow until it returns false. yield must not change
	// the table.
	Range(yield func(*Key, *State, *FlowStats) bool)
	// Expire removes the flows whose deadline (Timeouts.Deadline) is at or before
	// now and passes each one's final state, end reason and deadline to ended.
	// Removal and the read of the final state are one step, so a packet counted
	// while Expire runs is either in the state ended gets or still in the table. It
	// returns the earliest deadline of the flows left, or math.MaxInt64 when it does
	// not know it (or none is left).
	Expire(now int64, ended func(*Key, *State, *FlowStats, EndReason, int64)) (next int64)
	// Drain removes up to max flows, oldest first where the table knows, passes
	// each final state to ended, and reports whether flows remain.
	Drain(max int, ended func(*Key, *State, *FlowStats)) (more bool)
}

// FlowTable is an open-addressing hash table from Key to State, built for the Go
// datapath: a hit or an insert allocates nothing, entries sit in fixed-size pages so
// growing never copies a flow, and the index holds a hash fragment so a probe rarely
// touches an entry that does not match. A removed flow's entry stays where it is,
// free, and a new flow takes it: removing touches only the flow and its slot. Once
// its flows fill a quarter of its entries or less, Expire moves them into memory
// their size, so that a burst leaves nothing behind. It is not safe for concurrent
// use.
type FlowTable struct {
	// slots: 0 is empty; otherwise the high 32 bits are the key's hash, whose low bits
	// are also the home slot, and the low 32 bits are the entry index + 1.
	slots   []uint64
	mask    uint64
	pages   []*[pageSize]flowEntry
	stats   []*[pageSize]FlowStats // beside the pages, when the table keeps statistics
	keep    bool                   // keep statistics
	base    int                    // entries in use lie in base .. n-1; base > 0 only while draining
	n       int
	live    int                // entries in use; the others below n are free
	free    []int32            // free entries below n, the last freed last
	seed    [6]uint64          // the hash's secret, random per table
	wheel   *deadlines         // the deadline index, once SetTimeouts is called
	stamps  []*[pageSize]int32 // the deadline index's stamp of each entry, beside the pages
	unfiled []int32            // new entries from Upsert, for the next sweep to file
	scan    bool               // Expire walks the whole table instead (ScanExpiry)
	least   int                // the index's size for the hint: shrink goes no smaller
}

const (
	pageShift = 12
	pageSize  = 1 << pageShift
	pageMask  = pageSize - 1
)

func (t *FlowTable) entry(i int) *flowEntry { return &t.pages[i>>pageShift][i&pageMask] }

// statsOf returns entry i's statistics, or nil when the table keeps none.
func (t *FlowTable) statsOf(i int) *FlowStats {
	if !t.keep {
		return nil
	}
	return &t.stats[i>>pageShift][i&pageMask]
}

// KeepStatistics makes the table keep a FlowStats per flow, in pages of their own
// so that a table without them costs nothing for them. Call it while the table is
// empty.
func (t *FlowTable) KeepStatistics() { t.keep = true }

// flowEntry is 128 bytes, two cache lines, and the pages hold them aligned. A free
// entry's key has protocol 0, which no flow has.
type flowEntry struct {
	key   Key
	state State
}

func (e *flowEntry) free() bool { return e.key.Proto == 0 }

// NewFlowTable returns a table sized for about hint flows without growing.
func NewFlowTable(hint int) *FlowTable {
	t := &FlowTable{}
	for i := range t.seed {
		t.seed[i] = rand.Uint64()
	}
	n := 16
	for n < 2*hint {
		n <<= 1
	}
	t.slots = make([]uint64, n)
	t.mask = uint64(n - 1)
	t.least = n
	return t
}

// keysEqual compares two keys as five words, inline, where == on the struct calls
// a general memory compare.
func keysEqual(a, b *Key) bool {
	x, y := (*[5]uint64)(unsafe.Pointer(a)), (*[5]uint64)(unsafe.Pointer(b))
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4]
}

// hash mixes the key's five 64-bit words with the table's secret: three 128-bit
// products that the CPU computes side by side, then one that folds them, as wyhash
// does. The secret is random per table, so a capture built to collide cannot aim at
// it.
func (t *FlowTable) hash(k *Key) uint64 {
	w := (*[5]uint64)(unsafe.Pointer(k))
	s := &t.seed
	x := mix(w[0]^s[0], w[1]^s[1])
	y := mix(w[2]^s[2], w[3]^s[3])
	z := mix(w[4]^s[4], s[5])
	return mix(x^z, y^0x9E3779B97F4A7C15)
}

// mix is the high and low halves of x·y, folded.
func mix(x, y uint64) uint64 {
	hi, lo := bits.Mul64(x, y)
	return hi ^ lo
}

// Len is the number of flows in the table.
func (t *FlowTable) Len() int { return t.live }

// Hash returns k's hash, to pass to UpsertHash and Prefetch.
func (t *FlowTable) Hash(k *Key) uint64 { return t.hash(k) }

// PrefetchSlot and PrefetchEntry start loading the memory that an UpsertHash of h
// will touch, without waiting for it: the home slot, then (once the slot is at hand)
// the entry it points at. Calling PrefetchSlot for a few packets, then PrefetchEntry
// for the same packets, before counting them lets their cache misses overlap. Neither
// changes anything, so a stale hint costs only its instruction.
func (t *FlowTable) PrefetchSlot(h uint64) {
	prefetch(uintptr(unsafe.Pointer(&t.slots[h>>32&t.mask])))
}

// PrefetchEntry: see PrefetchSlot.
func (t *FlowTable) PrefetchEntry(h uint64) {
	if slot := t.slots[h>>32&t.mask]; slot != 0 {
		e := uintptr(unsafe.Pointer(t.entry(int(uint32(slot)) - 1)))
		prefetch(e)
		prefetch(e + 64)
	}
}

// Upsert returns the state and statistics (nil unless kept) for k, inserting zero
// ones when k is absent; created reports the insert. The pointers are valid until
// the next Upsert, removal or Expire. A new flow is looked at by the next sweep, and
// filed under its deadline then.
func (t *FlowTable) Upsert(k *Key) (s *State, st *FlowStats, created bool) {
	s, st, i, created := t.UpsertHash(k, t.hash(k))
	if created && t.wheel != nil {
		t.unfiled = append(t.unfiled, i)
	}
	return s, st, created
}

// UpsertHash is Upsert for a key whose Hash is h, for a datapath: a new flow is filed
// in the deadline index only when the datapath calls Track, once it has set the
// flow's state. It also returns the entry's index, for Track, valid until the flow is
// removed or the next Expire.
func (t *FlowTable) UpsertHash(k *Key, h uint64) (s *State, st *FlowStats, i int32, created bool) {
	tag := h >> 32 << 32
	for i := h >> 32 & t.mask; ; i = (i + 1) & t.mask {
		slot := t.slots[i]
		if slot == 0 {
			if 2*(t.live+1) > len(t.slots) {
				t.grow()
				return t.UpsertHash(k, h)
			}
			idx := t.newEntry()
			e := t.entry(int(idx))
			*e = flowEntry{key: *k}
			st = t.statsOf(int(idx))
			if st != nil {
				*st = FlowStats{}
			}
			t.live++
			t.slots[i] = tag | uint64(idx+1)
			*t.stampOf(idx) = notFiled
			return &e.state, st, idx, true
		}
		if slot&^0xFFFFFFFF == tag {
			idx := int(uint32(slot)) - 1
			e := t.entry(idx)
			if keysEqual(&e.key, k) {
				return &e.state, t.statsOf(idx), int32(idx), false
			}
		}
	}
}

// find returns the slot index holding k, or -1.
func (t *FlowTable) find(k *Key) int {
	h := t.hash(k)
	tag := h >> 32 << 32
	for i := h >> 32 & t.mask; ; i = (i + 1) & t.mask {
		slot := t.slots[i]
		if slot == 0 {
			return -1
		}
		if slot&^0xFFFFFFFF == tag && keysEqual(&t.entry(int(uint32(slot))-1).key, k) {
			return int(i)
		}
	}
}

// Lookup returns the state of the flow with key k, and a copy of its statistics.
func (t *FlowTable) Lookup(k *Key) (State, *FlowStats, bool) {
	i := t.find(k)
	if i < 0 {
		return State{}, nil, false
	}
	idx := int(uint32(t.slots[i])) - 1
	return t.entry(idx).state, copyStats(t.statsOf(idx)), true
}

// newEntry returns a free entry's index, or a new one's.
func (t *FlowTable) newEntry() int32 {
	// While the table drains, new flows go after the end, which the drain reaches.
	if len(t.free) > 0 && t.base == 0 {
		idx := t.free[len(t.free)-1]
		t.free = t.free[:len(t.free)-1]
		return idx
	}
	if t.n>>pageShift == len(t.pages) {
		t.pages = append(t.pages, new([pageSize]flowEntry))
		t.stamps = append(t.stamps, new([pageSize]int32))
		if t.keep {
			t.stats = append(t.stats, new([pageSize]FlowStats))
		}
	}
	t.n++
	return int32(t.n - 1)
}

// Range calls yield for every flow until it returns false.
func (t *FlowTable) Range(yield func(*Key, *State, *FlowStats) bool) {
	for i := t.base; i < t.n; i++ {
		if e := t.entry(i); !e.free() && !yield(&e.key, &e.state, t.statsOf(i)) {
			return
		}
	}
}

// Reap removes every flow for which due returns true and passes its final state to
// ended.
func (t *FlowTable) Reap(due func(*Key, *State) bool, ended func(*Key, *State, *FlowStats)) {
	for i := t.n - 1; i >= t.base; i-- {
		if e := t.entry(i); !e.free() && due(&e.key, &e.state) {
			ended(&e.key, &e.state, t.statsOf(i))
			t.removeEntry(i)
		}
	}
}

// Drain removes up to max flows in the order of the table's entries (the order the
// flows were created in, but for flows that took the entries of flows removed), passes
// each to ended, and reports whether flows remain.
func (t *FlowTable) Drain(max int, ended func(*Key, *State, *FlowStats)) (more bool) {
	for n := 0; n < max && t.base < t.n; t.base++ {
		e := t.entry(t.base)
		if e.free() {
			continue
		}
		ended(&e.key, &e.state, t.statsOf(t.base))
		t.clearSlot(t.slotOf(t.base))
		*t.stampOf(int32(t.base)) = notFiled
		e.key.Proto = 0
		t.live--
		n++
	}
	if t.live == 0 {
		t.Clear()
		return false
	}
	return true
}

// rangeEntries calls yield with the entry index and state of every flow, in entry
// order.
func (t *FlowTable) rangeEntries(yield func(idx int32, s *State)) {
	for i := t.base; i < t.n; i++ {
		if e := t.entry(i); !e.free() {
			yield(int32(i), &e.state)
		}
	}
}

// takeEntry removes the flow in entry idx and passes its final state to ended.
func (t *FlowTable) takeEntry(idx int32, ended func(*Key, *State, *FlowStats)) {
	e := t.entry(int(idx))
	ended(&e.key, &e.state, t.statsOf(int(idx)))
	t.removeEntry(int(idx))
}

// Delete removes the flow with key k and reports whether it was there.
func (t *FlowTable) Delete(k *Key) bool {
	i := t.find(k)
	if i < 0 {
		return false
	}
	t.removeEntry(int(uint32(t.slots[i])) - 1)
	return true
}

// removeEntry removes entry idx: its slot is emptied with backward-shift deletion, and
// the entry goes on the free list. No other entry moves.
func (t *FlowTable) removeEntry(idx int) {
	t.removeEntryHash(idx, t.hash(&t.entry(idx).key))
}

// removeEntryHash is removeEntry for an entry whose key's Hash is h.
func (t *FlowTable) removeEntryHash(idx int, h uint64) {
	t.clearSlot(t.slotOfHash(idx, h))
	*t.stampOf(int32(idx)) = notFiled
	t.entry(idx).key.Proto = 0
	t.free = append(t.free, int32(idx))
	t.live--
}

// slotOf returns the slot index that points at entry idx.
func (t *FlowTable) slotOf(idx int) uint64 { return t.slotOfHash(idx, t.hash(&t.entry(idx).key)) }

// slotOfHash is slotOf for an entry whose key's Hash is h.
func (t *FlowTable) slotOfHash(idx int, h uint64) uint64 {
	want := uint64(idx + 1)
	for i := h >> 32 & t.mask; ; i = (i + 1) & t.mask {
		if t.slots[i]&0xFFFFFFFF == want {
			return i
		}
	}
}

// clearSlot empties slot i and shifts later members of its probe run back, so that
// lookups never stop early at a hole.
func (t *FlowTable) clearSlot(i uint64) {
	for {
		t.slots[i] = 0
		j := i
		for {
			j = (j + 1) & t.mask
			slot := t.slots[j]
			if slot == 0 {
				return
			}
			home := slot >> 32 & t.mask
			// Move slot j back into i unless its home lies cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				t.slots[i] = slot
				i = j
				break
			}
		}
	}
}

// Clear removes every flow, keeping the memory for reuse.
func (t *FlowTable) Clear() {
	clear(t.slots)
	t.base, t.n, t.live, t.free, t.unfiled = 0, 0, 0, t.free[:0], t.unfiled[:0]
	if w := t.wheel; w != nil {
		for i := range w.buckets {
			w.buckets[i] = w.buckets[i][:0]
		}
		clear(w.used)
	}
}

func (t *FlowTable) grow() {
	old := t.slots
	t.slots = make([]uint64, 2*len(old))
	t.mask = uint64(len(t.slots) - 1)
	for _, slot := range old {
		if slot == 0 {
			continue
		}
		t.place(slot)
	}
}

// place puts slot, which points at an entry whose key no other slot's has, in the
// first empty slot of its probe run.
func (t *FlowTable) place(slot uint64) {
	for i := slot >> 32 & t.mask; ; i = (i + 1) & t.mask {
		if t.slots[i] == 0 {
			t.slots[i] = slot
			return
		}
	}
}

// shrinkShare: the table shrinks once its flows fill no more than 1/shrinkShare of
// the entries it has. Each shrink costs a visit of every entry, so that between two
// the flows that ended, at least 3/4 of the entries, pay for it.
const shrinkShare = 4

// shrink moves the flows into memory sized for them once they fill no more than
// 1/shrinkShare of the entries the table has, so that a burst of flows leaves nothing
// behind once it has ended. Entries and the deadline index's buckets keep their
// order, so flows are found, and end, in the same order as before. It moves entries:
// an index from UpsertHash is no longer valid after it.
func (t *FlowTable) shrink() {
	if t.base != 0 || len(t.pages) <= 1 || t.live > t.n/shrinkShare {
		return
	}
	old := *t
	moved := make([]int32, old.n) // each entry's new index, or -1
	n := t.least
	for n < 2*old.live {
		n <<= 1
	}
	t.slots, t.mask = make([]uint64, n), uint64(n-1)
	t.pages, t.stats, t.stamps = nil, nil, nil
	t.n, t.live, t.free = 0, 0, nil
	for i := range old.n {
		e := old.entry(i)
		if e.free() {
			moved[i] = -1
			continue
		}
		idx := t.newEntry()
		moved[i] = idx
		*t.entry(int(idx)) = *e
		if st := t.statsOf(int(idx)); st != nil {
			*st = *old.statsOf(i)
		}
		*t.stampOf(idx) = *old.stampOf(int32(i))
		t.live++
		t.place(t.hash(&e.key)>>32<<32 | uint64(idx+1))
	}
	t.unfiled = remap(old.unfiled, moved, nil)
	if w := t.wheel; w != nil {
		for slot, idx := range w.buckets {
			// The bucket's stamp, to leave out the indices filed again elsewhere.
			s := stamp(w.cursor + (int64(slot)-w.cursor)&(wheelBuckets-1))
			w.buckets[slot] = remap(idx, moved, func(i int32) bool { return *old.stampOf(i) == s })
			if len(w.buckets[slot]) == 0 {
				w.buckets[slot] = nil
				w.used[slot>>6] &^= 1 << (slot & 63)
			}
		}
	}
}

// remap returns the new indices of those of idx that are still flows and pass keep
// (nil: all), in a new array only as large as they need.
func remap(idx, moved []int32, keep func(int32) bool) []int32 {
	var n int
	for _, i := range idx {
		if moved[i] >= 0 && (keep == nil || keep(i)) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]int32, 0, n)
	for _, i := range idx {
		if moved[i] >= 0 && (keep == nil || keep(i)) {
			out = append(out, moved[i])
		}
	}
	return out
}
