package loader

import (
	"errors"
	"math"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/fparser/fparser/userspace"
)

// The kernel's key has userspace.Key's layout, and its value userspace.State's
// followed by userspace.FlowStats', byte for byte, so the maps read straight into
// them. Without statistics the map's values end where they would start.
var (
	_ [unsafe.Sizeof(fparserFlowKey{}) - unsafe.Sizeof(userspace.Key{})]struct{}
	_ [unsafe.Sizeof(userspace.Key{}) - unsafe.Sizeof(fparserFlowKey{})]struct{}
	_ [unsafe.Sizeof(fparserFlowState{}) - unsafe.Sizeof(fullValue{})]struct{}
	_ [unsafe.Sizeof(fullValue{}) - unsafe.Sizeof(fparserFlowState{})]struct{}
	_ [unsafe.Offsetof(fparserFlowState{}.St) - unsafe.Sizeof(userspace.State{})]struct{}
	_ [unsafe.Sizeof(userspace.State{}) - unsafe.Offsetof(fparserFlowState{}.St)]struct{}
)

// fullValue is a flow map value with statistics.
type fullValue struct {
	State userspace.State
	Stats userspace.FlowStats
}

// coreSize is the flow map's value size without statistics.
const coreSize = unsafe.Sizeof(userspace.State{})

// batch is how many flows one batched map call moves.
const batch = 4096

// Table is the kernel's flow map as the engine's userspace.Table. The kernel writes
// it; Table reads it in batches and removes flows with lookup-and-delete, which reads
// the final counters and removes the entry in one step, so a packet that lands during
// a sweep is either in the counters returned or in the entry the kernel creates next.
type Table struct {
	m        *ebpf.Map
	timeouts userspace.Timeouts
	keys     []userspace.Key
	states   []userspace.State // the values read, without statistics
	full     []fullValue       // the values read, with statistics
	noBatch  bool              // the kernel lacks batch lookup on this map: iterate instead
	// drain continues a Drain where the last call stopped, so the kernel does not
	// walk the emptied buckets again; nil when no drain is under way.
	drain *ebpf.MapBatchCursor
}

// Table returns the flow map as a userspace.Table.
func (d *Datapath) Table() *Table {
	t := &Table{m: d.objs.Flows, keys: make([]userspace.Key, batch)}
	if d.cfg.Statistics {
		t.full = make([]fullValue, batch)
	} else {
		t.states = make([]userspace.State, batch)
	}
	return t
}

// values is where a batch of n values is read into.
func (t *Table) values(n int) any {
	if t.full != nil {
		return t.full[:n]
	}
	return t.states[:n]
}

// value returns the i-th value of the last batch read.
func (t *Table) value(i int) (*userspace.State, *userspace.FlowStats) {
	if t.full != nil {
		return &t.full[i].State, &t.full[i].Stats
	}
	return &t.states[i], nil
}

// get reads (del: and removes) the flow with key k.
func (t *Table) get(k *userspace.Key, del bool) (userspace.State, *userspace.FlowStats, error) {
	var v fullValue
	var out any = &v.State
	if t.full != nil {
		out = &v
	}
	var err error
	if del {
		err = t.m.LookupAndDelete(k, out)
	} else {
		err = t.m.Lookup(k, out)
	}
	if err != nil || t.full == nil {
		return v.State, nil, err
	}
	return v.State, &v.Stats, nil
}

// each calls fn for every flow in the map, a batch at a time, until fn returns false.
func (t *Table) each(fn func(k *userspace.Key, s *userspace.State, st *userspace.FlowStats) bool) error {
	if !t.noBatch {
		var cursor ebpf.MapBatchCursor
		for {
			n, err := t.m.BatchLookup(&cursor, t.keys, t.values(len(t.keys)), nil)
			for i := range n {
				if s, st := t.value(i); !fn(&t.keys[i], s, st) {
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
	var v fullValue
	var out any = &v.State
	var st *userspace.FlowStats
	if t.full != nil {
		out, st = &v, &v.Stats
	}
	it := t.m.Iterate()
	for it.Next(&k, out) {
		if !fn(&k, &v.State, st) {
			return nil
		}
	}
	return it.Err()
}

// Len is the number of flows in the map. It reads the whole map.
func (t *Table) Len() int {
	n := 0
	t.each(func(*userspace.Key, *userspace.State, *userspace.FlowStats) bool { n++; return true })
	return n
}

// Lookup returns the state of the flow with key k, and its statistics.
func (t *Table) Lookup(k *userspace.Key) (userspace.State, *userspace.FlowStats, bool) {
	s, st, err := t.get(k, false)
	return s, st, err == nil
}

// Range calls yield for every flow until it returns false.
func (t *Table) Range(yield func(*userspace.Key, *userspace.State, *userspace.FlowStats) bool) {
	t.each(yield)
}

// SetTimeouts gives the table the timeouts that decide its flows' deadlines.
func (t *Table) SetTimeouts(to userspace.Timeouts) { t.timeouts = to }

// Expire removes the flows whose deadline passed at now, passing each one's final
// state, read as it is removed, to ended, and returns the earliest deadline of the
// flows left. It reads the whole map.
func (t *Table) Expire(now int64, ended func(*userspace.Key, *userspace.State, *userspace.FlowStats, userspace.EndReason, int64)) (next int64) {
	next = math.MaxInt64
	var gone []userspace.Key
	t.each(func(k *userspace.Key, s *userspace.State, _ *userspace.FlowStats) bool {
		if _, end := t.timeouts.Deadline(s); end <= now {
			gone = append(gone, *k)
		} else {
			next = min(next, end)
		}
		return true
	})
	for i := range gone {
		s, st, err := t.get(&gone[i], true)
		if err != nil {
			continue // the kernel evicted it meanwhile
		}
		// A packet that landed since the read moved the deadline: the flow still
		// ends now, with it, but for its own reason.
		reason, end := t.timeouts.Deadline(&s)
		ended(&gone[i], &s, st, reason, end)
	}
	return next
}

// Drain removes up to max flows and passes each final state to ended, and reports
// whether flows remain. It uses the kernel's batched lookup-and-delete where it has
// one.
func (t *Table) Drain(max int, ended func(*userspace.Key, *userspace.State, *userspace.FlowStats)) (more bool) {
	max = min(max, len(t.keys))
	if !t.noBatch {
		if t.drain == nil {
			t.drain = new(ebpf.MapBatchCursor)
		}
		n, err := t.m.BatchLookupAndDelete(t.drain, t.keys[:max], t.values(max), nil)
		for i := range n {
			s, st := t.value(i)
			ended(&t.keys[i], s, st)
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
	t.each(func(k *userspace.Key, _ *userspace.State, _ *userspace.FlowStats) bool {
		gone = append(gone, *k)
		return len(gone) < max
	})
	for i := range gone {
		if s, st, err := t.get(&gone[i], true); err == nil {
			ended(&gone[i], &s, st)
		}
	}
	var k userspace.Key
	return t.m.NextKey(nil, &k) == nil
}
