package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/fparser/fparser/internal/testnet"
)

// stallSafety turns a hang into a failure; nothing here is meant to take near as long.
const stallSafety = 2 * time.Minute

// flowRecords reads, once the exporter has closed or reset its connections, the
// complete messages each connection of col holds, decodes them with goflow2, and
// returns the flow records in them.
func flowRecords(t *testing.T, col *testnet.StalledCollector) int {
	t.Helper()
	records := 0
	for _, conn := range col.Conns() {
		ts := netflow.CreateTemplateSystem() // a connection is a session of its own
		for _, msg := range testnet.Messages(t, conn, stallSafety) {
			var p netflow.IPFIXPacket
			if err := netflow.DecodeMessageVersion(bytes.NewBuffer(msg), ts, nil, &p); err != nil {
				t.Fatal(err)
			}
			for _, fs := range p.FlowSets {
				switch s := fs.(type) {
				case netflow.DataFlowSet:
					records += len(s.Records)
				case netflow.RawFlowSet:
					t.Fatalf("a set without its template (id %d)", s.Id)
				}
			}
		}
	}
	return records
}

// ipfixLine is the command's IPFIX line: flows given to the sink, sent, dropped and
// failed.
var ipfixLine = regexp.MustCompile(`ipfix: (\d+) flows? to \S+ over tcp: (\d+) sent, (\d+) dropped, (\d+) failed; `)

// checkUndelivered checks the end of a run against a stalled collector: exit status
// 1, the error, and an IPFIX line that counts every flow printed once, as delivered
// or not sent, with the delivered ones exactly those the collector holds.
func checkUndelivered(t *testing.T, code int, stdout, stderr string, col *testnet.StalledCollector) {
	t.Helper()
	m := ipfixLine.FindStringSubmatch(stderr)
	if code != 1 || m == nil || !strings.Contains(stderr, "fparser: ipfix: ") {
		t.Fatalf("exit %d; stderr %q", code, stderr)
	}
	given, _ := strconv.Atoi(m[1])
	flows, _ := strconv.Atoi(m[2])
	dropped, _ := strconv.Atoi(m[3])
	failed, _ := strconv.Atoi(m[4])
	notSent := dropped + failed
	rows := strings.Count(stdout, "\n") - 1
	if given != rows || flows+notSent != rows || notSent == 0 {
		t.Errorf("%d flows printed; %d given to the sink: %d delivered, %d dropped, %d failed", rows, given, flows, dropped, failed)
	}
	if got := flowRecords(t, col); got != flows {
		t.Errorf("the command counts %d flows delivered; the collector holds %d", flows, got)
	}
	t.Logf("%d flows printed; %d delivered, %d not sent", rows, flows, notSent)
}

func runWithin(t *testing.T, done <-chan int) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(stallSafety):
		t.Fatalf("the command did not end in %v", stallSafety)
		return 0
	}
}

// TestIPFIXStalledCollector: exporting to a TCP collector that accepts and never
// reads, a replay ends: exit status 1, the send's error, and every flow counted as
// delivered (as many as the collector holds) or not sent.
func TestIPFIXStalledCollector(t *testing.T) {
	capture := writeManyFlows(t, 100000) // more than the socket buffers hold
	col := testnet.NewStalledCollector(t)
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-r", capture, "-o", "csv", "--ipfix", col.Addr(), "--ipfix-proto", "tcp", "--ipfix-timeout", "100ms"}, &stdout, &stderr)
	}()
	code := runWithin(t, done)
	if !strings.Contains(stderr.String(), "i/o timeout") {
		t.Errorf("stderr %q: want the timeout", stderr.String())
	}
	checkUndelivered(t, code, stdout.String(), stderr.String(), col)
}

// TestIPFIXStallSignal: with a send stuck on a collector that reads nothing, and an
// --ipfix-timeout far longer than the test, the metrics endpoint answers, and SIGINT
// or SIGTERM ends the replay: the stuck send is cut short and every flow is counted.
func TestIPFIXStallSignal(t *testing.T) {
	capture := writeManyFlows(t, 100000)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			col := testnet.NewStalledCollector(t)
			var stdout bytes.Buffer
			stderr := &testnet.Buffer{}
			done := make(chan int, 1)
			go func() {
				done <- run([]string{"-r", capture, "-o", "csv", "--ipfix", col.Addr(), "--ipfix-proto", "tcp", "--ipfix-timeout", "10m",
					"--metrics", "127.0.0.1:0", "-v"}, &stdout, stderr)
			}()
			waitIPFIXStuck(t, done)
			url := regexp.MustCompile(`url=(http://\S+/metrics)`).FindStringSubmatch(stderr.String())
			if url == nil {
				t.Fatalf("no metrics address in %q", stderr.String())
			}
			client := http.Client{Timeout: stallSafety}
			resp, err := client.Get(url[1])
			if err != nil {
				t.Fatalf("scrape during the stall: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "\nfparser_ipfix_flows_total ") {
				t.Fatalf("scrape during the stall: %v, %s, %d bytes", err, resp.Status, len(body))
			}
			guardSignal(t, sig)
			if err := syscall.Kill(os.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			code := runWithin(t, done)
			checkUndelivered(t, code, stdout.String(), stderr.String(), col)
		})
	}
}

