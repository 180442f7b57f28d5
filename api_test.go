package fparser_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/filter"
	pb "github.com/fparser/fparser/internal/pktbuild"
)

// pkt is a packet for a capture written by a test.
type pkt struct {
	at            time.Duration
	src, dst      string // address:port
	tcp           bool
	flags         uint8
	payloadLength int
}

func writeCapture(t testing.TB, pkts []pkt) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for _, p := range pkts {
		src, dst := netip.MustParseAddrPort(p.src), netip.MustParseAddrPort(p.dst)
		var l4 []byte
		proto := uint8(pb.ProtoUDP)
		if p.tcp {
			l4, proto = pb.TCP(src.Port(), dst.Port(), p.flags, 1, 1, make([]byte, p.payloadLength)), pb.ProtoTCP
		} else {
			l4 = pb.UDP(src.Port(), dst.Port(), make([]byte, p.payloadLength))
		}
		frame := pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src.Addr(), Dst: dst.Addr(), Proto: proto}.Build(l4))
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(p.at), CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestCallbacksSeeTheParserWhenTheirFlowEnded: a flow that ends on its idle timeout
// is delivered while the replay pauses, before the packet whose time ended it counts,
// so its callback finds the other flow as it was then (its SYN counted, not the
// SYN+ACK that came after), from either direction, and the iterator shows exactly
// that flow.
func TestCallbacksSeeTheParserWhenTheirFlowEnded(t *testing.T) {
	path := writeCapture(t, []pkt{
		{at: 0, src: "192.0.2.1:1000", dst: "192.0.2.2:53"},
		{at: 100 * time.Second, src: "192.0.2.3:2000", dst: "192.0.2.4:80", tcp: true, flags: pb.SYN},
		{at: 650 * time.Second, src: "192.0.2.4:80", dst: "192.0.2.3:2000", tcp: true, flags: pb.SYN | pb.ACK},
	})
	var events []string
	var p *fparser.Parser
	p, err := fparser.New(path, &fparser.Options{
		OnUDP: func(f fparser.Flow) {
			events = append(events, "udp "+f.EndReason.String())
			for _, dir := range [][2]string{{"192.0.2.3:2000", "192.0.2.4:80"}, {"192.0.2.4:80", "192.0.2.3:2000"}} {
				g, ok := p.FindTCPFlow(ap(dir[0]), ap(dir[1]))
				if !ok || g.Src != ap("192.0.2.3:2000") || g.Fwd.Packets != 1 || g.Rev.Packets != 0 {
					t.Errorf("FindTCPFlow(%s, %s) = %+v, %v", dir[0], dir[1], g, ok)
				}
			}
			if _, ok := p.FindUDPFlow(ap("192.0.2.1:1000"), ap("192.0.2.2:53")); ok {
				t.Error("the ended UDP flow is still found")
			}
			var active []fparser.Flow
			for g := range p.Flows() {
				active = append(active, g)
				p.Info() // the loop body may call back into the parser
			}
			if len(active) != 1 || active[0].Protocol != fparser.TCP {
				t.Errorf("active flows %+v", active)
			}
			if in := p.Info(); in.TCPFlows != 1 || in.UDPFlows != 0 || in.TCPPackets != 1 || in.PacketsSeen != 2 {
				t.Errorf("info in callback %+v", in)
			}
		},
		OnTCP:  func(f fparser.Flow) { events = append(events, "tcp "+f.EndReason.String()) },
		OnKill: func() { events = append(events, "kill") },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"udp idle", "tcp end-of-capture", "kill"}; !slices.Equal(events, want) {
		t.Errorf("events %v, want %v", events, want)
	}
	if _, ok := p.FindTCPFlow(ap("192.0.2.3:2000"), ap("192.0.2.4:80")); ok {
		t.Error("a flow is still active after the end")
	}
}

// manyFlows is a capture of n one-packet UDP flows, one every second, so that with a
// short flow timeout they keep ending all through the replay.
func manyFlows(t testing.TB, n int) string {
	pkts := make([]pkt, n)
	for i := range pkts {
		pkts[i] = pkt{at: time.Duration(i) * time.Second, src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 5000).String(), dst: "192.0.2.2:53"}
	}
	return writeCapture(t, pkts)
}

