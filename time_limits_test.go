package fparser_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fparser/fparser"
	pb "github.com/fparser/fparser/internal/pktbuild"
)

// TestFlowsNear2262: a capture dated minutes before the last instant int64 ns since
// 1970 hold, 2262-04-11T23:47:16Z, keeps its flows whole. A flow's timeouts would pass
// after that instant; they end at the end of the capture instead of at once by an
// overflow, which made each packet a flow of its own.
func TestFlowsNear2262(t *testing.T) {
	start := time.Date(2262, 4, 11, 23, 40, 0, 0, time.UTC)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var frames [][]byte
	for i := range 8 { // a UDP exchange, and a TCP connection that ends with FIN
		src, dst, sp, dp := a, b, uint16(5000), uint16(53)
		if i%2 == 1 {
			src, dst, sp, dp = b, a, 53, 5000
		}
		frames = append(frames, pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoUDP}.Build(pb.UDP(sp, dp, make([]byte, 10))))
	}
	tcp := func(src, dst netip.Addr, sp, dp uint16, flags uint8) []byte {
		return pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoTCP}.Build(pb.TCP(sp, dp, flags, 1, 1, nil))
	}
	frames = append(frames,
		tcp(a, b, 40000, 80, pb.SYN), tcp(b, a, 80, 40000, pb.SYN|pb.ACK), tcp(a, b, 40000, 80, pb.ACK),
		tcp(a, b, 40000, 80, pb.FIN|pb.ACK), tcp(b, a, 80, 40000, pb.FIN|pb.ACK), tcp(a, b, 40000, 80, pb.ACK))

	var file bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&file, pcapgo.NgInterface{LinkType: layers.LinkTypeRaw, SnapLength: 65535, TimestampResolution: 9}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Second), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	flows, info, err := replay(t, writeTemp(t, "2262.pcapng", file.Bytes()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 2 {
		t.Fatalf("%d flows, want 2 (8 UDP packets, 6 TCP)", len(flows))
	}
	for _, f := range flows {
		want := uint64(8)
		if f.Protocol == fparser.TCP {
			want = 6
		}
		if got := f.Fwd.Packets + f.Rev.Packets; got != want || f.EndReason != fparser.EndEndOfCapture {
			t.Errorf("%v: %d packets, %v; want %d, end of capture", f.Protocol, got, f.EndReason, want)
		}
	}
	checkConservation(t, flows, info)
}
