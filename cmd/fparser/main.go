// Command fparser prints the TCP and UDP flows of a capture file or a network
// interface, one line per flow as it ends.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/ipfix"
	"github.com/fparser/fparser/metrics"
	"github.com/fparser/fparser/offline"
)

const usage = `fparser: print the TCP and UDP flows of a capture file or a network interface.

Usage:
  fparser -r FILE [options] [filter expression]
  fparser -i IFACE [--attach auto|xdp|tc] [options] [filter expression]
  fparser top -i IFACE | -r FILE [options]     a live view (fparser top -h)

A flow is both directions of one conversation: protocol, the two addresses and
ports, and the outer VLAN. SRC is the side that started it. Each flow is printed
once, when it ends: after --flow-timeout without packets, --fin-timeout after its
last packet once a FIN or RST was seen, when a new SYN reuses its ports, or when
the capture ends (with -i: when stopped by Ctrl-C or SIGTERM, after which the
kernel programs detach). A one-line summary goes to standard error at the end.

The filter is in tcpdump's syntax (pcap-filter(7)) and compiled by fparser
itself; with -i it runs in the kernel. Host and port names are not resolved.
--dump-filter prints the compiled program as tcpdump -ddd does; a program in that
form is also accepted in place of an expression (with -F FILE, say).

Examples:
  fparser -r testdata/http.pcap                   read a capture (pcap, pcapng, .gz)
  fparser -r trace.pcap -o csv > flows.csv        export to CSV
  fparser -r trace.pcap -o json | jq .            JSON lines
  fparser -r trace.pcap --flow-timeout 2m         end idle flows after 2 minutes
  fparser -r trace.pcap -o csv --features         NFStream's statistics per direction
  fparser -r trace.pcap --sort bytes --packets 5  largest flows first, each with its first 5 packets
  sudo fparser -i eth0 --ipfix 127.0.0.1:4739     export to an IPFIX collector (nfcapd -p 4739)
  sudo fparser -i eth0 --fin-timeout 5s           count live in the kernel; Ctrl-C stops
  sudo fparser -i eth0 tcp port 443               only TLS over TCP, filtered in the kernel
  fparser -r trace.pcap 'net 10.0.0.0/8 and not port 22'

Options:
`

type config struct {
	read, iface, format, filter string
	filterFile                  string
	dumpFilter                  bool
	packets                     int
	features                    bool
	sort                        string
	ipfix, ipfixProto           string
	ipfixUniflow                bool
	ipfixTimeout                time.Duration
	metrics                     string
	pin                         string
	attach                      string
	maxFlows                    int
	coarse                      bool
	flowTimeout, finTimeout     time.Duration
	activeTimeout               time.Duration
	snaplen                     int
	quiet, verbose              bool
}

