// Package edgecases writes the synthetic captures in testdata/ that real traffic
// rarely shows: VLAN and QinQ tags, IPv6 extension headers, fragments in and out of
// order, a SYN+ACK first, timestamps going backwards, truncated and lying headers,
// every link type and file format the reader takes, every event of the TCP quality,
// and tunnels. A test regenerates them and
// fails when the committed files differ.
package edgecases

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	pb "github.com/fparser/fparser/internal/pktbuild"
)

// T0 is the first timestamp of every generated capture.
var T0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	hostA  = netip.MustParseAddr("192.0.2.1")
	hostB  = netip.MustParseAddr("192.0.2.2")
	hostC  = netip.MustParseAddr("192.0.2.3")
	host6A = netip.MustParseAddr("2001:db8::1")
	host6B = netip.MustParseAddr("2001:db8::2")
)

// record is one packet of a capture: its time offset from T0, its frame, and, for
// pcapng, the interface it came from. wire, when set, is the length on the wire of a
// frame that was cut.
type record struct {
	at    time.Duration
	frame []byte
	iface int
	wire  int
	// section is the pcapng section the packet is in, for a capture of several.
	section int
}

// Capture is a generated capture file.
type Capture struct {
	Name    string
	build   func() []record
	link    layers.LinkType
	snaplen uint32
	write   func(w io.Writer, c *Capture, recs []record) error
}

// All lists the generated captures.
func All() []Capture {
	return []Capture{
		{Name: "vlan.pcap", build: vlan, link: layers.LinkTypeEthernet, write: writePcap},
		{Name: "ipv6ext.pcap", build: ipv6ext, link: layers.LinkTypeEthernet, write: writePcap},
		{Name: "fragments.pcap", build: fragments, link: layers.LinkTypeEthernet, write: writePcap},
		{Name: "synack-first.pcap", build: synackFirst, link: layers.LinkTypeEthernet, write: writePcap},
		{Name: "backwards.pcap", build: backwards, link: layers.LinkTypeEthernet, write: writePcap},
		{Name: "truncated.pcap", build: truncated, link: layers.LinkTypeEthernet, snaplen: 64, write: writePcap},
		{Name: "linktypes.pcapng", build: linktypes, write: writeLinktypes},
		{Name: "nanoseconds.pcap.gz", build: nanoseconds, link: layers.LinkTypeRaw, write: writeNanoGzip},
		{Name: "sections.pcapng", build: sections, write: writeSections},
		{Name: "tcp-quality.pcap", build: tcpQuality, link: layers.LinkTypeEthernet, write: writePcap},
		{Name: "gre.pcap", build: gre, link: layers.LinkTypeEthernet, write: writePcap},
		{Name: "tunnels.pcap", build: tunnels, link: layers.LinkTypeEthernet, write: writePcap},
		{Name: "tunnel-fragments.pcap", build: tunnelFragments, link: layers.LinkTypeEthernet, write: writePcap},
	}
}

// WriteAll writes every capture into dir.
func WriteAll(dir string) error {
	for _, c := range All() {
		var buf bytes.Buffer
		if err := c.write(&buf, &c, c.build()); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, c.Name), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func ci(r record, caplen int) gopacket.CaptureInfo {
	wire := len(r.frame)
	if r.wire > 0 {
		wire = r.wire
	}
	return gopacket.CaptureInfo{Timestamp: T0.Add(r.at), CaptureLength: caplen, Length: wire, InterfaceIndex: r.iface}
}

func writePcap(w io.Writer, c *Capture, recs []record) error {
	pw := pcapgo.NewWriter(w)
	snap := c.snaplen
	if snap == 0 {
		snap = 65535
	}
	if err := pw.WriteFileHeader(snap, c.link); err != nil {
		return err
	}
	for _, r := range recs {
		data := r.frame
		if len(data) > int(snap) {
			if r.wire == 0 {
				r.wire = len(data)
			}
			data = data[:snap]
		}
		if err := pw.WritePacket(ci(r, len(data)), data); err != nil {
			return err
		}
	}
	return nil
}

func writeNanoGzip(w io.Writer, c *Capture, recs []record) error {
	zw := gzip.NewWriter(w)
	pw := pcapgo.NewWriterNanos(zw)
	if err := pw.WriteFileHeader(65535, c.link); err != nil {
		return err
	}
	for _, r := range recs {
		if err := pw.WritePacket(ci(r, len(r.frame)), r.frame); err != nil {
			return err
		}
	}
	return zw.Close()
}

func writeLinktypes(w io.Writer, _ *Capture, recs []record) error {
	return writeSection(w, []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeRaw, layers.LinkTypeLinuxSLL, 276, layers.LinkTypeNull, layers.LinkTypeIPv4}, recs)
}

