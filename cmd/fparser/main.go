// Command fparser prints the TCP and UDP flows of a capture file or a network
// interface, one line per flow as it ends.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/clickhouse"
	"github.com/fparser/fparser/ipfix"
	"github.com/fparser/fparser/kafka"
	"github.com/fparser/fparser/metrics"
	"github.com/fparser/fparser/sink"
)

const usage = `fparser: print the TCP and UDP flows of a capture file or a network interface.

Usage:
  fparser -r FILE [options] [filter expression]
  fparser -i IFACE [-i IFACE...] [--attach auto|xdp|tc] [options] [filter expression]
  fparser top -i IFACE | -r FILE [options]     a live view (fparser top -h)

A flow is both directions of one conversation: protocol, the two addresses and
ports, and the outer VLAN. SRC is the side that started it. Each flow is printed
once, when it ends: after --flow-timeout without packets, --fin-timeout after its
last packet once a FIN or RST was seen, when a new SYN reuses its ports, or when
the capture ends (with -i: when stopped by Ctrl-C or SIGTERM, after which the
kernel programs detach). With -i each flow is written as it ends, even into a pipe;
"counting on IFACE" on standard error says the programs are attached. A one-line
summary goes to standard error at the end. Exit status: 0, or 2 for a usage error,
1 for a failure while running.

The filter is in tcpdump's syntax (pcap-filter(7)) and compiled by fparser
itself; with -i it runs in the kernel. Host and port names are not resolved.
--dump-filter prints the compiled program as tcpdump -ddd does; a program in that
form is also accepted in place of an expression (with -F FILE, say).

Examples:
  fparser -r testdata/http.pcap                   read a capture (pcap, pcapng, .gz)
  tcpdump -i eth0 -w - | fparser -r -            read standard input
  fparser -r trace.pcap -o csv > flows.csv        export to CSV
  fparser -r trace.pcap -o json | jq .            JSON lines
  fparser -r trace.pcap --flow-timeout 2m         end idle flows after 2 minutes
  fparser -r trace.pcap -o csv --features         NFStream's statistics per direction
  fparser -r trace.pcap --sort bytes --packets 5  largest flows first, each with its first 5 packets
  fparser -r trace.pcap --decap -o csv            count tunnels' inner flows, each with its tunnel
  sudo fparser -i eth0 --ipfix 127.0.0.1:4739     export to an IPFIX collector (nfcapd -p 4739)
  sudo fparser -i all --kafka kafka1:9092 -q      publish each flow's JSON line to Kafka
  sudo fparser -i eth0 --fin-timeout 5s           count live in the kernel; Ctrl-C stops
  sudo fparser -i eth0 tcp port 443               only TLS over TCP, filtered in the kernel
  fparser -r trace.pcap 'net 10.0.0.0/8 and not port 22'

Options:
`

