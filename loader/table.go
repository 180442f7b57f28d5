package loader

import (
	"errors"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/fparser/fparser/userspace"
)

// The kernel's key and value have userspace.Key's and userspace.State's layouts, byte
// for byte, so the maps read straight into them.
var (
	_ [unsafe.Sizeof(fparserFlowKey{}) - unsafe.Sizeof(userspace.Key{})]struct{}
	_ [unsafe.Sizeof(userspace.Key{}) - unsafe.Sizeof(fparserFlowKey{})]struct{}
	_ [unsafe.Sizeof(fparserFlowState{}) - unsafe.Sizeof(userspace.State{})]struct{}
	_ [unsafe.Sizeof(userspace.State{}) - unsafe.Sizeof(fparserFlowState{})]struct{}
)

// batch is how many flows one batched map call moves.
const batch = 4096

// Table is the kernel's flow map as the engine's userspace.Table. The kernel writes
// it; Table reads it in batches and removes flows with lookup-and-delete, which reads
// the final counters and removes the entry in one step, so a packet that lands during
// a sweep is either in the counters returned or in the entry the kernel creates next.
type Table struct {
	m       *ebpf.Map
	keys    []userspace.Key
	states  []userspace.State
	noBatch bool // the kernel lacks batch lookup on this map: iterate instead
	// drain continues a Drain where the last call stopped, so the kernel does not
	// walk the emptied buckets again; nil when no drain is under way.
	drain *ebpf.MapBatchCursor
}

// Table returns the flow map as a userspace.Table.
func (d *Datapath) Table() *Table {
	return &Table{m: d.objs.Flows, keys: make([]userspace.Key, batch), states: make([]userspace.State, batch)}
}

// each calls fn for every flow in the map, a batch at a time, until fn returns false.
func (t *Table) each(fn func(k *userspace.Key, s *userspace.State) bool) error {
	if !t.noBatch {
		var cursor ebpf.MapBatchCursor
		for {
			n, err := t.m.BatchLookup(&cursor, t.keys, t.states, nil)
			for i := range n {
				if !fn(&t.keys[i], &t.states[i]) {
					return nil
				}
			}
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil
			}
			if errors.Is(err, ebpf.ErrNotSupported) {
				t.noBatch = true
				break
			}
			if err != nil {
				return err
			}
		}
	}
	var k userspace.Key
	var s userspace.State
	it := t.m.Iterate()
	for it.Next(&k, &s) {
		if !fn(&k, &s) {
			return nil
		}
	}
	return it.Err()
}

// Len is the number of flows in the map. It reads the whole map.
func (t *Table) Len() int {
	n := 0
	t.each(func(*userspace.Key, *userspace.State) bool { n++; return true })
	return n
}

// Lookup returns the state of the flow with key k.
func (t *Table) Lookup(k *userspace.Key) (userspace.State, bool) {
	var s userspace.State
	if err := t.m.Lookup(k, &s); err != nil {
		return s, false
	}
	return s, true
}

// Range calls yield for every flow until it returns false.
func (t *Table) Range(yield func(*userspace.Key, *userspace.State) bool) {
	t.each(yield)
}

// Reap removes every flow for which due returns true, passing its final state, read
// as it is removed, to ended.
func (t *Table) Reap(due func(*userspace.Key, *userspace.State) bool, ended func(*userspace.Key, *userspace.State)) {
	var gone []userspace.Key
	t.each(func(k *userspace.Key, s *userspace.State) bool {
		if due(k, s) {
			gone = append(gone, *k)
		}
		return true
	})
	for i := range gone {
		var s userspace.State
		if err := t.m.LookupAndDelete(&gone[i], &s); err != nil {
			continue // the kernel evicted it meanwhile
		}
		ended(&gone[i], &s)
	}
}

// Drain removes up to max flows and passes each final state to ended, and reports
// whether flows remain. It uses the kernel's batched lookup-and-delete where it has
// one.
func (t *Table) Drain(max int, ended func(*userspace.Key, *userspace.State)) (more bool) {
	max = min(max, len(t.keys))
	if !t.noBatch {
		if t.drain == nil {
			t.drain = new(ebpf.MapBatchCursor)
		}
		n, err := t.m.BatchLookupAndDelete(t.drain, t.keys[:max], t.states[:max], nil)
		for i := range n {
			ended(&t.keys[i], &t.states[i])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			// The walk is done; flows the kernel added behind it are left: start
			// again until a walk finds none.
			t.drain = nil
			if n == 0 {
				return false
			}
			var k userspace.Key
			return t.m.NextKey(nil, &k) == nil
		case err == nil:
			return true
		case !errors.Is(err, ebpf.ErrNotSupported):
			t.drain = nil
			return n > 0 // a transient failure: the caller calls again
		}
		t.drain = nil
		t.noBatch = true
	}
	var gone []userspace.Key
	t.each(func(k *userspace.Key, _ *userspace.State) bool {
		gone = append(gone, *k)
		return len(gone) < max
	})
	for i := range gone {
		var s userspace.State
		if err := t.m.LookupAndDelete(&gone[i], &s); err == nil {
			ended(&gone[i], &s)
		}
	}
	var k userspace.Key
	return t.m.NextKey(nil, &k) == nil
}
