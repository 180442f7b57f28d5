package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/testnet"
)

// The delivery faults of issue 17: each sink against a destination that takes
// nothing, one that goes away mid-run and comes back, and one that refuses. In
// every case the summary line counts each flow printed once: sent + dropped +
// failed = flows, and what it counts as sent is what the destination holds.

// sinkLine is a sink's summary line: flows given to it, sent, dropped and failed.
var sinkLine = regexp.MustCompile(`fparser: (\w+): (\d+) flows? to .*?: (\d+) sent, (\d+) dropped, (\d+) failed`)

type sinkTally struct{ flows, sent, dropped, failed int }

// sinkSummary finds the summary line of the sink name in stderr, and checks that
// it counts every one of rows flows once.
func sinkSummary(t *testing.T, stderr, name string, rows int) sinkTally {
	t.Helper()
	for _, m := range sinkLine.FindAllStringSubmatch(stderr, -1) {
		if m[1] != name {
			continue
		}
		var c sinkTally
		for i, p := range []*int{&c.flows, &c.sent, &c.dropped, &c.failed} {
			*p, _ = strconv.Atoi(m[i+2])
		}
		if c.flows != rows || c.sent+c.dropped+c.failed != c.flows {
			t.Errorf("%d flows printed; %s", rows, m[0])
		}
		t.Logf("%d flows printed; %s", rows, m[0])
		return c
	}
	t.Fatalf("no %s line in %q", name, stderr)
	return sinkTally{}
}

func csvRows(stdout string) int { return strings.Count(stdout, "\n") - 1 } // less the CSV header

// TestSinkKafkaStalledBroker: a "broker" that accepts connections and never reads
// them. The replay ends; at --sink-timeout every flow fails, and the command says
// so.
func TestSinkKafkaStalledBroker(t *testing.T) {
	col := testnet.NewStalledCollector(t)
	capture := writeManyFlows(t, 500)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run([]string{"-r", capture, "-o", "csv", "--kafka", col.Addr(), "--sink-timeout", "1s"}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "kafka: topic fparser-flows on "+col.Addr()) {
		t.Errorf("exit %d, %s", code, stderr.String())
	}
	c := sinkSummary(t, stderr.String(), "kafka", csvRows(stdout.String()))
	if c.sent != 0 || c.failed == 0 {
		t.Errorf("%+v: want none sent", c)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("took %v with --sink-timeout 1s", took)
	}
}

// TestSinkIPFIXDropWhenFull: live's default, --on-full drop, on a replay to a TCP
// collector that reads nothing, with a small queue: the replay goes on at its pace,
// the queue drops what it has no room for, and every flow is counted.
func TestSinkIPFIXDropWhenFull(t *testing.T) {
	capture := writeManyFlows(t, 20000)
	col := testnet.NewStalledCollector(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"-r", capture, "-o", "csv", "--ipfix", col.Addr(), "--ipfix-proto", "tcp", "--on-full", "drop",
		"--sink-queue", "100", "--sink-timeout", "500ms"}, &stdout, &stderr)
	if code != exitFailure {
		t.Errorf("exit %d, %s", code, stderr.String())
	}
	c := sinkSummary(t, stderr.String(), "ipfix", csvRows(stdout.String()))
	if c.dropped == 0 {
		t.Errorf("%+v: nothing dropped", c)
	}
	if got := flowRecords(t, col); got != c.sent {
		t.Errorf("the command counts %d flows sent; the collector holds %d", c.sent, got)
	}
}

// TestSinkIPFIXClosedUDPPort: IPFIX over UDP to a port nothing listens on. The
// kernel's port unreachable reports make the exporter count the messages refused
// as not sent; every flow is counted once.
func TestSinkIPFIXClosedUDPPort(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close()
	capture := writeManyFlows(t, 5000)
	var stdout, stderr bytes.Buffer
	code := run([]string{"-r", capture, "-o", "csv", "--ipfix", closed}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "connection refused") {
		t.Errorf("exit %d, %s", code, stderr.String())
	}
	c := sinkSummary(t, stderr.String(), "ipfix", csvRows(stdout.String()))
	if c.failed == 0 {
		t.Errorf("%+v: none failed", c)
	}
}

// phasedCapture feeds the command's standard input a capture in phases: each
// phase's flows, then the first packet of the next phase an hour later, which
// ends them (the flow timeout is 10 minutes). The test goes on with the next
// phase when it has checked what the last one delivered.
type phasedCapture struct {
	w     *os.File
	pw    *pcapgo.Writer
	phase int
}

