package fparser

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/live"
	"github.com/fparser/fparser/internal/offline"
	"github.com/fparser/fparser/internal/userspace"
)

// Parser tracks the flows of one source. Its methods are safe for concurrent use.
type Parser struct {
	source     string
	log        *slog.Logger
	eng        *userspace.Engine
	src        source
	offset     int64 // turns the datapath's clock into Unix ns
	statistics bool  // the datapath keeps statistics (FlowStats may hold only the TCP quality)

	onTCP, onUDP atomic.Pointer[func(Flow)]
	onKill       func()
	panics       atomic.Uint64
	evictions    atomic.Uint64             // the highest Info.Evictions reported
	capLogged    bool                      // the history's memory cap was logged; touched by the reading goroutine only
	lostLogged   bool                      // likewise, lost packet records
	progress     func() (read, size int64) // a capture's replay only

	ctx     context.Context
	cancel  context.CancelFunc
	spare   []userspace.Record // the delivered batch, reused for the next
	started sync.Once
	runner  atomic.Uint64 // the goroutine that counts and runs the callbacks (goroutineID)
	done    chan struct{}
	err     error
}

// Open opens a parser on source (a capture file, Stdin or a network interface: see
// New) and starts it, as the original FParser does: it returns New's errors, and
// starting cannot fail. A capture file is replayed at once, at Options.ReplaySpeed
// (by default as fast as it can be read); use Wait to learn when it is done. An
// interface is counted until Stop or Close. opts may be nil.
//
// The callbacks may run before Open returns. A callback that needs the Parser itself
// should get it from New, which does not start it, followed by Start or Run.
func Open(source string, opts *Options) (*Parser, error) {
	p, err := New(source, opts)
	if err != nil {
		return nil, err
	}
	p.Start()
	return p, nil
}

// New opens a parser on source, a capture file, Stdin or a network interface,
// without starting it: nothing is counted and no callback runs until Start or Run.
// opts may be nil. A name that is both a file and an interface is the file.
//
// A capture file's header is read, and an interface's kernel programs are loaded and
// attached, here, so New returns their errors: for a directory, one matching
// syscall.EISDIR; for a name that is neither a file nor an interface, ErrNoSource;
// for a bad capture header, ErrBadCapture (ErrUnsupportedLink for a link type
// fparser does not read); for an option out of range or for the other kind of
// source, an *OptionError (ErrOption); for a bad filter, ErrFilter; live,
// ErrNotPermitted, ErrKernelTooOld, ErrVerifier or ErrAttach.
func New(source string, opts *Options) (*Parser, error) {
	p, err := newParser(source, opts)
	return p, publicError(err)
}

func newParser(source string, opts *Options) (*Parser, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	kind, err := sourceKind(source, len(o.Interfaces) > 0)
	if err != nil {
		return nil, err
	}
	if err := o.normalise(kind == sourceInterface); err != nil {
		return nil, err
	}
	f, err := parseFilter(o.Filter)
	if err != nil {
		return nil, err
	}
	p := &Parser{source: source, log: o.Logger, onKill: o.OnKill, statistics: o.Statistics}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.LogLevel}))
	}
	if o.OnTCP != nil {
		p.onTCP.Store(&o.OnTCP)
	}
	if o.OnUDP != nil {
		p.onUDP.Store(&o.OnUDP)
	}

	timeouts := userspace.Timeouts{Idle: o.FlowTimeout, FIN: o.FinTimeout, Active: o.ActiveTimeout}
	switch kind {
	case sourceInterface:
		chosen := o.Interfaces
		if source != "" {
			chosen = append([]string{source}, chosen...)
		}
		err = p.openLive(chosen, timeouts, &o, f)
	case sourceStdin:
		err = p.openFile(offline.OpenReader(os.Stdin, "standard input"))(timeouts, &o, f)
	default:
		err = p.openFile(offline.Open(source))(timeouts, &o, f)
	}
	if err != nil {
		return nil, err
	}
	p.eng = p.src.Engine()
	p.eng.SetDatapathCounters(p.src.Counters) // live, the kernel's
	p.offset = p.src.ClockOffset()
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.done = make(chan struct{})
	return p, nil
}

// The kinds of source New opens.
const (
	sourceFile = iota
	sourceStdin
	sourceInterface
)

