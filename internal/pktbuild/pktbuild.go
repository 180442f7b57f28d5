// Package pktbuild writes packets byte by byte for tests, benchmarks and the edge-case
// capture generator: Ethernet with VLAN tags, IPv4 with options and fragments, IPv6
// with extension headers, TCP and UDP. It writes what it is told, including headers
// that lie about their lengths, because that is what the tests need.
package pktbuild

import (
	"encoding/binary"
	"net/netip"
)

// Ether types.
const (
	EtherIPv4 = 0x0800
	EtherIPv6 = 0x86DD
	EtherARP  = 0x0806
	EtherVLAN = 0x8100
	EtherQinQ = 0x88A8
)

// Ethernet prepends an Ethernet header with the given VLAN tags, outer first. The
// outermost of two or more tags is written as 802.1ad (0x88a8).
func Ethernet(etype uint16, vlans []uint16, payload []byte) []byte {
	b := make([]byte, 0, 14+4*len(vlans)+len(payload))
	b = append(b, 0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1)
	for i, v := range vlans {
		tpid := uint16(EtherVLAN)
		if i == 0 && len(vlans) > 1 {
			tpid = EtherQinQ
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, v&0x0FFF)
	}
	b = binary.BigEndian.AppendUint16(b, etype)
	return append(b, payload...)
}

// IPv4 describes an IPv4 header. TotalLen 0 means the true length.
type IPv4 struct {
	Src, Dst   netip.Addr
	Proto      uint8
	ID         uint16
	FragOffset uint16 // in 8-byte units
	MoreFrags  bool
	TTL        uint8
	Options    []byte // padded to 4 bytes
	TotalLen   int
}

// Build returns the header followed by payload.
func (h IPv4) Build(payload []byte) []byte {
	opts := h.Options
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	hl := 20 + len(opts)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	total := hl + len(payload)
	if h.TotalLen != 0 {
		total = h.TotalLen
	}
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	binary.BigEndian.PutUint16(b[4:], h.ID)
	fo := h.FragOffset & 0x1FFF
	if h.MoreFrags {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], fo)
	b[8] = h.TTL
	if b[8] == 0 {
		b[8] = 64
	}
	b[9] = h.Proto
	src, dst := h.Src.As4(), h.Dst.As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	copy(b[20:], opts)
	binary.BigEndian.PutUint16(b[10:], checksum(b[:hl]))
	return append(b, payload...)
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s > 0xFFFF {
		s = s>>16 + s&0xFFFF
	}
	return ^uint16(s)
}

// IPv6 extension header numbers.
const (
	ExtHopByHop = 0
	ExtRouting  = 43
	ExtFragment = 44
	ExtDestOpts = 60
)

// Ext is an IPv6 extension header. For a fragment header, FragOffset (8-byte units),
// MoreFrags and ID apply; the others carry Len 8-byte units of padding after the
// first 8 bytes.
type Ext struct {
	Type       uint8
	Len        uint8
	FragOffset uint16
	MoreFrags  bool
	ID         uint32
}

// IPv6 describes an IPv6 header and its extension headers. PayloadLen -1 means the
// true length.
type IPv6 struct {
	Src, Dst   netip.Addr
	Next       uint8 // the upper-layer protocol after the extension headers
	HopLimit   uint8
	Exts       []Ext
	PayloadLen int
}

// Build returns the header, the extension headers and payload.
func (h IPv6) Build(payload []byte) []byte {
	var ext []byte
	for i, e := range h.Exts {
		next := h.Next
		if i+1 < len(h.Exts) {
			next = h.Exts[i+1].Type
		}
		if e.Type == ExtFragment {
			fo := e.FragOffset << 3
			if e.MoreFrags {
				fo |= 1
			}
			ext = append(ext, next, 0)
			ext = binary.BigEndian.AppendUint16(ext, fo)
			ext = binary.BigEndian.AppendUint32(ext, e.ID)
			continue
		}
		ext = append(ext, next, e.Len, 1, 4, 0, 0, 0, 0) // PadN option fills the first 8 bytes
		ext = append(ext, make([]byte, 8*int(e.Len))...)
	}
	first := h.Next
	if len(h.Exts) > 0 {
		first = h.Exts[0].Type
	}
	b := make([]byte, 40, 40+len(ext)+len(payload))
	b[0] = 0x60
	pl := len(ext) + len(payload)
	if h.PayloadLen >= 0 {
		pl = h.PayloadLen
	}
	binary.BigEndian.PutUint16(b[4:], uint16(pl))
	b[6] = first
	b[7] = h.HopLimit
	if b[7] == 0 {
		b[7] = 64
	}
	src, dst := h.Src.As16(), h.Dst.As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	b = append(b, ext...)
	return append(b, payload...)
}

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// TCP returns a TCP header with no options followed by payload.
func TCP(sport, dport uint16, flags uint8, seq, ack uint32, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	return append(b, payload...)
}

// UDP returns a UDP header followed by payload.
func UDP(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// Proto returns the IP protocol number for TCP or UDP.
const (
	ProtoTCP  = 6
	ProtoUDP  = 17
	ProtoICMP = 1
)
