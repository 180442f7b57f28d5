package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/fparser/fparser"
)

const topUsage = `fparser top: a live view of the active flows, refreshed every second.

Usage:
  fparser top -i IFACE [options] [filter expression]
  fparser top -r FILE [--speed N | --fast] [options] [filter expression]

Keys: n sorts by packets, b by bytes, p by pps (packets per second), t by bps
(bytes per second), s by the next of these; space pauses, q (or Ctrl-C) quits. The
orders are those of fparser --sort, the rates those over the last refresh.

A capture file is replayed at its own pace (--speed 1), and the clock and the rates
are the capture's. When it ends, the flows it ended stay on the screen, marked *,
until q. Counters of the kernel datapath (lost events, evicted flows) are shown
with -i only.

Options:
`

// topOrder is a sort order of the view, and the key that selects it.
type topOrder struct {
	key   byte
	order fparser.SortOrder
}

// topOrders are the view's sort orders, with the key that selects each, in the order
// the key s cycles through them: the listing's orders (fparser --sort), so that a
// name means the same in both.
var topOrders = []topOrder{{'n', fparser.ByPackets}, {'b', fparser.ByBytes}, {'p', fparser.ByPacketRate}, {'t', fparser.ByByteRate}}

// topSortAliases are the names the view's orders had before they took the listing's,
// still accepted so that command lines written for them keep working.
var topSortAliases = map[string]fparser.SortOrder{"bytes/s": fparser.ByByteRate, "pkt/s": fparser.ByPacketRate}

// parseTopSort reads --sort: a name fparser.ParseSortOrder knows, or an alias.
func parseTopSort(name string) (fparser.SortOrder, error) {
	if o, ok := topSortAliases[strings.ToLower(name)]; ok {
		return o, nil
	}
	o, err := fparser.ParseSortOrder(name)
	if err != nil {
		return 0, usagef("--sort %s: want packets, bytes, pps or bps", flagValue(name))
	}
	return o, nil
}

// topRow is a flow as the view shows it.
type topRow struct {
	f              fparser.Flow
	pps, bps       float64 // over the last refresh, by the view's clock
	packets, bytes uint64
	ended          bool // shown at the parser's end, when every flow has ended
}

// topKey identifies a flow from one refresh to the next.
type topKey struct {
	proto    fparser.Protocol
	src, dst netip.AddrPort
	vlan     uint16
}

// topCount is a flow's counters at a refresh, and its rates then: rates carry over
// a refresh whose clock did not move.
type topCount struct {
	packets, bytes uint64
	pps, bps       float64
}

// topView is the state of the screen: what it shows and how.
type topView struct {
	source   string
	live     bool // an interface: the kernel's counters apply, and the wall clock
	order    fparser.SortOrder
	paused   bool
	ended    string // why the parser stopped, once it has
	rows     []topRow
	info     fparser.Info
	pps, bps float64
	at       time.Time // the clock of the last refresh: zero until it is known
}

// topConfig is the command line of fparser top.
type topConfig struct {
	read, attach, filter              string
	ifaces                            interfaceList
	order                             fparser.SortOrder
	speed                             float64
	interval, flowTimeout, finTimeout time.Duration
}