type config struct {
	read, format, filter    string
	ifaces                  interfaceList
	filterFile              string
	dumpFilter              bool
	packets                 int
	features                bool
	tcpQuality              bool
	decap                   bool
	sort                    string
	ipfix, ipfixProto       string
	ipfixUniflow            bool
	ipfixTimeout            time.Duration
	kafka, kafkaTopic       string
	kafkaCompression        string
	kafkaFormat             string
	kafkaTLS                bool
	kafkaCA, kafkaCert      string
	kafkaKey                string
	kafkaSASL, kafkaUser    string
	kafkaPasswordFile       string
	kafkaTLSConfig          *tls.Config // from the --kafka-tls flags
	clickhouse, chTable     string
	chUser                  string
	kafkaAuth               *kafka.SASL // from the --kafka-sasl flags
	onFull                  string      // block or drop; "" until parseArgs picks by source
	sinkQueue               int
	sinkQueueBytes          int64
	sinkTimeout             time.Duration
	metrics                 string
	pin                     string
	attach                  string
	maxFlows                int
	coarse                  bool
	flowTimeout, finTimeout time.Duration
	activeTimeout           time.Duration
	snaplen                 int
	quiet, verbose          bool
	logFormat               string
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
	c, err := parseArgs(args, stdout)
	if err == nil && c == nil {
		return exitOK // -h or --version
	}
	if err == nil {
		if c.dumpFilter {
			err = dumpFilter(c.filter, c.read, stdout)
		} else {
			err = count(c, stdout, stderr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "fparser: %s\n", errorMessage(err))
		return exitCode(err)
	}
	return exitOK
}

// parseArgs reads the command line. It returns a nil config without error when it
// has done what was asked already (-h, --version).
func parseArgs(args []string, stdout io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("fparser", flag.ContinueOnError)
	fs.StringVar(&c.read, "r", "", "read packets from capture `FILE` (pcap or pcapng, optionally gzip; - for standard input)")
	fs.Var(&c.ifaces, "i", "count live on network interface `IFACE` with the kernel datapath (needs root or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON); give it again for more, as names, shell patterns ('veth*') or all (every one but lo), in one flow table")
	fs.StringVar(&c.attach, "attach", "auto", "with -i, where to attach: "+strings.Join(fparser.AttachModes, ", ")+" (see docs/live.md)")
	fs.IntVar(&c.maxFlows, "max-flows", fparser.DefaultMaxFlows, "with -i, size of the kernel's flow table")
	fs.StringVar(&c.pin, "pin", "", "with -i, pin the kernel's maps and links in `DIR` (on a BPF filesystem): a restarted fparser adopts them, flows and counts included")
	fs.BoolVar(&c.coarse, "coarse-clock", false, "with -i, stamp packets with the kernel's tick clock (ms resolution): cheaper per packet")
	fs.StringVar(&c.format, "o", "text", "output `format`: text, json (one object per line) or csv")
	fs.StringVar(&c.filter, "f", "", "pcap-filter `expression` (default: all IPv4 and IPv6)")
	fs.StringVar(&c.filterFile, "F", "", "read the filter expression (or a tcpdump -ddd program) from `FILE`")
	fs.BoolVar(&c.dumpFilter, "dump-filter", false, "print the compiled filter as tcpdump -ddd does (for the -r file's link type, or Ethernet), and exit")
	durationFlag(fs, &c.flowTimeout, "flow-timeout", fparser.DefaultFlowTimeout, "end a flow after this long without packets")
	durationFlag(fs, &c.finTimeout, "fin-timeout", fparser.DefaultFinTimeout, "end a flow this long after its last packet once FIN or RST was seen")
	durationFlag(fs, &c.activeTimeout, "active-timeout", 0, "end a flow this long after its first packet (0: never)")
	fs.IntVar(&c.snaplen, "s", fparser.DefaultSnaplen, "with -r, cut each packet to `snaplen` bytes before parsing")
	fs.IntVar(&c.packets, "packets", 0, "keep the headers of the first `N` packets of each flow (-1: all) and print them under it (text) or in a \"packets\" array (json)")
	fs.BoolVar(&c.features, "features", false, "with -o csv or json, add each direction's statistics (NFStream's names: sizes, inter-arrival times, TCP flag counts) and the flow's moving rates")
	fs.BoolVar(&c.tcpQuality, "tcp-quality", false, "with -o csv or json, --ipfix or --kafka, measure and add each TCP flow's quality: the handshake's RTT and its two parts, and each direction's retransmissions, out-of-order segments and zero windows (tshark's TCP analysis)")
	fs.BoolVar(&c.decap, "decap", false, "open VXLAN, Geneve, GRE (with or without a key, PPTP's, ERSPAN II), GTP-U, IP-in-IP, MPLS and PPPoE tunnels, up to two nested, and count flows by the inner headers (the filter still applies to the outer frame); add each flow's tunnel, its kind, ID and outer addresses, to the output and to --kafka's messages")
	fs.StringVar(&c.sort, "sort", "", "print the flows at the end, largest first by `ORDER`: packets, bytes, pps or bps (bytes per second)")
	fs.StringVar(&c.ipfix, "ipfix", "", "also export each flow as IPFIX to the collector at `HOST:PORT` (nfcapd, goflow2, pmacct, ...)")
	fs.StringVar(&c.ipfixProto, "ipfix-proto", "udp", "with --ipfix: udp or tcp")
	fs.BoolVar(&c.ipfixUniflow, "ipfix-uniflow", false, "with --ipfix: two records per flow, one per direction, instead of one with RFC 5103 reverse counts")
	durationFlag(fs, &c.ipfixTimeout, "ipfix-timeout", 5*time.Second, "with --ipfix: how long a message may wait for the collector; then it is counted as not sent and the collector is taken as down for a while")
	fs.StringVar(&c.kafka, "kafka", "", "also publish each flow, its -o json line, to Kafka at `BROKER[,BROKER...]`")
	fs.StringVar(&c.kafkaTopic, "kafka-topic", kafka.DefaultTopic, "with --kafka: the topic")
	fs.StringVar(&c.kafkaCompression, "kafka-compression", "zstd", "with --kafka: zstd, lz4, snappy, gzip or none")
	fs.StringVar(&c.kafkaFormat, "kafka-format", "json", "with --kafka: json (-o json's line) or protobuf (kafka/flowpb/flow.proto)")
	fs.BoolVar(&c.kafkaTLS, "kafka-tls", false, "with --kafka: connect with TLS, the brokers' certificates checked against the host's roots or --kafka-tls-ca")
	fs.StringVar(&c.kafkaCA, "kafka-tls-ca", "", "with --kafka: the PEM `FILE` of the CA certificates that the brokers' certificates must chain to (implies --kafka-tls)")
	fs.StringVar(&c.kafkaCert, "kafka-tls-cert", "", "with --kafka: the PEM `FILE` of a client certificate, with --kafka-tls-key (implies --kafka-tls)")
	fs.StringVar(&c.kafkaKey, "kafka-tls-key", "", "with --kafka: the PEM `FILE` of the client certificate's key")
	fs.StringVar(&c.kafkaSASL, "kafka-sasl", "", "with --kafka: authenticate with SASL `MECHANISM`: plain, scram-sha-256 or scram-sha-512, as --kafka-user, with the password in "+kafkaPasswordEnv+" or --kafka-password-file")
	fs.StringVar(&c.kafkaUser, "kafka-user", "", "with --kafka-sasl: the user `NAME`")
	fs.StringVar(&c.kafkaPasswordFile, "kafka-password-file", "", "with --kafka-sasl: read the password from the first line of `FILE`")
	fs.StringVar(&c.clickhouse, "clickhouse", "", "also insert each flow into ClickHouse at `HOST:PORT[,HOST:PORT...]` (the native protocol's port, 9000 by default), into the table of deploy/clickhouse.sql")
	fs.StringVar(&c.chTable, "clickhouse-table", clickhouse.DefaultTable, "with --clickhouse: the `TABLE`, or DATABASE.TABLE")
	fs.StringVar(&c.chUser, "clickhouse-user", "", "with --clickhouse: the user `NAME` (default: default), with the password in "+clickhousePasswordEnv)
	fs.StringVar(&c.onFull, "on-full", "", "with a sink (--ipfix, --kafka, --clickhouse): what a flow that finds a sink's queue full does: block (wait; the default with -r) or drop (counted; the default with -i)")
	fs.IntVar(&c.sinkQueue, "sink-queue", sink.DefaultMaxFlows, "with a sink: how many flows may wait for each")
	c.sinkQueueBytes = sink.DefaultMaxBytes
	fs.Var((*byteSize)(&c.sinkQueueBytes), "sink-queue-bytes", "with a sink: how much memory the flows waiting for each may take, as 512K, 64M or 1G")
	durationFlag(fs, &c.sinkTimeout, "sink-timeout", sink.DefaultTimeout, "with a sink: at the end, how long the sinks may take to deliver what waits, the rest counted as failed; with --on-full block, also how long a sink may take no flow before it is taken as stalled and its queue drops")
	fs.StringVar(&c.metrics, "metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics; a bare port or :PORT binds to 127.0.0.1")
	fs.BoolVar(&c.quiet, "q", false, "no summary on standard error")
	fs.BoolVar(&c.verbose, "v", false, "log debug messages to standard error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log messages on standard error as `text` (key=value) or json (one object per line, for journald and log collectors)")
	version := fs.Bool("version", false, "print the version, the Go version and the kernel object's, and exit")
	words, help, err := parseFlags(fs, args, stdout, printUsage(fs, usage))
	if err != nil || help {
		return nil, err
	}
	if *version {
		fmt.Fprintln(stdout, fparser.Version())
		return nil, nil
	}
	set := setFlags(fs)
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
			return nil, usagef("-F: %v", err)
		}
		c.filter = string(b)
	}
	if given > 1 {
		return nil, usagef("give the filter once: with -f, -F or as trailing words")
	}
	if c.dumpFilter {
		return c, onlyWith(set, false, "does not apply to --dump-filter", "i")
	}
	switch {
	case c.read != "" && len(c.ifaces) > 0:
		return nil, usagef("-r and -i exclude each other")
	case c.read == "" && len(c.ifaces) == 0:
		return nil, usagef("nothing to read: give -r FILE or -i IFACE (see fparser -h)")
	}
	for _, check := range []error{
		onlyWith(set, len(c.ifaces) > 0, "is for -i, not -r: a capture file has no kernel datapath", "attach", "max-flows", "pin", "coarse-clock"),
		onlyWith(set, c.read != "", "is for -r: the kernel datapath reads headers only", "s"),
		onlyWith(set, c.ipfix != "", "needs --ipfix", "ipfix-proto", "ipfix-uniflow", "ipfix-timeout"),
		onlyWith(set, c.kafka != "", "needs --kafka", "kafka-topic", "kafka-compression", "kafka-format", "kafka-tls", "kafka-tls-ca", "kafka-tls-cert", "kafka-tls-key", "kafka-sasl"),
		onlyWith(set, c.kafkaSASL != "", "needs --kafka-sasl", "kafka-user", "kafka-password-file"),
		onlyWith(set, c.clickhouse != "", "needs --clickhouse", "clickhouse-table", "clickhouse-user"),
		onlyWith(set, c.kafka != "" || c.ipfix != "" || c.clickhouse != "", "needs --ipfix, --kafka or --clickhouse", "on-full", "sink-queue", "sink-queue-bytes", "sink-timeout"),
		onlyWith(set, c.format != "csv", "needs -o text or -o json", "packets"),
		onlyWith(set, c.format != "text", "needs -o csv or -o json", "features"),
		onlyWith(set, c.format != "text" || c.ipfix != "" || c.kafka != "", "needs -o csv, -o json, --ipfix or --kafka", "tcp-quality"),
	} {
		if check != nil {
			return nil, check
		}
	}
	if err := checkPatterns(c.ifaces); err != nil {
		return nil, err
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return nil, usagef("--log-format %s: want text or json", c.logFormat)
	}
	if c.snaplen <= 0 {
		return nil, usagef("-s %d: want a positive length", c.snaplen)
	}
	if c.ipfixProto != "udp" && c.ipfixProto != "tcp" {
		return nil, usagef("--ipfix-proto %s: want udp or tcp", c.ipfixProto)
	}
	if err := kafkaSecurity(c); err != nil {
		return nil, err
	}
	switch c.onFull {
	case "":
		c.onFull = "block"
		if len(c.ifaces) > 0 {
			c.onFull = "drop"
		}
	case "block", "drop":
	default:
		return nil, usagef("--on-full %s: want block or drop", c.onFull)
	}
	if c.sinkQueue <= 0 {
		return nil, usagef("--sink-queue %d: want a positive number of flows", c.sinkQueue)
	}
	if c.sinkTimeout <= 0 {
		return nil, usagef("--sink-timeout %s: want a positive duration", c.sinkTimeout)
	}
	if c.sort != "" {
		if _, err := fparser.ParseSortOrder(c.sort); err != nil {
			return nil, usagef("--sort %s: want packets, bytes, pps or bps", c.sort)
		}
	}
	if _, ok := formats[c.format]; !ok {
		return nil, usagef("-o %s: want text, json or csv", c.format)
	}
	if c.metrics != "" {
		if _, err := metrics.ListenAddress(c.metrics); err != nil {
			return nil, usagef("--metrics %s: want HOST:PORT, :PORT or PORT", c.metrics)
		}
	}
	return c, nil
}