// Stdin, as the source of New or Open, reads a capture from standard input, as
// tcpdump -r - does.
const Stdin = "-"

// AllInterfaces, as the source of New or Open or in Options.Interfaces, counts on
// every network interface but loopback, those that appear later included.
const AllInterfaces = live.All

// sourceKind says what source names: a file, standard input or interfaces (a name,
// a pattern, AllInterfaces, or "" when more are an option). A directory or a name
// that is neither is an error that says which.
func sourceKind(source string, moreInterfaces bool) (int, error) {
	if source == Stdin {
		return sourceStdin, nil
	}
	if source == "" && moreInterfaces {
		return sourceInterface, nil
	}
	fi, statErr := os.Stat(source)
	switch {
	case statErr == nil && !fi.IsDir():
		return sourceFile, nil
	case isInterface(source) || source == AllInterfaces || live.IsPattern(source):
		return sourceInterface, nil
	case statErr == nil:
		return 0, &fs.PathError{Op: "open", Path: source, Err: syscall.EISDIR}
	case !errors.Is(statErr, fs.ErrNotExist):
		return 0, fmt.Errorf("open %s: %w", source, statErr)
	}
	return 0, fmt.Errorf("open %s: %w", source, ErrNoSource)
}

func isInterface(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// openFile returns what sets the parser up to replay src, the capture just opened
// (or the error of opening it, which names the capture already).
func (p *Parser) openFile(src *offline.Source, openErr error) func(userspace.Timeouts, *Options, *filter.Filter) error {
	return func(t userspace.Timeouts, o *Options, f *filter.Filter) error {
		if openErr != nil {
			return openErr
		}
		r := offline.NewReplayer(src, offline.ReplayConfig{Timeouts: t, History: o.history(), Snaplen: o.Snaplen, Statistics: o.Statistics, TCPQuality: o.TCPQuality, Decap: o.Decap, Speed: o.ReplaySpeed})
		if err := r.SetFilter(f); err != nil {
			r.Close()
			return err
		}
		p.src, p.progress = r, r.Progress
		return nil
	}
}

// CompileFilter compiles expr (DefaultFilter when empty) for the link type of the
// capture file at capture, or for Ethernet when capture is "" or a pcapng file, whose
// interfaces each have their own: the classic BPF program a capture's replay runs
// (package filter; its DDD method prints it in tcpdump -ddd's form, as fparser
// --dump-filter does). A bad expression's error matches ErrFilter; a capture that
// cannot be read gives the error of opening it (an *fs.PathError, or ErrBadCapture).
func CompileFilter(expr, capture string) (*filter.Program, error) {
	prog, err := compileFilter(expr, capture)
	return prog, publicError(err)
}

func compileFilter(expr, capture string) (*filter.Program, error) {
	if strings.TrimSpace(expr) == "" {
		expr = DefaultFilter
	}
	link := filter.Ethernet
	if capture != "" {
		src, err := offline.Open(capture)
		if err != nil {
			return nil, err
		}
		if lt, ok := src.LinkType(); ok {
			link = filter.Link{Type: lt, BigEndian: src.BigEndian()}
		}
		src.Close()
	}
	return filter.Compile(expr, link)
}

// parseFilter parses a filter option; "" is no filter.
func parseFilter(expr string) (*filter.Filter, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, nil
	}
	return filter.Parse(expr)
}

// SetFilter replaces the packet filter, before the parser starts or while it runs
// (see Options.Filter; "" counts everything again). No flow and no count is lost:
// live, the kernel's programs are swapped in place, keeping their maps; offline, the
// new filter decides the next packet when it is set from a callback, and otherwise
// applies within a batch of packets (at most 4096). A bad expression returns an
// error matching ErrFilter, and the old filter stays; a parser that has stopped or
// finished returns ErrStopped.
func (p *Parser) SetFilter(expr string) error {
	f, err := parseFilter(expr)
	if err != nil {
		return err
	}
	if p.stopped() {
		return ErrStopped
	}
	err = p.src.SetFilter(f)
	if errors.Is(err, live.ErrClosed) {
		return ErrStopped
	}
	return err
}

