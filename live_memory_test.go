package fparser_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
)

// liveMemoryResult is what TestLiveMemoryParser reports.
type liveMemoryResult struct {
	Base, Heap                 uint64 // the heap after GC: parser open, before any flow; once all had ended
	Created, Delivered, Stored uint64
	NotStored                  uint64
	PacketMemory               int64
}

// TestLiveMemoryIsFreedWhenFlowsEnd is TestMemoryIsFreedWhenFlowsEnd live, as the
// issue's report had it: 100,000 UDP flows of 10 packets sent from one namespace into
// another, counted with XDP and Packets: 10. Once every flow has ended and been
// delivered, the heap after a collection is back within heapKept of what it was when
// the parser had just opened.
func TestLiveMemoryIsFreedWhenFlowsEnd(t *testing.T) {
	liveSkip(t)
	host, peer := liveNamespaces(t)
	parser := testharness.Command(host, roleMemoryParser)
	parser.Stderr = os.Stderr
	sent, err := parser.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := testharness.Start(t, parser, "memory parser ready")

	gen := testharness.Command(peer, roleMemoryGenerator)
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("generator: %v\n%s", err, b)
	}
	sent.Close() // the parser waits for this
	var res liveMemoryResult
	var said strings.Builder
	for lines.Scan() {
		said.WriteString(lines.Text() + "\n")
		if j, ok := strings.CutPrefix(strings.TrimSpace(lines.Text()), "memory result "); ok {
			if err := json.Unmarshal([]byte(j), &res); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := parser.Wait(); err != nil || res.Delivered == 0 {
		t.Fatalf("parser: %v\n%s", err, &said)
	}
	t.Logf("%d flows created, %d delivered, %d packets stored, %d not stored, packet memory %d", res.Created, res.Delivered, res.Stored, res.NotStored, res.PacketMemory)
	if res.Created < burstFlows || res.Delivered != res.Created || res.PacketMemory != 0 {
		t.Errorf("%d flows created, %d delivered, packet memory %d: want %d or more, all delivered, none held", res.Created, res.Delivered, res.PacketMemory, burstFlows)
	}
	checkHeap(t, res.Base, res.Heap)
}

// The roles of TestLiveMemoryIsFreedWhenFlowsEnd.
var (
	roleMemoryParser    = testharness.Role("memory-parser", liveMemoryParser)
	roleMemoryGenerator = testharness.Role("memory-gen", liveMemoryGenerator)
)

// liveMemoryParser counts in the host namespace with the packet history on; once its
// standard input closes (the generator is done), every flow has ended and been
// delivered, and the engine no longer remembers them for late records, it reports
// the heap.
func liveMemoryParser(t testing.TB) {
	var delivered, stored atomic.Uint64
	p, err := fparser.Open(liveIface, &fparser.Options{
		Attach:      "xdp",
		FlowTimeout: 2 * time.Second,
		Packets:     burstPackets,
		Logger:      discard(),
		OnUDP: func(f fparser.Flow) {
			stored.Add(uint64(f.HistoryLen()))
			delivered.Add(1)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	base := heapAfterGC()
	fmt.Println("memory parser ready")
	bufio.NewReader(os.Stdin).ReadString('\n') // until EOF: the generator is done

	var in fparser.Info
	deadline := time.Now().Add(2 * time.Minute)
	wait := func(what string, done func() bool) {
		if !testharness.Poll(time.Until(deadline), func() bool { in = p.Info(); return done() }) {
			t.Fatalf("%s after 2 min: %+v, %d delivered", what, in, delivered.Load())
		}
	}
	wait("flows still to end", func() bool {
		var ended uint64
		for _, n := range in.FlowsEnded {
			ended += n
		}
		return in.FlowsCreated >= burstFlows && in.TCPFlows+in.UDPFlows == 0 && ended == in.FlowsCreated && delivered.Load() == ended
	})
	// The engine remembers the flows that ended in the last two sweeps, for packet
	// records that come late: they are forgotten once three more have run.
	sweeps := func() (n uint64) {
		for _, c := range in.SweepTimes.Counts {
			n += c
		}
		return n
	}
	last := sweeps()
	wait("fewer than three sweeps", func() bool { return sweeps() >= last+3 })
	res := liveMemoryResult{Base: base, Heap: heapAfterGC(), Created: in.FlowsCreated, Delivered: delivered.Load(),
		Stored: stored.Load(), NotStored: in.PacketsNotStored, PacketMemory: in.PacketMemory}
	j, _ := json.Marshal(res)
	fmt.Printf("memory result %s\n", j)
}

// liveMemoryGenerator sends, from the peer side, burstPackets rounds of one frame of
// each of burstFlows UDP flows, so that all are active at once.
func liveMemoryGenerator(t testing.TB) {
	s := newPeerSender(t)
	var failed int
	for range burstPackets {
		for n := range burstFlows {
			if s.send(n) != nil {
				failed++
			}
		}
	}
	t.Logf("%d sends failed", failed)
}