// runTop is "fparser top". Its exit statuses are the listing's: 2 for a command line
// that cannot be done, 1 for a failure while it runs.
func runTop(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	c, err := parseTopArgs(args, stdout)
	if err == nil && c == nil {
		return exitOK // -h
	}
	if err == nil {
		err = c.run(stdin, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fparser top: %s\n", errorMessage(err))
		return exitCode(err)
	}
	return exitOK
}

// parseTopArgs reads top's command line. It returns a nil config without error once
// it has printed the usage (-h).
func parseTopArgs(args []string, stdout io.Writer) (*topConfig, error) {
	c := &topConfig{}
	fs := flag.NewFlagSet("fparser top", flag.ContinueOnError)
	var sortName string
	var fast bool
	fs.StringVar(&c.read, "r", "", "replay the capture `FILE` (pcap or pcapng, optionally gzip)")
	fs.Var(&c.ifaces, "i", "watch the network interface `IFACE` (root, or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON); again for more, as names, patterns or all, as fparser -i")
	fs.StringVar(&c.attach, "attach", "auto", "with -i, where to attach: "+strings.Join(fparser.AttachModes, ", ")+" (see fparser -h)")
	fs.StringVar(&c.filter, "f", "", "pcap-filter `expression` (default: all IPv4 and IPv6)")
	fs.StringVar(&sortName, "sort", "bytes", "sort by `ORDER` first: packets, bytes, pps or bps (bytes per second), as fparser --sort")
	c.speed = 1
	fs.Var((*speedValue)(&c.speed), "speed", "with -r, replay at `N` times the capture's pace")
	fs.BoolVar(&fast, "fast", false, "with -r, replay as fast as possible")
	durationFlag(fs, &c.interval, "interval", time.Second, "refresh every `D` (at least 100ms)")
	durationFlag(fs, &c.flowTimeout, "flow-timeout", fparser.DefaultFlowTimeout, "end a flow after `D` without packets")
	durationFlag(fs, &c.finTimeout, "fin-timeout", fparser.DefaultFinTimeout, "end a flow `D` after its last packet once FIN or RST was seen")
	words, help, err := parseFlags(fs, args, stdout, printUsage(fs, topUsage))
	if err != nil || help {
		return nil, err
	}
	set := setFlags(fs)
	if len(words) > 0 {
		if c.filter != "" {
			return nil, usagef("give the filter once: with -f or as trailing words")
		}
		c.filter = strings.Join(words, " ")
	}
	switch {
	case c.read != "" && len(c.ifaces) > 0:
		return nil, usagef("-r and -i exclude each other")
	case c.read == "" && len(c.ifaces) == 0:
		return nil, usagef("nothing to watch: give -r FILE or -i IFACE (see fparser top -h)")
	case c.read == fparser.Stdin:
		return nil, usagef("-r -: the view reads its keys from standard input; give a capture file")
	case set["speed"] && fast:
		return nil, usagef("--speed and --fast exclude each other")
	}
	for _, check := range []error{
		onlyWith(set, len(c.ifaces) > 0, "is for -i, not -r: a capture file has no kernel datapath", "attach"),
		onlyWith(set, c.read != "", "is for -r: an interface is watched as its packets come", "speed", "fast"),
	} {
		if check != nil {
			return nil, check
		}
	}
	if err := checkPatterns(c.ifaces); err != nil {
		return nil, err
	}
	if c.order, err = parseTopSort(sortName); err != nil {
		return nil, err
	}
	if c.speed <= 0 {
		return nil, usagef("--speed %v: want a positive multiple (--fast for as fast as possible)", c.speed)
	}
	if fast || len(c.ifaces) > 0 {
		c.speed = 0 // the library's "as fast as possible"; an interface takes none
	}
	if c.interval < 100*time.Millisecond {
		return nil, usagef("--interval %v: want at least 100ms", c.interval)
	}
	return c, nil
}

// run opens the source and shows the view on stdout, a terminal, until q, Ctrl-C or
// SIGTERM. It returns the parser's error, once the view is closed.
func (c *topConfig) run(stdin *os.File, stdout, stderr io.Writer) error {
	source, err := openSource(&config{read: c.read, ifaces: c.ifaces})
	if err != nil {
		return err
	}
	out, ok := stdout.(*os.File)
	if !ok || !term.IsTerminal(int(out.Fd())) {
		return errors.New("standard output is not a terminal; for a listing use fparser -r or -i")
	}

	// Before anything is attached (interrupts).
	interrupted, stop := onInterrupt()
	defer stop()
	var logged syncBuilder // shown after the view closes, which would hide it
	t, err := newTop(source, c, slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}

	// The screen: the alternate buffer, no cursor, keys one by one.
	if term.IsTerminal(int(stdin.Fd())) {
		if old, err := term.MakeRaw(int(stdin.Fd())); err == nil {
			defer term.Restore(int(stdin.Fd()), old)
		}
	}
	fmt.Fprint(out, "\033[?1049h\033[?25l")
	defer fmt.Fprint(out, "\033[?25h\033[?1049l")

	keys := make(chan byte)
	go func() {
		b := make([]byte, 1)
		for {
			if n, err := stdin.Read(b); err != nil || n == 0 {
				close(keys)
				return
			}
			keys <- b[0]
		}
	}()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)

	err = t.loop(topScreen{
		out: out,
		size: func() (int, int) {
			w, h, err := term.GetSize(int(out.Fd()))
			if err != nil || w <= 0 || h <= 0 {
				return 80, 24
			}
			return w, h
		},
		keys:   keys,
		resize: winch,
		quit:   interrupted.Done(),
	})
	fmt.Fprint(out, "\033[?25h\033[?1049l")
	fmt.Fprint(stderr, logged.String())
	return err
}