// stopped reports whether the parser has been stopped or has finished: no packet
// counts any more.
func (p *Parser) stopped() bool {
	if p.ctx.Err() != nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts counting in the background. Calling it again does nothing.
func (p *Parser) Start() { p.started.Do(p.start) }

// Run starts the parser if it is not running and blocks until it has finished, like
// Wait, and returns the capture's error. When ctx is done first, Run stops the
// parser, waits for the stopped flows and the kill callback, and returns ctx.Err()
// (unless the capture failed meanwhile: then its error), as WaitContext does; on a
// parser that had finished already, it returns its result, as Wait does.
// Called from one of the parser's callbacks, it returns an error matching
// ErrInCallback at once.
func (p *Parser) Run(ctx context.Context) error {
	if err := p.inCallback("Run"); err != nil {
		return err
	}
	select {
	case <-p.done: // finished already: its own result, whatever ctx says
		return p.err
	default:
	}
	if ctx.Err() != nil {
		p.Stop() // done already: not a packet counts, however fast the source
		<-p.done
		if p.err != nil {
			return p.err
		}
		return ctx.Err()
	}
	p.Start()
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.Stop()
		<-p.done
		if p.err != nil {
			return p.err
		}
		return ctx.Err()
	}
}

func (p *Parser) start() {
	p.log.Debug("fparser started", "source", p.source)
	go func() {
		defer close(p.done)
		p.runner.Store(goroutineID())
		err := p.src.Run(p.ctx, p.deliver)
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		p.err = publicError(err)
		if p.onKill != nil {
			p.call(p.onKill)
		}
		if rerr := p.src.Close(); rerr != nil && p.err == nil {
			p.err = publicError(rerr)
		}
		p.log.Debug("fparser stopped", "source", p.source, "err", err)
	}()
}

// deliver hands the flows that ended to the callbacks, in end order. It runs on the
// goroutine that counts, right after the flows end and before the next packet
// counts, outside the engine's lock, so a callback sees the parser as it was when its
// flow ended and may call any method.
func (p *Parser) deliver() {
	if p.eng.HistoryOn() && !(p.capLogged && p.lostLogged) {
		st := p.eng.HistoryStats()
		if st.Capped > 0 && !p.capLogged {
			p.capLogged = true
			p.log.Warn("packet history reached MaxPacketMemory: storing stopped; flows that miss packets say so", "bytes", st.Bytes)
		}
		if st.Lost > 0 && !p.lostLogged {
			p.lostLogged = true
			p.log.Warn("packet records lost: the kernel's ring buffer was full; flows that miss packets say so, Info.PacketsNotStored counts them", "lost", st.Lost)
		}
	}
	recs := p.eng.TakeEnded(p.spare)
	if recs == nil {
		return
	}
	for i := range recs {
		r := &recs[i]
		f := p.flowOf(r, true)
		cb := p.onUDP.Load()
		if f.Protocol == TCP {
			cb = p.onTCP.Load()
		}
		if cb != nil {
			p.callFlow(*cb, &f)
		}
	}
	p.spare = userspace.Recycle(recs) // keeps neither the flows' histories nor a burst's room
}

// call runs a callback, recovering and counting a panic so that one bad callback
// does not lose the flows after it.
func (p *Parser) call(fn func()) {
	defer p.recoverCallback()
	fn()
}

// callFlow is call for a flow's callback. The flow goes by pointer and the callback
// gets a copy: a closure over it would put each ended flow on the heap.
func (p *Parser) callFlow(fn func(Flow), f *Flow) {
	defer p.recoverCallback()
	fn(*f)
}

func (p *Parser) recoverCallback() {
	if r := recover(); r != nil {
		p.panics.Add(1)
		p.log.Error("callback panicked", "panic", r)
	}
}

// SetTCPCallback replaces the function that receives ended TCP flows; nil removes it.
// It is safe to call while the parser runs, from a callback too.
func (p *Parser) SetTCPCallback(fn func(Flow)) { p.setCallback(&p.onTCP, fn) }

// SetUDPCallback replaces the function that receives ended UDP flows; nil removes it.
// It is safe to call while the parser runs, from a callback too.
func (p *Parser) SetUDPCallback(fn func(Flow)) { p.setCallback(&p.onUDP, fn) }

func (p *Parser) setCallback(to *atomic.Pointer[func(Flow)], fn func(Flow)) {
	if fn == nil {
		to.Store(nil)
		return
	}
	to.Store(&fn)
}

