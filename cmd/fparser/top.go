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
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/fparser/fparser"
)

const topUsage = `fparser top: a live view of the active flows, refreshed every second.

Usage:
  fparser top -i IFACE [options] [filter expression]
  fparser top -r FILE [--speed N | --fast] [options] [filter expression]

Keys: b sort by bytes, t by bytes/s, p by packets/s, n by packets, space pause,
q (or Ctrl-C) quit. A capture file is replayed at its own pace (--speed 1); the
view stays when it ends, until q.

Options:
`

// topOrder is a sort order of the view, and the key that selects it.
type topOrder struct {
	key   byte
	label string
}

// topOrders are the view's sort orders, in the order the key s cycles through them.
var topOrders = []topOrder{{'b', "bytes"}, {'t', "bytes/s"}, {'p', "pkt/s"}, {'n', "packets"}}

// topRow is a flow as the view shows it.
type topRow struct {
	f              fparser.Flow
	pps, bps       float64 // over the last refresh
	packets, bytes uint64
}

// topKey identifies a flow from one refresh to the next.
type topKey struct {
	proto    fparser.Protocol
	src, dst netip.AddrPort
	vlan     uint16
}

// topView is the state of the screen: what it shows and how.
type topView struct {
	source string
	order  int
	paused bool
	ended  string // why the parser stopped, once it has
	rows   []topRow
	info   fparser.Info
	pps    float64
	bps    float64
	at     time.Time
}

