// Package sink puts a bounded queue between a parser's callbacks and one exporter
// (an IPFIX collector, a Kafka producer, a ClickHouse writer), so that an exporter that is slow or
// unreachable never holds up counting, and no flow is lost without being counted.
//
// Put copies the flow into the queue and returns; a goroutine of the queue's own
// hands the flows to the exporter, in the order Put received them. When the queue
// is full (Config.MaxFlows or Config.MaxBytes), Put drops the flow and counts it;
// with Config.Block it waits for room instead, for a caller whose pace can follow
// the exporter's (a replay). Close waits up to Config.Timeout for the queue to
// drain and the exporter to deliver, then gives up on the rest.
//
// # Counting
//
// Every flow given to Put is counted once, when its fate is known (Stats): dropped,
// when the queue had no room; sent, when the exporter knows it delivered it; failed,
// when the exporter gave up on it, or when Close's deadline came before the flow
// reached the exporter. After Close, Sent + Dropped + Failed = Flows.
package sink

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/fparser/fparser"
)

// Exporter is what a queue hands flows to: *ipfix.Exporter, *kafka.Producer and
// *clickhouse.Writer are exporters. Export, Cut and Shutdown are called from one goroutine at a time,
// except Cut, which may come while Export waits; Delivered from any.
//
// An exporter may also have these methods, which the queue then uses:
//
//	Flush() error              // send what is held back; called when the queue runs empty
//	Ready(ctx context.Context) error // wait while the destination is down
type Exporter interface {
	// Export takes a flow. It may hold it back, to send in a batch, and may wait
	// for the destination; an error is the exporter's, already counted by it.
	Export(f *fparser.Flow) error
	// Delivered counts the flows given to Export whose fate is known: sent, and
	// failed (given up on, or dropped for want of room).
	Delivered() (sent, failed uint64)
	// Cut makes an Export that waits, and every later wait, give up at once.
	Cut()
	// Shutdown delivers what is held back, waits until ctx is done at the latest,
	// and ends the exporter: what is then undelivered counts as failed. It returns
	// the exporter's first error.
	Shutdown(ctx context.Context) error
}

type flusher interface{ Flush() error }

type readier interface {
	Ready(ctx context.Context) error
}

// The defaults of Config.
const (
	DefaultMaxFlows   = 100_000
	DefaultMaxBytes   = 64 << 20
	DefaultTimeout    = 5 * time.Second
	DefaultFlushEvery = time.Second
)

// Config bounds a queue.
type Config struct {
	// MaxFlows is how many flows may wait in the queue. Default 100,000.
	MaxFlows int
	// MaxBytes is how much memory, in bytes, the flows waiting may take, as
	// estimated from the flow and the packets of its history. Default 64 MiB.
	MaxBytes int64
	// Block makes Put wait for room in a full queue rather than drop the flow.
	// Should the exporter take nothing for Timeout, Put drops after all, and
	// goes on dropping without waiting until the exporter takes a flow again.
	Block bool
	// Timeout bounds Close: how long it waits for the queue to drain and the
	// exporter to deliver. Default 5 s.
	Timeout time.Duration
	// FlushEvery is how long a flow may be held back by an exporter that sends in
	// batches (one with a Flush method) while the queue is empty. Default 1 s.
	FlushEvery time.Duration
	// Logger takes the exporter's first error, once. Default slog.Default().
	Logger *slog.Logger
}

// Stats are a queue's counters; see the package doc.
type Stats struct {
	Flows   uint64 // given to Put
	Sent    uint64 // delivered, as the exporter knows
	Dropped uint64 // no room in the queue
	Failed  uint64 // given up on, by the exporter or by Close
	Queued  uint64 // in the queue now, or being handed to the exporter
}

// batch is how many flows the queue's goroutine takes at a time.
const batch = 256

// Queue is a bounded queue in front of one exporter. Put is for one goroutine at a
// time, a parser's callbacks; Stats and Name may be called from any.
type Queue struct {
	name string
	exp  Exporter
	cfg  Config

	mu      sync.Mutex
	ring    []fparser.Flow // the queue, from head, n long
	head, n int
	bytes   int64
	closed  bool
	stalled bool          // a blocked Put gave up: drop until the exporter takes a flow
	wake    chan struct{} // flows to take, or closed
	room    chan struct{} // the goroutine took flows

	flows, dropped atomic.Uint64
	abandoned      atomic.Uint64 // added to under mu, with inflight and n
	inflight       atomic.Int64  // taken by the goroutine, not yet handed to the exporter
	progress       atomic.Int64  // when the exporter last took a flow, Unix ns

	ctx       context.Context // cancelled when Close gives up
	cancel    context.CancelFunc
	done      chan struct{} // the goroutine has ended
	err       error         // the first Export error, the goroutine's until done
	closeOnce sync.Once
	closeErr  error
}

// New starts a queue that hands flows to exp; name names the sink in logs and
// metrics ("ipfix", "kafka", "clickhouse").
func New(name string, exp Exporter, cfg Config) *Queue {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = DefaultFlushEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	q := &Queue{name: name, exp: exp, cfg: cfg,
		ring: make([]fparser.Flow, min(cfg.MaxFlows, 1024)),
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{})}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	go q.run()
	return q
}

// Name is the sink's name, as New was given it.
func (q *Queue) Name() string { return q.name }

// flowSize estimates the memory a flow holds: itself and its history's packets.
func flowSize(f *fparser.Flow) int64 {
	return int64(unsafe.Sizeof(*f)) + int64(f.HistoryLen())*int64(unsafe.Sizeof(fparser.Packet{}))
}