// writeSection writes a pcapng section with an interface of each link type, and the
// records on them.
func writeSection(w io.Writer, links []layers.LinkType, recs []record) error {
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "fparser edge-case generator"}}
	nw, err := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{Name: "if0", LinkType: links[0], SnapLength: 65535}, opts)
	if err != nil {
		return err
	}
	for i, lt := range links[1:] {
		if _, err := nw.AddInterface(pcapgo.NgInterface{Name: "if" + string(rune('1'+i)), LinkType: lt, SnapLength: 65535}); err != nil {
			return err
		}
	}
	for _, r := range recs {
		if err := nw.WritePacket(ci(r, len(r.frame)), r.frame); err != nil {
			return err
		}
	}
	return nw.Flush()
}

// sectionLinks are the interfaces of each section of sections.pcapng: the second
// section has fewer interfaces than the first and another link type for interface 0;
// the third swaps the first's two.
var sectionLinks = [][]layers.LinkType{
	{layers.LinkTypeEthernet, layers.LinkTypeRaw},
	{276}, // Linux SLL2, as "tcpdump -i any" writes it
	{layers.LinkTypeRaw, layers.LinkTypeEthernet},
}

// writeSections writes one pcapng section per entry of sectionLinks, one after the
// other, as concatenating pcapng files does.
func writeSections(w io.Writer, _ *Capture, recs []record) error {
	for sec, links := range sectionLinks {
		var in []record
		for _, r := range recs {
			if r.section == sec {
				in = append(in, r)
			}
		}
		if err := writeSection(w, links, in); err != nil {
			return err
		}
	}
	return nil
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func eth4(vlans []uint16, h pb.IPv4, l4 []byte) []byte {
	return pb.Ethernet(pb.EtherIPv4, vlans, h.Build(l4))
}

// vlan: one UDP conversation on VLAN 10 and untagged (two flows), a TCP handshake
// under QinQ 100/200 (one flow on VLAN 100), a priority tag (VID 0: untagged), and a
// frame with three tags (not parsed: non-IP).
func vlan() []record {
	q := pb.UDP(5000, 53, make([]byte, 30))
	r := pb.UDP(53, 5000, make([]byte, 90))
	ab := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoUDP}
	ba := pb.IPv4{Src: hostB, Dst: hostA, Proto: pb.ProtoUDP}
	tab := pb.IPv4{Src: hostA, Dst: hostC, Proto: pb.ProtoTCP}
	tba := pb.IPv4{Src: hostC, Dst: hostA, Proto: pb.ProtoTCP}
	return []record{
		{at: ms(0), frame: eth4([]uint16{10}, ab, q)},
		{at: ms(1), frame: eth4([]uint16{10}, ba, r)},
		{at: ms(2), frame: eth4(nil, ab, q)},
		{at: ms(3), frame: eth4(nil, ba, r)},
		{at: ms(4), frame: eth4([]uint16{100, 200}, tab, pb.TCP(40000, 443, pb.SYN, 1, 0, nil))},
		{at: ms(5), frame: eth4([]uint16{100, 200}, tba, pb.TCP(443, 40000, pb.SYN|pb.ACK, 7, 2, nil))},
		{at: ms(6), frame: eth4([]uint16{100, 200}, tab, pb.TCP(40000, 443, pb.ACK, 2, 8, nil))},
		{at: ms(7), frame: eth4([]uint16{0}, ab, pb.UDP(5001, 53, make([]byte, 10)))},
		{at: ms(8), frame: eth4([]uint16{100, 200, 300}, ab, pb.UDP(5002, 53, make([]byte, 10)))},
	}
}