func newPhasedCapture(t *testing.T) *phasedCapture {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = stdin; r.Close(); w.Close() })
	pc := &phasedCapture{w: w, pw: pcapgo.NewWriterNanos(w)}
	if err := pc.pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	return pc
}

var phaseStart = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)

// next writes n flows of a new phase and a packet an hour later, which ends them.
func (pc *phasedCapture) next(t *testing.T, n int) {
	t.Helper()
	pc.phase++
	t0 := phaseStart.Add(time.Duration(pc.phase) * time.Hour)
	write := func(src netip.Addr, at time.Time) {
		frame := pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src, Dst: netip.AddrFrom4([4]byte{203, 0, 113, 9}), Proto: pb.ProtoUDP}.Build(pb.UDP(40000, 53, nil)))
		if err := pc.pw.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(frame), Length: len(frame)}, frame); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		write(netip.AddrFrom4([4]byte{10, byte(pc.phase), byte(i >> 8), byte(i)}), t0.Add(time.Duration(i)*time.Millisecond))
	}
	// The clock's next step, a flow of its own, ended by the next phase or the end.
	write(netip.AddrFrom4([4]byte{10, 200, 0, byte(pc.phase)}), t0.Add(time.Hour/2))
	// The replay reads in batches of up to 256 KiB, each whole before its frames
	// count: frames of no IP push this phase's through.
	filler := make([]byte, 60000)
	copy(filler[12:], []byte{0x88, 0xb5}) // the local experimental EtherType
	for range 10 {
		at := t0.Add(time.Hour / 2)
		if err := pc.pw.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(filler), Length: len(filler)}, filler); err != nil {
			t.Fatal(err)
		}
	}
}

func (pc *phasedCapture) end() { pc.w.Close() }

// metric reads one sample of the command's metrics: name and labels as the text
// format writes them.
func metric(t *testing.T, url, sample string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\d+)`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v
}

// waitMetric waits until a sample of the command's metrics reaches want.
func waitMetric(t *testing.T, url, sample string, want int) {
	t.Helper()
	for deadline := time.Now().Add(stallSafety); ; time.Sleep(10 * time.Millisecond) {
		got := metric(t, url, sample)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %d, want %d", sample, got, want)
		}
	}
}

// startPhased runs the command on the phased capture with args, and returns its
// output and its exit status when it ends.
func startPhased(args []string) (stdout *testnet.Buffer, stderr *testnet.Buffer, done chan int) {
	stdout, stderr, done = &testnet.Buffer{}, &testnet.Buffer{}, make(chan int, 1)
	go func() {
		done <- run(append([]string{"-r", "-", "-o", "csv", "--metrics", "127.0.0.1:0", "-v"}, args...), stdout, stderr)
	}()
	return stdout, stderr, done
}

// metricsURL waits for the command to say where it serves its metrics.
func metricsURL(t *testing.T, stderr *testnet.Buffer) string {
	t.Helper()
	for deadline := time.Now().Add(stallSafety); ; time.Sleep(5 * time.Millisecond) {
		if m := regexp.MustCompile(`url=(http://\S+/metrics)`).FindStringSubmatch(stderr.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics address in %q", stderr.String())
		}
	}
}

// freePort is a loopback port nothing listens on, for a destination that must come
// back at the same address.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSinkKafkaBrokerComesBack: the broker goes away after the first phase's flows
// are delivered (it closes every connection at the first request), and comes back.
// The flows that ended meanwhile wait in the producer's buffer, and are delivered
// when it is back.
func TestSinkKafkaBrokerComesBack(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "flows"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	var away atomic.Bool
	var refused atomic.Int64
	cluster.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if away.Load() {
			refused.Add(1)
			return nil, errors.New("away"), true // closes the connection
		}
		return nil, nil, false
	})
	addr := cluster.ListenAddrs()[0]
	pc := newPhasedCapture(t)
	stdout, stderr, done := startPhased([]string{"--kafka", addr, "--kafka-topic", "flows", "--sink-timeout", "1m"})
	pc.next(t, 100) // the command reads as the test writes
	url := metricsURL(t, stderr)
	sent := `fparser_sink_flows_total{result="sent",sink="kafka"}`
	waitMetric(t, url, sent, 100)
	away.Store(true)

	pc.next(t, 100) // ends phase 1's clock flow and these, while the broker is away
	waitMetric(t, url, `fparser_flows_ended_total{reason="idle"}`, 201)
	for refused.Load() == 0 {
		time.Sleep(time.Millisecond) // the producer has tried the broker that is away
	}
	if got := metric(t, url, sent); got != 100 {
		t.Errorf("%d flows sent to a broker away", got)
	}
	away.Store(false)

	pc.next(t, 100)
	pc.end()
	code := runWithin(t, done)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	c := sinkSummary(t, stderr.String(), "kafka", csvRows(stdout.String()))
	if c.sent != c.flows {
		t.Errorf("%+v: want every flow sent", c)
	}
	t.Logf("%d requests refused while away", refused.Load())

	// The broker holds every flow once.
	got := map[string]int{}
	for _, v := range consumeValues(t, addr, "flows", c.flows) {
		got[src(v)]++
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n")[1:] {
		if ip := strings.Split(line, ",")[1]; got[ip] != 1 {
			t.Errorf("the broker holds %d messages of %s", got[ip], ip)
		}
	}
}