// Put queues a copy of f, or drops it when the queue is full (see Config.Block).
// After Close it drops.
func (q *Queue) Put(f *fparser.Flow) {
	q.flows.Add(1)
	size := flowSize(f)
	q.mu.Lock()
	var timer *time.Timer
	for !q.closed && q.full(size) {
		if !q.cfg.Block || q.stalled {
			break
		}
		if timer == nil {
			timer = time.NewTimer(q.cfg.Timeout)
			defer timer.Stop()
		}
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-timer.C:
			// A slow exporter that still takes flows is waited for.
			if since := time.Since(time.Unix(0, q.progress.Load())); since < q.cfg.Timeout {
				timer.Reset(q.cfg.Timeout - since)
				break
			}
			q.mu.Lock()
			q.stalled = true
			q.cfg.Logger.Warn("sink: the exporter took nothing for the timeout; dropping flows until it does", "sink", q.name, "timeout", q.cfg.Timeout)
			q.mu.Unlock()
		}
		q.mu.Lock()
	}
	if q.closed || q.full(size) {
		q.mu.Unlock()
		q.dropped.Add(1)
		return
	}
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)%len(q.ring)] = *f
	q.n++
	q.bytes += size
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// full says a flow of size bytes finds no room. mu held.
func (q *Queue) full(size int64) bool {
	return q.n >= q.cfg.MaxFlows || q.n > 0 && q.bytes+size > q.cfg.MaxBytes
}

// grow doubles the ring, up to MaxFlows. mu held.
func (q *Queue) grow() {
	ring := make([]fparser.Flow, min(2*len(q.ring), q.cfg.MaxFlows))
	k := copy(ring, q.ring[q.head:])
	copy(ring[k:], q.ring[:q.head])
	q.ring, q.head = ring, 0
}

// take moves up to len(dst) flows from the queue into dst. mu held.
func (q *Queue) take(dst []fparser.Flow) int {
	k := min(q.n, len(dst))
	for i := range k {
		j := (q.head + i) % len(q.ring)
		dst[i] = q.ring[j]
		q.bytes -= flowSize(&dst[i])
		q.ring[j] = fparser.Flow{} // let go of its history
	}
	q.head = (q.head + k) % len(q.ring)
	q.n -= k
	q.inflight.Store(int64(k))
	if k > 0 {
		q.stalled = false
	}
	return k
}

// run hands the flows to the exporter until the queue is closed and empty, or Close
// gives up.
func (q *Queue) run() {
	defer close(q.done)
	flusher, _ := q.exp.(flusher)
	readier, _ := q.exp.(readier)
	work := make([]fparser.Flow, batch)
	var held time.Time // when the exporter first held back a flow not flushed yet
	var timer *time.Timer
	for {
		q.mu.Lock()
		k := q.take(work)
		closed := q.closed
		q.mu.Unlock()
		if k > 0 {
			select {
			case q.room <- struct{}{}:
			default:
			}
		}
		if k == 0 {
			if closed {
				return
			}
			// Wait for flows; an exporter holding some back is flushed once they
			// have waited FlushEvery.
			var flushDue <-chan time.Time
			if flusher != nil && !held.IsZero() {
				wait := q.cfg.FlushEvery - time.Since(held)
				if wait <= 0 {
					q.note(flusher.Flush())
					held = time.Time{}
					continue
				}
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				flushDue = timer.C
			}
			select {
			case <-q.wake:
			case <-flushDue:
			case <-q.ctx.Done():
			}
			continue
		}
		for i := range k {
			if readier != nil && q.ctx.Err() == nil {
				readier.Ready(q.ctx) // an error is a cancelled ctx, or a closed exporter, which counts what it is given
			}
			if q.ctx.Err() != nil {
				clear(work[i:k])
				q.mu.Lock()
				q.abandoned.Add(uint64(k-i) + uint64(q.n))
				q.inflight.Store(0)
				q.n, q.bytes = 0, 0
				clear(q.ring)
				q.mu.Unlock()
				return
			}
			err := q.exp.Export(&work[i])
			q.inflight.Add(-1)
			q.progress.Store(time.Now().UnixNano())
			q.note(err)
			if flusher != nil && held.IsZero() {
				held = time.Now()
			}
		}
		clear(work[:k])
	}
}

// note keeps the first error and logs it, once, with the sink's name.
func (q *Queue) note(err error) {
	if err == nil || q.err != nil {
		return
	}
	q.err = err
	q.cfg.Logger.Warn("sink: export failed; later failures are counted, not logged", "sink", q.name, "err", err)
}

// Stats returns the counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	queued := uint64(q.n) + uint64(q.inflight.Load())
	abandoned := q.abandoned.Load()
	q.mu.Unlock()
	sent, failed := q.exp.Delivered()
	return Stats{
		Flows:   q.flows.Load(),
		Sent:    sent,
		Dropped: q.dropped.Load(),
		Failed:  failed + abandoned,
		Queued:  queued,
	}
}

// Close stops taking flows, waits up to Config.Timeout for the queue to drain and
// the exporter to deliver, and shuts the exporter down: what is undelivered by then
// counts as failed. It returns the exporter's first error. Later calls return the
// same.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() { q.closeErr = q.close() })
	return q.closeErr
}

func (q *Queue) close() error {
	deadline := time.Now().Add(q.cfg.Timeout)
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	select {
	case q.room <- struct{}{}: // a Put that waits: closed, it drops
	default:
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-q.done:
	case <-timer.C:
		q.cancel()
		q.exp.Cut()
		<-q.done
	}
	q.cancel()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	err := q.exp.Shutdown(ctx)
	if q.err != nil {
		err = q.err
	}
	return err // the exporters' errors name them
}
