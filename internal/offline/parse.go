package offline

import (
	"encoding/binary"

	"github.com/fparser/fparser/internal/userspace"
)

// Link types we read (LINKTYPE_* numbers from the pcap and pcapng headers).
const (
	LinkNull     = 0   // BSD loopback, protocol family in the capturing host's order
	LinkEthernet = 1   // Ethernet II, with 802.1Q/802.1ad tags
	LinkRawBSD   = 12  // DLT_RAW as some BSDs number it
	LinkRawBSD2  = 14  // likewise
	LinkRaw      = 101 // raw IPv4 or IPv6, told apart by the version nibble
	LinkLoop     = 108 // OpenBSD loopback, protocol family in network order
	LinkSLL      = 113 // Linux cooked capture v1
	LinkIPv4     = 228
	LinkIPv6     = 229
	LinkSLL2     = 276 // Linux cooked capture v2
)

// SupportedLink reports whether the datapath reads frames of link type lt.
func SupportedLink(lt uint32) bool {
	switch lt {
	case LinkNull, LinkEthernet, LinkRawBSD, LinkRawBSD2, LinkRaw, LinkLoop, LinkSLL, LinkIPv4, LinkIPv6, LinkSLL2:
		return true
	}
	return false
}

// verdict is what the parser made of a frame.
type verdict uint8

const (
	vFlow      verdict = iota // TCP or UDP with ports: counts in its flow
	vLaterFrag                // a non-first TCP/UDP fragment: counts through the fragment table
	vNonIP                    // not IPv4 or IPv6 (ARP, LLC, a third VLAN tag, ...)
	vOtherL4                  // IP, but not TCP or UDP
	vMalformed                // a header cut short or inconsistent
	vFiltered                 // rejected by the packet filter, before parsing
)

// Fragment roles of a packet.
const (
	fragNone  = 0
	fragFirst = 1 // offset 0, more fragments follow: carries the ports
	fragLater = 2 // offset > 0
)

const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86DD
	etherVLAN  = 0x8100
	etherQinQ  = 0x88A8
	etherQinQ2 = 0x9100
	maxVLANs   = 2
	maxIPv6Ext = 8 // extension headers walked before giving up, as the kernel's loop bound
)

// packet is what the parser extracts from a frame; nothing in it points into the
// frame, so it can live on the stack. The parser writes the flow key with the source
// as endpoint A; the datapath puts it in canonical order afterwards.
type packet struct {
	key    userspace.Key
	flags  uint8
	frag   uint8
	length uint32 // IP length: IPv4 total length, IPv6 payload length + 40
	fragID uint32
	ipOff  int32  // where the IP header starts
	l4Off  int32  // where the TCP or UDP header starts; 0 for a non-first fragment
	seglen uint32 // TCP: the payload's length by the IP header
	// Set, parse opens tunnels and writes here the outermost, OuterA the
	// outermost IP header's source; its kind none when none was opened. A pointer,
	// so that a packet without stays as small as before.
	tun *userspace.Tunnel
}

var v4Prefix = [12]byte{10: 0xff, 11: 0xff}

// parse reads a frame of link type lt whose length on the wire was wire, as the
// kernel's parse; with p.tun set, as its parse_tunnels (decap_on).
func parse(p *packet, d []byte, lt uint32, wire int) verdict {
	off, etype, v := linkHeader(p, d, lt)
	if v != vFlow {
		return v
	}
	if p.tun != nil {
		return parseTunnels(p, d, wire, off, etype)
	}
	l4, l4len, v := ipHeader(p, d, wire, off, etype)
	if v != vFlow {
		return v
	}
	return transport(p, d, l4, l4len)
}

