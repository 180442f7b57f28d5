package offline

import (
	"encoding/binary"

	"github.com/fparser/fparser/internal/userspace"
)

// The tunnels parse opens with decap, as the kernel's with decap_on.
const (
	etherTEB           = 0x6558 // transparent Ethernet bridging: Ethernet in Geneve or GRE
	etherERSPAN2       = 0x88BE
	etherPPP           = 0x880B
	etherMPLS          = 0x8847
	etherMPLSMulticast = 0x8848
	etherPPPoE         = 0x8864
	pppIPv4            = 0x0021
	pppIPv6            = 0x0057
	protoIPinIP        = 4
	protoIPv6inIP      = 41
	protoGRE           = 47
	portVXLAN          = 4789
	portGeneve         = 6081
	portGTPU           = 2152
	maxTunnels         = 2
	maxMPLSLabels      = 4
	maxGTPExt          = 4
	// maxInnerOff is where a tunnel's inner IP header may start, as the kernel's
	// MAX_INNER_OFF, which keeps its offsets within what the verifier tracks.
	maxInnerOff = 0x3FFF
)

// skipVLANs skips up to maxVLANs 802.1Q/802.1ad tags from *off, returning the
// EtherType after them, or 0 when the frame ends first.
func skipVLANs(d []byte, off *int, etype uint16) uint16 {
	for range maxVLANs {
		if etype != etherVLAN && etype != etherQinQ && etype != etherQinQ2 {
			break
		}
		if len(d) < *off+4 {
			return 0
		}
		etype = binary.BigEndian.Uint16(d[*off+2:])
		*off += 4
	}
	return etype
}

// ipVersion makes the EtherType of the IP header at off, by its version, 0 for
// neither.
func ipVersion(d []byte, off int) uint16 {
	if len(d) < off+1 {
		return 0
	}
	switch d[off] >> 4 {
	case 4:
		return etherIPv4
	case 6:
		return etherIPv6
	}
	return 0
}

// pppType makes the EtherType of a PPP protocol, 0 for one that is not IP.
func pppType(proto uint16) uint16 {
	switch proto {
	case pppIPv4:
		return etherIPv4
	case pppIPv6:
		return etherIPv6
	}
	return 0
}

// What openTunnel found.
const (
	tNone  = iota // no tunnel: the packet is what its headers say
	tIP           // an IP header follows, of EtherType *etype
	tEther        // an Ethernet frame follows
	tNonIP        // a tunnel that carries something other than IP
)