// clickhousePasswordEnv is the environment variable that holds the ClickHouse
// user's password.
const clickhousePasswordEnv = "FPARSER_CLICKHOUSE_PASSWORD"

// kafkaPasswordEnv is the environment variable that holds the SASL password, so
// that it shows in no process list.
const kafkaPasswordEnv = "FPARSER_KAFKA_PASSWORD"

// kafkaSecurity turns the --kafka-tls and --kafka-sasl flags into c's TLS
// configuration and SASL authentication, reading the files they name.
func kafkaSecurity(c *config) error {
	if c.kafkaTLS || c.kafkaCA != "" || c.kafkaCert != "" || c.kafkaKey != "" {
		cfg, err := kafka.TLSFiles(c.kafkaCA, c.kafkaCert, c.kafkaKey)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				flag := map[string]string{c.kafkaCA: "--kafka-tls-ca", c.kafkaCert: "--kafka-tls-cert", c.kafkaKey: "--kafka-tls-key"}[pe.Path]
				return usagef("%s %s: %v", flag, pe.Path, pe.Err)
			}
			return usagef("--kafka-tls: %s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "kafka: bad configuration: "), "kafka: "))
		}
		c.kafkaTLSConfig = cfg
	}
	if c.kafkaSASL == "" {
		return nil
	}
	if c.kafkaUser == "" {
		return usagef("--kafka-sasl needs --kafka-user")
	}
	password := os.Getenv(kafkaPasswordEnv)
	if c.kafkaPasswordFile != "" {
		b, err := os.ReadFile(c.kafkaPasswordFile)
		if err != nil {
			return usagef("--kafka-password-file: %v", err)
		}
		password, _, _ = strings.Cut(string(b), "\n")
		password = strings.TrimSuffix(password, "\r")
	}
	if password == "" {
		return usagef("--kafka-sasl needs a password: in %s or --kafka-password-file", kafkaPasswordEnv)
	}
	c.kafkaAuth = &kafka.SASL{Mechanism: c.kafkaSASL, User: c.kafkaUser, Password: password}
	if c.kafkaAuth.Check() != nil {
		return usagef("--kafka-sasl %s: want plain, scram-sha-256 or scram-sha-512", c.kafkaSASL)
	}
	return nil
}