func main() {
	// A closed standard output is an error to report, not a signal that kills
	// without a word: writes then return EPIPE.
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "top" {
		return runTop(args[1:], os.Stdin, stdout, stderr)
	}
	var c config
	fs := flag.NewFlagSet("fparser", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.read, "r", "", "read packets from capture `FILE` (pcap or pcapng, optionally gzip)")
	fs.StringVar(&c.iface, "i", "", "count live on network interface `IFACE` with the kernel datapath (needs root or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)")
	fs.StringVar(&c.attach, "attach", "auto", "with -i, where to attach: auto (XDP ingress + TC egress), xdp, xdp-native, xdp-generic, tc or tc-legacy (clsact)")
	fs.IntVar(&c.maxFlows, "max-flows", 0, "with -i, size of the kernel's flow table (default 1048576)")
	fs.StringVar(&c.pin, "pin", "", "with -i, pin the kernel's maps and links in `DIR` (on a BPF filesystem): a restarted fparser adopts them, flows and counts included")
	fs.BoolVar(&c.coarse, "coarse-clock", false, "with -i, stamp packets with the kernel's tick clock (ms resolution): cheaper per packet")
	fs.StringVar(&c.format, "o", "text", "output `format`: text, json (one object per line) or csv")
	fs.StringVar(&c.filter, "f", "", "pcap-filter `expression` (default: all IPv4 and IPv6)")
	fs.StringVar(&c.filterFile, "F", "", "read the filter expression (or a tcpdump -ddd program) from `FILE`")
	fs.BoolVar(&c.dumpFilter, "dump-filter", false, "print the compiled filter as tcpdump -ddd does (for the -r file's link type, or Ethernet), and exit")
	fs.DurationVar(&c.flowTimeout, "flow-timeout", 600*time.Second, "end a flow after this long without packets")
	fs.DurationVar(&c.finTimeout, "fin-timeout", 30*time.Second, "end a flow this long after its last packet once FIN or RST was seen")
	fs.DurationVar(&c.activeTimeout, "active-timeout", 0, "end a flow this long after its first packet (0: never)")
	fs.IntVar(&c.snaplen, "s", fparser.DefaultSnaplen, "cut each packet to `snaplen` bytes before parsing")
	fs.IntVar(&c.packets, "packets", 0, "keep the headers of the first `N` packets of each flow (-1: all) and print them under it (text) or in a \"packets\" array (json)")
	fs.BoolVar(&c.features, "features", false, "with -o csv or json, add each direction's statistics (NFStream's names: sizes, inter-arrival times, TCP flag counts) and the flow's moving rates")
	fs.StringVar(&c.sort, "sort", "", "print the flows at the end, largest first by `ORDER`: packets, bytes, pps or bps (bytes per second)")
	fs.StringVar(&c.ipfix, "ipfix", "", "also export each flow as IPFIX to the collector at `HOST:PORT` (nfcapd, goflow2, pmacct, ...)")
	fs.StringVar(&c.ipfixProto, "ipfix-proto", "udp", "with --ipfix: udp or tcp")
	fs.BoolVar(&c.ipfixUniflow, "ipfix-uniflow", false, "with --ipfix: two records per flow, one per direction, instead of one with RFC 5103 reverse counts")
	fs.DurationVar(&c.ipfixTimeout, "ipfix-timeout", 5*time.Second, "with --ipfix: how long a message may wait for the collector; then it is counted as not sent and the collector is taken as down for a while")
	fs.StringVar(&c.metrics, "metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics; a bare port or :PORT binds to 127.0.0.1")
	fs.BoolVar(&c.quiet, "q", false, "no summary on standard error")
	fs.BoolVar(&c.verbose, "v", false, "log debug messages to standard error")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	// Options may follow the filter words, as with tcpdump: parse again from each
	// word that looks like an option ("-o", "--flow-timeout"), keeping the others.
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		rest := fs.Args()
		i := 0
		for i < len(rest) && !looksLikeOption(rest[i]) {
			i++
		}
		words = append(words, rest[:i]...)
		if i == len(rest) {
			break
		}
		args = rest[i:]
	}
	given := 0
	if c.filter != "" {
		given++
	}
	if len(words) > 0 {
		given++
		c.filter = strings.Join(words, " ")
	}
	if c.filterFile != "" {
		given++
		b, err := os.ReadFile(c.filterFile)
		if err != nil {
			fmt.Fprintf(stderr, "fparser: -F: %v\n", err)
			return 2
		}
		c.filter = string(b)
	}
	if given > 1 {
		fmt.Fprintln(stderr, "fparser: give the filter once: with -f, -F or as trailing words")
		return 2
	}
	if c.dumpFilter {
		return dumpFilter(c.filter, c.read, stdout, stderr)
	}
	source := c.read
	switch {
	case c.read != "" && c.iface != "":
		fmt.Fprintln(stderr, "fparser: -r and -i exclude each other")
		return 2
	case c.iface != "":
		source = c.iface
	case c.read == "":
		fmt.Fprintln(stderr, "fparser: nothing to read: give -r FILE or -i IFACE (see fparser -h)")
		return 2
	}
	if c.snaplen <= 0 {
		fmt.Fprintf(stderr, "fparser: -s %d: the snaplen must be positive\n", c.snaplen)
		return 2
	}

	if c.packets != 0 && c.format == "csv" {
		fmt.Fprintln(stderr, "fparser: --packets needs -o text or -o json")
		return 2
	}
	if c.features && c.format == "text" {
		fmt.Fprintln(stderr, "fparser: --features needs -o csv or -o json")
		return 2
	}
	var order fparser.SortOrder
	if c.sort != "" {
		o, err := fparser.ParseSortOrder(c.sort)
		if err != nil {
			fmt.Fprintf(stderr, "fparser: --sort: %v\n", err)
			return 2
		}
		order = o
	}
	out, err := newFlowWriter(stdout, c.format, isTerminal(stdout), c.packets != 0, c.features)
	if err != nil {
		fmt.Fprintf(stderr, "fparser: -o: %v\n", err)
		return 2
	}
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var exporter *ipfix.Exporter
	if c.ipfix != "" {
		exporter, err = ipfix.Dial(ipfix.Config{Network: c.ipfixProto, Address: c.ipfix, Uniflow: c.ipfixUniflow, WriteTimeout: c.ipfixTimeout})
		if errors.Is(err, ipfix.ErrConfig) {
			fmt.Fprintf(stderr, "fparser: --ipfix: %v\n", err)
			return 2
		}
		if err != nil {
			fmt.Fprintf(stderr, "fparser: %v\n", err)
			return 1
		}
	}

	var p *fparser.Parser
	var writeErr, exportErr error
	var held []fparser.Flow // with --sort, until the end
	var queue *flowQueue    // without --sort
	emit := func(f fparser.Flow) {
		if exporter != nil {
			if err := exporter.Export(&f); err != nil && exportErr == nil {
				exportErr = err // counted by the exporter; reported at the end
			}
		}
		if order != 0 {
			held = append(held, f)
			return
		}
		queue.put(&f)
	}
	// A Ctrl-C or SIGTERM stops the parser the clean way, even one that came while
	// the programs were being attached (interrupts).
	ctx, stop := onInterrupt()
	defer stop()
	p, err = fparser.New(source, &fparser.Options{
		FlowTimeout:   c.flowTimeout,
		FinTimeout:    c.finTimeout,
		ActiveTimeout: c.activeTimeout,
		Filter:        c.filter,
		Snaplen:       c.snaplen,
		Packets:       c.packets,
		Statistics:    c.features,
		Attach:        c.attach,
		MaxFlows:      c.maxFlows,
		CoarseClock:   c.coarse,
		PinDir:        c.pin,
		Logger:        logger,
		OnTCP:         emit,
		OnUDP:         emit,
	})
	if err != nil {
		if exporter != nil {
			exporter.Close()
		}
		fmt.Fprintf(stderr, "fparser: %v\n", err)
		return 1
	}
	if c.metrics != "" {
		srv, err := metrics.Serve(c.metrics, metrics.NewCollector(p, exporter))
		if err != nil {
			if exporter != nil {
				exporter.Close()
			}
			fmt.Fprintf(stderr, "fparser: --metrics: %v\n", err)
			return 1
		}
		defer srv.Close()
		logger.Info("serving metrics", "url", "http://"+srv.Addr().String()+"/metrics")
	}
	// After SIGINT or SIGTERM no send waits more than ipfixStopWait for the
	// collector: the flows the stop ends still go to one that takes them, and a
	// send stuck on one that does not is cut short.
	forgetSignal := func() bool { return false }
	if exporter != nil {
		forgetSignal = context.AfterFunc(ctx, func() { exporter.SetWriteTimeout(ipfixStopWait) })
	}
	var endProgress func()
	if c.read != "" && !c.quiet && isTerminal(stderr) {
		endProgress = showProgress(p, stderr)
	}
	if order == 0 {
		queue = startFlowQueue(out, p.Stop) // nowhere to write: stop reading
	}
	runErr := p.Run(ctx)
	if errors.Is(runErr, context.Canceled) {
		runErr = nil // a signal stopped it, as asked
	}
	if endProgress != nil {
		endProgress()
	}
	if queue != nil {
		// Before stop: until the flows that ended are written, a second Ctrl-C or
		// SIGTERM is caught rather than fatal.
		writeErr = queue.close()
	}
	forgetSignal() // stop cancels ctx too, and is no signal
	stop()
	if order != 0 {
		slices.SortFunc(held, order.Compare)
		for i := range held {
			if writeErr = out.write(&held[i]); writeErr != nil {
				break
			}
		}
	}
	info := p.Info()
	if writeErr == nil {
		writeErr = out.Flush()
	}
	if exporter != nil {
		if err := exporter.Close(); err != nil && exportErr == nil {
			exportErr = err
		}
	}
	if !c.quiet {
		fmt.Fprintln(stderr, summary(&info))
		if exporter != nil {
			st := exporter.Stats()
			fmt.Fprintf(stderr, "fparser: ipfix: %d flows in %d messages (%d records) to %s over %s; %d flows not sent\n",
				st.Flows, st.Messages, st.Records, c.ipfix, c.ipfixProto, st.NotSentFlows)
		}
	}
	switch {
	case writeErr != nil:
		fmt.Fprintf(stderr, "fparser: writing flows: %v\n", writeErr)
		return 1
	case exportErr != nil:
		fmt.Fprintf(stderr, "fparser: %v\n", exportErr)
		return 1
	case runErr != nil:
		fmt.Fprintf(stderr, "fparser: %v\n", runErr)
		return 1
	}
	return 0
}

