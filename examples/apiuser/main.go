// Command apiuser replays a capture file (or counts on a network interface)
// with the fparser library and prints its flows, largest first.
//
// It was written from `go doc -all github.com/fparser/fparser` alone, and uses
// every exported name of that package: the root package's
// TestOutsideProgramUsesEveryExportedName checks that it does, and that it
// compiles.
//
// Usage:
//
//	apiuser [flags] CAPTURE|-|IFACE
package main

import (
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
	"sync"
	"syscall"
	"time"

	"github.com/fparser/fparser"
)

// endReasons are all the reasons a flow ends, in the order the summary prints
// them.
var endReasons = []fparser.EndReason{
	fparser.EndIdle,
	fparser.EndFIN,
	fparser.EndRST,
	fparser.EndReused,
	fparser.EndActive,
	fparser.EndEndOfCapture,
	fparser.EndStopped,
	fparser.EndEvicted, // no datapath reports it yet, says the doc
}

// sortOrders are the orders -sort takes.
var sortOrders = []fparser.SortOrder{
	fparser.Unsorted,
	fparser.ByPackets,
	fparser.ByBytes,
	fparser.ByPacketRate,
	fparser.ByByteRate,
}

// allFlags are the TCP flags, in the order the flag census prints them.
var allFlags = []fparser.TCPFlags{
	fparser.FIN, fparser.SYN, fparser.RST, fparser.PSH,
	fparser.ACK, fparser.URG, fparser.ECE, fparser.CWR,
}

