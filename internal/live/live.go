// Package live runs the kernel datapath on the chosen interfaces for a parser: it
// loads the programs, attaches them to each chosen interface as it comes, reads the
// kernel's events into the engine, keeps the clock, sweeps, and at the end detaches
// and ends every flow. It is the live counterpart of offline.Replayer; the root
// package sees both through one interface.
package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/cgroups"
	"github.com/fparser/fparser/internal/linkwatch"
	"github.com/fparser/fparser/internal/loader"
	"github.com/fparser/fparser/internal/userspace"
)

// tick is how often the loop reads the clock: it sweeps when a flow can have ended
// (at most once a second) and hands out the flows the kernel ended.
const tick = 100 * time.Millisecond

// ErrClosed is what SetFilter returns once the datapath is released.
var ErrClosed = errors.New("the kernel datapath is closed")

// Config is what Open needs besides the filter.
type Config struct {
	// Interfaces are the interfaces to count on (NewSelection); Loader.Interface is
	// not used.
	Interfaces Selection
	Loader     loader.Config // Filter is set by Open
	History    userspace.HistoryConfig
	Logger     *slog.Logger
}

// Source is the kernel datapath attached to the chosen interfaces, with the engine
// over its flow map. Run is for one goroutine; Counters and SetFilter may be called
// meanwhile.
type Source struct {
	ifs        *interfaces // Run's, once Open has attached the first ones
	log        *slog.Logger
	eng        *userspace.Engine
	events     *loader.Events
	coarse     bool  // the kernel stamps packets with the coarse clock
	statistics bool  // the kernel's flow values carry the statistics, the TCP quality and the tunnel
	offset     int64 // the kernel's clock to Unix ns

	mu   sync.Mutex // d is released by Close while Counters may read it
	d    *loader.Datapath
	last userspace.DatapathCounters

	names interfaceNames
	// cgroups names the cgroups of the flows' senders; nil without cgroup v2.
	cgroups *cgroups.Resolver
}

// Process is the local process that sent a direction of a flow: the one that created
// its socket (PID 0 and no Name for a socket older than the datapath, or when the
// kernel refused the socket program), and the socket's cgroup v2 path.
type Process struct {
	PID    int
	Name   string
	Cgroup string
}

// Processes returns the local processes that sent each direction of the flow (zero
// where none was found); for a flow that ended, it removes them from the kernel.
func (s *Source) Processes(k *userspace.Key, st *userspace.State, ended bool) (out [2]Process) {
	s.mu.Lock()
	d := s.d
	s.mu.Unlock()
	if d == nil {
		return out
	}
	senders, ok := d.Senders(k, st, ended)
	for dir, sd := range senders {
		if !ok[dir] {
			continue
		}
		out[dir] = Process{PID: int(sd.PID), Name: sd.Comm}
		if s.cgroups != nil {
			out[dir].Cgroup, _ = s.cgroups.Path(sd.Cgroup)
		}
	}
	return out
}

// interfaceNames are the names of the interfaces attached to, by index, kept after
// they go: their flows outlive them.
type interfaceNames struct {
	mu sync.Mutex
	m  map[int]string
}

func (n *interfaceNames) set(index int, name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[int]string{}
	}
	n.m[index] = name
}

func (n *interfaceNames) get(index int) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[index]
}

// InterfaceName is the name of the interface with this index that the programs
// were attached to, now or before; "" for another.
func (s *Source) InterfaceName(index int) string { return s.names.get(index) }

// Open loads the kernel datapath, attaches it to the chosen interfaces that are
// there (every one named must be) and opens its events, with the filter f (nil:
// none). With patterns or All, Run attaches to the interfaces that appear later.
func Open(cfg Config, f *filter.Filter) (*Source, error) {
	what := cfg.Interfaces.String()
	fail := func(err error) (*Source, error) { return nil, fmt.Errorf("open interface %s: %w", what, err) }
	prog, err := compile(f)
	if err != nil {
		return fail(err)
	}
	cfg.Loader.Filter = prog
	cfg.Loader.Interface = ""
	d, err := loader.Load(cfg.Loader)
	if err != nil {
		return fail(err)
	}
	s := &Source{log: cfg.Logger, d: d, coarse: cfg.Loader.CoarseClock, statistics: cfg.Loader.Extended()}
	if attributing, processes, err := d.Attribution(); attributing {
		if root, err := cgroups.Mount(); err == nil {
			s.cgroups = cgroups.NewResolver(root)
		}
		if !processes {
			cfg.Logger.Warn("flows carry their senders' cgroups but no process: "+err.Error(), "interfaces", what)
		}
	} else if err != nil {
		cfg.Logger.Warn("flows are not attributed to local processes: "+err.Error(), "interfaces", what)
	}
	ifs := &interfaces{sel: cfg.Interfaces, d: d, log: cfg.Logger, attached: map[int]*attachedIface{}, names: &s.names, refused: map[int]string{}}
	s.ifs = ifs
	// Subscribed before the interfaces are listed, so that none that comes
	// between is missed.
	if ifs.watch, err = linkwatch.Watch(); err != nil {
		cfg.Logger.Warn("interfaces that come and go are noticed once a second: "+err.Error(), "interfaces", what)
	}
	if err := ifs.attachAll(); err != nil {
		ifs.close()
		d.Close()
		return fail(err)
	}
	if d.Adopted() {
		cfg.Logger.Info("adopted the maps and links pinned in "+cfg.Loader.PinDir, "interfaces", what)
		if pruned, err := d.PruneLinkPins(); err != nil || len(pruned) > 0 {
			cfg.Logger.Info("removed the pinned links of interfaces not counted on now", "pins", pruned, "error", err)
		}
	}
	events, err := d.Events()
	if err != nil {
		ifs.close()
		d.Close()
		return fail(err)
	}
	s.events = events
	// The kernel stamps packets with the monotonic clock; one reading of both clocks
	// maps it to wall time for the flows handed out.
	s.offset = time.Now().UnixNano() - monotonic(s.coarse)
	s.eng = userspace.NewEngine(d.Table(), cfg.Loader.Timeouts)
	hist := cfg.History
	hist.Late = true
	s.eng.SetHistory(hist)
	return s, nil
}