// ipfixStopWait is how long, at most, a send waits for the IPFIX collector once a
// signal has asked the command to stop.
const ipfixStopWait = time.Second

// looksLikeOption says a word is an option rather than part of a filter expression,
// where a lone "-" or "-1" is arithmetic.
func looksLikeOption(w string) bool {
	name := strings.TrimPrefix(strings.TrimPrefix(w, "-"), "-")
	return strings.HasPrefix(w, "-") && name != "" && (name[0] >= 'a' && name[0] <= 'z' || name[0] >= 'A' && name[0] <= 'Z')
}

// dumpFilter prints expr compiled for the link type of capture (Ethernet without
// one), in tcpdump -ddd's form.
func dumpFilter(expr, capture string, stdout, stderr io.Writer) int {
	if strings.TrimSpace(expr) == "" {
		expr = fparser.DefaultFilter
	}
	link := filter.Ethernet
	if capture != "" {
		src, err := offline.Open(capture)
		if err != nil {
			fmt.Fprintf(stderr, "fparser: %v\n", err)
			return 1
		}
		if lt, ok := src.LinkType(); ok {
			link = filter.Link{Type: lt, BigEndian: src.BigEndian()}
		}
		src.Close()
	}
	prog, err := filter.Compile(expr, link)
	if err != nil {
		fmt.Fprintf(stderr, "fparser: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, prog.DDD())
	return 0
}

// summary is Info in one line.
func summary(in *fparser.Info) string {
	var ended uint64
	for _, n := range in.FlowsEnded {
		ended += n
	}
	filtered := ""
	if in.Filtered > 0 {
		filtered = fmt.Sprintf(", %d filtered out", in.Filtered)
	}
	s := fmt.Sprintf("fparser: %d packets%s, %d in flows (tcp %d, udp %d), %d non-IP, %d other L4, %d malformed, %d fragments (%d unattributed); %d flows; avg %.1f pps over %v; %v collecting",
		in.PacketsSeen, filtered, in.PacketsAccepted, in.AcceptedTCP, in.AcceptedUDP, in.NonIP, in.OtherL4, in.Malformed,
		in.Fragments, in.Unattributed, ended, in.AvgPPS, in.Elapsed.Round(time.Millisecond), in.TimeCollecting.Round(time.Microsecond))
	if in.CallbackPanics > 0 {
		s += fmt.Sprintf("; %d callback panics", in.CallbackPanics)
	}
	return s
}

// progressEvery is how often the progress line is redrawn.
const progressEvery = 500 * time.Millisecond

// showProgress draws a line on w, a terminal, that says how far the replay has read,
// at what rate and how many flows it has, redrawn every progressEvery until the
// returned function is called, which erases it.
func showProgress(p *fparser.Parser, w io.Writer) (end func()) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		var lastPackets uint64
		last := time.Now()
		for {
			read, size := p.Progress()
			in := p.Info()
			now := time.Now()
			rate := float64(in.PacketsSeen-lastPackets) / now.Sub(last).Seconds()
			lastPackets, last = in.PacketsSeen, now
			var ended uint64
			for _, n := range in.FlowsEnded {
				ended += n
			}
			fmt.Fprintf(w, "\rfparser: %s, %s packets/s, %d flows active, %d ended\033[K",
				progressOf(read, size), si(rate), in.TCPFlows+in.UDPFlows, ended)
			select {
			case <-stop:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(stop); <-done }
}

// progressOf says how much of size bytes were read.
func progressOf(read, size int64) string {
	if size <= 0 {
		return si(float64(read)) + "B read"
	}
	return fmt.Sprintf("%.1f%% (%sB of %sB)", 100*float64(read)/float64(size), si(float64(read)), si(float64(size)))
}

// si writes v with an SI prefix and three significant digits.
func si(v float64) string {
	for _, p := range []struct {
		f float64
		s string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= p.f {
			return strconv.FormatFloat(v/p.f, 'f', 1, 64) + " " + p.s
		}
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " "
}

// isTerminal says w is a terminal. Other character devices, /dev/null among them, are
// not: output to them is not flushed flow by flow.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