// openSource checks the source the command line names, so that its error says what
// it is: a file that is missing or a directory, an interface that does not exist.
func openSource(c *config) (string, error) {
	if len(c.ifaces) > 0 {
		for _, name := range c.ifaces {
			if err := checkInterface(name); err != nil {
				return "", err
			}
		}
		return strings.Join(c.ifaces, ", "), nil
	}
	if c.read == fparser.Stdin {
		return c.read, nil
	}
	fi, err := os.Stat(c.read)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("-r %s: no such file", c.read)
	case err != nil:
		return "", fmt.Errorf("-r: %w", err)
	case fi.IsDir():
		return "", fmt.Errorf("-r %s: is a directory, not a capture file", c.read)
	}
	return c.read, nil
}

// checkInterface says what is wrong with an interface given to -i by name: it is not
// there.
func checkInterface(name string) error {
	if name == fparser.AllInterfaces || isPattern(name) {
		return nil // checked by parseArgs
	}
	if _, err := net.InterfaceByName(name); err != nil {
		if name == "any" {
			return fmt.Errorf("-i any: no such network interface: fparser attaches to interfaces by name, and libpcap's \"any\" is not one (-i all counts on every interface)")
		}
		return fmt.Errorf("-i %s: no such network interface", name)
	}
	return nil
}