// ipv6ext: TCP behind hop-by-hop and destination options, UDP behind a routing
// header, AH (not walked: other L4), a chain longer than the walk's bound (other
// L4), and ICMPv6.
func ipv6ext() []record {
	e6 := func(h pb.IPv6, l4 []byte) []byte { return pb.Ethernet(pb.EtherIPv6, nil, h.Build(l4)) }
	tcp := pb.IPv6{Src: host6A, Dst: host6B, Next: pb.ProtoTCP, PayloadLen: -1,
		Exts: []pb.Ext{{Type: pb.ExtHopByHop}, {Type: pb.ExtDestOpts, Len: 1}}}
	tcpBack := pb.IPv6{Src: host6B, Dst: host6A, Next: pb.ProtoTCP, PayloadLen: -1}
	udp := pb.IPv6{Src: host6A, Dst: host6B, Next: pb.ProtoUDP, PayloadLen: -1, Exts: []pb.Ext{{Type: pb.ExtRouting, Len: 2}}}
	var long []pb.Ext
	for range 9 {
		long = append(long, pb.Ext{Type: pb.ExtDestOpts})
	}
	tooLong := pb.IPv6{Src: host6A, Dst: host6B, Next: pb.ProtoUDP, PayloadLen: -1, Exts: long}
	ah := pb.IPv6{Src: host6A, Dst: host6B, Next: 51, PayloadLen: -1}
	icmp := pb.IPv6{Src: host6A, Dst: host6B, Next: 58, PayloadLen: -1}
	return []record{
		{at: ms(0), frame: e6(tcp, pb.TCP(33000, 80, pb.SYN, 1, 0, nil))},
		{at: ms(1), frame: e6(tcpBack, pb.TCP(80, 33000, pb.SYN|pb.ACK, 9, 2, nil))},
		{at: ms(2), frame: e6(tcp, pb.TCP(33000, 80, pb.ACK|pb.PSH, 2, 10, make([]byte, 100)))},
		{at: ms(3), frame: e6(udp, pb.UDP(33001, 53, make([]byte, 20)))},
		{at: ms(4), frame: e6(tooLong, pb.UDP(33002, 53, make([]byte, 20)))},
		{at: ms(5), frame: e6(ah, make([]byte, 24))},
		{at: ms(6), frame: e6(icmp, make([]byte, 8))},
	}
}

// fragments: an IPv4 UDP datagram in three fragments in order plus its answer; a
// datagram whose last fragment comes before its first (unattributed, then the rest
// count); an IPv6 datagram in two fragments; an IPv6 later fragment alone.
func fragments() []record {
	payload := pb.UDP(6000, 7000, make([]byte, 2000-8))
	frag := func(id uint16, off, lo, hi int, more bool) []byte {
		h := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoUDP, ID: id, FragOffset: uint16(off / 8), MoreFrags: more}
		return pb.Ethernet(pb.EtherIPv4, nil, h.Build(payload[lo:hi]))
	}
	answer := pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: hostB, Dst: hostA, Proto: pb.ProtoUDP, ID: 9}.Build(pb.UDP(7000, 6000, make([]byte, 12))))
	p6 := pb.UDP(6001, 7001, make([]byte, 1600-8))
	frag6 := func(id uint32, off, lo, hi int, more bool) []byte {
		h := pb.IPv6{Src: host6A, Dst: host6B, Next: pb.ProtoUDP, PayloadLen: -1,
			Exts: []pb.Ext{{Type: pb.ExtFragment, FragOffset: uint16(off / 8), MoreFrags: more, ID: id}}}
		return pb.Ethernet(pb.EtherIPv6, nil, h.Build(p6[lo:hi]))
	}
	return []record{
		{at: ms(0), frame: frag(1, 0, 0, 800, true)},
		{at: ms(1), frame: frag(1, 800, 800, 1600, true)},
		{at: ms(2), frame: frag(1, 1600, 1600, 2000, false)},
		{at: ms(3), frame: answer},
		{at: ms(10), frame: frag(2, 1600, 1600, 2000, false)}, // before its first: unattributed
		{at: ms(11), frame: frag(2, 0, 0, 800, true)},
		{at: ms(12), frame: frag(2, 800, 800, 1600, true)},
		{at: ms(20), frame: frag6(77, 0, 0, 1000, true)},
		{at: ms(21), frame: frag6(77, 1000, 1000, 1600, false)},
		{at: ms(22), frame: frag6(78, 1000, 1000, 1600, false)}, // no first: unattributed
	}
}

// synackFirst: the capture starts at the server's SYN+ACK, so the client is still
// the initiator.
func synackFirst() []record {
	srv := pb.IPv4{Src: hostB, Dst: hostA, Proto: pb.ProtoTCP}
	cli := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoTCP}
	return []record{
		{at: ms(0), frame: eth4(nil, srv, pb.TCP(80, 41000, pb.SYN|pb.ACK, 100, 2, nil))},
		{at: ms(1), frame: eth4(nil, cli, pb.TCP(41000, 80, pb.ACK, 2, 101, nil))},
		{at: ms(2), frame: eth4(nil, cli, pb.TCP(41000, 80, pb.ACK|pb.PSH, 2, 101, make([]byte, 50)))},
		{at: ms(3), frame: eth4(nil, srv, pb.TCP(80, 41000, pb.ACK|pb.PSH, 101, 52, make([]byte, 500)))},
	}
}

