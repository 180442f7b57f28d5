package fparser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/loader"
	"github.com/fparser/fparser/internal/userspace"
)

// Errors of the live datapath, to test with errors.Is.
var (
	// ErrNotPermitted: the process may not load or attach BPF programs; the message
	// names the capabilities it lacks.
	ErrNotPermitted = loader.ErrNotPermitted
	// ErrKernelTooOld: the kernel lacks a feature the datapath needs.
	ErrKernelTooOld = loader.ErrKernelTooOld
	// ErrVerifier: the kernel's verifier rejected the program; the message carries
	// the last lines of its log.
	ErrVerifier = loader.ErrVerifier
	// ErrAttach: the kernel refused to attach the program to the interface.
	ErrAttach = loader.ErrAttachRefused
)

// tick is how often the live parser reads the clock: it sweeps when a flow can have
// ended (at most once a second) and hands out the flows the kernel ended.
const tick = 100 * time.Millisecond

// monotonic reads the clock the kernel program stamps packets with: precise, or the
// coarse one that follows the kernel's tick.
func monotonic(coarse bool) int64 {
	id := int32(unix.CLOCK_MONOTONIC)
	if coarse {
		id = unix.CLOCK_MONOTONIC_COARSE
	}
	var ts unix.Timespec
	unix.ClockGettime(id, &ts)
	return ts.Nano()
}

// openLive loads the kernel datapath and attaches it to the interface.
func (p *Parser) openLive(iface string, t userspace.Timeouts, o *Options, f *filter.Filter) error {
	mode := loader.Mode(o.Attach)
	prog, err := compileLive(f)
	if err != nil {
		return fmt.Errorf("open interface %s: %w", iface, err)
	}
	d, err := loader.Open(loader.Config{Interface: iface, Mode: mode, Timeouts: t, MaxFlows: uint32(o.MaxFlows), CoarseClock: o.CoarseClock, Filter: prog, HistoryLimit: o.Packets, Statistics: o.Statistics, PinDir: o.PinDir, RingBufferSize: o.RingBufferSize})
	if err != nil {
		return fmt.Errorf("open interface %s: %w", iface, err)
	}
	events, err := d.Events()
	if err != nil {
		d.Close()
		return fmt.Errorf("open interface %s: %w", iface, err)
	}
	// The kernel stamps packets with the monotonic clock; one reading of both clocks
	// maps it to wall time for the flows handed out.
	p.coarse = o.CoarseClock
	p.statistics = o.Statistics
	p.offset = time.Now().UnixNano() - monotonic(p.coarse)
	p.eng = userspace.NewEngine(d.Table(), t)
	hist := o.history()
	hist.Late = true
	p.eng.SetHistory(hist)
	p.log.Debug("attached", "interface", iface, "where", d.Attached())
	if d.Adopted() {
		p.log.Info("adopted the maps and links pinned in "+o.PinDir, "interface", iface)
	}

	var mu sync.Mutex // counters are read by Info while the run loop may be closing d
	var last userspace.DatapathCounters
	p.counters = func() userspace.DatapathCounters {
		mu.Lock()
		defer mu.Unlock()
		if d != nil {
			if c, err := d.Counters(); err == nil {
				last = c
			}
		}
		return last
	}
	p.setFilter = func(f *filter.Filter) error {
		prog, err := compileLive(f)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if d == nil {
			return ErrStopped
		}
		return d.SetFilter(prog)
	}
	p.run = func(ctx context.Context) error { return p.runLive(ctx, d, events) }
	p.release = func() error {
		mu.Lock()
		defer mu.Unlock()
		if c, err := d.Counters(); err == nil {
			last = c // Info keeps answering after the maps are gone
		}
		err := d.Close()
		d = nil
		return err
	}
	return nil
}

// compileLive compiles a filter for the kernel datapath, which sees Ethernet frames.
func compileLive(f *filter.Filter) (*filter.Program, error) {
	if f == nil {
		return nil, nil
	}
	return f.Compile(filter.Ethernet)
}