// isPattern says -i was given a shell pattern rather than a name.
func isPattern(name string) bool { return strings.ContainsAny(name, `*?[\`) }

// checkPatterns refuses a bad pattern given to -i.
func checkPatterns(ifaces []string) error {
	for _, name := range ifaces {
		if isPattern(name) {
			if _, err := path.Match(name, ""); err != nil {
				return usagef("-i %s: not a valid pattern (%v); want a name, a shell pattern such as 'veth*', or all", name, err)
			}
		}
	}
	return nil
}

// interfaceList is -i, which may be given several times.
type interfaceList []string

func (l *interfaceList) String() string { return strings.Join(*l, ",") }

func (l *interfaceList) Set(v string) error {
	if v == "" {
		return errors.New("want an interface name, a pattern or all")
	}
	*l = append(*l, v)
	return nil
}

// count counts the flows of the source c names and writes them to stdout.
func count(c *config, stdout, stderr io.Writer) error {
	source, err := openSource(c)
	if err != nil {
		return err
	}
	var order fparser.SortOrder
	if c.sort != "" {
		order, _ = fparser.ParseSortOrder(c.sort) // checked by parseArgs
	}
	live := len(c.ifaces) > 0
	out, err := newFlowWriter(stdout, c.format, isTerminal(stdout), c.packets != 0, c.features, c.tcpQuality, c.decap)
	if err != nil {
		return &usageError{err.Error()}
	}
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if c.logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	logger := slog.New(handler)

	// Each sink has a queue of its own, so that one that is slow or unreachable
	// holds up neither the parser nor the other sinks.
	queueConfig := sink.Config{MaxFlows: c.sinkQueue, MaxBytes: c.sinkQueueBytes, Block: c.onFull == "block", Timeout: c.sinkTimeout, Logger: logger}
	var exporter *ipfix.Exporter
	var sinks []*sink.Queue
	var summaries []func() string
	// closeSinks flushes the sinks at once, each within --sink-timeout, and
	// returns the first error.
	closeSinks := func() error {
		closed := make(chan error, len(sinks))
		for _, q := range sinks {
			go func() { closed <- q.Close() }()
		}
		var first error
		for range sinks {
			if err := <-closed; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	if c.ipfix != "" {
		exporter, err = ipfix.Dial(ipfix.Config{Network: c.ipfixProto, Address: c.ipfix, Uniflow: c.ipfixUniflow, WriteTimeout: c.ipfixTimeout, TCPQuality: c.tcpQuality})
		if err != nil {
			return err
		}
		q := sink.New("ipfix", exporter, queueConfig)
		sinks = append(sinks, q)
		summaries = append(summaries, func() string { return ipfixSummary(q.Stats(), exporter.Stats(), c.ipfix, c.ipfixProto) })
	}
	if c.kafka != "" {
		// The producer waits for room in its buffer: the queue in front of it
		// decides whether flows wait or drop.
		producer, err := kafka.New(kafka.Config{Brokers: strings.Split(c.kafka, ","), Topic: c.kafkaTopic, Compression: c.kafkaCompression, Format: c.kafkaFormat,
			Features: c.features, Quality: c.tcpQuality, Tunnel: c.decap, Packets: c.packets != 0, Block: true, TLS: c.kafkaTLSConfig, SASL: c.kafkaAuth})
		if err != nil {
			closeSinks()
			return err
		}
		q := sink.New("kafka", producer, queueConfig)
		sinks = append(sinks, q)
		summaries = append(summaries, func() string { return kafkaSummary(q.Stats(), c.kafkaTopic, c.kafka) })
	}

	if c.clickhouse != "" {
		db, table, ok := strings.Cut(c.chTable, ".")
		if !ok {
			db, table = "", c.chTable
		}
		writer, err := clickhouse.New(clickhouse.Config{Addr: strings.Split(c.clickhouse, ","), Database: db, Table: table,
			Username: c.chUser, Password: os.Getenv(clickhousePasswordEnv)})
		if err != nil {
			closeSinks()
			return err
		}
		q := sink.New("clickhouse", writer, queueConfig)
		sinks = append(sinks, q)
		summaries = append(summaries, func() string { return clickhouseSummary(q.Stats(), writer, c.clickhouse) })
	}

	var p *fparser.Parser
	var writeErr error
	var held []fparser.Flow // with --sort, until the end
	var queue *flowQueue    // without --sort
	emit := func(f fparser.Flow) {
		for _, q := range sinks {
			q.Put(&f) // a flow dropped for want of room is counted; reported at the end
		}
		if order != fparser.Unsorted {
			held = append(held, f)
			return
		}
		queue.put(&f)
	}
	o := &fparser.Options{
		FlowTimeout:   c.flowTimeout,
		FinTimeout:    c.finTimeout,
		ActiveTimeout: c.activeTimeout,
		Filter:        c.filter,
		Packets:       c.packets,
		Statistics:    c.features,
		TCPQuality:    c.tcpQuality,
		Decap:         c.decap,
		Logger:        logger,
		OnTCP:         emit,
		OnUDP:         emit,
	}
	if live {
		o.Attach, o.MaxFlows, o.CoarseClock, o.PinDir = c.attach, c.maxFlows, c.coarse, c.pin
	} else {
		o.Snaplen = c.snaplen
	}
	// A Ctrl-C or SIGTERM stops the parser the clean way, even one that came while
	// the programs were being attached (interrupts).
	ctx, stop := onInterrupt()
	defer stop()
	from := source
	if live {
		from, o.Interfaces = "", c.ifaces
	}
	p, err = fparser.New(from, o)
	if err != nil {
		closeSinks()
		return err
	}
	if c.metrics != "" {
		srv, err := metrics.Serve(c.metrics, metrics.NewCollector(p, exporter, sinks...))
		if err != nil {
			closeSinks()
			p.Close()
			return fmt.Errorf("--metrics: %w", err)
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
	if !live && !c.quiet && isTerminal(stderr) {
		endProgress = showProgress(p, stderr)
	}
	if order == fparser.Unsorted {
		// Live, each flow is written as it ends, as tcpdump -l does; a replay
		// writes in batches.
		queue = startFlowQueue(out, live, p.Stop) // nowhere to write: stop reading
	}
	if live && !c.quiet {
		// tcpdump's "listening on": the programs are attached, packets count from
		// here on. Scripts and tests wait for this line.
		fmt.Fprintf(stderr, "fparser: counting on %s; Ctrl-C or SIGTERM stops\n", source)
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
	if order != fparser.Unsorted {
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
	exportErr := closeSinks()
	if !c.quiet {
		fmt.Fprintln(stderr, summary(&info, live))
		for _, say := range summaries {
			fmt.Fprintln(stderr, say())
		}
	}
	switch {
	case writeErr != nil:
		return fmt.Errorf("writing flows: %w", writeErr)
	case exportErr != nil:
		return exportErr
	}
	return runErr
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
func dumpFilter(expr, capture string, stdout io.Writer) error {
	prog, err := fparser.CompileFilter(expr, capture)
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(stdout, prog.DDD())
	return err
}

// summary is Info in one line, for a reader who has not read Info's doc.
func summary(in *fparser.Info, live bool) string {
	var ended uint64
	for _, n := range in.FlowsEnded {
		ended += n
	}
	var b strings.Builder
	fmt.Fprintf(&b, "fparser: %s", plural(in.PacketsSeen, "packet"))
	if in.Filtered > 0 {
		fmt.Fprintf(&b, ", %d filtered out", in.Filtered)
	}
	fmt.Fprintf(&b, ", %d in flows (tcp %d, udp %d), %d non-IP, %d other L4, %d malformed, %s (%d not in a flow); %s",
		in.PacketsAccepted, in.AcceptedTCP, in.AcceptedUDP, in.NonIP, in.OtherL4, in.Malformed,
		plural(in.Fragments, "fragment"), in.Unattributed, plural(ended, "flow"))
	if live && in.Evictions > 0 {
		fmt.Fprintf(&b, " (%d evicted by the kernel's full table)", in.Evictions)
	}
	fmt.Fprintf(&b, "; %.1f packets/s over %v; sweeps for ended flows took %v",
		in.AvgPPS, in.Elapsed.Round(time.Millisecond), in.TimeCollecting.Round(time.Microsecond))
	if in.CallbackPanics > 0 {
		fmt.Fprintf(&b, "; %s", plural(in.CallbackPanics, "callback panic"))
	}
	return b.String()
}

// sinkCounts says what became of a sink's flows: "90 sent, 0 dropped, 10 failed".
func sinkCounts(st sink.Stats) string {
	return fmt.Sprintf("%d sent, %d dropped, %d failed", st.Sent, st.Dropped, st.Failed)
}

// ipfixSummary says, in one line, what became of the flows given to the IPFIX
// sink, and the exporter's messages.
func ipfixSummary(st sink.Stats, ex ipfix.Stats, addr, proto string) string {
	s := fmt.Sprintf("fparser: ipfix: %s to %s over %s: %s; %s (%s) sent",
		plural(st.Flows, "flow"), addr, proto, sinkCounts(st), plural(ex.Messages, "message"), plural(ex.Records, "record"))
	if ex.NotSentMessages > 0 {
		s += fmt.Sprintf(", %s not", plural(ex.NotSentMessages, "message"))
	}
	if ex.Errors > 0 {
		s += fmt.Sprintf("; %s", plural(ex.Errors, "send error"))
	}
	return s
}

// clickhouseSummary says, in one line, what became of the flows given to the
// ClickHouse sink.
func clickhouseSummary(st sink.Stats, w *clickhouse.Writer, addrs string) string {
	return fmt.Sprintf("fparser: clickhouse: %s to table %s on %s: %s; %s", plural(st.Flows, "flow"), w.Table(), addrs, sinkCounts(st), plural(w.Inserts(), "insert"))
}

// kafkaSummary says, in one line, what became of the flows given to the Kafka
// sink.
func kafkaSummary(st sink.Stats, topic, brokers string) string {
	return fmt.Sprintf("fparser: kafka: %s to topic %s on %s: %s", plural(st.Flows, "flow"), topic, brokers, sinkCounts(st))
}

// plural is n words, with an s unless n is 1.
func plural(n uint64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.FormatUint(n, 10) + " " + word + "s"
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