// tcpQuality: one TCP connection with every event the TCP quality counts, as
// tshark's TCP analysis flags them: a handshake of 10 ms (SYN to SYN+ACK) and 2 ms
// (SYN+ACK to ACK); from the client a retransmission, an out-of-order segment after
// a lost one, a fast retransmission after three duplicate ACKs and a spurious
// retransmission; from the server two zero windows, one of them answering a zero
// window probe; and a keep-alive and its ACK, which count as none of these. Then a
// second connection with a fast retransmission after an uncaptured segment.
func tcpQuality() []record {
	type seg struct {
		at           int
		fromClient   bool
		flags        uint8
		seq, ack     uint32
		window, size int
	}
	const A, PA = pb.ACK, pb.PSH | pb.ACK
	segs := []seg{
		{0, true, pb.SYN, 1000, 0, 65535, 0},
		{10, false, pb.SYN | pb.ACK, 5000, 1001, 65535, 0},
		{12, true, A, 1001, 5001, 65535, 0},
		{20, true, PA, 1001, 5001, 65535, 100},
		{30, false, A, 5001, 1101, 65535, 0},
		{40, true, PA, 1101, 5001, 65535, 100},
		{300, true, PA, 1101, 5001, 65535, 100}, // a retransmission
		{310, false, A, 5001, 1201, 65535, 0},
		{400, true, PA, 1301, 5001, 65535, 100}, // 1201 went uncaptured...
		{401, true, PA, 1201, 5001, 65535, 100}, // ...and comes out of order
		{410, false, A, 5001, 1401, 65535, 0},
		{450, true, PA, 1401, 5001, 65535, 100}, // lost on the way
		{451, true, PA, 1501, 5001, 65535, 100},
		{452, true, PA, 1601, 5001, 65535, 100},
		{460, false, A, 5001, 1401, 65535, 0}, // three duplicate ACKs
		{461, false, A, 5001, 1401, 65535, 0},
		{462, false, A, 5001, 1401, 65535, 0},
		{465, true, PA, 1401, 5001, 65535, 100}, // a fast retransmission
		{470, false, A, 5001, 1701, 65535, 0},
		{600, true, PA, 1401, 5001, 65535, 100}, // a spurious retransmission
		{700, false, A, 5001, 1701, 0, 0},       // a zero window
		{800, true, PA, 1701, 5001, 65535, 1},   // a zero window probe
		{810, false, A, 5001, 1701, 0, 0},       // and its ACK: a zero window again
		{900, false, A, 5001, 1701, 65535, 0},   // the window opens
		{1000, true, A, 1700, 5001, 65535, 0},   // a keep-alive
		{1001, false, A, 5001, 1701, 65535, 0},  // and its ACK
		{1100, true, pb.FIN | pb.ACK, 1701, 5001, 65535, 0},
		{1110, false, pb.FIN | pb.ACK, 5001, 1702, 65535, 0},
		{1112, true, A, 1702, 5002, 65535, 0},
	}
	// A second connection: the server's segment 8101 goes uncaptured, and the
	// client's ACKs beyond it do not keep the server's duplicate ACKs from making
	// the client's resent segment a fast retransmission.
	second := []seg{
		{2000, true, pb.SYN, 3000, 0, 65535, 0},
		{2010, false, pb.SYN | pb.ACK, 8000, 3001, 65535, 0},
		{2020, true, A, 3001, 8001, 65535, 0},
		{2030, false, PA, 8001, 3001, 65535, 100},
		{2031, false, PA, 8201, 3001, 65535, 100}, // after 8101, uncaptured
		{2040, true, PA, 3001, 8301, 65535, 100},
		{2041, true, PA, 3101, 8301, 65535, 100}, // lost on the way
		{2042, true, PA, 3201, 8301, 65535, 100},
		{2050, false, A, 8301, 3101, 65535, 0},
		{2051, false, A, 8301, 3101, 65535, 0}, // two duplicate ACKs
		{2052, false, A, 8301, 3101, 65535, 0},
		{2055, true, PA, 3101, 8301, 65535, 100}, // a fast retransmission
		{2100, true, pb.FIN | pb.ACK, 3301, 8301, 65535, 0},
		{2110, false, pb.FIN | pb.ACK, 8301, 3302, 65535, 0},
		{2112, true, A, 3302, 8302, 65535, 0},
	}
	cli := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoTCP}
	srv := pb.IPv4{Src: hostB, Dst: hostA, Proto: pb.ProtoTCP}
	var recs []record
	for i, g := range append(segs, second...) {
		port := uint16(42000)
		if i >= len(segs) {
			port = 42001
		}
		h, sport, dport := srv, uint16(80), port
		if g.fromClient {
			h, sport, dport = cli, port, 80
		}
		t := pb.TCP(sport, dport, g.flags, g.seq, g.ack, make([]byte, g.size))
		binary.BigEndian.PutUint16(t[14:], uint16(g.window))
		recs = append(recs, record{at: ms(g.at), frame: eth4(nil, h, t)})
	}
	return recs
}

