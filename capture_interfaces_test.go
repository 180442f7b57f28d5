package fparser_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fparser/fparser/internal/pktbuild"
)

// TestCaptureInterfaces: offline, a direction is counted at the first of a pcapng
// capture's interfaces it was seen on, as live, and the flow names it. Interfaces of
// one name are one place: a capture that mergecap made describes an interface again
// for each file it merged, and a packet seen on both descriptions is no duplicate.
func TestCaptureInterfaces(t *testing.T) {
	var file bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&file, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeEthernet}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	eth1, err := w.AddInterface(pcapgo.NgInterface{Name: "eth1", LinkType: layers.LinkTypeEthernet})
	if err != nil {
		t.Fatal(err)
	}
	eth0Again, err := w.AddInterface(pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeEthernet})
	if err != nil {
		t.Fatal(err)
	}
	client, server := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	datagram := func(src, dst netip.Addr, sport, dport uint16, payload string) []byte {
		ip := pktbuild.IPv4{Src: src, Dst: dst, Proto: 17}
		return pktbuild.Ethernet(0x0800, nil, ip.Build(pktbuild.UDP(sport, dport, []byte(payload))))
	}
	query := datagram(client, server, 1000, 53, "query")
	answer := datagram(server, client, 53, 1000, "answer")
	start := time.Unix(1_700_000_000, 0)
	for i, p := range []struct {
		iface int
		frame []byte
	}{
		{0, query},          // counted at eth0
		{eth1, query},       // routed out by eth1: a duplicate
		{eth0Again, query},  // eth0, as the merged file describes it again: counted
		{eth1, answer},      // the answer's direction, counted at eth1
		{eth0Again, answer}, // and out by eth0: a duplicate
	} {
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(p.frame), Length: len(p.frame), InterfaceIndex: p.iface}
		if err := w.WritePacket(ci, p.frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}

	flows, info, err := replay(t, writeTemp(t, "merged.pcapng", file.Bytes()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 1 {
		t.Fatalf("%d flows, want 1: %+v", len(flows), flows)
	}
	f := flows[0]
	if f.Fwd.Packets != 2 || f.Rev.Packets != 1 || f.DuplicatePackets != 2 || info.DuplicatePackets != 2 {
		t.Errorf("packets %d and %d, duplicates %d (Info %d); want 2 and 1, 2", f.Fwd.Packets, f.Rev.Packets, f.DuplicatePackets, info.DuplicatePackets)
	}
	if f.Fwd.Interface != "eth0" || f.Fwd.InterfaceIndex != 1 || f.Rev.Interface != "eth1" || f.Rev.InterfaceIndex != 2 || f.Fwd.Egress || f.Rev.Egress {
		t.Errorf("counted at %q (%d, egress %v) and %q (%d, egress %v); want eth0 (1) and eth1 (2), neither egress",
			f.Fwd.Interface, f.Fwd.InterfaceIndex, f.Fwd.Egress, f.Rev.Interface, f.Rev.InterfaceIndex, f.Rev.Egress)
	}
}