// Stop ends the parser: every active flow is delivered with reason stopped, then the
// kill callback runs. Stop returns at once and may be called any number of times, from
// any goroutine, callbacks included; Wait blocks until the work is done. Called from
// a callback, it stops a replay before the next packet; from another goroutine,
// within a batch of packets (at most 4096).
func (p *Parser) Stop() {
	p.cancel()
	p.Start() // a parser stopped before it started still ends, and runs OnKill once
}

// Close stops the parser and waits until the kill callback has run. It returns the
// capture's error, like Wait. A callback of the parser cannot wait for itself: called
// from one, Close stops the parser, as Stop does, and returns an error matching
// ErrInCallback at once.
func (p *Parser) Close() error {
	p.Stop()
	if err := p.inCallback("Close"); err != nil {
		return err
	}
	<-p.done
	return p.err
}

// Wait blocks until the parser has finished: the source is exhausted or the parser
// was stopped, every flow was delivered and the kill callback has returned. It returns
// the capture's error, nil after a clean end or a Stop. Errors about the capture file
// match ErrBadCapture. Called from one of the parser's callbacks, which the parser
// would have to finish first, it returns an error matching ErrInCallback at once.
func (p *Parser) Wait() error {
	if err := p.inCallback("Wait"); err != nil {
		return err
	}
	<-p.done
	return p.err
}