// gre: the tunnels that the test machines' kernels cannot make (no ip_gre), for
// --decap: a TCP exchange through a GRE tunnel with key 7 (10.47.1.0/24), the same
// through one without a key (10.47.2.0/24), and a UDP datagram each way mirrored by
// ERSPAN type II (GRE with a sequence number, session 5) as an Ethernet frame. The
// outer headers are between hostA and hostB.
func gre() []record {
	const protoGRE = 47
	greHeader := func(proto uint16, key, seq *uint32) []byte {
		var flags uint16
		if key != nil {
			flags |= 0x2000
		}
		if seq != nil {
			flags |= 0x1000
		}
		b := binary.BigEndian.AppendUint16(nil, flags)
		b = binary.BigEndian.AppendUint16(b, proto)
		if key != nil {
			b = binary.BigEndian.AppendUint32(b, *key)
		}
		if seq != nil {
			b = binary.BigEndian.AppendUint32(b, *seq)
		}
		return b
	}
	outer := func(fromA bool, payload []byte) []byte {
		h := pb.IPv4{Src: hostA, Dst: hostB, Proto: protoGRE}
		if !fromA {
			h.Src, h.Dst = hostB, hostA
		}
		return eth4(nil, h, payload)
	}
	var recs []record
	at := 0
	key := uint32(7)
	for i, k := range []*uint32{&key, nil} {
		cli := netip.AddrFrom4([4]byte{10, 47, byte(1 + i), 1})
		srv := netip.AddrFrom4([4]byte{10, 47, byte(1 + i), 2})
		for _, g := range []struct {
			fromClient bool
			flags      uint8
			seq, ack   uint32
			size       int
		}{
			{true, pb.SYN, 100, 0, 0}, {false, pb.SYN | pb.ACK, 900, 101, 0}, {true, pb.ACK, 101, 901, 0},
			{true, pb.PSH | pb.ACK, 101, 901, 60}, {false, pb.PSH | pb.ACK, 901, 161, 200},
			{true, pb.FIN | pb.ACK, 161, 1101, 0}, {false, pb.FIN | pb.ACK, 1101, 162, 0}, {true, pb.ACK, 162, 1102, 0},
		} {
			in := pb.IPv4{Src: srv, Dst: cli, Proto: pb.ProtoTCP}
			sport, dport := uint16(80), uint16(43000+i)
			if g.fromClient {
				in.Src, in.Dst, sport, dport = cli, srv, dport, sport
			}
			inner := in.Build(pb.TCP(sport, dport, g.flags, g.seq, g.ack, make([]byte, g.size)))
			recs = append(recs, record{at: ms(at), frame: outer(g.fromClient, append(greHeader(pb.EtherIPv4, k, nil), inner...))})
			at += 2
		}
	}
	// ERSPAN type II: version 1, VLAN 0, session 5, then the mirrored frame.
	for i, fromC := range []bool{true, false} {
		h := pb.IPv4{Src: hostC, Dst: netip.MustParseAddr("192.0.2.4"), Proto: pb.ProtoUDP}
		sport, dport := uint16(5000), uint16(53)
		if !fromC {
			h.Src, h.Dst, sport, dport = h.Dst, h.Src, dport, sport
		}
		mirrored := eth4(nil, h, pb.UDP(sport, dport, make([]byte, 40)))
		seq := uint32(i + 1)
		erspan := []byte{0x10, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00} // version 1, VLAN 0; session 5; index 0
		recs = append(recs, record{at: ms(at), frame: outer(true, append(append(greHeader(0x88BE, nil, &seq), erspan...), mirrored...))})
		at += 2
	}
	return recs
}

// backwards: timestamps 10 s, 12 s, 11 s (clamped to 12 s), 13 s, then a packet 700 s
// later (a new flow after the 600 s idle timeout).
func backwards() []record {
	h := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoUDP}
	f := eth4(nil, h, pb.UDP(7777, 8888, make([]byte, 4)))
	return []record{
		{at: 10 * time.Second, frame: f},
		{at: 12 * time.Second, frame: f},
		{at: 11 * time.Second, frame: f},
		{at: 13 * time.Second, frame: f},
		{at: 713 * time.Second, frame: f},
	}
}

