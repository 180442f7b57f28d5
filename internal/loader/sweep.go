package loader

import (
	"errors"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/fparser/fparser/internal/userspace"
)

// How a sweep spends its time. Each call of Expire (the engine makes one per tick)
// checks the flows whose deadline was known to be near, then reads a slice of the
// map, continuing a walk of the whole map where the last call stopped: at most
// scanBudget of time, and no more than a tenth of the map as the last walk found it,
// so that a small map is walked about once a second (ten ticks) and a large one as
// fast as the budget allows. A flow the walk finds due ends then; one whose deadline comes before the
// walk is likely to return is filed in the key wheel, and checked again at its
// deadline. So a flow ends within a tick of its deadline when the walk saw it
// within one walk's time of it, and at most one walk late otherwise; FIN and RST
// marks, which the kernel sends as events, file their flows at once.
const (
	scanBudget = 1500 * time.Microsecond // of the 100 ms tick: 1.5% of a core
	scanShare  = 10                      // at most 1/scanShare of the map per call
	wheelWidth = int64(100 * time.Millisecond)
)

// sweeper is Expire's state: the walk's cursor and what it learned.
type sweeper struct {
	bufs      buffers
	cursor    *ebpf.MapBatchCursor // the walk under way; nil: the next call begins one
	it        *ebpf.MapIterator    // the same without batch lookups
	began     time.Time            // when the walk under way began
	seen      int                  // flows it has read
	size      int                  // flows the last whole walk read
	walk      time.Duration        // how long the last whole walk took
	walks     int                  // whole walks so far
	due, gone []userspace.Key
}

// Expire ends the flows it finds due at now, passing each one's final state, read as
// it is removed, with its reason and deadline to ended: the flows filed in the key
// wheel whose time has come, and those a slice of the incremental walk finds. Flows
// due that it does not reach now, it ends at a later call. It returns math.MaxInt64,
// "not known": the engine sweeps a shared table at every tick.
func (t *Table) Expire(now int64, ended func(*userspace.Key, *userspace.State, *userspace.FlowStats, userspace.EndReason, int64)) int64 {
	if !t.open() {
		return math.MaxInt64
	}
	defer t.done()
	sw := &t.sweep
	ahead := now + int64(max(2*sw.walk, time.Second))
	// The flows filed for now: each is read, and ends if it is due; one that a
	// packet kept busy is filed again at its new deadline, when that comes before
	// the walk is back.
	sw.due = t.marks.take(now, sw.due[:0])
	for i := range sw.due {
		k := &sw.due[i]
		if t.read(k, &sw.bufs.one, false) != nil {
			continue // ended meanwhile, by the kernel or evicted
		}
		if _, end := t.timeouts.Deadline(&sw.bufs.one.State); end <= now {
			t.end(k, now, ended)
		} else if end < ahead {
			t.marks.add(k, end)
		}
	}

	// A slice of the walk.
	sw.gone = sw.gone[:0]
	began := time.Now()
	quota := max(scanBatch, sw.size/scanShare)
	if sw.walks == 0 {
		quota = math.MaxInt // the map's size is not known yet: only the time bounds the slice
	}
	for read := 0; read < quota && time.Since(began) < scanBudget; {
		n, done := t.scan(func(k *userspace.Key, s *userspace.State) {
			if _, end := t.timeouts.Deadline(s); end <= now {
				sw.gone = append(sw.gone, *k)
			} else if end < ahead {
				t.marks.add(k, end)
			}
		})
		read += n
		if done {
			break
		}
	}
	for i := range sw.gone {
		t.end(&sw.gone[i], now, ended)
	}
	sw.due, sw.gone = userspace.Recycle(sw.due), userspace.Recycle(sw.gone) // a burst's room is let go
	return math.MaxInt64
}

// end removes the flow with key k, due at now, and passes its final state to ended.
// A packet that landed since it was read as due moved its deadline: it still ends
// now, with that packet, and for its own reason.
func (t *Table) end(k *userspace.Key, now int64, ended func(*userspace.Key, *userspace.State, *userspace.FlowStats, userspace.EndReason, int64)) {
	v := &t.sweep.bufs.one
	if t.read(k, v, true) != nil {
		return // ended meanwhile, by the kernel or evicted
	}
	reason, end := t.timeouts.Deadline(&v.State)
	ended(k, &v.State, t.statsOf(v), reason, min(end, now))
}

