package fparser_test

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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
// ended, leaving out what the flow table keeps (heapUse.Table): buffers that do not
// grow with the flows, the replay's read-ahead (4 MiB: four batches in flight and the
// read buffer), the engine's buffers of ended flows (room for at most 4096 flows
// each), the batch of the reader of the kernel's events (under 1 MiB).
const heapKept = 6 << 20

// What the flow table keeps of a burst once it is over, which this change leaves as
// it is and the tests leave out, by the functions that allocated it: offline, the Go
// flow table keeps the pages, index and free list of its peak for the flows to come
// (about 190 B a flow); live, the loader's sweep keeps the room of the maps and
// buckets of its wheel of keys to check (from 0 to 200 B a flow, as many as were
// filed at once).
var (
	goTable     = []string{"github.com/fparser/fparser/userspace.(*FlowTable).", "github.com/fparser/fparser/userspace.NewFlowTable", "github.com/fparser/fparser/userspace.newDeadlines"}
	kernelTable = []string{"github.com/fparser/fparser/loader."}
)

// heapUse is the live heap after a collection, and the part of it that the flow
// table's functions allocated.
type heapUse struct{ Total, Table uint64 }

// rest is the heap but the flow table's.
func (h heapUse) rest() uint64 { return h.Total - h.Table }

// profileEveryAllocation makes the runtime's heap profile record every allocation, so
// that heapAfterGC can tell the flow table's memory exactly.
func profileEveryAllocation(t testing.TB) {
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	t.Cleanup(func() { runtime.MemProfileRate = old })
}

// heapAfterGC reads the live heap after a collection, and of it the memory allocated
// by a function (the innermost outside the runtime) whose name begins with one of
// table. It collects three times: the heap profile is up to two collections old, and
// what another goroutine let go of while the first one marked is gone after the next.
func heapAfterGC(table []string) heapUse {
	for range 3 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := heapUse{Total: ms.HeapAlloc}
	n, _ := runtime.MemProfile(nil, false)
	recs := make([]runtime.MemProfileRecord, n+64)
	for {
		var ok bool
		if n, ok = runtime.MemProfile(recs, false); ok {
			break
		}
		recs = make([]runtime.MemProfileRecord, n+64)
	}
	for _, r := range recs[:n] {
		if r.InUseBytes() > 0 && allocatedBy(r.Stack(), table) {
			h.Table += uint64(r.InUseBytes())
		}
	}
	return h
}

// allocatedBy reports whether the innermost function of stack outside the runtime
// has a name that begins with one of prefixes.
func allocatedBy(stack []uintptr, prefixes []string) bool {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "runtime.") && !strings.HasPrefix(f.Function, "internal/") {
			for _, p := range prefixes {
				if strings.HasPrefix(f.Function, p) {
					return true
				}
			}
			return false
		}
		if !more {
			return false
		}
	}
}

// checkHeap fails the test unless the heap but the flow table's is back within
// heapKept of its baseline.
func checkHeap(t *testing.T, base, end heapUse) {
	t.Helper()
	t.Logf("heap after GC: %.1f MiB at the baseline (%.1f of it the flow table's), %.1f MiB once the burst's flows had ended (%.1f)",
		mib(base.Total), mib(base.Table), mib(end.Total), mib(end.Table))
	if end.rest() > base.rest()+heapKept {
		t.Errorf("leaving out the flow table's, the heap after GC stays %.1f MiB above its baseline once the flows have ended (allowed: %.1f MiB)",
			mib(end.rest()-base.rest()), mib(heapKept))
	}
}

// TestMemoryIsFreedWhenFlowsEnd: once the 100,000 flows of a burst, each with a
// history of its 10 packets, have ended and been delivered, the parser (still
// running) holds no memory for them: but for what the flow table keeps, the heap
// after a collection is back within heapKept of what it was before the parser
// opened.
func TestMemoryIsFreedWhenFlowsEnd(t *testing.T) {
	path := burstCapture(t)
	var burst, stored int
	var heap heapUse
	var p *fparser.Parser
	profileEveryAllocation(t)
	base := heapAfterGC(goTable)
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
				heap = heapAfterGC(goTable)
				if in := p.Info(); in.UDPFlows+in.TCPFlows != 0 || in.PacketMemory != 0 {
					t.Errorf("%d active flows, %d bytes of packet memory when the first lone flow ended; want none", in.UDPFlows+in.TCPFlows, in.PacketMemory)
				}
			case burstLone[1]:
			default:
				burst++
				stored += f.PacketsStored()
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
	if heap.Total == 0 {
		t.Fatal("the first lone flow was never delivered")
	}
	checkHeap(t, base, heap)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
