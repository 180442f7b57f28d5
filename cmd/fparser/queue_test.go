package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fparser/fparser"
	pb "github.com/fparser/fparser/internal/pktbuild"
)

// TestFlowQueue: flows put in the queue come out as the writer writes them alone, all
// of them, in order, whether the last batch is full or not.
func TestFlowQueue(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{0, 1, batchSize - 1, batchSize, 3*batchSize + 7, 40 * batchSize} {
		flows := make([]fparser.Flow, n)
		for i := range flows {
			flows[i] = randomFlow(r)
		}
		for _, format := range []string{"text", "csv", "json"} {
			var got, want bytes.Buffer
			direct, _ := newFlowWriter(&want, format, false, false, false, false, false)
			for i := range flows {
				direct.write(&flows[i])
			}
			direct.Flush()
			out, _ := newFlowWriter(&got, format, false, false, false, false, false)
			q := startFlowQueue(out, false, func() { t.Error("write error") })
			for i := range flows {
				q.put(&flows[i])
			}
			if err := q.close(); err != nil {
				t.Fatal(err)
			}
			out.Flush()
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("%d flows, %s: the queue wrote %d bytes, the writer alone %d", n, format, got.Len(), want.Len())
			}
		}
	}
}

// TestFlowQueueEachFlow: on a terminal, each flow is written out as soon as it is put,
// not when a batch fills.
func TestFlowQueueEachFlow(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	out, _ := newFlowWriter(w, "csv", true, false, false, false, false)
	q := startFlowQueue(out, false, func() {})
	in := bufio.NewReader(r)
	rnd := rand.New(rand.NewPCG(2, 2))
	for i := range 3 {
		f := randomFlow(rnd)
		q.put(&f)
		r.SetReadDeadline(time.Now().Add(10 * time.Second))
		if i == 0 {
			in.ReadString('\n') // the header
		}
		line, err := in.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, f.Protocol.String()+",") {
			t.Fatalf("flow %d: read %q, %v", i, line, err)
		}
	}
	if err := q.close(); err != nil {
		t.Fatal(err)
	}
}

// TestFlowQueueError: after a write fails, onError runs once, put neither blocks nor
// writes, and close returns the error.
func TestFlowQueueError(t *testing.T) {
	fail := errors.New("disk full")
	w := &failingWriter{room: 100000, err: fail}
	out, _ := newFlowWriter(w, "json", false, false, false, false, false)
	calls := 0
	q := startFlowQueue(out, false, func() { calls++ })
	r := rand.New(rand.NewPCG(3, 3))
	f := randomFlow(r)
	for range 100 * batchSize {
		q.put(&f)
	}
	if err := q.close(); !errors.Is(err, fail) || calls != 1 {
		t.Errorf("close: %v, onError called %d times; want %v and once", err, calls, fail)
	}
}

// TestInterruptLosesNothing: SIGINT while the command waits for a slow reader of its
// output stops it with every flow written, the flows it stopped included, before the
// summary.
func TestInterruptLosesNothing(t *testing.T) {
	bin := buildCommand(t)
	capture := writeManyFlows(t, 30000)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-r", capture, "-o", "csv", "--flow-timeout", "1s")
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// Read a little, then nothing: the pipe fills, the writer goroutine and then the
	// parser wait, mid-capture.
	in := bufio.NewReader(r)
	head := make([]byte, 4096)
	if _, err := io.ReadFull(in, head); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	rest, err := io.ReadAll(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	out := string(head) + string(rest)
	m := regexp.MustCompile(`; (\d+) flows;`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no flow count in the summary %q", stderr.String())
	}
	rows := strings.Count(out, "\n") - 1
	if n, _ := strconv.Atoi(m[1]); rows != n || !strings.HasSuffix(out, "\n") {
		t.Errorf("%d flows written, %d ended (summary %q)", rows, n, stderr.String())
	}
	if !strings.Contains(out, ",stopped,") || !strings.Contains(out, ",idle,") {
		t.Errorf("want flows ended idle and stopped, mid-capture; got %d rows", rows)
	}
}

// BenchmarkFlowQueue measures the queue end to end, put on one goroutine and CSV on
// another: ns/flow is the slower of the two, allocs are put's.
func BenchmarkFlowQueue(b *testing.B) {
	flows := benchFlows(1024)
	out, _ := newFlowWriter(io.Discard, "csv", false, false, false, false, false)
	q := startFlowQueue(out, false, func() {})
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		q.put(&flows[n%len(flows)])
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/flow")
	b.StopTimer()
	q.close()
}

// writeManyFlows writes a capture of n UDP flows of one packet each, a millisecond
// apart.
func writeManyFlows(t *testing.T, n int) string {
	return writeFlowsAt(t, n, time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), 0)
}

// writeFlowsAt writes a capture of n one-packet UDP flows, a millisecond apart from
// t0; with talkers > 0, from that many sources, each flow's payload i%7*10 bytes.
func writeFlowsAt(t *testing.T, n int, t0 time.Time, talkers int) string {
	path := filepath.Join(t.TempDir(), "many.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	w := pcapgo.NewWriterNanos(bw)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	dst := netip.AddrFrom4([4]byte{203, 0, 113, 1})
	for i := range n {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		sport, payload := uint16(40000), []byte(nil)
		if talkers > 0 {
			src = netip.AddrFrom4([4]byte{10, 1, 0, byte(i % talkers)})
			sport, payload = uint16(1024+i), make([]byte, i%7*10)
		}
		frame := pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoUDP}.Build(pb.UDP(sport, 53, payload)))
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return path
}

// failingWriter takes room bytes, then fails with err.
type failingWriter struct {
	room int
	err  error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.room {
		n := w.room
		w.room = 0
		return n, w.err
	}
	w.room -= len(p)
	return len(p), nil
}
