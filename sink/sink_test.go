package sink_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/sink"
)

// gated is an exporter whose Export waits for the gate to open, and which
// delivers every flow at once: sent unless fail says otherwise.
type gated struct {
	gate      chan struct{} // closed: Export goes on
	cut       chan struct{}
	cutOnce   sync.Once
	mu        sync.Mutex
	ports     []uint16 // the flows exported, by source port
	sent      atomic.Uint64
	failed    atomic.Uint64
	fail      bool
	shut      atomic.Bool
	exported  chan struct{} // gets a value for each flow exported
	entered   chan struct{} // gets a value for each call of Export
	exportErr error
}

func newGated(open bool) *gated {
	g := &gated{gate: make(chan struct{}), cut: make(chan struct{}), exported: make(chan struct{}, 1<<20), entered: make(chan struct{}, 1<<20)}
	if open {
		close(g.gate)
	}
	return g
}

func (g *gated) Export(f *fparser.Flow) error {
	if g.shut.Load() {
		panic("Export after Shutdown")
	}
	g.entered <- struct{}{}
	select {
	case <-g.gate:
	case <-g.cut:
		g.failed.Add(1)
		return errors.New("cut")
	}
	g.mu.Lock()
	g.ports = append(g.ports, f.Src.Port())
	g.mu.Unlock()
	if g.fail {
		g.failed.Add(1)
	} else {
		g.sent.Add(1)
	}
	g.exported <- struct{}{}
	return g.exportErr
}

func (g *gated) Delivered() (uint64, uint64) { return g.sent.Load(), g.failed.Load() }
func (g *gated) Cut()                        { g.cutOnce.Do(func() { close(g.cut) }) }
func (g *gated) Shutdown(context.Context) error {
	g.shut.Store(true)
	return nil
}

func flow(port uint16) *fparser.Flow {
	return &fparser.Flow{Protocol: fparser.UDP,
		Src: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port), Dst: netip.MustParseAddrPort("10.0.0.2:53")}
}

func checkSum(t *testing.T, st sink.Stats) {
	t.Helper()
	if st.Sent+st.Dropped+st.Failed != st.Flows || st.Queued != 0 {
		t.Errorf("after Close: %+v: sent + dropped + failed != flows", st)
	}
}

// TestOrder: every flow reaches the exporter, in order, and counts as sent.
func TestOrder(t *testing.T) {
	g := newGated(true)
	q := sink.New("test", g, sink.Config{MaxFlows: 100})
	const n = 10_000
	for i := range n {
		q.Put(flow(uint16(i)))
		if i%50 == 0 {
			<-g.exported // keep the queue from filling
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	if st.Flows != n || st.Sent+st.Dropped != n || st.Failed != 0 {
		t.Errorf("stats %+v, want %d flows, sent or dropped", st, n)
	}
	checkSum(t, st)
	last := -1
	for _, p := range g.ports {
		if int(p) <= last {
			t.Fatalf("flow %d after %d: out of order", p, last)
		}
		last = int(p)
	}
}

// TestDrop: a queue whose exporter takes nothing holds MaxFlows, drops the rest
// and counts them; Close gives up on the held ones at its deadline, as failed.
func TestDrop(t *testing.T) {
	g := newGated(false)
	q := sink.New("test", g, sink.Config{MaxFlows: 10, Timeout: 100 * time.Millisecond})
	// The goroutine takes the first flow and waits in Export with it.
	q.Put(flow(0))
	<-g.entered
	for i := 1; i <= 100; i++ {
		q.Put(flow(uint16(i)))
	}
	st := q.Stats()
	if st.Queued != 11 || st.Dropped != 90 {
		t.Fatalf("stats %+v, want 11 queued (one being exported), 90 dropped", st)
	}
	start := time.Now()
	q.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v, timeout 100ms", d)
	}
	st = q.Stats()
	if st.Flows != 101 || st.Dropped != 90 || st.Failed != 11 || st.Sent != 0 {
		t.Errorf("after Close: %+v, want 101 flows: 90 dropped, 11 failed", st)
	}
	checkSum(t, st)
}

// TestMaxBytes: the byte bound holds too.
func TestMaxBytes(t *testing.T) {
	g := newGated(false)
	one := int64(unsafe.Sizeof(fparser.Flow{})) * 3 / 2 // more than a flow without history, less than two
	q := sink.New("test", g, sink.Config{MaxBytes: one, Timeout: 50 * time.Millisecond})
	q.Put(flow(0))
	<-g.entered
	q.Put(flow(1)) // the first always finds room
	q.Put(flow(2))
	if st := q.Stats(); st.Queued != 2 || st.Dropped != 1 {
		t.Fatalf("stats %+v, want 2 queued (one being exported), 1 dropped", st)
	}
	q.Close()
	checkSum(t, q.Stats())
}

// TestBlock: with Block, Put waits for room rather than drop.
func TestBlock(t *testing.T) {
	g := newGated(false)
	q := sink.New("test", g, sink.Config{MaxFlows: 2, Block: true, Timeout: time.Minute})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			q.Put(flow(uint16(i)))
		}
	}()
	waitFor(t, func() bool { return q.Stats().Queued >= 3 }) // 2 queued, and 1 or 2 being exported
	select {
	case <-done:
		t.Fatal("Put did not wait for room")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.gate)
	<-done
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	if st.Sent != 100 || st.Dropped != 0 {
		t.Errorf("stats %+v, want all 100 sent", st)
	}
	checkSum(t, st)
}