// speedValue is --speed, whose error says what is wanted: the flag package's says
// only "parse error", which would be read as a whole number wanted.
type speedValue float64

func (s *speedValue) String() string { return strconv.FormatFloat(float64(*s), 'g', -1, 64) }

func (s *speedValue) Set(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return errors.New("want a number, such as 10 or 0.5")
	}
	*s = speedValue(f)
	return nil
}

// syncBuilder is a strings.Builder that the parser's goroutine may write while
// another reads it.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// top is the view and the parser it watches.
type top struct {
	p        *fparser.Parser
	interval time.Duration
	view     topView
	prev     map[topKey]topCount // at the last refresh
	origin   time.Time           // replay: a lower bound of the first packet's time
	lastRows []topRow            // the last refresh's rows, when it had any

	// Written by the parser's callbacks, on its goroutine.
	mu      sync.Mutex
	latest  time.Time      // the last packet of the flows that ended
	final   []fparser.Flow // the flows the capture's end or a stop ended
	flushed bool           // the parser is ending every flow: snapshots are partial
}

// newTop opens the source for the view: c's options, and callbacks that keep what
// the end of the parser takes out of the flow table.
func newTop(source string, c *topConfig, log *slog.Logger) (*top, error) {
	t := &top{
		interval: c.interval,
		view:     topView{source: source, live: len(c.ifaces) > 0, order: c.order},
		prev:     map[topKey]topCount{},
	}
	o := &fparser.Options{
		FlowTimeout: c.flowTimeout, FinTimeout: c.finTimeout, Filter: c.filter,
		Logger: log, OnTCP: t.ended, OnUDP: t.ended,
	}
	if t.view.live {
		o.Attach = c.attach
	} else {
		o.ReplaySpeed = c.speed
	}
	from := source
	if t.view.live {
		from, o.Interfaces = "", c.ifaces
	}
	p, err := fparser.New(from, o)
	if err != nil {
		return nil, err
	}
	t.p = p
	return t, nil
}

// ended receives each flow as it ends. The flows the capture's end (or a stop) ends
// are kept for the last screen: by then they are gone from the flow table, and the
// view would be empty without them.
func (t *top) ended(f fparser.Flow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f.LastSeen.After(t.latest) {
		t.latest = f.LastSeen
	}
	if f.EndReason == fparser.EndEndOfCapture || f.EndReason == fparser.EndStopped {
		t.flushed = true
		t.final = append(t.final, f)
	}
}

// topScreen is where the view goes, and what comes from the person watching it: a
// terminal, or a test.
type topScreen struct {
	out    io.Writer
	size   func() (w, h int)
	keys   <-chan byte      // closed at the end of the input
	resize <-chan os.Signal // the terminal's size changed
	quit   <-chan struct{}  // SIGINT or SIGTERM
}