// scan reads the next batch of the walk and passes each flow to fn; done says the walk
// reached the end of the map, and the next call begins another.
func (t *Table) scan(fn func(*userspace.Key, *userspace.State)) (n int, done bool) {
	sw := &t.sweep
	if sw.cursor == nil && sw.it == nil {
		sw.began, sw.seen = time.Now(), 0
		if !t.noBatch.Load() {
			sw.cursor = new(ebpf.MapBatchCursor)
		} else {
			sw.it = t.m.Iterate()
		}
	}
	b := &sw.bufs
	if sw.cursor != nil {
		var err error
		n, err = t.m.BatchLookup(sw.cursor, b.keys, b.values(len(b.keys)), nil)
		for i := range n {
			s, _ := b.value(i)
			fn(&b.keys[i], s)
		}
		sw.seen += n
		switch {
		case err == nil:
			return n, false
		case errors.Is(err, ebpf.ErrNotSupported):
			t.noBatch.Store(true)
			sw.cursor = nil
			return n, true
		case !errors.Is(err, ebpf.ErrKeyNotExist):
			// A failure: begin again at the next call.
			sw.cursor = nil
			return n, true
		}
	} else {
		var v fullValue
		var out any = &v.State
		if t.stats {
			out = &v
		}
		for n < len(b.keys) && sw.it.Next(&b.keys[0], out) {
			fn(&b.keys[0], &v.State)
			n++
		}
		sw.seen += n
		if n == len(b.keys) {
			return n, false
		}
	}
	sw.cursor, sw.it = nil, nil
	sw.size, sw.walk = sw.seen, time.Since(sw.began)
	sw.walks++
	return n, true
}

// Mark files the flow with key k, which a FIN or RST marked, to be checked at t.
func (t *Table) Mark(k *userspace.Key, at int64) { t.marks.add(k, at) }

// keyWheel files flow keys by the time to check them, in buckets of wheelWidth. A
// key is filed once, under its earliest time; a check that finds the flow still busy
// files it again.
//
// Go's maps keep the room of their largest size, so once the keys filed fall to a
// quarter of their peak, the wheel moves them into maps their size: a burst of flows
// leaves nothing behind once it has ended, and each move is paid for by the three
// quarters of the keys taken since the peak.
type keyWheel struct {
	mu      sync.Mutex
	started bool
	next    int64 // the first bucket not yet taken
	buckets map[int64][]userspace.Key
	filed   map[userspace.Key]int64 // the bucket each key is filed under
	peak    int                     // the most keys filed since the maps were made
	free    [][]userspace.Key       // emptied buckets' arrays, for new buckets
}

// Bounds on what the wheel keeps for reuse: the maps are remade only past
// keepFiled keys, and at most keepFree emptied arrays, each of room for at most
// keepBucket keys, wait for new buckets (640 KiB at most).
const (
	keepFiled  = 1024
	keepFree   = 64
	keepBucket = 256
)

// add files key k to be checked at time at.
func (w *keyWheel) add(k *userspace.Key, at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buckets == nil {
		w.buckets, w.filed = make(map[int64][]userspace.Key), make(map[userspace.Key]int64)
	}
	b := at / wheelWidth
	if w.started {
		b = max(b, w.next)
	}
	if old, ok := w.filed[*k]; ok && old <= b {
		return // it is checked earlier already
	}
	w.filed[*k] = b
	w.peak = max(w.peak, len(w.filed))
	keys, ok := w.buckets[b]
	if !ok && len(w.free) > 0 {
		keys, w.free = w.free[len(w.free)-1], w.free[:len(w.free)-1]
	}
	w.buckets[b] = append(keys, *k)
}

// take appends to dst the keys filed for now or earlier, and unfiles them.
func (w *keyWheel) take(now int64, dst []userspace.Key) []userspace.Key {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := now / wheelWidth
	if !w.started {
		w.started, w.next = true, last
	}
	if len(w.buckets) == 0 {
		w.next = max(w.next, last+1)
		return dst
	}
	// Step through the buckets, or after a long gap, through those filed.
	var due []int64
	if int(last-w.next) < 4*len(w.buckets) {
		for b := w.next; b <= last; b++ {
			if _, ok := w.buckets[b]; ok {
				due = append(due, b)
			}
		}
	} else {
		for b := range w.buckets {
			if b <= last {
				due = append(due, b)
			}
		}
		slices.Sort(due)
	}
	for _, b := range due {
		keys := w.buckets[b]
		delete(w.buckets, b)
		for _, k := range keys {
			if w.filed[k] == b { // not filed again, earlier, since
				delete(w.filed, k)
				dst = append(dst, k)
			}
		}
		if cap(keys) <= keepBucket && len(w.free) < keepFree {
			w.free = append(w.free, keys[:0])
		}
	}
	w.next = max(w.next, last+1)
	if w.peak > keepFiled && len(w.filed) <= w.peak/4 {
		w.remake()
	}
	return dst
}

// remake moves the keys filed into maps their size. (maps.Clone would keep the
// room: it copies a map's tables as they are.)
func (w *keyWheel) remake() {
	buckets, filed := make(map[int64][]userspace.Key, len(w.buckets)), make(map[userspace.Key]int64, len(w.filed))
	maps.Copy(buckets, w.buckets)
	maps.Copy(filed, w.filed)
	w.buckets, w.filed, w.peak = buckets, filed, len(filed)
}