// src is the source address of a flow's JSON message.
func src(msg []byte) string {
	var f struct {
		SrcIP string `json:"src_ip"`
	}
	json.Unmarshal(msg, &f)
	return f.SrcIP
}

// readingCollector is an IPFIX collector over TCP that reads every connection as
// data comes, and counts the flow records of the messages it decoded.
type readingCollector struct {
	ln      net.Listener
	mu      sync.Mutex
	records int
	conns   []net.Conn
	wg      sync.WaitGroup
}

func newReadingCollector(t *testing.T, addr string) *readingCollector {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &readingCollector{ln: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			c.wg.Add(1)
			go c.read(t, conn)
		}
	}()
	return c
}

func (c *readingCollector) read(t *testing.T, conn net.Conn) {
	defer c.wg.Done()
	ts := netflow.CreateTemplateSystem()
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		n, err := conn.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for len(buf) >= 16 {
			size := int(buf[2])<<8 | int(buf[3])
			if size < 16 || size > len(buf) {
				break
			}
			var p netflow.IPFIXPacket
			if derr := netflow.DecodeMessageVersion(bytes.NewBuffer(buf[:size]), ts, nil, &p); derr != nil {
				t.Error(derr)
				return
			}
			for _, fs := range p.FlowSets {
				if d, ok := fs.(netflow.DataFlowSet); ok {
					c.mu.Lock()
					c.records += len(d.Records)
					c.mu.Unlock()
				}
			}
			buf = buf[size:]
		}
		if err != nil {
			return
		}
	}
}

func (c *readingCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records
}

// drain closes the listener and waits for the exporter to end its connections, and
// for the readers to have read them.
func (c *readingCollector) drain() {
	c.ln.Close()
	c.wg.Wait()
}

// stop closes the listener and every connection, and waits for the readers.
func (c *readingCollector) stop() {
	c.ln.Close()
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// TestSinkIPFIXCollectorComesBack: the TCP collector goes away after the first
// phase's flows are delivered, and comes back at the same address. The message
// the exporter wrote into the dead connection counts as failed; the flows that
// end while it is away wait in the queue and go to the new connection. What the
// command counts as sent is what the collector decoded.
func TestSinkIPFIXCollectorComesBack(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	col := newReadingCollector(t, addr)
	pc := newPhasedCapture(t)
	stdout, stderr, done := startPhased([]string{"--ipfix", addr, "--ipfix-proto", "tcp", "--sink-timeout", "1m"})
	pc.next(t, 100) // the command reads as the test writes
	url := metricsURL(t, stderr)
	sent := `fparser_sink_flows_total{result="sent",sink="ipfix"}`
	waitMetric(t, url, sent, 100)
	for col.count() < 100 {
		time.Sleep(time.Millisecond)
	}
	first := col.count()
	col.stop()

	pc.next(t, 100)
	waitMetric(t, url, "fparser_ipfix_errors_total", 1) // the exporter found the collector gone
	col = newReadingCollector(t, addr)
	defer col.stop()

	pc.next(t, 100)
	pc.end()
	code := runWithin(t, done)
	c := sinkSummary(t, stderr.String(), "ipfix", csvRows(stdout.String()))
	col.drain()
	if got := first + col.count(); got != c.sent {
		t.Errorf("the command counts %d flows sent; the collectors decoded %d", c.sent, got)
	}
	if c.sent <= 200 || c.dropped != 0 {
		t.Errorf("%+v: want more than the first phase and the last sent, none dropped", c)
	}
	if c.failed > 0 && code != exitFailure || c.failed == 0 && code != 0 {
		t.Errorf("exit %d with %d failed: %s", code, c.failed, stderr.String())
	}
}