// loop runs the parser and keeps the view on s until q (or Ctrl-C in raw mode) or
// s.quit. It returns the parser's error, or the screen's.
func (t *top) loop(s topScreen) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- t.p.Run(ctx) }()

	draw := func() error {
		w, h := s.size()
		t.view.sort()
		if _, err := io.WriteString(s.out, t.view.render(w, h)); err != nil {
			return fmt.Errorf("writing the view: %w", err)
		}
		return nil
	}
	t.refresh(time.Now())
	err := draw()
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	keys := s.keys
	var runErr error
	for err == nil {
		select {
		case k, ok := <-keys:
			if !ok {
				keys = nil // the input ended: keep watching until a signal
				continue
			}
			switch k {
			case 'q', 'Q', 3: // 3: Ctrl-C in raw mode
				cancel()
				if runDone != nil {
					<-runDone // a stop's own result: nothing went wrong
				}
				return runErr
			case ' ':
				t.view.paused = !t.view.paused
			case 's':
				i := slices.IndexFunc(topOrders, func(o topOrder) bool { return o.order == t.view.order })
				t.view.order = topOrders[(i+1)%len(topOrders)].order
			default:
				for _, o := range topOrders {
					if o.key == k {
						t.view.order = o.order
					}
				}
			}
			err = draw()
		case <-s.resize:
			err = draw()
		case <-s.quit:
			cancel()
			if runDone != nil {
				<-runDone
			}
			return runErr
		case runErr = <-runDone:
			runDone = nil
			t.view.ended = "capture replayed; * ended with it"
			if t.view.live {
				t.view.ended = "stopped; * ended then"
			}
			if runErr != nil {
				t.view.ended = runErr.Error()
			}
			t.finish(time.Now())
			err = draw()
		case <-tick.C:
			if !t.view.paused && runDone != nil && !t.flushing() {
				t.refresh(time.Now())
			}
			err = draw()
		}
	}
	cancel()
	if runDone != nil {
		<-runDone
	}
	return errors.Join(runErr, err)
}

// flushing says the parser has begun to end every flow: the flow table is emptying
// and the callbacks are receiving them, which the last screen shows instead.
func (t *top) flushing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.flushed
}

// refresh reads the active flows and the counters into the view.
func (t *top) refresh(wall time.Time) {
	flows := slices.Collect(t.p.Flows())
	t.update(flows, wall, false)
}

// finish shows the parser's end: the flows it ended, or, when it ended none (all
// had ended before), the rows last shown, all of them marked as ended.
func (t *top) finish(wall time.Time) {
	t.mu.Lock()
	flows := t.final
	t.final = nil
	t.mu.Unlock()
	if len(flows) > 0 {
		t.update(flows, wall, true)
		return
	}
	t.update(nil, wall, true)
	t.view.rows = append(t.view.rows[:0], t.lastRows...)
	for i := range t.view.rows {
		t.view.rows[i].ended = true
	}
	t.total()
}

// update puts flows into the view as of now, by the view's clock, with their rates
// since the last refresh.
func (t *top) update(flows []fparser.Flow, wall time.Time, ended bool) {
	// Info after the flows: its clock is then at least as late as any of their
	// packets, which captureClock needs.
	t.view.info = t.p.Info()
	t.mu.Lock()
	latest := t.latest
	t.mu.Unlock()
	for i := range flows {
		if flows[i].LastSeen.After(latest) {
			latest = flows[i].LastSeen
		}
	}
	clock := wall
	if !t.view.live {
		clock = t.captureClock(latest, t.view.info.Elapsed)
	}
	dt := 0.0
	if !t.view.at.IsZero() && !clock.IsZero() {
		dt = clock.Sub(t.view.at).Seconds()
	}
	t.view.rows = t.view.rows[:0]
	next := make(map[topKey]topCount, len(flows))
	for _, f := range flows {
		k := topKey{f.Protocol, f.Src, f.Dst, f.VLAN}
		c := topCount{packets: f.PacketCount(), bytes: f.ByteCount()}
		last, seen := t.prev[k]
		if c.packets < last.packets || c.bytes < last.bytes {
			last, seen = topCount{}, false // a new flow with the key of one that ended
		}
		switch {
		case dt > 0:
			// A flow not seen before began since the last refresh: all its
			// packets came in the interval.
			c.pps = float64(c.packets-last.packets) / dt
			c.bps = float64(c.bytes-last.bytes) / dt
		case seen:
			c.pps, c.bps = last.pps, last.bps // the clock stood still
		}
		next[k] = c
		t.view.rows = append(t.view.rows, topRow{f: f, packets: c.packets, bytes: c.bytes, pps: c.pps, bps: c.bps, ended: ended})
	}
	t.prev = next
	if !clock.IsZero() {
		t.view.at = clock
	}
	if len(t.view.rows) > 0 {
		t.lastRows = append(t.lastRows[:0], t.view.rows...)
	}
	t.total()
}