type config struct {
	source      string
	filter      string
	refilter    string
	sort        fparser.SortOrder
	top         int
	stopAfter   int
	stats       bool
	deadline    time.Duration
	progress    time.Duration
	find        [2]netip.AddrPort
	findVLAN    uint
	hasFind     bool
	verbose     bool
	checkLegacy bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("apiuser", flag.ContinueOnError)
	fs.SetOutput(stderr)

	var names []string
	for _, o := range sortOrders[1:] {
		names = append(names, o.String())
	}
	var (
		flowTimeout   = fs.Duration("flow-timeout", fparser.DefaultFlowTimeout, "end a flow after this long without packets")
		finTimeout    = fs.Duration("fin-timeout", fparser.DefaultFinTimeout, "end a flow this long after its last packet once FIN or RST was seen")
		activeTimeout = fs.Duration("active-timeout", 0, "end a flow this long after its first packet (0: never)")
		filterExpr    = fs.String("f", "", "pcap-filter expression (for example "+fmt.Sprintf("%q", fparser.DefaultFilter)+"; default: no filter)")
		refilter      = fs.String("refilter", "", "replace the filter with this expression once the parser runs")
		dumpFilter    = fs.Bool("dump-filter", false, "print the compiled filter as tcpdump -ddd does, and exit")
		packets       = fs.Int("packets", 0, "keep the headers of the first N packets of each flow (-1: all)")
		maxMem        = fs.Int64("max-packet-memory", fparser.DefaultMaxPacketMemory, "bytes the packet histories of active flows may take")
		speed         = fs.Float64("speed", 0, "replay at this multiple of the capture's pace (0: as fast as possible)")
		stats         = fs.Bool("stats", false, "keep and print each direction's statistics")
		quality       = fs.Bool("tcp-quality", false, "measure and print each TCP flow's handshake RTT, retransmissions, out-of-order segments and zero windows")
		decap         = fs.Bool("decap", false, "open tunnels and count flows by their inner headers")
		snaplen       = fs.Int("s", 0, fmt.Sprintf("cut each frame to this many bytes (0: %d)", fparser.DefaultSnaplen))
		attach        = fs.String("attach", "", "live: where to attach: "+strings.Join(fparser.AttachModes, ", "))
		also          = fs.String("also", "", "live: more interfaces, comma-separated: names, patterns or "+fparser.AllInterfaces)
		pin           = fs.String("pin", "", "live: pin the kernel's maps and links in this BPF filesystem directory")
		ring          = fs.Int("ring", 0, fmt.Sprintf("live: ring buffer size in bytes (0: %d)", fparser.DefaultRingBufferSize))
		maxFlows      = fs.Int("max-flows", 0, fmt.Sprintf("live: size of the kernel's flow map (0: %d)", fparser.DefaultMaxFlows))
		coarse        = fs.Bool("coarse-clock", false, "live: stamp packets with the kernel's coarse clock")
		sortName      = fs.String("sort", "packets", "order of the flows printed: "+strings.Join(names, ", "))
		top           = fs.Int("top", 10, "with -progress, how many of the largest active flows to print")
		stopAfter     = fs.Int("stop-after", 0, "stop the parser once this many flows have ended (0: never)")
		deadline      = fs.Duration("deadline", 0, "stop the parser after this long (0: run until the source ends)")
		progress      = fs.Duration("progress", 0, "print progress and the largest active flows this often (0: never)")
		find          = fs.String("find", "", "with -progress, look up the active flow between two endpoints, \"A B\"")
		findVLAN      = fs.Uint("find-vlan", 0, "the VLAN of the flow -find looks up")
		jsonLog       = fs.Bool("json-log", false, "log as JSON rather than text")
		verbose       = fs.Bool("v", false, "log debug records and check the deprecated accessors")
		version       = fs.Bool("version", false, "print the library's version and exit")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}

	if *version {
		printVersion(stdout, fparser.Version())
		return 0
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: apiuser [flags] CAPTURE|-|IFACE")
		return 2
	}
	cfg := config{
		source:      fs.Arg(0),
		filter:      *filterExpr,
		refilter:    *refilter,
		top:         *top,
		stopAfter:   *stopAfter,
		stats:       *stats,
		deadline:    *deadline,
		progress:    *progress,
		findVLAN:    *findVLAN,
		verbose:     *verbose,
		checkLegacy: *verbose,
	}
	order, err := fparser.ParseSortOrder(*sortName)
	if err != nil {
		fmt.Fprintln(stderr, "apiuser:", err)
		return 2
	}
	cfg.sort = order
	if *find != "" {
		a, b, ok := strings.Cut(*find, " ")
		var errA, errB error
		cfg.find[0], errA = netip.ParseAddrPort(a)
		cfg.find[1], errB = netip.ParseAddrPort(b)
		if !ok || errA != nil || errB != nil {
			fmt.Fprintf(stderr, "apiuser: -find wants two endpoints, \"A B\": %v\n", errors.Join(errA, errB))
			return 2
		}
		cfg.hasFind = true
	}
	if *attach != "" && !slices.Contains(fparser.AttachModes, *attach) {
		fmt.Fprintf(stderr, "apiuser: -attach %q: want one of %s\n", *attach, strings.Join(fparser.AttachModes, ", "))
		return 2
	}

	if *dumpFilter {
		capture := cfg.source
		if _, err := os.Stat(capture); err != nil {
			capture = "" // an interface: the live datapath is Ethernet
		}
		prog, err := fparser.CompileFilter(cfg.filter, capture)
		if err != nil {
			return report(stderr, err)
		}
		fmt.Fprint(stdout, prog.DDD())
		return 0
	}

	opts := &fparser.Options{
		FlowTimeout:     *flowTimeout,
		FinTimeout:      *finTimeout,
		ActiveTimeout:   *activeTimeout,
		Filter:          cfg.filter,
		Packets:         *packets,
		ReplaySpeed:     *speed,
		Statistics:      *stats,
		TCPQuality:      *quality,
		Decap:           *decap,
		MaxPacketMemory: *maxMem,
		Snaplen:         *snaplen,
		Attach:          *attach,
		PinDir:          *pin,
		RingBufferSize:  *ring,
		MaxFlows:        *maxFlows,
		CoarseClock:     *coarse,
	}
	if *also != "" {
		opts.Interfaces = strings.Split(*also, ",")
	}
	if *packets < 0 {
		opts.Packets = fparser.AllPackets
	}
	// Logger wins over LogLevel; set one or the other.
	if *jsonLog {
		level := slog.LevelInfo
		if *verbose {
			level = slog.LevelDebug
		}
		opts.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	} else if *verbose {
		opts.LogLevel = slog.LevelDebug
	}
	if cfg.source == fparser.Stdin {
		fmt.Fprintln(stderr, "apiuser: reading a capture from standard input")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return replay(ctx, cfg, opts, stdout, stderr)
}

// collector keeps the flows handed to the callbacks.
type collector struct {
	mu     sync.Mutex
	flows  []fparser.Flow
	killed bool
}

func (c *collector) add(f fparser.Flow) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flows = append(c.flows, f)
	return len(c.flows)
}

