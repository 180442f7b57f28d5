package ipfix_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testnet"
	"github.com/fparser/fparser/ipfix"
)

// safety turns a hang into a failure; nothing here is meant to take near as long.
const safety = time.Minute

// completeMessages reads what conn holds until the exporter has closed or reset it,
// and returns the complete messages in it: what the collector could decode.
func completeMessages(t *testing.T, conn net.Conn) [][]byte {
	t.Helper()
	return testnet.Messages(t, conn, safety)
}

// within runs f and fails the test if it has not returned after the safety timeout.
func within[T any](t *testing.T, what string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(safety):
		t.Fatalf("%s did not return in %v", what, safety)
		panic("unreachable")
	}
}

// waitStuck waits until a goroutine is blocked in a write inside the exporter, or
// exporting has ended (done is closed).
func waitStuck(t *testing.T, done <-chan struct{}) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for start := time.Now(); time.Since(start) < safety; time.Sleep(5 * time.Millisecond) {
		select {
		case <-done:
			t.Fatal("exporting ended before a send got stuck")
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

func testFlows(t *testing.T) []fparser.Flow {
	var paths []string
	for _, c := range []string{"http.pcap", "reuse.pcap", "vlan.pcap", "dns.pcap", "reset.pcap", "fragments.pcap", "ipv6ext.pcap"} {
		paths = append(paths, "../testdata/"+c)
	}
	return replay(t, paths, 10)
}

func dial(t *testing.T, cfg ipfix.Config) *ipfix.Exporter {
	t.Helper()
	e, err := ipfix.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// exportUntilError exports the flows round and round until Export fails, and
// returns the error and how many flows were given to Export, the failed call's
// included.
func exportUntilError(e *ipfix.Exporter, flows []fparser.Flow) (int, error) {
	for i := 0; ; i++ {
		if err := e.Export(&flows[i%len(flows)]); err != nil {
			return i + 1, err
		}
	}
}

// delivered checks the exporter's counters against what the collector holds: the
// complete messages, their data records and options records.
func delivered(t *testing.T, st ipfix.Stats, conns ...[][]byte) (records int) {
	t.Helper()
	var msgs, data, options int
	for _, m := range conns {
		d := decodeAll(t, m) // each connection defines its templates anew
		msgs += len(m)
		data += len(d.records)
		options += len(d.options)
	}
	if st.Messages != uint64(msgs) || st.Flows != uint64(data) || st.Records != uint64(data+options) {
		t.Errorf("Stats say %d messages, %d flows, %d records delivered; the collector holds %d messages, %d flow records, %d options records",
			st.Messages, st.Flows, st.Records, msgs, data, options)
	}
	return data
}

// TestStalledCollector: a TCP collector that accepts and never reads. Export fails
// once a send has waited WriteTimeout, and from then on nothing waits for the
// collector: every later message is counted as not sent without a send (Errors stays
// 1) until RetryInterval has passed. Close returns. The counters say exactly what the
// collector's TCP took: the flows in its complete messages, and no more.
func TestStalledCollector(t *testing.T) {
	col := testnet.NewStalledCollector(t)
	e := dial(t, ipfix.Config{Network: "tcp", Address: col.Addr(), WriteTimeout: 100 * time.Millisecond, RetryInterval: time.Hour})
	conn := col.Next(t, safety)
	flows := testFlows(t)
	type result struct {
		n   int
		err error
	}
	r := within(t, "Export to a stalled collector", func() result {
		n, err := exportUntilError(e, flows)
		return result{n, err}
	})
	if !errors.Is(r.err, os.ErrDeadlineExceeded) || !strings.Contains(r.err.Error(), col.Addr()) {
		t.Fatalf("Export: %v; want a timeout that names the collector", r.err)
	}
	exported := r.n
	var later error
	for i := range 1000 {
		if err := e.Export(&flows[i%len(flows)]); err != nil && later == nil {
			later = err
		}
		exported++
	}
	flush := e.Flush()
	if later == nil || flush == nil || !errors.Is(flush, os.ErrDeadlineExceeded) {
		t.Errorf("after the stall: Export %v, Flush %v; want errors that give the cause", later, flush)
	}
	if err := within(t, "Close", e.Close); err == nil {
		t.Error("Close: no error")
	}
	st := e.Stats()
	delivered(t, st, completeMessages(t, conn))
	if st.Flows+st.NotSentFlows != uint64(exported) || st.Records+st.NotSentRecords != uint64(exported)+1 || st.NotSentMessages == 0 || st.Errors != 1 {
		t.Errorf("%d flows exported; Stats %+v: want every flow and the options record counted once, sent or not, and 1 error", exported, st)
	}
	t.Logf("%d flows exported; %+v", exported, st)
}

// TestStatsWhileSendIsStuck: Stats answers while another goroutine's send waits for
// the collector, and SetWriteTimeout cuts that send short.
func TestStatsWhileSendIsStuck(t *testing.T) {
	col := testnet.NewStalledCollector(t)
	e := dial(t, ipfix.Config{Network: "tcp", Address: col.Addr(), WriteTimeout: time.Hour, RetryInterval: time.Hour})
	conn := col.Next(t, safety)
	flows := testFlows(t)
	done := make(chan struct{})
	var exported int
	var err error
	go func() {
		defer close(done)
		exported, err = exportUntilError(e, flows)
	}()
	waitStuck(t, done)
	during := within(t, "Stats while a send is stuck", e.Stats)
	e.SetWriteTimeout(10 * time.Millisecond)
	within(t, "the stuck send, cut short", func() struct{} { <-done; return struct{}{} })
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Export: %v", err)
	}
	if err := within(t, "Close", e.Close); err == nil {
		t.Error("Close: no error")
	}
	st := e.Stats()
	delivered(t, st, completeMessages(t, conn))
	if during.Flows > st.Flows || during.NotSentFlows != 0 || during.Errors != 0 {
		t.Errorf("Stats during the stuck send %+v; at the end %+v", during, st)
	}
	if st.Flows+st.NotSentFlows != uint64(exported) {
		t.Errorf("%d flows exported; Stats %+v", exported, st)
	}
}

// TestCloseWhileSendIsStuck: Close, called while another goroutine's send waits for
// the collector, returns once that send's WriteTimeout has passed, and counts what it
// could not send.
func TestCloseWhileSendIsStuck(t *testing.T) {
	col := testnet.NewStalledCollector(t)
	e := dial(t, ipfix.Config{Network: "tcp", Address: col.Addr(), WriteTimeout: 2 * time.Second, RetryInterval: time.Hour})
	conn := col.Next(t, safety)
	flows := testFlows(t)
	done := make(chan struct{})
	var exported int
	go func() {
		defer close(done)
		exported, _ = exportUntilError(e, flows)
	}()
	waitStuck(t, done)
	if err := within(t, "Close during a stuck send", e.Close); err == nil {
		t.Error("Close: no error")
	}
	within(t, "the stuck send", func() struct{} { <-done; return struct{}{} })
	st := e.Stats()
	delivered(t, st, completeMessages(t, conn))
	if st.Flows+st.NotSentFlows != uint64(exported) || st.Records+st.NotSentRecords != uint64(exported)+1 || st.NotSentFlows == 0 {
		t.Errorf("%d flows exported; Stats %+v", exported, st)
	}
}

// TestCloseCountsWhatTheCollectorDidNotTake: every write went into the socket's
// buffer, but the stalled collector took a few kilobytes of it. Close waits
// WriteTimeout for the rest, then gives up: what the collector did not acknowledge is
// counted as not sent, not as sent.
func TestCloseCountsWhatTheCollectorDidNotTake(t *testing.T) {
	col := testnet.NewStalledCollector(t)
	e := dial(t, ipfix.Config{Network: "tcp", Address: col.Addr(), WriteTimeout: 200 * time.Millisecond, RetryInterval: time.Hour})
	conn := col.Next(t, safety)
	flows := testFlows(t)
	const n = 2000 // about 130 kB: more than the collector's window, less than the socket buffers
	for i := range n {
		e.Export(&flows[i%len(flows)])
	}
	err := within(t, "Close", e.Close)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Close: %v; want a timeout", err)
	}
	st := e.Stats()
	delivered(t, st, completeMessages(t, conn))
	if st.Flows+st.NotSentFlows != n || st.Records+st.NotSentRecords != n+1 || st.NotSentFlows == 0 {
		t.Errorf("%d flows exported; Stats %+v", n, st)
	}
}

// TestPeerClosedConnection: the collector reads the first flows, then closes. What is
// written after that, though the kernel takes the first write without complaint,
// never reaches it, and is counted as not sent.
func TestPeerClosedConnection(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := dial(t, ipfix.Config{Network: "tcp", Address: ln.Addr().String(), RetryInterval: time.Hour})
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	flows := testFlows(t)
	first, second := flows[:len(flows)/2], flows[len(flows)/2:]
	for i := range first {
		e.Export(&first[i])
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	records := 0
	for records < len(first) {
		h := make([]byte, 16)
		conn.SetReadDeadline(time.Now().Add(safety))
		if _, err := io.ReadFull(conn, h); err != nil {
			t.Fatal(err)
		}
		m := make([]byte, binary.BigEndian.Uint16(h[2:]))
		copy(m, h)
		if _, err := io.ReadFull(conn, m[16:]); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
		records = len(decodeAll(t, msgs).records)
	}
	conn.Close()

	var errs []error
	for i := range second {
		if err := e.Export(&second[i]); err != nil {
			errs = append(errs, err)
		}
		if err := e.Flush(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, within(t, "Close", e.Close))
	st := e.Stats()
	delivered(t, st, msgs)
	if st.Flows != uint64(len(first)) || st.NotSentFlows != uint64(len(second)) || st.NotSentRecords != uint64(len(second))+1 {
		t.Errorf("%d flows read by the collector, %d exported after it closed; Stats %+v", len(first), len(second), st)
	}
	if errors.Join(errs...) == nil {
		t.Error("no error")
	}
}

// TestClosedUDPPort: nothing listens at the collector's port. Over UDP the exporter
// learns of it only from the ICMP port unreachable that an earlier datagram drew,
// which the kernel reports on a later send; that send is refused (and not sent), and
// the exporter takes back the last message it had counted as sent. The counters are
// exactly what those reports allow: no message counted as sent that a refusal
// followed.
func TestClosedUDPPort(t *testing.T) {
	port := freeUDPPort(t)
	e := dial(t, ipfix.Config{Address: fmt.Sprintf("127.0.0.1:%d", port)})
	flows := testFlows(t)
	var sent, notSent, refusals uint64
	counted := false // a message counted as sent that no refusal has taken back
	n := 0
	for ; refusals < 3; n++ {
		if n == 1000 {
			t.Fatal("no send was refused in 1000")
		}
		e.Export(&flows[n%len(flows)])
		switch err := e.Flush(); {
		case err == nil:
			sent++
			counted = true
		case errors.Is(err, syscall.ECONNREFUSED):
			refusals++
			notSent++
			if counted {
				sent--
				notSent++
				counted = false
			}
		default:
			t.Fatalf("Flush: %v", err)
		}
	}
	st := e.Stats()
	if st.Messages != sent || st.Flows != sent || st.Records != sent || st.NotSentMessages != notSent || st.NotSentFlows != notSent || st.Errors != refusals {
		t.Errorf("after %d flushes, %d refused: Stats %+v; want %d messages counted as sent, %d as not sent", n, refusals, st, sent, notSent)
	}
	within(t, "Close", e.Close)
	st = e.Stats()
	if st.Messages+st.NotSentMessages != uint64(n)+1 || st.Flows+st.NotSentFlows != uint64(n) {
		t.Errorf("after Close, %d messages and the options record: Stats %+v", n, st)
	}
}

// TestReconnectAfterStall: after a stalled send the exporter connects again in the
// background once RetryInterval has passed; the new connection starts with the
// templates and with sequence number 0, and the flows go through it.
func TestReconnectAfterStall(t *testing.T) {
	col := testnet.NewStalledCollector(t)
	e := dial(t, ipfix.Config{Network: "tcp", Address: col.Addr(), WriteTimeout: 100 * time.Millisecond, RetryInterval: 10 * time.Millisecond})
	first := col.Next(t, safety)
	flows := testFlows(t)
	type result struct {
		n   int
		err error
	}
	r := within(t, "Export to a stalled collector", func() result {
		n, err := exportUntilError(e, flows)
		return result{n, err}
	})
	exported := r.n
	second := col.Next(t, safety)
	got := make(chan []byte, 1024)
	go func() {
		defer close(got)
		for {
			h := make([]byte, 16)
			if _, err := io.ReadFull(second, h); err != nil {
				return
			}
			m := make([]byte, binary.BigEndian.Uint16(h[2:]))
			copy(m, h)
			if _, err := io.ReadFull(second, m[16:]); err != nil {
				return
			}
			got <- m
		}
	}()
	// The collector has the connection; the exporter may not have it yet. Send one
	// flow at a time until one arrives.
	var msgs [][]byte
	for len(msgs) == 0 {
		e.Export(&flows[exported%len(flows)])
		exported++
		e.Flush()
		select {
		case m := <-got:
			msgs = append(msgs, m)
		case <-time.After(time.Millisecond):
		}
	}
	for i := range 100 {
		e.Export(&flows[i%len(flows)])
		exported++
	}
	if err := within(t, "Close", e.Close); err == nil {
		t.Error("Close: no error (the stall's)")
	}
	for m := range got {
		msgs = append(msgs, m)
	}
	d := decodeAll(t, msgs)
	if !d.withTmpl[0] || d.packets[0].SequenceNumber != 0 {
		t.Errorf("the new connection's first message: templates %v, sequence %d", d.withTmpl[0], d.packets[0].SequenceNumber)
	}
	if len(d.options) != 1 || len(d.records) < 101 {
		t.Errorf("the new connection: %d flow records, %d options records", len(d.records), len(d.options))
	}
	st := e.Stats()
	delivered(t, st, completeMessages(t, first), msgs)
	if st.Flows+st.NotSentFlows != uint64(exported) || st.Records+st.NotSentRecords != uint64(exported)+1 {
		t.Errorf("%d flows exported; Stats %+v", exported, st)
	}
}

// TestReady: after a send to a stalled collector timed out, the collector is taken
// as down, and Ready waits: until ctx is done, or until the exporter has connected
// again. A closed exporter is ready at once (its Export counts what it is given).
func TestReady(t *testing.T) {
	col := testnet.NewStalledCollector(t)
	e := dial(t, ipfix.Config{Network: "tcp", Address: col.Addr(), WriteTimeout: 100 * time.Millisecond, RetryInterval: 500 * time.Millisecond})
	col.Next(t, safety)
	within(t, "Export to a stalled collector", func() error {
		_, err := exportUntilError(e, testFlows(t))
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Ready(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ready while the collector is down: %v, want the deadline", err)
	}
	if err := within(t, "Ready until the exporter connects again", func() error { return e.Ready(context.Background()) }); err != nil {
		t.Errorf("Ready: %v", err)
	}
	col.Next(t, safety)
	e.Close()
	if err := within(t, "Ready on a closed exporter", func() error { return e.Ready(context.Background()) }); err != nil {
		t.Errorf("Ready after Close: %v", err)
	}
}

// TestShutdownDeadline: Cut makes a send stuck on a collector that takes nothing
// give up at once, though WriteTimeout is an hour; Shutdown then ends by its
// context's deadline (and the grace for delayed acknowledgements), and every flow
// counts once.
func TestShutdownDeadline(t *testing.T) {
	col := testnet.NewStalledCollector(t)
	e := dial(t, ipfix.Config{Network: "tcp", Address: col.Addr(), WriteTimeout: time.Hour, RetryInterval: time.Hour})
	col.Next(t, safety)
	flows := testFlows(t)
	exported, done := make(chan int, 1), make(chan struct{})
	go func() {
		defer close(done)
		n, _ := exportUntilError(e, flows) // the send waits on the stalled collector until Cut
		exported <- n
	}()
	waitStuck(t, done)
	start := time.Now()
	e.Cut()
	n := <-exported
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	e.Shutdown(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Cut and Shutdown took %v with a 200 ms deadline", took)
	}
	sent, failed := e.Delivered()
	if st := e.Stats(); sent+failed != uint64(n) || sent != st.Flows {
		t.Errorf("%d flows exported; Delivered %d sent, %d failed; Stats %+v", n, sent, failed, st)
	}
}

// TestExportAfterClose: a flow exported after Close counts as not sent, and the
// error says the exporter is closed.
func TestExportAfterClose(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	e := dial(t, ipfix.Config{Address: pc.LocalAddr().String()})
	e.Close()
	if err := e.Export(&testFlows(t)[0]); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Export after Close: %v", err)
	}
	if sent, failed := e.Delivered(); sent != 0 || failed != 1 {
		t.Errorf("Delivered %d sent, %d failed; want 1 failed", sent, failed)
	}
}