// linkHeader reads the link header of link type lt and up to maxVLANs tags (the
// kernel's link_header), and returns where the network header starts and its
// EtherType.
func linkHeader(p *packet, d []byte, lt uint32) (off int, etype uint16, v verdict) {
	switch lt {
	case LinkEthernet:
		if len(d) < 14 {
			return 0, 0, vMalformed
		}
		etype, off = binary.BigEndian.Uint16(d[12:]), 14
	case LinkSLL:
		if len(d) < 16 {
			return 0, 0, vMalformed
		}
		etype, off = binary.BigEndian.Uint16(d[14:]), 16
	case LinkSLL2:
		if len(d) < 20 {
			return 0, 0, vMalformed
		}
		etype, off = binary.BigEndian.Uint16(d[0:]), 20
	case LinkNull, LinkLoop:
		if len(d) < 4 {
			return 0, 0, vMalformed
		}
		fam := binary.BigEndian.Uint32(d)
		if lt == LinkNull && fam > 0xFFFF {
			fam = binary.LittleEndian.Uint32(d)
		}
		switch fam {
		case 2:
			etype = etherIPv4
		case 10, 24, 28, 30: // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, Darwin
			etype = etherIPv6
		default:
			return 0, 0, vNonIP
		}
		off = 4
	case LinkRaw, LinkRawBSD, LinkRawBSD2, LinkIPv4, LinkIPv6:
		if len(d) < 1 {
			return 0, 0, vMalformed
		}
		switch d[0] >> 4 {
		case 4:
			etype = etherIPv4
		case 6:
			etype = etherIPv6
		default:
			return 0, 0, vMalformed
		}
	default:
		return 0, 0, vNonIP
	}

	p.key.VLAN = 0
	for range maxVLANs {
		if etype != etherVLAN && etype != etherQinQ && etype != etherQinQ2 {
			break
		}
		if len(d) < off+4 {
			return 0, 0, vMalformed
		}
		if p.key.VLAN == 0 {
			p.key.VLAN = binary.BigEndian.Uint16(d[off:]) & 0x0FFF
		}
		etype = binary.BigEndian.Uint16(d[off+2:])
		off += 4
	}

	return off, etype, vFlow
}

// ipHeader reads the IP header of EtherType etype at off (the kernel's ip_header):
// the packet's IP length, its addresses (the source as A), protocol and fragment
// role, and where the payload after the header and its extension headers starts,
// and its length. vFlow says it read it.
func ipHeader(p *packet, d []byte, wire, off int, etype uint16) (l4, l4len int, v verdict) {
	p.ipOff = int32(off)
	switch etype {
	case etherIPv4:
		if len(d) < off+20 || d[off]>>4 != 4 {
			return 0, 0, vMalformed
		}
		ihl := int(d[off]&0x0F) * 4
		if ihl < 20 || len(d) < off+ihl {
			return 0, 0, vMalformed
		}
		total := int(binary.BigEndian.Uint16(d[off+2:]))
		if total == 0 {
			// Segmentation offload leaves the total length 0: the frame is the packet.
			total = wire - off
		}
		if total < ihl {
			return 0, 0, vMalformed
		}
		p.length = uint32(total)
		p.key.Proto = d[off+9]
		*(*[12]byte)(p.key.A[:]) = v4Prefix
		*(*[4]byte)(p.key.A[12:]) = *(*[4]byte)(d[off+12:])
		*(*[12]byte)(p.key.B[:]) = v4Prefix
		*(*[4]byte)(p.key.B[12:]) = *(*[4]byte)(d[off+16:])
		fo := binary.BigEndian.Uint16(d[off+6:])
		p.frag = fragNone
		if fo&0x1FFF != 0 {
			p.frag, p.fragID = fragLater, uint32(binary.BigEndian.Uint16(d[off+4:]))
		} else if fo&0x2000 != 0 {
			p.frag, p.fragID = fragFirst, uint32(binary.BigEndian.Uint16(d[off+4:]))
		}
		return off + ihl, total - ihl, vFlow
	case etherIPv6:
		if len(d) < off+40 || d[off]>>4 != 6 {
			return 0, 0, vMalformed
		}
		payload := int(binary.BigEndian.Uint16(d[off+4:]))
		if payload == 0 {
			payload = wire - off - 40 // a jumbogram, or offload: the frame is the packet
		}
		p.length = uint32(payload + 40)
		p.key.A = *(*[16]byte)(d[off+8:])
		p.key.B = *(*[16]byte)(d[off+24:])
		next := d[off+6]
		pos := off + 40
		p.frag = fragNone
	walk:
		for range maxIPv6Ext {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(d) < pos+8 {
					return 0, 0, vMalformed
				}
				next = d[pos]
				pos += (int(d[pos+1]) + 1) * 8
			case 44: // fragment
				if len(d) < pos+8 {
					return 0, 0, vMalformed
				}
				fo := binary.BigEndian.Uint16(d[pos+2:])
				next = d[pos]
				p.fragID = binary.BigEndian.Uint32(d[pos+4:])
				pos += 8
				if fo&0xFFF8 != 0 {
					p.frag = fragLater
				} else if fo&1 != 0 {
					p.frag = fragFirst
				}
			default:
				break walk
			}
		}
		p.key.Proto = next
		return pos, off + 40 + payload - pos, vFlow
	default:
		return 0, 0, vNonIP
	}
}

