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
	// With decap: the outermost tunnel, OuterA the outermost IP header's source;
	// its kind none when no tunnel was opened.
	tun userspace.Tunnel
}

var v4Prefix = [12]byte{10: 0xff, 11: 0xff}

// parse reads a frame of link type lt whose length on the wire was wire. With
// decap, it opens tunnels as the kernel's parse does with decap_on.
func parse(p *packet, d []byte, lt uint32, wire int, decap bool) verdict {
	var off int
	var etype uint16
	switch lt {
	case LinkEthernet:
		if len(d) < 14 {
			return vMalformed
		}
		etype, off = binary.BigEndian.Uint16(d[12:]), 14
	case LinkSLL:
		if len(d) < 16 {
			return vMalformed
		}
		etype, off = binary.BigEndian.Uint16(d[14:]), 16
	case LinkSLL2:
		if len(d) < 20 {
			return vMalformed
		}
		etype, off = binary.BigEndian.Uint16(d[0:]), 20
	case LinkNull, LinkLoop:
		if len(d) < 4 {
			return vMalformed
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
			return vNonIP
		}
		off = 4
	case LinkRaw, LinkRawBSD, LinkRawBSD2, LinkIPv4, LinkIPv6:
		if len(d) < 1 {
			return vMalformed
		}
		switch d[0] >> 4 {
		case 4:
			etype = etherIPv4
		case 6:
			etype = etherIPv6
		default:
			return vMalformed
		}
	default:
		return vNonIP
	}

	p.key.VLAN = 0
	for range maxVLANs {
		if etype != etherVLAN && etype != etherQinQ && etype != etherQinQ2 {
			break
		}
		if len(d) < off+4 {
			return vMalformed
		}
		if p.key.VLAN == 0 {
			p.key.VLAN = binary.BigEndian.Uint16(d[off:]) & 0x0FFF
		}
		etype = binary.BigEndian.Uint16(d[off+2:])
		off += 4
	}

	// Tunnels opened: MPLS or PPPoE, then those in IP (the kernel's parse_tunnels).
	tunnels := 0
	if decap && (etype == etherMPLS || etype == etherMPLSMulticast) {
		if len(d) < off+4 {
			return vNonIP
		}
		p.tun.Kind = userspace.TunnelMPLS
		p.tun.ID = binary.BigEndian.Uint32(d[off:]) >> 12
		bottom := false
		for range maxMPLSLabels {
			if len(d) < off+4 {
				return vNonIP
			}
			bottom = d[off+2]&1 != 0
			off += 4
			if bottom {
				break
			}
		}
		// A stack deeper than maxMPLSLabels, or a pseudowire's control word.
		etype = 0
		if bottom {
			etype = ipVersion(d, off)
		}
		tunnels = 1
	} else if decap && etype == etherPPPoE {
		if len(d) < off+8 || d[off] != 0x11 || d[off+1] != 0 {
			return vNonIP
		}
		p.tun.Kind = userspace.TunnelPPPoE
		p.tun.ID = uint32(binary.BigEndian.Uint16(d[off+2:]))
		etype = pppType(binary.BigEndian.Uint16(d[off+6:]))
		off += 8
		tunnels = 1
	}

	var l4 int              // offset of the TCP/UDP header
	var l4len int           // its length by the IP header
	p.l4Off, p.flags = 0, 0 // the packet is reused: a later fragment has no flags
	for level := range maxTunnels + 1 {
		if off > maxInnerOff {
			return vMalformed
		}
		p.ipOff = int32(off)
		switch etype {
		case etherIPv4:
			if len(d) < off+20 || d[off]>>4 != 4 {
				return vMalformed
			}
			ihl := int(d[off]&0x0F) * 4
			if ihl < 20 || len(d) < off+ihl {
				return vMalformed
			}
			total := int(binary.BigEndian.Uint16(d[off+2:]))
			if total == 0 {
				// Segmentation offload leaves the total length 0: the frame is the packet.
				total = wire - off
			}
			if total < ihl {
				return vMalformed
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
			l4, l4len = off+ihl, total-ihl
		case etherIPv6:
			if len(d) < off+40 || d[off]>>4 != 6 {
				return vMalformed
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
						return vMalformed
					}
					next = d[pos]
					pos += (int(d[pos+1]) + 1) * 8
				case 44: // fragment
					if len(d) < pos+8 {
						return vMalformed
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
			l4, l4len = pos, off+40+payload-pos
		default:
			return vNonIP
		}
		// A fragment carries no whole tunnel header: it counts as what it is.
		if !decap || tunnels == maxTunnels || p.frag != fragNone {
			break
		}
		inner := openTunnel(p, d, l4, tunnels == 0, &off, &etype)
		if inner == tNone {
			break
		}
		if level == 0 { // the outermost IP header
			p.tun.OuterA, p.tun.OuterB = p.key.A, p.key.B
		}
		tunnels++
		switch inner {
		case tNonIP:
			return vNonIP
		case tEther:
			if off > maxInnerOff || len(d) < off+14 {
				return vMalformed
			}
			etype = binary.BigEndian.Uint16(d[off+12:])
			off += 14
			if etype = skipVLANs(d, &off, etype); etype == 0 {
				return vMalformed
			}
		}
	}
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