// runLive is the live parser's loop: the kernel counts; this goroutine keeps the
// clock, sweeps, and hands out flows; another reads the kernel's events into the
// engine. Before each sweep the reader catches up with the ring buffer, so the packet
// records of a flow the sweep ends are in its history. On stop it detaches the
// programs first, so that no packet is counted after the last flush, reads the events
// left, then flushes every flow with reason stopped.
func (p *Parser) runLive(ctx context.Context, d *loader.Datapath, events *loader.Events) error {
	read := make(chan error, 1)
	caughtUp := make(chan struct{})
	go func() { read <- p.readEvents(events, caughtUp) }()
	// catchUp waits until the reader has taken every event sent so far; false if
	// the reader stopped.
	catchUp := func() bool {
		if err := events.Flush(); err != nil {
			return false
		}
		select {
		case <-caughtUp:
			return true
		case err := <-read:
			read <- err
			return false
		}
	}
	// finish detaches, takes the events left, and flushes every flow; why is what
	// the run returns unless something fails on the way.
	finish := func(why error, detach bool) error {
		var detachErr error
		if detach {
			detachErr = d.Detach()
		}
		// Events the kernel sent before it stopped may still be in the ring
		// buffer: the reader takes them all.
		catchUp()
		events.Close()
		err := <-read
		p.eng.Tick(monotonic(p.coarse))
		p.deliver()
		p.eng.Flush(userspace.EndStopped, p.deliver)
		if err != nil {
			return err
		}
		if detachErr != nil {
			return fmt.Errorf("detach: %w", detachErr)
		}
		return why
	}
	watch := newInterfaceWatch(d.InterfaceIndex(), p.source)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for ticks := 0; ; ticks++ {
		select {
		case <-ctx.Done():
			return finish(ctx.Err(), true)
		case err := <-read:
			// The reader failed: stop as if asked to, and say why.
			p.Stop()
			if err != nil {
				p.log.Error("reading kernel events", "err", err)
			}
			read <- nil
		case <-ticker.C:
			catchUp()
			p.eng.Tick(monotonic(p.coarse))
			p.deliver()
			if ticks%interfaceCheck == 0 {
				if err := watch.check(p.log); err != nil {
					// The kernel detached the programs with the interface.
					return finish(err, false)
				}
			}
		}
	}
}

// interfaceCheck is how many ticks pass between looks at the interface's state.
const interfaceCheck = 10

// ErrInterfaceGone: the interface the parser counted on was deleted. The flows
// counted until then are reported first, with reason stopped.
var ErrInterfaceGone = errors.New("the network interface is gone")

// interfaceWatch notices the interface going down, coming up, and going away.
type interfaceWatch struct {
	index int
	name  string
	down  bool
}

func newInterfaceWatch(index int, name string) *interfaceWatch {
	return &interfaceWatch{index: index, name: name}
}

// check logs a change of state, and returns ErrInterfaceGone once the interface
// no longer exists.
func (w *interfaceWatch) check(log *slog.Logger) error {
	ifc, err := net.InterfaceByIndex(w.index)
	if err != nil || ifc.Name != w.name {
		log.Error("the interface was deleted: stopping", "interface", w.name)
		return fmt.Errorf("%s: %w", w.name, ErrInterfaceGone)
	}
	switch down := ifc.Flags&net.FlagUp == 0; {
	case down && !w.down:
		log.Warn("the interface is down: no packet arrives until it is up again; flows go on timing out", "interface", w.name)
	case !down && w.down:
		log.Warn("the interface is up again", "interface", w.name)
	}
	w.down = ifc.Flags&net.FlagUp == 0
	return nil
}

// eventBatch is how many events readEvents moves into the engine per hold of its
// lock, when that many are waiting: with packet records on, one lock per record
// would cost more than the record, and when lookups and snapshots take the lock
// too, the reader catches up in few turns.
const eventBatch = 1024

// readEvents moves the kernel's events into the engine until the ring buffer is
// closed or reading fails. Each time it has taken every event before a Flush, it
// says so on caughtUp.
func (p *Parser) readEvents(events *loader.Events, caughtUp chan<- struct{}) error {
	batch := make([]loader.Event, eventBatch)
	for {
		n := 0
		var err error
		for n < eventBatch {
			if err = events.Read(&batch[n]); err != nil {
				break
			}
			n++
			if !events.Pending() {
				break
			}
		}
		if n > 0 {
			p.eng.Apply(batch[:n], p.statistics)
		}
		switch {
		case err == nil:
		case loader.IsFlushed(err):
			caughtUp <- struct{}{}
		case loader.IsClosed(err):
			return nil
		default:
			return err
		}
	}
}
