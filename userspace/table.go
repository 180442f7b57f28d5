package userspace

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"unsafe"
)

// Table is the flow table as the engine sees it: the kernel's LRU map on the live path,
// a [FlowTable] on the offline path. The datapath writes it; the engine only reads and
// removes.
type Table interface {
	// Len is the number of flows in the table.
	Len() int
	// Lookup returns the state of the flow with key k.
	Lookup(k *Key) (State, bool)
	// Range calls yield for every flow until it returns false. yield must not change
	// the table.
	Range(yield func(*Key, *State) bool)
	// Reap removes every flow for which due returns true and passes its final state to
	// ended. Removal and the read of the final state are one step, so a packet counted
	// while Reap runs is either in the state ended gets or still in the table.
	Reap(due func(*Key, *State) bool, ended func(*Key, *State))
}

// FlowTable is an open-addressing hash table from Key to State, built for the Go
// datapath: a hit or an insert allocates nothing, entries sit densely in one slice so
// a sweep walks memory in order, and the index holds a hash fragment so a probe rarely
// touches an entry that does not match. It is not safe for concurrent use.
type FlowTable struct {
	// slots: 0 is empty; otherwise the high 32 bits are the key's hash, whose low bits
	// are also the home slot, and the low 32 bits are the entry index + 1.
	slots   []uint64
	mask    uint64
	entries []flowEntry
	seed    uint64
}

type flowEntry struct {
	key   Key
	state State
}

// NewFlowTable returns a table sized for about hint flows without growing.
func NewFlowTable(hint int) *FlowTable {
	t := &FlowTable{seed: rand.Uint64() | 1}
	n := 16
	for n < 2*hint {
		n <<= 1
	}
	t.slots = make([]uint64, n)
	t.mask = uint64(n - 1)
	t.entries = make([]flowEntry, 0, hint)
	return t
}

// hash mixes the key's five 64-bit words. The seed is random per table, so a capture
// built to collide cannot aim at it.
func (t *FlowTable) hash(k *Key) uint64 {
	b := (*[40]byte)(unsafe.Pointer(k))
	h := t.seed
	for i := 0; i < 40; i += 8 {
		hi, lo := bits.Mul64(h^binary.LittleEndian.Uint64(b[i:]), 0x9E3779B97F4A7C15)
		h = hi ^ lo
	}
	return h
}

// Len is the number of flows in the table.
func (t *FlowTable) Len() int { return len(t.entries) }

// Upsert returns the state for k, inserting a zero state when k is absent; created
// reports the insert. The pointer is valid until the next Upsert or removal.
func (t *FlowTable) Upsert(k *Key) (s *State, created bool) {
	h := t.hash(k)
	tag := h >> 32 << 32
	for i := h >> 32 & t.mask; ; i = (i + 1) & t.mask {
		slot := t.slots[i]
		if slot == 0 {
			if 2*(len(t.entries)+1) > len(t.slots) {
				t.grow()
				return t.Upsert(k)
			}
			t.entries = append(t.entries, flowEntry{key: *k})
			t.slots[i] = tag | uint64(len(t.entries))
			return &t.entries[len(t.entries)-1].state, true
		}
		if slot&^0xFFFFFFFF == tag {
			e := &t.entries[uint32(slot)-1]
			if e.key == *k {
				return &e.state, false
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
		if slot&^0xFFFFFFFF == tag && t.entries[uint32(slot)-1].key == *k {
			return int(i)
		}
	}
}

// Lookup returns the state of the flow with key k.
func (t *FlowTable) Lookup(k *Key) (State, bool) {
	i := t.find(k)
	if i < 0 {
		return State{}, false
	}
	return t.entries[uint32(t.slots[i])-1].state, true
}

// Range calls yield for every flow until it returns false.
func (t *FlowTable) Range(yield func(*Key, *State) bool) {
	for i := range t.entries {
		if !yield(&t.entries[i].key, &t.entries[i].state) {
			return
		}
	}
}

// Reap removes every flow for which due returns true and passes its final state to
// ended.
func (t *FlowTable) Reap(due func(*Key, *State) bool, ended func(*Key, *State)) {
	// Walk down, so the entry that fills a removed hole has already been visited.
	for i := len(t.entries) - 1; i >= 0; i-- {
		e := &t.entries[i]
		if due(&e.key, &e.state) {
			ended(&e.key, &e.state)
			t.removeEntry(i)
		}
	}
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

// removeEntry removes entry idx: its slot is emptied with backward-shift deletion,
// and the last entry moves into its place.
func (t *FlowTable) removeEntry(idx int) {
	t.clearSlot(t.slotOf(idx))
	last := len(t.entries) - 1
	if idx != last {
		s := t.slotOf(last)
		t.entries[idx] = t.entries[last]
		t.slots[s] = t.slots[s]&^0xFFFFFFFF | uint64(idx+1)
	}
	t.entries[last] = flowEntry{}
	t.entries = t.entries[:last]
}

// slotOf returns the slot index that points at entry idx.
func (t *FlowTable) slotOf(idx int) uint64 {
	want := uint64(idx + 1)
	for i := t.hash(&t.entries[idx].key) >> 32 & t.mask; ; i = (i + 1) & t.mask {
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
	clear(t.entries)
	t.entries = t.entries[:0]
}

func (t *FlowTable) grow() {
	old := t.slots
	t.slots = make([]uint64, 2*len(old))
	t.mask = uint64(len(t.slots) - 1)
	for _, slot := range old {
		if slot == 0 {
			continue
		}
		for i := slot >> 32 & t.mask; ; i = (i + 1) & t.mask {
			if t.slots[i] == 0 {
				t.slots[i] = slot
				break
			}
		}
	}
}
