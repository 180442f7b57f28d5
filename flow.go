package fparser

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/fparser/fparser/userspace"
)

// Protocol is a flow's transport protocol.
type Protocol uint8

// The protocols fparser tracks.
const (
	TCP Protocol = userspace.ProtoTCP
	UDP Protocol = userspace.ProtoUDP
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// EndReason says why a flow ended.
type EndReason = userspace.EndReason

// End reasons.
const (
	EndIdle         = userspace.EndIdle         // FlowTimeout passed without a packet
	EndFIN          = userspace.EndFIN          // FinTimeout passed after a FIN
	EndRST          = userspace.EndRST          // FinTimeout passed after a RST
	EndReused       = userspace.EndReused       // a new SYN reused the 5-tuple of a finished flow
	EndActive       = userspace.EndActive       // ActiveTimeout passed since the first packet
	EndEndOfCapture = userspace.EndEndOfCapture // the capture file ended
	EndStopped      = userspace.EndStopped      // the parser was stopped
	EndEvicted      = userspace.EndEvicted      // the flow table had no room for it
)

// TCPFlags is an OR of TCP header flags.
type TCPFlags uint8

// TCP flags.
const (
	FIN TCPFlags = userspace.FlagFIN
	SYN TCPFlags = userspace.FlagSYN
	RST TCPFlags = userspace.FlagRST
	PSH TCPFlags = userspace.FlagPSH
	ACK TCPFlags = userspace.FlagACK
	URG TCPFlags = userspace.FlagURG
	ECE TCPFlags = userspace.FlagECE
	CWR TCPFlags = userspace.FlagCWR
)

// String writes the flags as tcpdump does, e.g. "SPF." ("." is ACK).
func (f TCPFlags) String() string {
	var b strings.Builder
	for _, x := range []struct {
		f TCPFlags
		c byte
	}{{SYN, 'S'}, {PSH, 'P'}, {FIN, 'F'}, {RST, 'R'}, {URG, 'U'}, {ECE, 'E'}, {CWR, 'W'}, {ACK, '.'}} {
		if f&x.f != 0 {
			b.WriteByte(x.c)
		}
	}
	return b.String()
}

// Counters count one direction of a flow.
type Counters struct {
	Packets uint64
	Bytes   uint64 // IP lengths: the snaplen never changes them
	Flags   TCPFlags
	First   time.Time // zero when the direction has no packet
	Last    time.Time
}

// Flow is a bidirectional TCP or UDP flow. Src is the endpoint that initiated it: the
// source of its first packet, or the destination when that packet was a SYN+ACK.
type Flow struct {
	Protocol  Protocol
	Src, Dst  netip.AddrPort // IPv4 addresses are plain IPv4, never v4-mapped
	VLAN      uint16         // outer 802.1Q/802.1ad VID, 0 when untagged
	Fwd       Counters       // Src to Dst
	Rev       Counters       // Dst to Src
	FirstSeen time.Time
	LastSeen  time.Time
	// EndReason is set on flows handed to a callback; it is zero on active flows.
	EndReason EndReason
}

// Packets is the number of packets in both directions.
func (f *Flow) Packets() uint64 { return f.Fwd.Packets + f.Rev.Packets }

// Bytes is the number of bytes in both directions.
func (f *Flow) Bytes() uint64 { return f.Fwd.Bytes + f.Rev.Bytes }

// Duration is the time from the first packet to the last.
func (f *Flow) Duration() time.Duration { return f.LastSeen.Sub(f.FirstSeen) }

// flowOf converts a flow of the engine; offset turns the datapath's clock into Unix ns.
func flowOf(k *userspace.Key, s *userspace.State, reason EndReason, offset int64) Flow {
	fwd, rev := 0, 1
	src, dst := k.EndpointA(), k.EndpointB()
	if s.Initiator == 1 {
		fwd, rev = 1, 0
		src, dst = dst, src
	}
	return Flow{
		Protocol:  Protocol(k.Proto),
		Src:       src,
		Dst:       dst,
		VLAN:      k.VLAN,
		Fwd:       countersOf(&s.Dir[fwd], s.Flags[fwd], offset),
		Rev:       countersOf(&s.Dir[rev], s.Flags[rev], offset),
		FirstSeen: time.Unix(0, s.FirstSeen()+offset).UTC(),
		LastSeen:  time.Unix(0, s.LastSeen()+offset).UTC(),
		EndReason: reason,
	}
}

func countersOf(c *userspace.Counters, flags uint8, offset int64) Counters {
	out := Counters{Packets: c.Packets, Bytes: c.Bytes, Flags: TCPFlags(flags)}
	if c.Packets > 0 {
		out.First = time.Unix(0, c.First+offset).UTC()
		out.Last = time.Unix(0, c.Last+offset).UTC()
	}
	return out
}