func replay(ctx context.Context, cfg config, opts *fparser.Options, stdout, stderr io.Writer) int {
	var c collector
	opts.OnTCP = func(f fparser.Flow) { c.add(f) }
	opts.OnUDP = func(f fparser.Flow) { c.add(f) }
	opts.OnKill = func() {
		c.mu.Lock()
		c.killed = true
		c.mu.Unlock()
	}

	// A parser whose callbacks need it comes from New, then Start; otherwise
	// Open starts it at once.
	needsParser := cfg.stopAfter > 0 || cfg.refilter != "" || cfg.progress > 0
	var (
		p   *fparser.Parser
		err error
	)
	if !needsParser {
		p, err = fparser.Open(cfg.source, opts)
	} else {
		p, err = fparser.New(cfg.source, opts)
	}
	if err != nil {
		return report(stderr, err)
	}
	if cfg.stopAfter > 0 {
		stopping := func(f fparser.Flow) {
			if c.add(f) == cfg.stopAfter {
				p.Stop() // Stop, not Close: this runs in a callback
			}
		}
		p.SetTCPCallback(stopping)
		p.SetUDPCallback(stopping)
	}
	if needsParser {
		p.Start()
	}
	if cfg.refilter != "" {
		switch err := p.SetFilter(cfg.refilter); {
		case errors.Is(err, fparser.ErrStopped):
			fmt.Fprintln(stderr, "apiuser: the parser ended before -refilter applied")
		case err != nil:
			p.Stop()
			_ = p.Wait()
			return report(stderr, err)
		}
	}

	var wg sync.WaitGroup
	if cfg.progress > 0 {
		wg.Go(func() { monitor(ctx, p, cfg, stdout) })
	}

	if cfg.deadline > 0 {
		dctx, cancel := context.WithTimeout(ctx, cfg.deadline)
		err = p.WaitContext(dctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			p.Stop()
			err = p.Wait()
		}
	} else {
		err = p.Run(ctx) // already started: Run just waits, and stops on ^C
		if errors.Is(err, context.Canceled) {
			err = nil
		}
	}
	wg.Wait()
	if cerr := p.Close(); !errors.Is(cerr, err) {
		fmt.Fprintln(stderr, "apiuser: Close and Wait disagree:", cerr, err)
	}

	c.mu.Lock()
	flows := slices.Clone(c.flows)
	killed := c.killed
	c.mu.Unlock()
	if !killed {
		fmt.Fprintln(stderr, "apiuser: the kill callback did not run")
	}
	slices.SortFunc(flows, cfg.sort.Compare)
	fmt.Fprintf(stdout, "%d flows, by %s:\n", len(flows), cfg.sort)
	for _, f := range flows {
		printFlow(stdout, f, cfg)
	}
	printInfo(stdout, p.Info())
	if err != nil {
		return report(stderr, err)
	}
	return 0
}