// waitIPFIXStuck waits until a goroutine is blocked writing inside the IPFIX
// exporter, failing if the command ends first.
func waitIPFIXStuck(t *testing.T, done <-chan int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for start := time.Now(); time.Since(start) < stallSafety; time.Sleep(5 * time.Millisecond) {
		select {
		case code := <-done:
			t.Fatalf("the command ended (exit %d) before a send got stuck", code)
		default:
		}
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "[IO wait") && strings.Contains(g, "ipfix.(*Exporter)") {
				return
			}
		}
	}
	t.Fatal("no send got stuck")
}

// guardSignal keeps sig from killing the test process should it come when the
// command's own handler is not in place.
func guardSignal(t *testing.T, sig os.Signal) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	t.Cleanup(func() { signal.Stop(ch) })
}

// gatedWriter blocks its first Write until open is closed; started is closed when
// that Write comes.
type gatedWriter struct {
	w       io.Writer
	once    sync.Once
	started chan struct{}
	open    chan struct{}
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.once.Do(func() {
		close(g.started)
		<-g.open
	})
	return g.w.Write(p)
}

// TestIPFIXSignalDeliversStoppedFlows: SIGINT mid-replay, with a TCP collector that
// reads: the wait for the collector is bounded, but the collector takes what comes,
// so every flow printed, the ones the stop ended included, is delivered.
func TestIPFIXSignalDeliversStoppedFlows(t *testing.T) {
	capture := writeManyFlows(t, 100000)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan int, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			received <- -1
			return
		}
		defer conn.Close()
		ts := netflow.CreateTemplateSystem()
		records := 0
		for {
			h := make([]byte, 16)
			if _, err := io.ReadFull(conn, h); err != nil {
				received <- records
				return
			}
			m := make([]byte, int(h[2])<<8|int(h[3]))
			copy(m, h)
			if _, err := io.ReadFull(conn, m[16:]); err != nil {
				received <- records
				return
			}
			var p netflow.IPFIXPacket
			if err := netflow.DecodeMessageVersion(bytes.NewBuffer(m), ts, nil, &p); err != nil {
				received <- -1
				return
			}
			for _, fs := range p.FlowSets {
				if d, ok := fs.(netflow.DataFlowSet); ok {
					records += len(d.Records)
				}
			}
		}
	}()
	var out bytes.Buffer
	stdout := &gatedWriter{w: &out, started: make(chan struct{}), open: make(chan struct{})}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-r", capture, "-o", "csv", "--flow-timeout", "1s", "--ipfix", ln.Addr().String(), "--ipfix-proto", "tcp"}, stdout, &stderr)
	}()
	// The first flows are being written: the command is replaying, its handler in
	// place, and it will soon wait for the writer.
	select {
	case <-stdout.started:
	case <-time.After(stallSafety):
		t.Fatal("no output")
	}
	guardSignal(t, syscall.SIGINT)
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	close(stdout.open)
	code := runWithin(t, done)
	rows := strings.Count(out.String(), "\n") - 1
	m := regexp.MustCompile(`ipfix: \d+ flows? to \S+ over tcp: (\d+) sent, 0 dropped, 0 failed; \d+ messages? \(\d+ records?\) sent\n`).FindStringSubmatch(stderr.String())
	if code != 0 || m == nil {
		t.Fatalf("exit %d; stderr %q", code, stderr.String())
	}
	if !strings.Contains(out.String(), ",stopped,") {
		t.Errorf("no flow ended by the stop, in %d rows", rows)
	}
	delivered, _ := strconv.Atoi(m[1])
	var got int
	select {
	case got = <-received:
	case <-time.After(stallSafety):
		t.Fatal("the collector's connection did not end")
	}
	if delivered != rows || got != rows {
		t.Errorf("%d flows printed, %d counted delivered, %d received", rows, delivered, got)
	}
	t.Logf("%d flows printed and delivered", rows)
}
