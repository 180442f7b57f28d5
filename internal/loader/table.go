package loader

import (
	"errors"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/fparser/fparser/internal/userspace"
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

// Extended says the flow map's values go on past the State: with statistics, the
// TCP quality or tunnels, which take their place in every value.
func (c *Config) Extended() bool { return c.Statistics || c.TCPQuality || c.Decap }

// coreSize is the flow map's value size without statistics.
const coreSize = unsafe.Sizeof(userspace.State{})

// batch is how many flows one batched map call moves in a walk or the final flush;
// scanBatch in a sweep's slice, smaller, so a slice keeps to its time.
const (
	batch     = 4096
	scanBatch = 1024
)

// Table is the kernel's flow map as the engine's userspace.SharedTable. The kernel
// writes it; Table reads it in batches and removes flows with lookup-and-delete, which
// reads the final counters and removes the entry in one step, so a packet that lands
// during a sweep is either in the counters returned or in the entry the kernel
// creates next.
//
// Its reads are safe from any goroutine, each with buffers of its own. Sweeps
// (Expire) come from one goroutine at a time, as the engine calls them, and each
// costs a bounded slice of work: the flows whose deadline was known to be near, and
// a slice of an incremental walk of the whole map (see Expire).
type Table struct {
	m        *ebpf.Map
	stats    bool // the values carry statistics, the TCP quality and the tunnel (Config.Extended)
	timeouts userspace.Timeouts
	noBatch  atomic.Bool // the kernel lacks batch lookup on this map: iterate instead
	// readErrors counts the walks of the map that failed part way: Range has no
	// error to return, so the failure is counted, for Info, rather than dropped.
	readErrors atomic.Uint64
	bufs       sync.Pool // *buffers for walks

	flush buffers // Drain's
	// drain continues a Drain where the last call stopped, so the kernel does not
	// walk the emptied buckets again; nil when no drain is under way.
	drain *ebpf.MapBatchCursor

	sweep sweeper // Expire's state
	// quiet: no program writes the map any more (detached, or gone with the
	// interface), so a flow read in one call and removed in another loses nothing
	// (Remove).
	quiet atomic.Bool
	marks keyWheel // the flows whose deadline is near, with their own lock

	// gate keeps the map open while it is read: every read holds it shared, and
	// closing takes it alone, so a lookup that comes during the parser's stop finds
	// no flow rather than a closed map.
	gate   sync.RWMutex
	closed bool
}

// buffers are where a batch of keys and values is read into.
type buffers struct {
	keys   []userspace.Key
	states []userspace.State // the values, without statistics
	full   []fullValue       // the values, with statistics
	one    fullValue         // one flow read by key
}

func (t *Table) newBuffers(n int) *buffers {
	b := &buffers{keys: make([]userspace.Key, n)}
	if t.stats {
		b.full = make([]fullValue, n)
	} else {
		b.states = make([]userspace.State, n)
	}
	return b
}

// values is where a batch of n values is read into.
func (b *buffers) values(n int) any {
	if b.full != nil {
		return b.full[:n]
	}
	return b.states[:n]
}

// value returns the i-th value of the last batch read.
func (b *buffers) value(i int) (*userspace.State, *userspace.FlowStats) {
	if b.full != nil {
		return &b.full[i].State, &b.full[i].Stats
	}
	return &b.states[i], nil
}

// Table returns the flow map as a userspace.SharedTable. Close closes it first.
func (d *Datapath) Table() *Table {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.table == nil {
		t := &Table{m: d.objs.Flows, stats: d.cfg.Extended()}
		t.bufs.New = func() any { return t.newBuffers(batch) }
		t.flush = *t.newBuffers(batch)
		t.sweep.bufs = *t.newBuffers(scanBatch)
		t.quiet.Store(d.quiet)
		d.table = t
	}
	return d.table
}

// close waits for the reads under way, and makes those that come after find no flow.
func (t *Table) close() {
	t.gate.Lock()
	defer t.gate.Unlock()
	t.closed = true
}

// open holds the map open for a read, and reports whether it is; done releases it.
func (t *Table) open() bool {
	t.gate.RLock()
	if t.closed {
		t.gate.RUnlock()
		return false
	}
	return true
}

func (t *Table) done() { t.gate.RUnlock() }

// read reads (del: and removes) the flow with key k into v, which the caller owns so
// that a read allocates nothing: the sweep and the stop read a flow at a time, a
// million of them on a busy host. Without statistics only v.State is written.
func (t *Table) read(k *userspace.Key, v *fullValue, del bool) error {
	var out any = &v.State
	if t.stats {
		out = v
	}
	if del {
		return t.m.LookupAndDelete(k, out)
	}
	return t.m.Lookup(k, out)
}

// statsOf returns v's statistics when the map carries them, else nil.
func (t *Table) statsOf(v *fullValue) *userspace.FlowStats {
	if t.stats {
		return &v.Stats
	}
	return nil
}

// each calls fn for every flow in the map, a batch at a time, until fn returns false.
// A walk that fails is counted in ReadErrors as well as returned.
func (t *Table) each(fn func(k *userspace.Key, s *userspace.State, st *userspace.FlowStats) bool) error {
	err := t.walk(fn)
	if err != nil {
		t.readErrors.Add(1)
	}
	return err
}

// ReadErrors is how many walks of the map failed part way; each missed the flows
// it had not reached.
func (t *Table) ReadErrors() uint64 { return t.readErrors.Load() }

func (t *Table) walk(fn func(k *userspace.Key, s *userspace.State, st *userspace.FlowStats) bool) error {
	if !t.noBatch.Load() {
		b := t.bufs.Get().(*buffers)
		defer t.bufs.Put(b)
		var cursor ebpf.MapBatchCursor
		for {
			n, err := t.m.BatchLookup(&cursor, b.keys, b.values(len(b.keys)), nil)
			for i := range n {
				if s, st := b.value(i); !fn(&b.keys[i], s, st) {
					return nil
				}
			}
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil
			}
			if errors.Is(err, ebpf.ErrNotSupported) {
				t.noBatch.Store(true)
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
	if t.stats {
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
	if !t.open() {
		return 0
	}
	defer t.done()
	n := 0
	t.each(func(*userspace.Key, *userspace.State, *userspace.FlowStats) bool { n++; return true })
	return n
}

// Lookup returns the state of the flow with key k, and its statistics.
func (t *Table) Lookup(k *userspace.Key) (userspace.State, *userspace.FlowStats, bool) {
	if !t.open() {
		return userspace.State{}, nil, false
	}
	defer t.done()
	v := new(fullValue)
	if err := t.read(k, v, false); err != nil {
		return userspace.State{}, nil, false
	}
	return v.State, t.statsOf(v), true
}

// Quiet reports that no program writes the map any more: MarkQuiet was called, or
// Detach succeeded.
func (t *Table) Quiet() bool { return t.quiet.Load() }

// Remove removes the flows with the given keys, a batch per call where the kernel
// has batch deletion, and calls removed with the index of each key it removed: a key
// whose flow is gone is skipped. It is for a stop, once the map is Quiet and the flows
// no longer change: their final state is what the last walk read.
func (t *Table) Remove(keys []userspace.Key, removed func(i int)) {
	if !t.open() {
		return
	}
	defer t.done()
	for i := 0; i < len(keys); {
		if !t.noBatch.Load() {
			n, err := t.m.BatchDelete(keys[i:], nil)
			for j := range n {
				removed(i + j)
			}
			i += n
			switch {
			case err == nil:
				return
			case errors.Is(err, ebpf.ErrKeyNotExist):
				i++ // gone already: the kernel stopped at it
				continue
			case errors.Is(err, ebpf.ErrNotSupported):
				t.noBatch.Store(true)
			}
			// Without batches, or after another failure: this key alone, then
			// batches again.
		}
		if t.m.Delete(&keys[i]) == nil {
			removed(i)
		}
		i++
	}
}

// Range calls yield for every flow until it returns false.
func (t *Table) Range(yield func(*userspace.Key, *userspace.State, *userspace.FlowStats) bool) {
	if !t.open() {
		return
	}
	defer t.done()
	t.each(yield)
}

// SetTimeouts gives the table the timeouts that decide its flows' deadlines.
func (t *Table) SetTimeouts(to userspace.Timeouts) { t.timeouts = to }

// Drain removes up to max flows and passes each final state to ended, and reports
// whether flows remain. It uses the kernel's batched lookup-and-delete where it has
// one.
func (t *Table) Drain(max int, ended func(*userspace.Key, *userspace.State, *userspace.FlowStats)) (more bool) {
	if !t.open() {
		return false
	}
	defer t.done()
	b := &t.flush
	max = min(max, len(b.keys))
	if !t.noBatch.Load() {
		if t.drain == nil {
			t.drain = new(ebpf.MapBatchCursor)
		}
		n, err := t.m.BatchLookupAndDelete(t.drain, b.keys[:max], b.values(max), nil)
		for i := range n {
			s, st := b.value(i)
			ended(&b.keys[i], s, st)
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
		t.noBatch.Store(true)
	}
	var gone []userspace.Key
	t.each(func(k *userspace.Key, _ *userspace.State, _ *userspace.FlowStats) bool {
		gone = append(gone, *k)
		return len(gone) < max
	})
	for i := range gone {
		if v := &b.one; t.read(&gone[i], v, true) == nil {
			ended(&gone[i], &v.State, t.statsOf(v))
		}
	}
	var k userspace.Key
	return t.m.NextKey(nil, &k) == nil
}