// monitor prints the progress of p and its largest active flows until it is
// done.
func monitor(ctx context.Context, p *fparser.Parser, cfg config, w io.Writer) {
	t := time.NewTicker(cfg.progress)
	defer t.Stop()
	for {
		select {
		case <-p.Done():
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		read, size := p.Progress()
		active := 0
		for range p.Flows() {
			active++
		}
		info := p.Info()
		if size > 0 {
			fmt.Fprintf(w, "-- %d/%d bytes read (%.0f%%), %d active flows, %.0f packets/s\n",
				read, size, 100*float64(read)/float64(size), active, info.AvgPPS)
		} else {
			fmt.Fprintf(w, "-- %d active flows, %.0f packets/s\n", active, info.AvgPPS)
		}
		n := 0
		for f := range p.FlowsSorted(cfg.sort) {
			if n == cfg.top {
				break
			}
			n++
			fmt.Fprintf(w, "   %s %s <-> %s: %d packets, %d bytes\n",
				f.Protocol, f.Src, f.Dst, f.PacketCount(), f.ByteCount())
		}
		if cfg.hasFind {
			a, b := cfg.find[0], cfg.find[1]
			if f, ok := p.FindTCPFlow(a, b); ok {
				fmt.Fprintf(w, "   found TCP %s <-> %s: %d packets\n", f.Src, f.Dst, f.PacketCount())
			}
			if f, ok := p.FindUDPFlow(a, b); ok {
				fmt.Fprintf(w, "   found UDP %s <-> %s: %d packets\n", f.Src, f.Dst, f.PacketCount())
			}
			if cfg.findVLAN != 0 {
				for _, proto := range []fparser.Protocol{fparser.TCP, fparser.UDP} {
					if f, ok := p.FindFlow(proto, uint16(cfg.findVLAN), a, b); ok {
						fmt.Fprintf(w, "   found %s on VLAN %d: %d packets\n", proto, f.VLAN, f.PacketCount())
					}
				}
			}
		}
	}
}

func printVersion(w io.Writer, v fparser.VersionInfo) {
	fmt.Fprintln(w, v.String())
	fmt.Fprintf(w, "module %s, built with %s, kernel object %s\n", v.Module, v.Go, v.KernelObject)
}

func printFlow(w io.Writer, f fparser.Flow, cfg config) {
	var kind string
	switch f.Protocol {
	case fparser.TCP:
		kind = "tcp"
	case fparser.UDP:
		kind = "udp"
	default:
		kind = f.Protocol.String()
	}
	vlan := ""
	if f.VLAN != 0 {
		vlan = fmt.Sprintf(" vlan %d", f.VLAN)
	}
	fmt.Fprintf(w, "%s%s %s -> %s  %s  %d packets %d bytes  %s  %.1f pkt/s %.0f B/s  ended %s\n",
		kind, vlan, f.Src, f.Dst, f.FirstSeen.Format(time.RFC3339Nano),
		f.PacketCount(), f.ByteCount(), f.Duration(),
		f.PacketRate, f.ByteRate, f.EndReason.String())
	if f.LastSeen.Before(f.FirstSeen) {
		fmt.Fprintln(w, "   (last packet before the first?)")
	}
	// The Community ID finds the flow in Zeek's or Suricata's logs; a seed other
	// than 0 must match theirs.
	fmt.Fprintf(w, "   community id %s (seed 1: %s)\n", f.CommunityID(), fparser.AppendCommunityID(nil, 1, f.Protocol, f.Src, f.Dst))
	if f.HandshakeRTT > 0 {
		// The capture point sits between the two sides: the SYN+ACK comes back
		// from Dst after Fwd.RTT, the ACK from Src after Rev.RTT.
		fmt.Fprintf(w, "   handshake %s: %s to %s and back, %s to %s and back\n", f.HandshakeRTT, f.Fwd.RTT, f.Dst.Addr(), f.Rev.RTT, f.Src.Addr())
	}
	if t := f.Tunnel; t != (fparser.Tunnel{}) {
		fmt.Fprintf(w, "   through %s%s", t.Kind, tunnelID(t.Kind, t.ID))
		if t.OuterSrc.IsValid() {
			fmt.Fprintf(w, " from %s to %s", t.OuterSrc, t.OuterDst)
		}
		fmt.Fprintln(w)
	}
	for _, c := range []*fparser.Counters{&f.Fwd, &f.Rev} {
		if c.Retransmissions+c.OutOfOrder+c.ZeroWindows > 0 {
			fmt.Fprintf(w, "   %d retransmitted, %d out of order, %d zero windows\n", c.Retransmissions, c.OutOfOrder, c.ZeroWindows)
		}
	}
	if f.DuplicatePackets > 0 {
		fmt.Fprintf(w, "   %d packets seen again on another interface\n", f.DuplicatePackets)
	}
	if !f.Process.IsZero() {
		fmt.Fprintf(w, "   process %d (%s), cgroup %s\n", f.Process.PID, f.Process.Name, f.Process.Cgroup)
	}
	for _, d := range []struct {
		name string
		c    fparser.Counters
	}{{"fwd", f.Fwd}, {"rev", f.Rev}} {
		printCounters(w, d.name, d.c, cfg.stats)
	}
	if f.Protocol == fparser.TCP && f.Fwd.Flags&(fparser.SYN|fparser.ACK) == fparser.SYN && f.Rev.Packets == 0 {
		fmt.Fprintln(w, "   unanswered SYN")
	}

	if f.HistoryLen() > 0 {
		census := map[fparser.TCPFlags]int{}
		for pk := range f.History() {
			printPacket(w, pk)
			for _, fl := range allFlags {
				if pk.Flags&fl != 0 {
					census[fl]++
				}
			}
		}
		var parts []string
		for _, fl := range allFlags {
			if census[fl] > 0 {
				parts = append(parts, fmt.Sprintf("%s:%d", fl, census[fl]))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintln(w, "   flags in history:", strings.Join(parts, " "))
		}
		if f.HistoryIncomplete() {
			fmt.Fprintf(w, "   history incomplete: %d of %d packets kept\n", f.HistoryLen(), f.PacketCount())
		}
	}
	if cfg.checkLegacy {
		// Deprecated names, checked once against their replacements
		// (Packets is History, PacketsStored is HistoryLen,
		// PacketsIncomplete is HistoryIncomplete).
		n := 0
		//lint:ignore SA1019 checking the deprecated alias against History
		for range f.Packets() {
			n++
		}
		//lint:ignore SA1019 checking the deprecated alias against HistoryLen
		stored := f.PacketsStored()
		//lint:ignore SA1019 checking the deprecated alias against HistoryIncomplete
		incomplete := f.PacketsIncomplete()
		if n != f.HistoryLen() || stored != f.HistoryLen() || incomplete != f.HistoryIncomplete() {
			fmt.Fprintln(w, "   deprecated accessors disagree")
		}
	}
}

func printPacket(w io.Writer, pk fparser.Packet) {
	dir := "->"
	if pk.Reverse {
		dir = "<-"
	}
	fmt.Fprintf(w, "   %s %s id %d ttl %d len %d [%s] seq %d ack %d win %d\n",
		pk.Time.Format("15:04:05.000000"), dir, pk.IPID, pk.TTL, pk.Length,
		pk.Flags, pk.Seq, pk.Ack, pk.Window)
}

func printCounters(w io.Writer, dir string, c fparser.Counters, stats bool) {
	if c.Packets == 0 {
		fmt.Fprintf(w, "   %s: no packets\n", dir)
		return
	}
	fmt.Fprintf(w, "   %s: %d packets %d bytes [%s] %s .. %s\n", dir, c.Packets, c.Bytes, c.Flags.String(),
		c.First.Format("15:04:05.000000"), c.Last.Format("15:04:05.000000"))
	if c.Interface != "" {
		way := "arriving by"
		if c.Egress {
			way = "leaving by"
		}
		fmt.Fprintf(w, "      counted %s %s (index %d)\n", way, c.Interface, c.InterfaceIndex)
	}
	if p := c.Process; p != (fparser.Process{}) {
		fmt.Fprintf(w, "      sent by process %d (%s)\n", p.PID, p.Name)
	}
	if !stats {
		return
	}
	printStats(w, c.Size, c.Gap, c.FlagPackets)
}

// printStats prints a direction's statistics (Options.Statistics).
func printStats(w io.Writer, s fparser.SizeStats, g fparser.GapStats, fc fparser.FlagCounts) {
	fmt.Fprintf(w, "      size min %d max %d mean %.1f stddev %.1f\n", s.Min, s.Max, s.Mean, s.Stddev)
	fmt.Fprintf(w, "      gap  min %s max %s mean %s stddev %s\n", g.Min, g.Max, g.Mean, g.Stddev)
	fmt.Fprintf(w, "      flags F%d S%d R%d P%d A%d U%d E%d C%d\n",
		fc.FIN, fc.SYN, fc.RST, fc.PSH, fc.ACK, fc.URG, fc.ECE, fc.CWR)
}

func printInfo(w io.Writer, in fparser.Info) {
	fmt.Fprintf(w, "\nactive: %d tcp flows (%d packets, %d bytes), %d udp flows (%d packets, %d bytes)\n",
		in.TCPFlows, in.TCPPackets, in.TCPBytes, in.UDPFlows, in.UDPPackets, in.UDPBytes)
	fmt.Fprintf(w, "packets: %d seen, %d filtered, %d accepted (%d tcp, %d udp), %d non-IP, %d other L4, %d malformed, %d fragments (%d unattributed)\n",
		in.PacketsSeen, in.Filtered, in.PacketsAccepted, in.AcceptedTCP, in.AcceptedUDP,
		in.NonIP, in.OtherL4, in.Malformed, in.Fragments, in.Unattributed)
	if len(in.Interfaces) > 0 {
		fmt.Fprintf(w, "interfaces: %s (%d duplicate packets)\n", strings.Join(in.Interfaces, ", "), in.DuplicatePackets)
	}
	fmt.Fprintf(w, "rate: %.1f packets/s over %s\n", in.AvgPPS, in.Elapsed)
	fmt.Fprintf(w, "history: %d tcp and %d udp packets stored, %d bytes held, %d not stored\n",
		in.StoredTCPPackets, in.StoredUDPPackets, in.PacketMemory, in.PacketsNotStored)
	fmt.Fprintf(w, "flows: %d created, %d evicted, ended with %d packets and %d bytes:",
		in.FlowsCreated, in.Evictions, in.EndedPackets, in.EndedBytes)
	for _, r := range endReasons {
		if n := in.FlowsEnded[r]; n > 0 {
			fmt.Fprintf(w, " %s %d", r, n)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "losses: %d events lost, %d callback panics, %d map read errors\n",
		in.EventsLost, in.CallbackPanics, in.MapReadErrors)
	printSweeps(w, in.SweepTimes, in.TimeCollecting)
}

func printSweeps(w io.Writer, h fparser.SweepHistogram, collecting time.Duration) {
	var sweeps uint64
	for _, n := range h.Counts {
		sweeps += n
	}
	fmt.Fprintf(w, "sweeps: %d taking %s in all (%s collecting)", sweeps, h.Sum, collecting)
	for i, n := range h.Counts {
		if n == 0 {
			continue
		}
		if i < len(h.Bounds) {
			fmt.Fprintf(w, ", %d ≤ %s", n, h.Bounds[i])
		} else {
			fmt.Fprintf(w, ", %d longer", n)
		}
	}
	fmt.Fprintln(w)
}

// report prints err, with what the doc says about its kind, and returns the
// exit status.
func report(w io.Writer, err error) int {
	var oe *fparser.OptionError
	if errors.As(err, &oe) {
		// An *OptionError matches ErrOption.
		fmt.Fprintf(w, "apiuser: option %s = %v refused: %s (%s; matches ErrOption: %t)\n",
			oe.Option, oe.Value, oe.Reason, oe.Error(), oe.Is(fparser.ErrOption))
		return 2
	}
	hint := ""
	switch {
	case errors.Is(err, fparser.ErrOption):
		hint = "an option is out of range"
	case errors.Is(err, fparser.ErrNoSource):
		hint = "give a capture file, - for standard input, or a network interface"
	case errors.Is(err, syscall.EISDIR):
		hint = "the source is a directory"
	case errors.Is(err, fparser.ErrUnsupportedLink): // before ErrBadCapture, which it matches too
		hint = "the capture's link type is not supported"
	case errors.Is(err, fparser.ErrBadCapture):
		hint = "the capture is damaged; the flows before the fault were printed"
	case errors.Is(err, fparser.ErrFilter):
		hint = "fix the filter expression"
	case errors.Is(err, fparser.ErrStopped):
		hint = "the parser had stopped"
	case errors.Is(err, fparser.ErrInCallback):
		hint = "a callback waited for its own parser (use Stop there)"
	case errors.Is(err, fparser.ErrNotPermitted):
		hint = "run as root, or grant the capabilities named"
	case errors.Is(err, fparser.ErrKernelTooOld):
		hint = "the kernel is too old for the datapath"
	case errors.Is(err, fparser.ErrVerifier):
		hint = "the kernel's verifier rejected the program"
	case errors.Is(err, fparser.ErrAttach):
		hint = "try another -attach mode"
	case errors.Is(err, fparser.ErrInterfaceGone):
		hint = "the interface was deleted; the flows until then were printed"
	}
	if hint != "" {
		fmt.Fprintf(w, "apiuser: %v (%s)\n", err, hint)
	} else {
		fmt.Fprintln(w, "apiuser:", err)
	}
	return 1
}

// tunnelID names a tunnel's id by what it is for the tunnel's kind.
func tunnelID(k fparser.TunnelKind, id uint32) string {
	switch k {
	case fparser.TunnelVXLAN, fparser.TunnelGeneve:
		return fmt.Sprintf(" vni %d", id)
	case fparser.TunnelGRE:
		return fmt.Sprintf(" key %d", id)
	case fparser.TunnelERSPAN, fparser.TunnelPPPoE:
		return fmt.Sprintf(" session %d", id)
	case fparser.TunnelGTPU:
		return fmt.Sprintf(" teid %#x", id)
	case fparser.TunnelMPLS:
		return fmt.Sprintf(" label %d", id)
	case fparser.TunnelIPinIP, fparser.TunnelIPv6inIP, fparser.TunnelNone:
	}
	return ""
}