// runTop is "fparser top".
func runTop(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fparser top", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		read, iface, attach, filterExpr, sortName string
		speed                                     float64
		fast                                      bool
		interval, flowTimeout, finTimeout         time.Duration
	)
	fs.StringVar(&read, "r", "", "replay the capture `FILE`")
	fs.StringVar(&iface, "i", "", "watch the network interface `IFACE` (root, or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)")
	fs.StringVar(&attach, "attach", "auto", "with -i, where to attach (see fparser -h)")
	fs.StringVar(&filterExpr, "f", "", "pcap-filter `expression`")
	fs.StringVar(&sortName, "sort", "bytes", "initial sort: bytes, bytes/s, pkt/s or packets")
	fs.Float64Var(&speed, "speed", 1, "with -r, replay at this multiple of the capture's pace")
	fs.BoolVar(&fast, "fast", false, "with -r, replay as fast as possible")
	fs.DurationVar(&interval, "interval", time.Second, "refresh every `D`")
	fs.DurationVar(&flowTimeout, "flow-timeout", 600*time.Second, "end a flow after this long without packets")
	fs.DurationVar(&finTimeout, "fin-timeout", 30*time.Second, "end a flow this long after a FIN or RST")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), topUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if words := fs.Args(); len(words) > 0 {
		if filterExpr != "" {
			fmt.Fprintln(stderr, "fparser top: give the filter once: with -f or as trailing words")
			return 2
		}
		filterExpr = strings.Join(words, " ")
	}
	v := &topView{}
	switch {
	case (read == "") == (iface == ""):
		fmt.Fprintln(stderr, "fparser top: give one of -r FILE or -i IFACE")
		return 2
	case read != "":
		v.source = read
	default:
		v.source = iface
	}
	if v.order = slices.IndexFunc(topOrders, func(o topOrder) bool { return o.label == sortName }); v.order < 0 {
		fmt.Fprintf(stderr, "fparser top: --sort %q (want bytes, bytes/s, pkt/s or packets)\n", sortName)
		return 2
	}
	if interval < 100*time.Millisecond {
		fmt.Fprintln(stderr, "fparser top: --interval must be at least 100ms")
		return 2
	}
	out, ok := stdout.(*os.File)
	if !ok || !term.IsTerminal(int(out.Fd())) {
		fmt.Fprintln(stderr, "fparser top: standard output is not a terminal; for a listing use fparser -r or -i")
		return 2
	}
	if fast {
		speed = 0
	}
	if iface != "" {
		speed = 0
	}

	// Before anything is attached (interrupts).
	interrupted, stop := onInterrupt()
	defer stop()
	var logged strings.Builder // shown after the view closes
	p, err := fparser.New(v.source, &fparser.Options{
		FlowTimeout: flowTimeout, FinTimeout: finTimeout, Filter: filterExpr, Attach: attach,
		ReplaySpeed: speed,
		Logger:      slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintf(stderr, "fparser top: %v\n", err)
		return 1
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

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()

	prev := map[topKey][2]uint64{}
	refresh := func() {
		now := time.Now()
		dt := now.Sub(v.at).Seconds()
		v.at = now
		v.info = p.Info()
		v.rows = v.rows[:0]
		next := make(map[topKey][2]uint64, len(prev))
		v.pps, v.bps = 0, 0
		for f := range p.Flows() {
			k := topKey{f.Protocol, f.Src, f.Dst, f.VLAN}
			r := topRow{f: f, packets: f.PacketCount(), bytes: f.ByteCount()}
			if last, ok := prev[k]; ok && dt > 0 && dt < 1e6 {
				r.pps = float64(r.packets-last[0]) / dt
				r.bps = float64(r.bytes-last[1]) / dt
			}
			next[k] = [2]uint64{r.packets, r.bytes}
			v.pps += r.pps
			v.bps += r.bps
			v.rows = append(v.rows, r)
		}
		prev = next
	}
	draw := func() {
		w, h, err := term.GetSize(int(out.Fd()))
		if err != nil || w <= 0 || h <= 0 {
			w, h = 80, 24
		}
		v.sort()
		out.WriteString(v.render(w, h))
	}
	refresh()
	draw()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	exit := 0
	for quit := false; !quit; {
		select {
		case k, ok := <-keys:
			if !ok {
				keys = nil // stdin closed: keep watching until a signal
				continue
			}
			switch k {
			case 'q', 'Q', 3: // 3: Ctrl-C in raw mode
				quit = true
				continue
			case ' ':
				v.paused = !v.paused
			case 's':
				v.order = (v.order + 1) % len(topOrders)
			default:
				if i := slices.IndexFunc(topOrders, func(o topOrder) bool { return o.key == k }); i >= 0 {
					v.order = i
				}
			}
			draw()
		case <-winch:
			draw()
		case <-interrupted.Done():
			quit = true
		case err := <-runDone:
			v.ended = "capture replayed"
			if iface != "" {
				v.ended = "stopped"
			}
			if err != nil {
				v.ended = err.Error()
				exit = 1
			}
			runDone = nil
			refresh()
			draw()
		case <-tick.C:
			if !v.paused && runDone != nil {
				refresh()
			}
			draw()
		}
	}
	cancel()
	if runDone != nil {
		<-runDone
	}
	fmt.Fprint(out, "\033[?25h\033[?1049l")
	if logged.Len() > 0 {
		fmt.Fprint(stderr, logged.String())
	}
	return exit
}

// sort orders the rows by the view's order, largest first.
func (v *topView) sort() {
	key := func(r *topRow) float64 {
		switch topOrders[v.order].label {
		case "bytes/s":
			return r.bps
		case "pkt/s":
			return r.pps
		case "packets":
			return float64(r.packets)
		}
		return float64(r.bytes)
	}
	slices.SortStableFunc(v.rows, func(a, b topRow) int {
		if c := cmp.Compare(key(&b), key(&a)); c != 0 {
			return c
		}
		return a.f.FirstSeen.Compare(b.f.FirstSeen)
	})
}

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
	line(fmt.Sprintf("fparser top  %s  sort: %s%s", v.source, topOrders[v.order].label, state))
	line(fmt.Sprintf("%s  flows %d (tcp %d, udp %d)  %spkt/s  %sB/s", v.at.Format("15:04:05"),
		in.TCPFlows+in.UDPFlows, in.TCPFlows, in.UDPFlows, si(v.pps), si(v.bps)))
	line(fmt.Sprintf("packets %d  filtered %d  malformed %d  non-IP %d  lost events %d  evicted %d",
		in.PacketsSeen, in.Filtered, in.Malformed, in.NonIP, in.EventsLost, in.Evictions))
	line("keys: b bytes  t bytes/s  p pkt/s  n packets  space pause  q quit")
	// Columns: the two endpoints share what the numbers leave.
	const numbers = 5 + 1 + 8 + 1 + 8 + 1 + 8 + 1 + 8
	ep := max((w-numbers-2)/2, 12)
	line(fmt.Sprintf("%-5s %-*s %-*s %8s %8s %8s %8s", "PROTO", ep, "SOURCE", ep, "DESTINATION", "PACKETS", "BYTES", "PKT/S", "B/S"))
	for i := range v.rows {
		if lines >= h {
			break
		}
		r := &v.rows[i]
		line(fmt.Sprintf("%-5s %-*s %-*s %8s %8s %8s %8s", r.f.Protocol, ep, cutLeft(r.f.Src.String(), ep), ep, cutLeft(r.f.Dst.String(), ep),
			compact(float64(r.packets)), compact(float64(r.bytes)), compact(r.pps), compact(r.bps)))
	}
	b.WriteString("\033[J")
	return b.String()
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

// compact writes v in at most 8 columns: 1234567, then 12.3M and so on.
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