// total sums the rows' rates for the header.
func (t *top) total() {
	t.view.pps, t.view.bps = 0, 0
	for i := range t.view.rows {
		t.view.pps += t.view.rows[i].pps
		t.view.bps += t.view.rows[i].bps
	}
}

// captureClock is the replay's clock: the time of the packets being replayed, which
// the header shows and the rates are measured by, so that a replay at --speed 10 or
// --fast shows the capture's own rates. The parser's clock runs from the first
// packet (Info.Elapsed) and is never earlier than a packet counted, but the first
// packet's time is not told: it is at least latest−elapsed, and the highest such
// bound yet is kept. So the clock is never before the latest packet seen, nor later
// than the parser's; zero until a flow has been seen.
func (t *top) captureClock(latest time.Time, elapsed time.Duration) time.Time {
	if latest.IsZero() {
		return t.view.at
	}
	if o := latest.Add(-elapsed); o.After(t.origin) {
		t.origin = o
	}
	c := t.origin.Add(elapsed)
	if c.Before(latest) {
		c = latest
	}
	return c
}

// value is what the view's order sorts a row by: the column of that name.
func (v *topView) value(r *topRow) float64 {
	switch v.order {
	case fparser.ByPackets:
		return float64(r.packets)
	case fparser.ByPacketRate:
		return r.pps
	case fparser.ByByteRate:
		return r.bps
	}
	return float64(r.bytes)
}

// sort orders the rows by the view's order, largest first, then as SortOrder.Compare
// breaks ties: first packet, endpoints, protocol.
func (v *topView) sort() {
	slices.SortStableFunc(v.rows, func(a, b topRow) int {
		return cmp.Or(cmp.Compare(v.value(&b), v.value(&a)), a.f.FirstSeen.Compare(b.f.FirstSeen),
			a.f.Src.Compare(b.f.Src), a.f.Dst.Compare(b.f.Dst), cmp.Compare(a.f.Protocol, b.f.Protocol))
	})
}

// The columns of the numbers, wide enough for the widest value each takes:
// 9999999 packets, "999.9 MB", "999.9 k" packets per second, "999.9 MB/s".
const topNumbers = "%7s %8s %7s %10s"