// openTunnel reads, after an IP header whose payload of protocol p.key.Proto starts
// at l4, the tunnel it may carry (the kernel's open_tunnel): IP in IP, GRE (version
// 0 with or without checksum, key and sequence number, carrying IP, Ethernet or
// ERSPAN type II; version 1, PPTP's, carrying PPP), or UDP to the VXLAN, Geneve or
// GTP-U port. A header it does not recognize, or cut short, is no tunnel. On a
// tunnel it sets *off to what follows and, when it is the outermost, the kind and
// id.
func openTunnel(p *packet, d []byte, l4 int, outermost bool, off *int, etype *uint16) int {
	var kind userspace.TunnelKind
	var id uint32
	var next int
	switch p.key.Proto {
	case protoIPinIP, protoIPv6inIP:
		kind, *etype = userspace.TunnelIPinIP, etherIPv4
		if p.key.Proto == protoIPv6inIP {
			kind, *etype = userspace.TunnelIPv6inIP, etherIPv6
		}
		*off, next = l4, tIP
	case protoGRE:
		// The longest header read here is 16 bytes: a shorter packet carries no IP
		// header inside.
		if len(d) < l4+16 {
			return tNone
		}
		h := d[l4:]
		flags, typ := binary.BigEndian.Uint16(h), binary.BigEndian.Uint16(h[2:])
		n := 4
		if flags&0x8000 != 0 { // checksum
			n += 4
		}
		switch {
		case flags&0x4007 == 0:
			kind = userspace.TunnelGRE
			if flags&0x2000 != 0 { // key
				id = binary.BigEndian.Uint32(h[n:])
				n += 4
			}
			if flags&0x1000 != 0 { // sequence number
				n += 4
			}
			switch {
			case typ == etherIPv4 || typ == etherIPv6:
				*etype, next = typ, tIP
			case typ == etherTEB:
				next = tEther
			case typ == etherERSPAN2 && flags&0x1000 != 0:
				if len(d) < l4+n+8 || h[n]>>4 != 1 {
					return tNone
				}
				kind, id = userspace.TunnelERSPAN, uint32(binary.BigEndian.Uint16(h[n+2:])&0x03FF)
				n += 8
				next = tEther
			default:
				return tNone
			}
		case flags&0x4007 == 1 && flags&0x2000 != 0 && typ == etherPPP:
			// PPTP: the key is the payload length and the call id.
			kind, id = userspace.TunnelGRE, uint32(binary.BigEndian.Uint16(h[n+2:]))
			n += 4
			if flags&0x1000 != 0 {
				n += 4
			}
			if flags&0x0080 != 0 { // acknowledgment number
				n += 4
			}
			if len(d) < l4+n+4 {
				return tNone
			}
			q := h[n:]
			if q[0] == 0xFF && q[1] == 0x03 { // address and control
				q, n = q[2:], n+2
			}
			if q[0]&1 != 0 { // a compressed one-byte protocol
				*etype, n = pppType(uint16(q[0])), n+1
			} else {
				*etype, n = pppType(binary.BigEndian.Uint16(q)), n+2
			}
			next = tIP
			if *etype == 0 {
				next = tNonIP
			}
		default:
			return tNone
		}
		*off = l4 + n
	case userspace.ProtoUDP:
		if len(d) < l4+16 {
			return tNone
		}
		t := d[l4+8:]
		switch binary.BigEndian.Uint16(d[l4+2:]) {
		case portVXLAN:
			if t[0]&0x08 == 0 { // no VNI
				return tNone
			}
			kind, id = userspace.TunnelVXLAN, binary.BigEndian.Uint32(t[4:])>>8
			*off, next = l4+16, tEther
		case portGeneve:
			if t[0]>>6 != 0 {
				return tNone
			}
			typ := binary.BigEndian.Uint16(t[2:])
			kind, id = userspace.TunnelGeneve, binary.BigEndian.Uint32(t[4:])>>8
			*off = l4 + 16 + int(t[0]&0x3F)*4
			switch typ {
			case etherIPv4, etherIPv6:
				*etype, next = typ, tIP
			case etherTEB:
				next = tEther
			default:
				return tNone
			}
		case portGTPU:
			// GTP-U version 1 carrying a T-PDU: a user's packet.
			if t[0]>>5 != 1 || t[0]&0x10 == 0 || t[1] != 0xFF {
				return tNone
			}
			kind, id = userspace.TunnelGTPU, binary.BigEndian.Uint32(t[4:])
			n := 8
			if t[0]&0x07 != 0 { // sequence number, N-PDU number, extension
				if len(d) < l4+8+12 {
					return tNone
				}
				n = 12
				var ext byte
				if t[0]&0x04 != 0 {
					ext = t[11]
				}
				for range maxGTPExt {
					if ext == 0 {
						break
					}
					x := l4 + 8 + n
					if len(d) < x+1 || d[x] == 0 {
						return tNone
					}
					xlen := int(d[x]) * 4
					if len(d) < x+xlen {
						return tNone
					}
					ext = d[x+xlen-1]
					n += xlen
				}
				if ext != 0 {
					return tNone
				}
			}
			*off = l4 + 8 + n
			*etype = ipVersion(d, *off)
			next = tIP
			if *etype == 0 {
				next = tNonIP
			}
		default:
			return tNone
		}
	default:
		return tNone
	}
	if outermost {
		p.tun.Kind, p.tun.ID = kind, id
	}
	return next
}