// transport decides what an IP packet whose header ipHeader read is (the kernel's
// transport): other traffic, a later fragment, or a flow's, whose TCP or UDP
// header at l4 it reads.
func transport(p *packet, d []byte, l4, l4len int) verdict {
	p.l4Off, p.flags = 0, 0 // the packet is reused: a later fragment has no flags
	if p.key.Proto != userspace.ProtoTCP && p.key.Proto != userspace.ProtoUDP {
		return vOtherL4
	}
	if p.frag == fragLater {
		return vLaterFrag
	}
	switch p.key.Proto {
	case userspace.ProtoTCP:
		if len(d) < l4+20 || l4len < 20 {
			return vMalformed
		}
		doff := int(d[l4+12]>>4) * 4
		if doff < 20 || doff > l4len {
			return vMalformed
		}
		p.flags = d[l4+13]
		p.seglen = uint32(l4len - doff)
	default:
		if len(d) < l4+8 || l4len < 8 {
			return vMalformed
		}
		p.flags = 0
	}
	p.key.PortA = binary.BigEndian.Uint16(d[l4:])
	p.key.PortB = binary.BigEndian.Uint16(d[l4+2:])
	p.l4Off = int32(l4)
	return vFlow
}

// readSegment reads what the TCP quality needs of a whole TCP segment that parse
// accepted (vFlow, fragNone).
func readSegment(g *userspace.Segment, d []byte, p *packet) {
	tcp := d[p.l4Off:]
	*g = userspace.Segment{
		Seq: binary.BigEndian.Uint32(tcp[4:]), Ack: binary.BigEndian.Uint32(tcp[8:]),
		Len: p.seglen, Window: binary.BigEndian.Uint16(tcp[14:]), Flags: p.flags,
	}
}

// readRecord fills the history record of a frame that parse accepted (vFlow or
// vLaterFrag): parse checked that these headers are in the frame.
func readRecord(r *userspace.PacketRecord, d []byte, p *packet) {
	ip := d[p.ipOff:]
	*r = userspace.PacketRecord{Length: p.length, Flags: p.flags}
	if ip[0]>>4 == 4 {
		r.IPID, r.TTL = binary.BigEndian.Uint16(ip[4:]), ip[8]
	} else {
		r.TTL = ip[7]
	}
	if p.l4Off > 0 && p.key.Proto == userspace.ProtoTCP {
		tcp := d[p.l4Off:]
		r.Seq, r.Ack = binary.BigEndian.Uint32(tcp[4:]), binary.BigEndian.Uint32(tcp[8:])
		r.Window = binary.BigEndian.Uint16(tcp[14:])
	}
}