// render draws the whole screen, w columns by h lines: every line cut to w, the
// rest of each line and of the screen cleared.
func (v *topView) render(w, h int) string {
	var b strings.Builder
	b.WriteString("\033[H")
	lines := 0
	line := func(s string) {
		if lines >= h {
			return
		}
		if lines > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString(cut(s, w))
		b.WriteString("\033[K")
		lines++
	}
	state := ""
	switch {
	case v.ended != "":
		state = "  [" + v.ended + "]"
	case v.paused:
		state = "  [paused]"
	}
	in := &v.info
	// The source last: the line may be cut, and it is what the person typed.
	line(fmt.Sprintf("fparser top  sort: %s%s  %s", v.order, state, v.source))
	// The flows the table shows, counted as it shows them: at the end these are
	// the flows that ended, which the parser's counts no longer hold.
	var tcp, udp int
	for i := range v.rows {
		if v.rows[i].f.Protocol == fparser.TCP {
			tcp++
		} else {
			udp++
		}
	}
	clock := "--:--:--"
	switch {
	case v.at.IsZero():
	case v.live:
		clock = v.at.Format("15:04:05")
	default:
		clock = v.at.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	line(fmt.Sprintf("%s  flows %d (tcp %d, udp %d)  %spkt/s  %sB/s", clock, tcp+udp, tcp, udp, topSI(v.pps), topSI(v.bps)))
	counters := fmt.Sprintf("packets %d  filtered %d  malformed %d  non-IP %d", in.PacketsSeen, in.Filtered, in.Malformed, in.NonIP)
	if v.live {
		// The kernel's: its ring buffer and its flow map. A replay has neither.
		counters += fmt.Sprintf("  lost events %d  evicted %d", in.EventsLost, in.Evictions)
	}
	line(counters)
	line("keys: n packets  b bytes  p pps  t bps  s next  space pause  q quit")
	// The two endpoints share what the numbers leave, and live, what the process
	// column leaves.
	numbers := 5 + 1 + 7 + 1 + 8 + 1 + 7 + 1 + 10
	header := fmt.Sprintf(topNumbers, "PACKETS", "BYTES", "PPS", "BPS")
	processes := v.live && w-numbers-2 >= 2*topEndpoint+1+topProcess
	if processes {
		numbers += 1 + max(topProcess, (w-numbers)/3)
		header += " PROCESS"
	}
	ep := max((w-numbers-2)/2, 12)
	line(fmt.Sprintf("%-5s %-*s %-*s ", "PROTO", ep, "SOURCE", ep, "DESTINATION") + header)
	for i := range v.rows {
		if lines >= h {
			break
		}
		r := &v.rows[i]
		proto := r.f.Protocol.String()
		if r.ended {
			proto += "*"
		}
		row := fmt.Sprintf("%-5s %-*s %-*s "+topNumbers, proto, ep, cutLeft(r.f.Src.String(), ep), ep, cutLeft(r.f.Dst.String(), ep),
			compact(float64(r.packets)), topSI(float64(r.bytes))+"B", strings.TrimSpace(topSI(r.pps)), topSI(r.bps)+"B/s")
		if p := r.f.Process; processes && !p.IsZero() {
			row += " " + processCell(p)
		}
		line(row)
	}
	b.WriteString("\033[J")
	return b.String()
}

// topEndpoint is the room an endpoint has at 80 columns, which the process column
// leaves it: the column is there when the screen is wide enough for both.
const topEndpoint = 18

// topProcess is the least room the process column takes from the endpoints: a
// process's name and id ("nginx[123456]"). It takes a third of what the numbers
// leave when that is more, for the cgroup that follows, cut at the screen's edge.
const topProcess = 22

// processCell is a flow's process as top shows it: name[pid] and the cgroup, or the
// cgroup alone for a socket older than the parser.
func processCell(p fparser.Process) string {
	if p.PID == 0 {
		return p.Cgroup
	}
	return fmt.Sprintf("%s[%d] %s", p.Name, p.PID, p.Cgroup)
}

// cut cuts s to w columns (the view writes ASCII only).
func cut(s string, w int) string {
	if len(s) > w {
		return s[:w]
	}
	return s
}

// cutLeft keeps the end of s, where the port is, marking the cut with "~".
func cutLeft(s string, w int) string {
	if len(s) <= w {
		return s
	}
	return "~" + s[len(s)-w+1:]
}

// compact writes a count in at most 7 columns: 1234567, then 12.3M and so on.
func compact(v float64) string {
	if v < 1e7 {
		return fmt.Sprintf("%.0f", v)
	}
	for _, p := range []struct {
		f float64
		s string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}} {
		if v >= p.f {
			return fmt.Sprintf("%.1f%s", v/p.f, p.s)
		}
	}
	return fmt.Sprintf("%.0f", v)
}

// topSI writes v with an SI prefix and a space before the unit that follows, as
// the listing's summary does: "540 ", "12.3 k", "1.5 M". The prefix is chosen
// after rounding, so that no value reads "1000.0 k".
func topSI(v float64) string {
	const prefixes = "kMGTP"
	i := -1
	for v >= 999.95 && i < len(prefixes)-1 {
		v /= 1000
		i++
	}
	if i < 0 {
		return strconv.FormatFloat(v, 'f', 0, 64) + " "
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + prefixes[i:i+1]
}