// truncated (snaplen 64): a long TCP segment cut by the snaplen still counts its IP
// length; an IPv4 header cut short, a total length shorter than the TCP header, a
// data offset past the IP length and a 10-byte frame are malformed; ARP is non-IP;
// ICMP is other L4.
func truncated() []record {
	cli := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoTCP}
	long := eth4(nil, cli, pb.TCP(42000, 80, pb.ACK|pb.PSH, 1, 1, make([]byte, 1400)))
	cut := eth4(nil, cli, pb.TCP(42000, 80, pb.ACK, 1, 1, nil))[:14+12]
	short := cli
	short.TotalLen = 30
	badOff := pb.TCP(42000, 80, pb.ACK, 1, 1, nil)
	badOff[12] = 15 << 4
	icmp := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoICMP}
	return []record{
		{at: ms(0), frame: long},
		{at: ms(1), frame: cut, wire: 54},
		{at: ms(2), frame: eth4(nil, short, pb.TCP(42000, 80, pb.ACK, 1, 1, nil))},
		{at: ms(3), frame: eth4(nil, cli, badOff)},
		{at: ms(4), frame: make([]byte, 10)},
		{at: ms(5), frame: pb.Ethernet(pb.EtherARP, nil, make([]byte, 28))},
		{at: ms(6), frame: eth4(nil, icmp, make([]byte, 8))},
		{at: ms(7), frame: eth4(nil, pb.IPv4{Src: hostB, Dst: hostA, Proto: pb.ProtoTCP}, pb.TCP(80, 42000, pb.ACK, 1, 1401, nil))},
	}
}

// linktypes: one UDP exchange per interface of a pcapng file whose interfaces are
// Ethernet, raw IP, Linux SLL, Linux SLL2, BSD loopback and raw IPv4.
func linktypes() []record {
	var recs []record
	for i := range 6 {
		sport := uint16(9000 + i)
		q := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoUDP}.Build(pb.UDP(sport, 53, make([]byte, 20+i)))
		var frame []byte
		switch i {
		case 0:
			frame = pb.Ethernet(pb.EtherIPv4, nil, q)
		case 1, 5:
			frame = q
		case 2: // SLL: packet type, ARPHRD, address length, 8 address bytes, protocol
			frame = append([]byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00}, q...)
		case 3: // SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, 8 address bytes
			frame = append([]byte{0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}, q...)
		case 4: // BSD loopback: AF_INET in the capturing host's (little-endian) order
			frame = append([]byte{2, 0, 0, 0}, q...)
		}
		recs = append(recs, record{at: ms(i), frame: frame, iface: i})
	}
	return recs
}

// sections: a UDP exchange and a TCP handshake that go on across the three sections
// of sections.pcapng, and a UDP exchange within each, every packet framed for the
// link type of its own section's interface. A reader that kept an earlier section's
// interfaces reads SLL2 as Ethernet and Ethernet as raw IP.
func sections() []record {
	udp := func(sport, dport uint16, src, dst netip.Addr, n int) []byte {
		return pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoUDP}.Build(pb.UDP(sport, dport, make([]byte, n)))
	}
	tcp := func(sport, dport uint16, src, dst netip.Addr, flags uint8, seq, ack uint32) []byte {
		return pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoTCP}.Build(pb.TCP(sport, dport, flags, seq, ack, nil))
	}
	ether := func(ip []byte) []byte { return pb.Ethernet(pb.EtherIPv4, nil, ip) }
	sll2 := func(ip []byte) []byte { // protocol, reserved, ifindex, ARPHRD, packet type, address length, 8 address bytes
		return append([]byte{0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0}, ip...)
	}
	return []record{
		{at: ms(0), frame: ether(udp(9100, 53, hostA, hostB, 30)), section: 0, iface: 0},
		{at: ms(1), frame: tcp(41000, 80, hostA, hostC, pb.SYN, 1, 0), section: 0, iface: 1},
		{at: ms(2), frame: tcp(80, 41000, hostC, hostA, pb.SYN|pb.ACK, 7, 2), section: 0, iface: 1},
		{at: ms(3), frame: ether(udp(9101, 53, hostA, hostB, 31)), section: 0, iface: 0},
		{at: ms(4), frame: sll2(udp(53, 9100, hostB, hostA, 90)), section: 1, iface: 0},
		{at: ms(5), frame: sll2(udp(9102, 53, hostA, hostB, 32)), section: 1, iface: 0},
		{at: ms(6), frame: sll2(udp(53, 9102, hostB, hostA, 92)), section: 1, iface: 0},
		{at: ms(7), frame: udp(9100, 53, hostA, hostB, 33), section: 2, iface: 0},
		{at: ms(8), frame: ether(tcp(41000, 80, hostA, hostC, pb.ACK, 2, 8)), section: 2, iface: 1},
		{at: ms(9), frame: udp(53, 9101, hostB, hostA, 91), section: 2, iface: 0},
	}
}