// WaitContext is Wait that gives up when ctx is done, returning ctx's error; the
// parser keeps running. Once the parser has finished, it returns its result, as Wait
// does, whatever ctx says. Called from one of the parser's callbacks, it returns an
// error matching ErrInCallback at once.
func (p *Parser) WaitContext(ctx context.Context) error {
	if err := p.inCallback("WaitContext"); err != nil {
		return err
	}
	select {
	case <-p.done: // finished: its own result, whatever ctx says
		return p.err
	default:
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the parser has finished, as Wait describes. A callback that
// blocks until it is closed waits forever.
func (p *Parser) Done() <-chan struct{} { return p.done }

// inCallback returns an ErrInCallback error for method when the caller is the
// goroutine that runs the parser's callbacks, which cannot wait for itself to finish.
func (p *Parser) inCallback(method string) error {
	if id := p.runner.Load(); id != 0 && id == goroutineID() {
		return fmt.Errorf("fparser: %s %w", method, ErrInCallback)
	}
	return nil
}

// goroutineID returns the calling goroutine's number, read from the first line of
// its stack trace ("goroutine 7 [running]:"), or 0 if that cannot be read. Go gives
// no other way to tell that a call comes from the goroutine that runs the callbacks;
// ids are never reused. It costs a microsecond or so, and only the methods that wait
// for the parser ask.
func goroutineID() uint64 {
	var buf [64]byte
	b, ok := bytes.CutPrefix(buf[:runtime.Stack(buf[:], false)], []byte("goroutine "))
	if !ok {
		return 0
	}
	var id uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

// Flows iterates over the active flows, in no particular order. It reads a consistent
// snapshot first, so the loop body may call the parser's methods.
func (p *Parser) Flows() iter.Seq[Flow] {
	return func(yield func(Flow) bool) {
		for _, r := range p.eng.Snapshot(nil) {
			if !yield(p.flowOf(&r, false)) {
				return
			}
		}
	}
}

// Progress reports how much of a capture file has been read: bytes read (of the
// compressed file, for gzip) and the file's size. Reading runs ahead of the replay
// by a buffer (a small capture is read whole at New), so it is how far the reading
// has come, not the replay. size is 0 for Stdin and other pipes; both are 0 for an
// interface.
// Safe to call at any time, from any goroutine.
func (p *Parser) Progress() (read, size int64) {
	if p.progress == nil {
		return 0, 0
	}
	return p.progress()
}

// SortOrder orders flows for FlowsSorted and Compare, largest first.
type SortOrder uint8

// Sort orders.
const (
	Unsorted     SortOrder = iota // FlowsSorted: the table's order, as Flows; Compare: see there
	ByPackets                     // packets in both directions
	ByBytes                       // bytes in both directions
	ByPacketRate                  // Flow.PacketRate
	ByByteRate                    // Flow.ByteRate
)

var sortOrderNames = [...]string{ByPackets: "packets", ByBytes: "bytes", ByPacketRate: "pps", ByByteRate: "bps"}

// String is the order's name, as ParseSortOrder reads it, "unsorted" for Unsorted,
// or SortOrder(N) for a value that is none of the orders.
func (o SortOrder) String() string {
	switch {
	case o == Unsorted:
		return "unsorted"
	case o.valid():
		return sortOrderNames[o]
	}
	return fmt.Sprintf("SortOrder(%d)", uint8(o))
}

func (o SortOrder) valid() bool { return int(o) < len(sortOrderNames) && sortOrderNames[o] != "" }

// ParseSortOrder reads a sort order by the name String gives it: packets, bytes, pps
// (ByPacketRate) or bps (ByByteRate, bytes per second), in any case. "unsorted" is
// refused: it is no order to sort by. The error matches ErrOption.
func ParseSortOrder(name string) (SortOrder, error) {
	for o, n := range sortOrderNames {
		if n != "" && strings.EqualFold(n, name) {
			return SortOrder(o), nil
		}
	}
	return 0, fmt.Errorf("%w: sort order %q (want packets, bytes, pps or bps)", ErrOption, name)
}

// Compare orders a and b by o, largest first, then by first packet and endpoints,
// so that the order is total and repeatable: slices.SortFunc(flows, o.Compare)
// sorts a []Flow. Unsorted, and a value that is none of the orders, compare by
// first packet and endpoints alone (FlowsSorted panics on the latter).
func (o SortOrder) Compare(a, b Flow) int {
	return o.compare(&a, &b)
}

func (o SortOrder) compare(a, b *Flow) int {
	var c int
	switch o {
	case ByPackets:
		c = cmp.Compare(b.PacketCount(), a.PacketCount())
	case ByBytes:
		c = cmp.Compare(b.ByteCount(), a.ByteCount())
	case ByPacketRate:
		c = cmp.Compare(b.PacketRate, a.PacketRate)
	case ByByteRate:
		c = cmp.Compare(b.ByteRate, a.ByteRate)
	}
	if c != 0 {
		return c
	}
	if c = a.FirstSeen.Compare(b.FirstSeen); c != 0 {
		return c
	}
	if c = a.Src.Compare(b.Src); c != 0 {
		return c
	}
	if c = a.Dst.Compare(b.Dst); c != 0 {
		return c
	}
	return cmp.Compare(a.Protocol, b.Protocol)
}

// FlowsSorted yields the active flows sorted by o, largest first, as the original
// FParser's flow_iter(sort_order). It reads them all first, as Flows does.
// FlowsSorted(Unsorted) is Flows. An order that is none of the constants is a
// programming error: FlowsSorted panics, naming it.
func (p *Parser) FlowsSorted(o SortOrder) iter.Seq[Flow] {
	if o == Unsorted {
		return p.Flows()
	}
	if !o.valid() {
		panic(fmt.Sprintf("fparser: FlowsSorted: SortOrder(%d) is not a sort order", uint8(o)))
	}
	return func(yield func(Flow) bool) {
		recs := p.eng.Snapshot(nil)
		flows := make([]Flow, len(recs))
		for i := range recs {
			flows[i] = p.flowOf(&recs[i], false)
		}
		slices.SortFunc(flows, func(a, b Flow) int { return o.compare(&a, &b) })
		for _, f := range flows {
			if !yield(f) {
				return
			}
		}
	}
}

// FindTCPFlow returns the active, untagged TCP flow between a and b, given in either
// direction. It costs one hash lookup.
func (p *Parser) FindTCPFlow(a, b netip.AddrPort) (Flow, bool) { return p.FindFlow(TCP, 0, a, b) }

// FindUDPFlow returns the active, untagged UDP flow between a and b, given in either
// direction.
func (p *Parser) FindUDPFlow(a, b netip.AddrPort) (Flow, bool) { return p.FindFlow(UDP, 0, a, b) }

// FindFlow returns the active flow of protocol proto on VLAN vlan between a and b,
// given in either direction.
func (p *Parser) FindFlow(proto Protocol, vlan uint16, a, b netip.AddrPort) (Flow, bool) {
	k := userspace.KeyOf(uint8(proto), vlan, a, b)
	r, ok := p.eng.LookupRecord(&k)
	if !ok {
		return Flow{}, false
	}
	return p.flowOf(&r, false), true
}