// walk is the tunnel walk's state between its levels (the kernel's struct walk).
type walk struct {
	off       int // in: the IP header; out: the next one
	l4, l4len int // out: the payload after the IP header, and its length
	etype     uint16
	how       uint8 // in: level*
}

const (
	levelOpen      = 0x01 // the walk may open a tunnel here
	levelOutermost = 0x02 // no tunnel was opened before: this one is the flow's
	levelFirstIP   = 0x04 // the frame's first IP header: the tunnel's outer addresses

	levelLast  = 0x100 // no tunnel: the IP header read is the packet's
	levelInner = 0x101 // a tunnel, opened: the next IP header is at off
)

// tunnelLevel reads the IP header at w.off and opens the tunnel it carries, if it
// may and there is one (the kernel's tunnel_level). It returns levelLast,
// levelInner or a verdict.
func tunnelLevel(p *packet, d []byte, wire int, w *walk) int {
	off := w.off
	if off > maxInnerOff {
		return int(vMalformed)
	}
	l4, l4len, v := ipHeader(p, d, wire, off, w.etype)
	if v != vFlow {
		return int(v)
	}
	w.l4, w.l4len = l4, l4len
	// A fragment carries no whole tunnel header: it counts as what it is.
	if w.how&levelOpen == 0 || p.frag != fragNone {
		return levelLast
	}
	var etype uint16
	inner := openTunnel(p, d, l4, w.how&levelOutermost != 0, &off, &etype)
	if inner == tNone {
		return levelLast
	}
	if w.how&levelFirstIP != 0 {
		p.tun.OuterA, p.tun.OuterB = p.key.A, p.key.B
	}
	switch inner {
	case tNonIP:
		return int(vNonIP)
	case tEther:
		if off > maxInnerOff || len(d) < off+14 {
			return int(vMalformed)
		}
		etype = binary.BigEndian.Uint16(d[off+12:])
		off += 14
		if etype = skipVLANs(d, &off, etype); etype == 0 {
			return int(vMalformed)
		}
	}
	w.off, w.etype = off, etype
	return levelInner
}

// parseTunnels is parse that opens tunnels (the kernel's parse_tunnels): MPLS or
// PPPoE under the IP header, then, at most maxTunnels deep in all, the tunnels
// openTunnel knows; the packet is the innermost IP header's.
func parseTunnels(p *packet, d []byte, wire, off int, etype uint16) verdict {
	tunnels := 0
	if etype == etherMPLS || etype == etherMPLSMulticast {
		bottom := false
		for i := range maxMPLSLabels {
			if len(d) < off+4 {
				return vNonIP
			}
			if i == 0 {
				p.tun.Kind, p.tun.ID = userspace.TunnelMPLS, binary.BigEndian.Uint32(d[off:])>>12
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
	} else if etype == etherPPPoE {
		if len(d) < off+8 || d[off] != 0x11 || d[off+1] != 0 {
			return vNonIP
		}
		p.tun.Kind, p.tun.ID = userspace.TunnelPPPoE, uint32(binary.BigEndian.Uint16(d[off+2:]))
		etype = pppType(binary.BigEndian.Uint16(d[off+6:]))
		off += 8
		tunnels = 1
	}

	w := walk{off: off, etype: etype}
	for level := range maxTunnels + 1 {
		w.how = 0
		if tunnels < maxTunnels {
			w.how |= levelOpen
		}
		if tunnels == 0 {
			w.how |= levelOutermost
		}
		if level == 0 {
			w.how |= levelFirstIP
		}
		v := tunnelLevel(p, d, wire, &w)
		if v == levelLast {
			break
		}
		if v != levelInner {
			return verdict(v)
		}
		tunnels++
	}
	return transport(p, d, w.l4, w.l4len)
}