// TestBlockStalled: a blocked Put gives up after Timeout, and the queue drops
// without waiting until the exporter takes a flow again.
func TestBlockStalled(t *testing.T) {
	g := newGated(false)
	q := sink.New("test", g, sink.Config{MaxFlows: 1, Block: true, Timeout: 100 * time.Millisecond})
	q.Put(flow(0))
	<-g.entered
	q.Put(flow(1))
	start := time.Now()
	for i := 2; i < 50; i++ {
		q.Put(flow(uint16(i)))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("48 Puts took %v: each waited", d)
	}
	if st := q.Stats(); st.Dropped != 48 {
		t.Errorf("stats %+v, want 48 dropped", st)
	}
	close(g.gate)
	<-g.exported
	<-g.exported
	q.Put(flow(50)) // the exporter took flows again: Put waits, and finds room
	q.Close()
	st := q.Stats()
	if st.Sent != 3 || st.Dropped != 48 {
		t.Errorf("stats %+v, want 3 sent, 48 dropped", st)
	}
	checkSum(t, st)
}

// TestFailedExport: flows the exporter fails count as failed, and its first
// error is Close's.
func TestFailedExport(t *testing.T) {
	g := newGated(true)
	g.fail, g.exportErr = true, errors.New("the collector refused")
	q := sink.New("test", g, sink.Config{})
	for i := range 5 {
		q.Put(flow(uint16(i)))
	}
	if err := q.Close(); !errors.Is(err, g.exportErr) {
		t.Errorf("Close: %v, want %v", err, g.exportErr)
	}
	st := q.Stats()
	if st.Failed != 5 {
		t.Errorf("stats %+v, want 5 failed", st)
	}
	checkSum(t, st)
}

// flushing is an exporter that holds flows back until Flush.
type flushing struct {
	gated
	held    atomic.Int64
	flushed chan int
}

func (f *flushing) Export(*fparser.Flow) error { f.held.Add(1); return nil }
func (f *flushing) Flush() error {
	n := f.held.Swap(0)
	f.sent.Add(uint64(n))
	f.flushed <- int(n)
	return nil
}

// TestFlushWhenIdle: an exporter that holds flows back is flushed once the queue
// has been empty for FlushEvery.
func TestFlushWhenIdle(t *testing.T) {
	f := &flushing{flushed: make(chan int, 10)}
	q := sink.New("test", f, sink.Config{FlushEvery: 20 * time.Millisecond})
	defer q.Close()
	for i := range 3 {
		q.Put(flow(uint16(i)))
	}
	select {
	case n := <-f.flushed:
		if n != 3 {
			t.Errorf("flushed %d flows, want 3", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no flush")
	}
}

// readyLater is an exporter whose destination is down until up is closed.
type readyLater struct {
	*gated
	up atomic.Bool
}

func (r *readyLater) Ready(ctx context.Context) error {
	for !r.up.Load() {
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// TestReady: flows wait in the queue while the destination is down, and go when
// it is back; at Close's deadline the waiting ones fail.
func TestReady(t *testing.T) {
	r := &readyLater{gated: newGated(true)}
	q := sink.New("test", r, sink.Config{Timeout: 100 * time.Millisecond})
	for i := range 5 {
		q.Put(flow(uint16(i)))
	}
	time.Sleep(20 * time.Millisecond)
	if st := q.Stats(); st.Sent != 0 {
		t.Fatalf("stats %+v: sent while down", st)
	}
	r.up.Store(true)
	for range 5 {
		<-r.exported
	}
	r.up.Store(false) // down again
	for i := 5; i < 8; i++ {
		q.Put(flow(uint16(i)))
	}
	q.Close()
	st := q.Stats()
	if st.Sent != 5 || st.Failed != 3 {
		t.Errorf("stats %+v, want 5 sent, 3 failed", st)
	}
	checkSum(t, st)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// slow is an exporter that takes a millisecond per flow.
type slow struct{ *gated }

func (s *slow) Export(*fparser.Flow) error {
	time.Sleep(time.Millisecond)
	s.sent.Add(1)
	return nil
}

// TestBlockSlow: with Block, an exporter slower than Timeout per batch, but that
// takes flows all along, is waited for: nothing is dropped.
func TestBlockSlow(t *testing.T) {
	s := &slow{newGated(true)}
	q := sink.New("test", s, sink.Config{MaxFlows: 300, Block: true, Timeout: 100 * time.Millisecond})
	for i := range 1000 {
		q.Put(flow(uint16(i)))
	}
	waitFor(t, func() bool { return q.Stats().Sent+q.Stats().Dropped == 1000 }) // Close would give up after 100 ms
	q.Close()
	if st := q.Stats(); st.Sent != 1000 || st.Dropped != 0 {
		t.Errorf("stats %+v, want all 1000 sent", st)
	}
}
