package fparser

import (
	"iter"
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

	history *userspace.History
	aToB    bool  // the history's direction 0 is Src to Dst
	offset  int64 // turns the history's clock into Unix ns
}

// PacketCount is the number of packets in both directions.
func (f *Flow) PacketCount() uint64 { return f.Fwd.Packets + f.Rev.Packets }

// ByteCount is the number of bytes in both directions.
func (f *Flow) ByteCount() uint64 { return f.Fwd.Bytes + f.Rev.Bytes }

// Packet is the headers of one packet of a flow, as the history keeps them
// (Options.Packets). Seq, Ack and Window are zero for UDP and for IP fragments after
// the first; IPID is zero for IPv6, whose TTL is the hop limit.
type Packet struct {
	Time    time.Time
	Reverse bool // Dst to Src; false: Src to Dst
	IPID    uint16
	TTL     uint8
	Length  uint32 // IP length
	Flags   TCPFlags
	Seq     uint32
	Ack     uint32
	Window  uint16
}

// Packets yields the flow's packets in arrival order, as the original FParser's flow
// iteration does: all of them, or the first Options.Packets. It yields nothing when
// the history is off. The history of an active flow (from Flows or Find) holds the
// packets up to when it was taken.
func (f *Flow) Packets() iter.Seq[Packet] {
	return func(yield func(Packet) bool) {
		if f.history == nil {
			return
		}
		for r := range f.history.All() {
			p := Packet{
				Time:    time.Unix(0, r.Time+f.offset).UTC(),
				Reverse: (r.Dir == 0) != f.aToB,
				IPID:    r.IPID, TTL: r.TTL, Length: r.Length, Flags: TCPFlags(r.Flags),
				Seq: r.Seq, Ack: r.Ack, Window: r.Window,
			}
			if !yield(p) {
				return
			}
		}
	}
}

// PacketsIncomplete says packets are missing from the flow's history: storing
// stopped at Options.MaxPacketMemory, or (live) records were lost.
func (f *Flow) PacketsIncomplete() bool { return f.history != nil && f.history.Incomplete() }

// PacketsStored is the number of packets in the flow's history.
func (f *Flow) PacketsStored() int {
	if f.history == nil {
		return 0
	}
	return f.history.Len()
}

// Duration is the time from the first packet to the last.
func (f *Flow) Duration() time.Duration { return f.LastSeen.Sub(f.FirstSeen) }

// flowOf converts a flow of the engine; offset turns the datapath's clock into Unix ns.
func flowOf(r *userspace.Record, offset int64) Flow {
	f := flowOfState(&r.Key, &r.State, r.Reason, offset)
	f.history, f.offset = r.History, offset
	return f
}

func flowOfState(k *userspace.Key, s *userspace.State, reason EndReason, offset int64) Flow {
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
		aToB:      s.Initiator == 0,
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
