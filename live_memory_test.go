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
// delivered, the heap after a collection is back within burstKept of what it was
// when the parser had just opened.
func TestLiveMemoryIsFreedWhenFlowsEnd(t *testing.T) {
	if os.Getenv(envRole) != "" {
		t.Skip("inside a namespace")
	}
	liveSkip(t)
	host, peer := liveNamespaces(t)
	parser := reexec(host, "TestLiveMemoryParser", envRole+"=memory-parser")
	parser.Stderr = os.Stderr
	sent, err := parser.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := startChild(t, parser, "memory parser ready")

	gen := reexec(peer, "TestLiveMemoryGenerator", envRole+"=memory-gen")
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
	t.Logf("%d flows created, %d delivered, %d packets stored, %d not stored; heap after GC %.1f MiB with the parser open, %.1f MiB once every flow had ended (packet memory %d)",
		res.Created, res.Delivered, res.Stored, res.NotStored, mib(res.Base), mib(res.Heap), res.PacketMemory)
	if res.Created < burstFlows || res.Delivered != res.Created || res.PacketMemory != 0 {
		t.Errorf("%d flows created, %d delivered, packet memory %d: want %d or more, all delivered, none held", res.Created, res.Delivered, res.PacketMemory, burstFlows)
	}
	if res.Heap > res.Base+burstKept() {
		t.Errorf("the heap after GC stays %.1f MiB above its baseline once the flows have ended (allowed: %.1f MiB)", mib(res.Heap-res.Base), mib(burstKept()))
	}
}

// TestLiveMemoryParser counts in the host namespace with the packet history on; once
// its standard input closes (the generator is done) and every flow has ended and
// been delivered, it reports the heap.
func TestLiveMemoryParser(t *testing.T) {
	if os.Getenv(envRole) != "memory-parser" {
		t.Skip("run by TestLiveMemoryIsFreedWhenFlowsEnd")
	}
	var delivered, stored atomic.Uint64
	p, err := fparser.Open(liveIface, &fparser.Options{
		Attach:      "xdp",
		FlowTimeout: 2 * time.Second,
		Packets:     burstPackets,
		Logger:      discard(),
		OnUDP: func(f fparser.Flow) {
			stored.Add(uint64(f.PacketsStored()))
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
	for {
		in = p.Info()
		var ended uint64
		for _, n := range in.FlowsEnded {
			ended += n
		}
		if in.FlowsCreated >= burstFlows && in.TCPFlows+in.UDPFlows == 0 && ended == in.FlowsCreated && delivered.Load() == ended {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flows still to end after 2 min: %+v, %d delivered", in, delivered.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := liveMemoryResult{Base: base, Heap: heapAfterGC(), Created: in.FlowsCreated, Delivered: delivered.Load(),
		Stored: stored.Load(), NotStored: in.PacketsNotStored, PacketMemory: in.PacketMemory}
	j, _ := json.Marshal(res)
	fmt.Printf("memory result %s\n", j)
}

// TestLiveMemoryGenerator sends, from the peer side, burstPackets rounds of one frame
// of each of burstFlows UDP flows, so that all are active at once.
func TestLiveMemoryGenerator(t *testing.T) {
	if os.Getenv(envRole) != "memory-gen" {
		t.Skip("run by TestLiveMemoryIsFreedWhenFlowsEnd")
	}
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
