package fparser_test

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fparser/fparser"
	pb "github.com/fparser/fparser/internal/pktbuild"
)

// The burst of TestMemoryIsFreedWhenFlowsEnd: as many flows as the report,
// each with a history of every packet.
const (
	burstFlows   = 100_000
	burstPackets = 10
	burstIdle    = time.Minute // the flows' idle timeout
)

// burstLone are the sources of the two flows that come after the burst, alone: the
// first one's time ends the burst's flows, the second's ends the first.
var burstLone = [2]netip.AddrPort{
	netip.MustParseAddrPort("192.0.2.1:1000"),
	netip.MustParseAddrPort("192.0.2.2:2000"),
}

// burstCapture writes a capture of burstFlows UDP flows of burstPackets packets each,
// all active at once (round r holds the r-th packet of every flow, a µs apart), then
// the two lone flows, 2 and 4 idle timeouts later.
func burstCapture(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "burst.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriterNanos(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort("198.51.100.1:53")
	frame := func(src netip.AddrPort) []byte {
		ip := pb.IPv4{Src: src.Addr(), Dst: dst.Addr(), Proto: pb.ProtoUDP, TTL: 64}
		return pb.Ethernet(pb.EtherIPv4, nil, ip.Build(pb.UDP(src.Port(), dst.Port(), nil)))
	}
	write := func(at time.Duration, b []byte) {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(at), CaptureLength: len(b), Length: len(b)}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
	frames := make([][]byte, burstFlows)
	for i := range frames {
		frames[i] = frame(burstSource(i))
	}
	for r := range burstPackets {
		for i, b := range frames {
			write(time.Duration(r)*time.Second+time.Duration(i)*time.Microsecond, b)
		}
	}
	for i, src := range burstLone {
		write(time.Duration(2*(i+1))*burstIdle, frame(src))
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return path
}

// burstSource is the source of the burst's flow i.
func burstSource(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 5000)
}

// heapKept is how far above its baseline the heap may stay once a burst of flows has
// ended: buffers that do not grow with the flows, the replay's read-ahead (4 MiB: four
// batches in flight and the read buffer), the engine's buffers of ended flows (room
// for at most 4096 flows each), the batch of the reader of the kernel's events (under
// 1 MiB), a page of the Go flow table (4096 flows, 528 KiB), the loader's arrays of
// keys to check (640 KiB).
const heapKept = 6 << 20

// heapAfterGC reads the live heap after a collection. It collects twice: what
// another goroutine let go of while the first one marked is gone after the second.
func heapAfterGC() uint64 {
	for range 2 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// checkHeap fails the test unless the heap is back within heapKept of its baseline.
func checkHeap(t *testing.T, base, end uint64) {
	t.Helper()
	t.Logf("heap after GC: %.1f MiB at the baseline, %.1f MiB once the burst's flows had ended", mib(base), mib(end))
	if end > base+heapKept {
		t.Errorf("the heap after GC stays %.1f MiB above its baseline once the flows have ended (allowed: %.1f MiB)", mib(end-base), mib(heapKept))
	}
}

// TestMemoryIsFreedWhenFlowsEnd: once the 100,000 flows of a burst, each with a
// history of its 10 packets, have ended and been delivered, the parser (still
// running) holds no memory for them, its flow table included: the heap after a
// collection is back within heapKept of what it was before the parser opened.
func TestMemoryIsFreedWhenFlowsEnd(t *testing.T) {
	path := burstCapture(t)
	var burst, stored int
	var heap uint64
	var p *fparser.Parser
	base := heapAfterGC()
	p, err := fparser.New(path, &fparser.Options{
		FlowTimeout: burstIdle,
		Packets:     burstPackets,
		Logger:      discard(),
		OnUDP: func(f fparser.Flow) {
			switch f.Src {
			case burstLone[0]:
				// The burst's flows ended a flow timeout ago and were delivered;
				// the second lone flow's packet, whose time ended this one, is not
				// counted yet.
				heap = heapAfterGC()
				if in := p.Info(); in.UDPFlows+in.TCPFlows != 0 || in.PacketMemory != 0 {
					t.Errorf("%d active flows, %d bytes of packet memory when the first lone flow ended; want none", in.UDPFlows+in.TCPFlows, in.PacketMemory)
				}
			case burstLone[1]:
			default:
				burst++
				stored += f.HistoryLen()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if burst != burstFlows || stored != burstFlows*burstPackets {
		t.Fatalf("%d burst flows delivered with %d packets stored, want %d and %d", burst, stored, burstFlows, burstFlows*burstPackets)
	}
	if heap == 0 {
		t.Fatal("the first lone flow was never delivered")
	}
	checkHeap(t, base, heap)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