// nanoseconds: a nanosecond-resolution raw-IP pcap, gzip-compressed, whose packets are
// 1 ns apart.
func nanoseconds() []record {
	a := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoTCP}.Build(pb.TCP(43000, 22, pb.SYN, 1, 0, nil))
	b := pb.IPv4{Src: hostB, Dst: hostA, Proto: pb.ProtoTCP}.Build(pb.TCP(22, 43000, pb.SYN|pb.ACK, 1, 2, nil))
	return []record{
		{at: 123456789, frame: a},
		{at: 123456790, frame: b},
	}
}

// tunnels: for --decap, one of each header variant that the test machines cannot
// make and the corpus lacks, all between hostA and hostB outside, each inner flow
// in 10.50.N.0/24 (or 2001:db8:50:N::/64) and from port 1000+N, N its case:
//
//  1. VXLAN (VNI 7000) carrying an 802.1Q-tagged frame, a datagram and its answer;
//  2. VXLAN without the I flag (no VNI): not opened;
//  3. Geneve with 8 bytes of options carrying Ethernet (VNI 0x123), first from the
//     larger inner address;
//  4. GTP-U with a sequence number and a PDU session container (TEID 0x1234);
//  5. a GTP-U echo request: no user packet;
//  6. GRE with checksum, key 9 and sequence number, carrying IPv6;
//  7. IP in IP three deep: the third is not opened;
//  8. IPv6 in IPv4;
//  9. MPLS, labels 100 and 200;
//  10. MPLS, five labels: deeper than opened;
//  11. MPLS (label 300) over a VXLAN tunnel (VNI 11): two tunnels;
//  12. PPPoE (session 0x42) carrying IPv6;
//  13. PPPoE carrying LCP: no IP;
//  14. PPTP's GRE (call id 0x77, sequence and acknowledgment numbers) carrying PPP
//     with address and control;
//  15. VXLAN carrying ICMP, and ARP;
//  16. VXLAN whose inner IPv4 header is cut short.
func tunnels() []record {
	const protoGRE, protoIPIP, protoIPv6 = 47, 4, 41
	inner := func(n int, fromClient bool) []byte {
		cli := netip.AddrFrom4([4]byte{10, 50, byte(n), 1})
		srv := netip.AddrFrom4([4]byte{10, 50, byte(n), 2})
		h := pb.IPv4{Src: cli, Dst: srv, Proto: pb.ProtoUDP}
		sport, dport := uint16(1000+n), uint16(53)
		if !fromClient {
			h.Src, h.Dst, sport, dport = srv, cli, dport, sport
		}
		return h.Build(pb.UDP(sport, dport, make([]byte, 20+n)))
	}
	inner6 := func(n int) []byte {
		h := pb.IPv6{Src: netip.MustParseAddr("2001:db8:50:" + hex(n) + "::1"), Dst: netip.MustParseAddr("2001:db8:50:" + hex(n) + "::2"), Next: pb.ProtoUDP, PayloadLen: -1}
		return h.Build(pb.UDP(uint16(1000+n), 53, make([]byte, 20+n)))
	}
	outer := func(proto uint8, payload []byte) []byte {
		return eth4(nil, pb.IPv4{Src: hostA, Dst: hostB, Proto: proto}, payload)
	}
	udp := func(sport, dport uint16, payload []byte) []byte {
		return outer(pb.ProtoUDP, pb.UDP(sport, dport, payload))
	}
	vxlan := func(flags byte, vni uint32, frame []byte) []byte {
		h := binary.BigEndian.AppendUint32([]byte{flags, 0, 0, 0}, vni<<8)
		return append(h, frame...)
	}
	mpls := func(labels []uint32, payload []byte) []byte {
		var b []byte
		for i, l := range labels {
			e := l<<12 | 64
			if i == len(labels)-1 {
				e |= 0x100 // bottom of stack
			}
			b = binary.BigEndian.AppendUint32(b, e)
		}
		return append(b, payload...)
	}
	const etherMPLS, etherPPPoE = 0x8847, 0x8864
	pppoe := func(proto uint16, payload []byte) []byte {
		b := []byte{0x11, 0x00, 0x00, 0x42}
		b = binary.BigEndian.AppendUint16(b, uint16(2+len(payload)))
		b = binary.BigEndian.AppendUint16(b, proto)
		return append(b, payload...)
	}
	frames := [][]byte{
		udp(49152, 4789, vxlan(0x08, 7000, pb.Ethernet(pb.EtherIPv4, []uint16{100}, inner(1, true)))),
		udp(49152, 4789, vxlan(0x08, 7000, pb.Ethernet(pb.EtherIPv4, []uint16{100}, inner(1, false)))),
		udp(49153, 4789, vxlan(0x00, 0, pb.Ethernet(pb.EtherIPv4, nil, inner(2, true)))),
		udp(49154, 6081, append([]byte{0x02, 0x00, 0x65, 0x58, 0x00, 0x01, 0x23, 0x00, 0x01, 0x02, 0x80, 0x01, 0, 0, 0, 0}, pb.Ethernet(pb.EtherIPv4, nil, inner(3, false))...)),
		udp(2152, 2152, append([]byte{0x36, 0xFF, 0, byte(4 + 4 + len(inner(4, true))), 0, 0, 0x12, 0x34, 0, 1, 0, 0x85, 0x01, 0x00, 0x05, 0x00}, inner(4, true)...)),
		udp(2152, 2152, []byte{0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 7, 0, 0}),
		outer(protoGRE, append([]byte{0xB0, 0x00, 0x86, 0xDD, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1}, inner6(6)...)),
		outer(protoIPIP, pb.IPv4{Src: hostA, Dst: hostC, Proto: protoIPIP}.Build(pb.IPv4{Src: hostC, Dst: hostB, Proto: protoIPIP}.Build(inner(7, true)))),
		outer(protoIPv6, inner6(8)),
		pb.Ethernet(etherMPLS, nil, mpls([]uint32{100, 200}, inner(9, true))),
		pb.Ethernet(etherMPLS, nil, mpls([]uint32{1, 2, 3, 4, 5}, inner(10, true))),
		pb.Ethernet(etherMPLS, nil, mpls([]uint32{300}, pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoUDP}.Build(pb.UDP(49155, 4789, vxlan(0x08, 11, pb.Ethernet(pb.EtherIPv4, nil, inner(11, true))))))),
		pb.Ethernet(etherPPPoE, nil, pppoe(0x0057, inner6(12))),
		pb.Ethernet(etherPPPoE, nil, pppoe(0xC021, []byte{0x01, 0x01, 0x00, 0x04})),
		outer(protoGRE, append([]byte{0x30, 0x81, 0x88, 0x0B, 0, byte(4 + len(inner(14, true))), 0, 0x77, 0, 0, 0, 3, 0, 0, 0, 2, 0xFF, 0x03, 0x00, 0x21}, inner(14, true)...)),
		udp(49156, 4789, vxlan(0x08, 15, pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: netip.MustParseAddr("10.50.15.1"), Dst: netip.MustParseAddr("10.50.15.2"), Proto: pb.ProtoICMP}.Build([]byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0})))),
		udp(49156, 4789, vxlan(0x08, 15, pb.Ethernet(pb.EtherARP, nil, make([]byte, 28)))),
		udp(49157, 4789, vxlan(0x08, 16, pb.Ethernet(pb.EtherIPv4, nil, inner(16, true)[:12]))),
	}
	recs := make([]record, len(frames))
	for i, f := range frames {
		recs[i] = record{at: ms(2 * i), frame: f}
	}
	return recs
}