// Engine is the engine over the kernel's flow map.
func (s *Source) Engine() *userspace.Engine { return s.eng }

// ClockOffset turns the kernel's timestamps into Unix nanoseconds.
func (s *Source) ClockOffset() int64 { return s.offset }

// Counters reads the kernel's packet counters; once the datapath is released, the
// last ones read.
func (s *Source) Counters() (userspace.DatapathCounters, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d != nil {
		if c, err := s.d.Counters(); err == nil {
			s.last = c
		}
	}
	return s.last, true
}

// Interfaces are the names of the interfaces the programs are attached to, in the
// order attached; none once the datapath is released.
func (s *Source) Interfaces() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil {
		return nil
	}
	var names []string
	for _, ifc := range s.d.Interfaces() {
		names = append(names, ifc.Name)
	}
	return names
}

// SetFilter swaps the kernel's programs for ones with filter f, keeping the maps.
func (s *Source) SetFilter(f *filter.Filter) error {
	prog, err := compile(f)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil {
		return ErrClosed
	}
	return s.d.SetFilter(prog)
}

// Close releases the datapath, after Run has returned.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil {
		return nil
	}
	s.ifs.close()
	if c, err := s.d.Counters(); err == nil {
		s.last = c // Counters keeps answering after the maps are gone
	}
	err := s.d.Close()
	s.d = nil
	return err
}

// compile compiles a filter for the kernel datapath, which sees Ethernet frames.
func compile(f *filter.Filter) (*filter.Program, error) {
	if f == nil {
		return nil, nil
	}
	return f.Compile(filter.Ethernet)
}

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

// Run is the live loop: the kernel counts; this goroutine keeps the clock, sweeps,
// and calls deliver when flows have ended; another reads the kernel's events into
// the engine. Before each sweep the reader catches up with the ring buffer, so the
// packet records of a flow the sweep ends are in its history. When ctx is done it
// detaches the programs first, so that no packet is counted after the last flush,
// reads the events left, then ends every flow with reason stopped, and returns
// ctx.Err(). A failed read of the events, or the interface's deletion
// (ErrInterfaceGone), ends it the same way with that error.
func (s *Source) Run(ctx context.Context, deliver func()) error {
	d, events := s.d, s.events
	read := make(chan error, 1)
	caughtUp := make(chan struct{})
	go func() { read <- s.readEvents(caughtUp) }()
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
	// finish detaches, takes the events left, and ends every flow; why is what the
	// run returns unless something fails on the way.
	finish := func(why error, detach bool) error {
		var detachErr error
		if detach {
			detachErr = d.Detach()
		} else {
			d.MarkQuiet() // the programs went with the interface
		}
		// Events the kernel sent before it stopped may still be in the ring
		// buffer: the reader takes them all.
		catchUp()
		events.Close()
		err := <-read
		s.eng.Tick(monotonic(s.coarse))
		deliver()
		s.eng.Flush(userspace.EndStopped, deliver)
		if err != nil {
			return fmt.Errorf("reading kernel events: %w", err)
		}
		if detachErr != nil {
			return fmt.Errorf("detach: %w", detachErr)
		}
		return why
	}
	ifs := s.ifs
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for ticks := 1; ; ticks++ {
		select {
		case <-ctx.Done():
			return finish(ctx.Err(), true)
		case err := <-read:
			// The reader failed, or the ring buffer was closed under it: stop, and
			// say why.
			read <- err
			return finish(nil, true)
		case ev, ok := <-ifs.events():
			if !ok {
				s.log.Warn("interfaces that come and go are noticed once a second from now", "error", ifs.watch.Err())
				ifs.watch = nil
				continue
			}
			if err := ifs.handle(ev); err != nil {
				// The kernel detached the programs with the interface.
				return finish(err, false)
			}
		case <-ticker.C:
			catchUp()
			s.eng.Tick(monotonic(s.coarse))
			deliver()
			if ifs.watch == nil && ticks%interfaceCheck == 0 {
				if err := ifs.resync(); err != nil {
					return finish(err, false)
				}
			}
		}
	}
}

// interfaceCheck is how many ticks pass between looks at the interfaces, when there
// is no watcher.
const interfaceCheck = 10

// eventBatch is how many events readEvents moves into the engine per hold of its
// lock, when that many are waiting: with packet records on, one lock per record
// would cost more than the record, and when lookups and snapshots take the lock
// too, the reader catches up in few turns.
const eventBatch = 1024

// readEvents moves the kernel's events into the engine until the ring buffer is
// closed or reading fails. Each time it has taken every event before a Flush, it
// says so on caughtUp.
func (s *Source) readEvents(caughtUp chan<- struct{}) error {
	batch := make([]loader.Event, eventBatch)
	for {
		n := 0
		var err error
		for n < eventBatch {
			if err = s.events.Read(&batch[n]); err != nil {
				break
			}
			n++
			if !s.events.Pending() {
				break
			}
		}
		if n > 0 {
			s.eng.Apply(batch[:n], s.statistics)
		}
		switch {
		case err == nil:
		case errors.Is(err, loader.ErrFlushed):
			caughtUp <- struct{}{}
		case errors.Is(err, loader.ErrClosed):
			return nil
		default:
			return err
		}
	}
}