func TestStopFromCallback(t *testing.T) {
	const n = 5000
	path := manyFlows(t, n)
	var reasons = map[fparser.EndReason]int{}
	var delivered uint64
	kills := 0
	var p *fparser.Parser
	p, err := fparser.New(path, &fparser.Options{
		FlowTimeout: 2 * time.Second,
		OnUDP: func(f fparser.Flow) {
			reasons[f.EndReason]++
			delivered += f.PacketCount()
			p.Stop()
			p.Stop() // idempotent
		},
		OnKill: func() { kills++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	in := p.Info()
	if kills != 1 {
		t.Errorf("kill callback ran %d times", kills)
	}
	if reasons[fparser.EndStopped] == 0 || reasons[fparser.EndIdle] == 0 || in.PacketsSeen >= n {
		t.Errorf("reasons %v after %d of %d packets: want idle flows, then stopped ones, and an early stop", reasons, in.PacketsSeen, n)
	}
	if delivered != in.PacketsAccepted {
		t.Errorf("delivered %d packets, accepted %d", delivered, in.PacketsAccepted)
	}
	p.Stop() // after the end: nothing happens
	if kills != 1 {
		t.Errorf("kill callback ran %d times", kills)
	}
}

func TestPanickingCallbackIsRecoveredAndCounted(t *testing.T) {
	path := manyFlows(t, 10)
	n := 0
	p, err := fparser.Open(path, &fparser.Options{
		Logger: discard(),
		OnUDP: func(f fparser.Flow) {
			n++
			if n%2 == 0 {
				panic("boom")
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if n != 10 || p.Info().CallbackPanics != 5 {
		t.Errorf("%d flows delivered, %d panics counted; want 10 and 5", n, p.Info().CallbackPanics)
	}
}

// udpEndsBeforeTheThirdPacket writes a capture whose UDP flow ends, with a flow
// timeout of 9.5 s, when the third packet's time comes: a TCP flow begins before it
// and another with it; the UDP flow comes back after.
func udpEndsBeforeTheThirdPacket(t *testing.T) string {
	return writeCapture(t, []pkt{
		{at: 0, src: "192.0.2.1:1000", dst: "192.0.2.2:53"},
		{at: 9 * time.Second, src: "192.0.2.3:2000", dst: "192.0.2.4:80", tcp: true, flags: pb.SYN},
		{at: 10 * time.Second, src: "192.0.2.5:3000", dst: "192.0.2.4:80", tcp: true, flags: pb.SYN},
		{at: 11 * time.Second, src: "192.0.2.1:1000", dst: "192.0.2.2:53"},
	})
}

// TestStopFromACallbackStopsAtTheNextPacket: a callback that stops the parser stops it
// before the next packet, even in a capture far shorter than a batch: the flow still
// active ends as stopped, and the packets after are not counted.
func TestStopFromACallbackStopsAtTheNextPacket(t *testing.T) {
	path := udpEndsBeforeTheThirdPacket(t)
	var ended []string
	var p *fparser.Parser
	p, err := fparser.New(path, &fparser.Options{FlowTimeout: 9500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	record := func(f fparser.Flow) { ended = append(ended, f.Src.String()+" "+f.EndReason.String()) }
	p.SetTCPCallback(record)
	p.SetUDPCallback(func(f fparser.Flow) {
		record(f)
		p.Stop()
	})
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.0.2.1:1000 idle", "192.0.2.3:2000 stopped"}; !slices.Equal(ended, want) {
		t.Errorf("flows %v, want %v", ended, want)
	}
	if in := p.Info(); in.PacketsSeen != 2 || in.PacketsAccepted != 2 {
		t.Errorf("%d packets seen, %d counted; want 2 and 2", in.PacketsSeen, in.PacketsAccepted)
	}
}

// TestSetFilterFromACallbackAppliesFromTheNextPacket: a filter set from a callback
// decides the very next packet, even in a capture far shorter than a batch.
func TestSetFilterFromACallbackAppliesFromTheNextPacket(t *testing.T) {
	path := udpEndsBeforeTheThirdPacket(t)
	var p *fparser.Parser
	var ended []string
	p, err := fparser.New(path, &fparser.Options{
		FlowTimeout: 9500 * time.Millisecond,
		OnTCP:       func(f fparser.Flow) { ended = append(ended, f.Src.String()+" "+f.EndReason.String()) },
		OnUDP: func(f fparser.Flow) {
			ended = append(ended, f.Src.String()+" "+f.EndReason.String())
			if err := p.SetFilter("udp"); err != nil {
				t.Error(err)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	in := p.Info()
	if in.PacketsSeen != 4 || in.Filtered != 1 || in.PacketsAccepted != 3 {
		t.Errorf("%d packets seen, %d filtered, %d counted; want 4, 1 and 3", in.PacketsSeen, in.Filtered, in.PacketsAccepted)
	}
	// The last two end together, at the end of the capture, in the table's order.
	if len(ended) > 1 {
		slices.Sort(ended[1:])
	}
	if want := []string{"192.0.2.1:1000 idle", "192.0.2.1:1000 end-of-capture", "192.0.2.3:2000 end-of-capture"}; !slices.Equal(ended, want) {
		t.Errorf("flows %v, want %v", ended, want)
	}
}

func TestSetCallbacksWhileRunning(t *testing.T) {
	path := manyFlows(t, 10)
	var first, second int
	var p *fparser.Parser
	p, err := fparser.New(path, &fparser.Options{FlowTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p.SetUDPCallback(func(fparser.Flow) {
		first++
		if first == 3 {
			p.SetUDPCallback(func(fparser.Flow) { second++ })
		}
	})
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if first != 3 || second != 7 {
		t.Errorf("first callback got %d flows, second %d; want 3 and 7", first, second)
	}
}

func TestStopBeforeStart(t *testing.T) {
	kills := 0
	p, err := fparser.New("testdata/http.pcap", &fparser.Options{
		OnTCP:  func(fparser.Flow) { t.Error("a flow was delivered") },
		OnKill: func() { kills++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := p.WaitContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitContext on a parser never started: %v", err)
	}
	if err := p.Close(); err != nil || kills != 1 {
		t.Errorf("Close: %v, kill callback ran %d times", err, kills)
	}
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var reasons []fparser.EndReason
	p, err := fparser.New("testdata/http.pcap", &fparser.Options{OnTCP: func(f fparser.Flow) { reasons = append(reasons, f.EndReason) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context: %v, want context.Canceled", err)
	}
	for _, r := range reasons {
		if r != fparser.EndStopped {
			t.Errorf("flow ended %v, want stopped", r)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		source string
		opts   *fparser.Options
		want   error
	}{
		{"testdata/http.pcap", &fparser.Options{Attach: "ebpf"}, fparser.ErrOption},
		{"no-such-file-or-interface", nil, fparser.ErrNoSource},
		{"testdata/http.pcap", &fparser.Options{FlowTimeout: -time.Second}, fparser.ErrOption},
		{"testdata/http.pcap", &fparser.Options{Filter: "tcp prot 80"}, fparser.ErrFilter},
		{"testdata/http.pcap", &fparser.Options{Filter: "host example.com"}, filter.ErrHostName},
		{"testdata/http.pcap", &fparser.Options{Filter: "vlan 5000"}, filter.ErrSyntax},
		{"testdata/http.pcap", &fparser.Options{Filter: "protochain 6"}, filter.ErrUnsupported},
		{"testdata/http.pcap", &fparser.Options{Filter: "4\n40 0 0 12\n21 0 1 2048\n6 0 0 1\n7 0 0 0"}, filter.ErrProgram},
		{"testdata", nil, syscall.EISDIR},
	} {
		_, err := fparser.Open(tc.source, tc.opts)
		if !errors.Is(err, tc.want) {
			t.Errorf("Open(%q): %v, want %v", tc.source, err, tc.want)
		}
	}
}