// tunnelFragments: a VXLAN packet (VNI 17, carrying UDP in 10.50.17.0/24) cut into
// two IP fragments. A fragment is never opened: with --decap as without, the first
// counts in the outer UDP flow, and the second follows it.
func tunnelFragments() []record {
	in := pb.IPv4{Src: netip.MustParseAddr("10.50.17.1"), Dst: netip.MustParseAddr("10.50.17.2"), Proto: pb.ProtoUDP}.Build(pb.UDP(1017, 53, make([]byte, 100)))
	vx := append([]byte{0x08, 0, 0, 0, 0, 0, 17, 0}, pb.Ethernet(pb.EtherIPv4, nil, in)...)
	dgram := pb.UDP(49158, 4789, vx)
	first := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoUDP, ID: 0x77, MoreFrags: true}.Build(dgram[:64])
	later := pb.IPv4{Src: hostA, Dst: hostB, Proto: pb.ProtoUDP, ID: 0x77, FragOffset: 8}.Build(dgram[64:])
	return []record{{at: 0, frame: pb.Ethernet(pb.EtherIPv4, nil, first)}, {at: ms(1), frame: pb.Ethernet(pb.EtherIPv4, nil, later)}}
}

// hex is n in lower-case hexadecimal, for an IPv6 address's group.
func hex(n int) string { return strconv.FormatInt(int64(n), 16) }
