package fparser

import (
	"iter"
	"math"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/fparser/fparser/internal/live"
	"github.com/fparser/fparser/internal/userspace"
)

// Protocol is a flow's transport protocol.
type Protocol uint8

// The protocols fparser tracks, by their IP protocol numbers.
const (
	TCP Protocol = 6  // IPPROTO_TCP
	UDP Protocol = 17 // IPPROTO_UDP
)

// String is "tcp", "udp", or "proto-N" for another protocol number.
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// EndReason says why a flow ended: which of the rules in Options ended it, or what
// ended the parser. String gives its name, as the CLI prints it: "idle", "fin",
// "rst", "reused", "active", "end-of-capture", "stopped", "evicted", or "unknown" for
// the zero value, which active flows have.
type EndReason uint8

// End reasons.
const (
	// EndIdle: Options.FlowTimeout passed since the flow's last packet.
	EndIdle EndReason = 1
	// EndFIN: Options.FinTimeout passed since the last packet, once a FIN was seen
	// from either side.
	EndFIN EndReason = 2
	// EndRST: Options.FinTimeout passed since the last packet, once a RST was seen.
	EndRST EndReason = 3
	// EndReused: a SYN without ACK arrived on the 5-tuple of a flow that had seen a
	// FIN or RST; the old flow ends at once and the SYN starts a new one.
	EndReused EndReason = 4
	// EndActive: Options.ActiveTimeout passed since the flow's first packet.
	EndActive EndReason = 5
	// EndEndOfCapture: the capture file ended, or failed (Wait returns why).
	EndEndOfCapture EndReason = 6
	// EndStopped: the parser was stopped (Stop, Close, Run's context), or its
	// interface went away.
	EndStopped EndReason = 7
	// EndEvicted is reserved for a flow table that reports the flows it drops for
	// lack of room. No datapath does yet: the kernel's LRU map drops flows
	// unreported, and Info.Evictions counts them.
	EndEvicted EndReason = 8
)

// String is the reason's name (see EndReason).
func (r EndReason) String() string { return userspace.EndReason(r).String() }

// TCPFlags is an OR of TCP header flags.
type TCPFlags uint8

// TCP flags: the bits of the TCP header's flags byte.
const (
	FIN TCPFlags = 0x01
	SYN TCPFlags = 0x02
	RST TCPFlags = 0x04
	PSH TCPFlags = 0x08
	ACK TCPFlags = 0x10
	URG TCPFlags = 0x20
	ECE TCPFlags = 0x40
	CWR TCPFlags = 0x80
)

// String writes the flags in tcpdump's letters and order: S (SYN), P (PSH), F
// (FIN), R (RST), U (URG), E (ECE), W (CWR), then "." for ACK, e.g. "SPF."; no flag
// at all is "".
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
	Last    time.Time // the direction's last packet; zero likewise

	// Statistics, as NFStream's post-mortem features, kept by the datapath per
	// packet (in the kernel, live) with Options.Statistics; zero without.
	Size        SizeStats  // packet sizes
	Gap         GapStats   // inter-arrival times
	FlagPackets FlagCounts // packets that carried each TCP flag

	// TCP quality, measured per packet (in the kernel, live) with
	// Options.TCPQuality; zero without, and for UDP. RTT is this direction's part
	// of the handshake's round trip, seen from the capture point: for Fwd, from
	// Src's SYN to Dst's SYN+ACK; for Rev, from that SYN+ACK to the ACK that
	// completes the handshake; 0 when the capture did not see a whole handshake
	// (Flow.HandshakeRTT). Retransmissions (tshark's retransmissions, fast
	// retransmissions and spurious retransmissions), OutOfOrder (its out-of-order
	// segments) and ZeroWindows (its zero window advertisements) count the
	// direction's segments by the rules of tshark's TCP analysis: docs/fields.md
	// states them.
	RTT             time.Duration
	Retransmissions uint32
	OutOfOrder      uint32
	ZeroWindows     uint32

	// Where the direction was counted: at the first place one of its packets was
	// seen, so that a packet crossing several interfaces counts once (see
	// Flow.DuplicatePackets). Live, InterfaceIndex is the kernel's index of the
	// interface, Interface its name and Egress says the packets were leaving by it
	// rather than arriving. Offline, InterfaceIndex numbers the capture's
	// interfaces from 1 as the file first describes them (1 for a pcap file), and
	// Interface is the name a pcapng file gives it (if_name), if any; interfaces of
	// one name are one place, since a merged capture describes an interface again
	// for each file it merges. Zero before the direction's first packet.
	Interface      string
	InterfaceIndex int
	Egress         bool

	// Process is the local process that sent the direction's packets, live, when
	// the kernel found their socket (see Process); zero for packets that came
	// from elsewhere, forwarded ones, offline, and with an XDP-only attach mode.
	Process Process
}

// Process is a local process that a flow's packets were sent from, found by the
// kernel at the socket: the process that created the socket (for an accepted
// connection, the listening socket's), and the socket's cgroup v2 path, which names
// its container or systemd unit, such as /system.slice/nginx.service. A socket
// created before the parser started has its Cgroup, with PID 0 and no Name.
type Process struct {
	PID    int
	Name   string // the process's command name (comm), at most 15 bytes
	Cgroup string // the path under the cgroup v2 mount; "" when no longer there
}

// IsZero says no process is known.
func (p Process) IsZero() bool { return p == Process{} }

// SizeStats summarize a direction's packet sizes, IP lengths in bytes as
// Counters.Bytes counts them. Stddev is the sample standard deviation, 0 below two packets.
type SizeStats struct {
	Min, Max     uint32
	Mean, Stddev float64
}

// GapStats summarize the gaps between a direction's consecutive packets
// (Counters.Packets-1 of them), each in whole microseconds, truncated. Stddev is the sample standard
// deviation, 0 below two gaps. A gap is 0 where the clock went backwards: live, when
// two CPUs count packets of the same direction at once.
type GapStats struct {
	Min, Max, Mean, Stddev time.Duration
}

// FlagCounts count a direction's packets that carried each TCP flag.
type FlagCounts struct {
	FIN, SYN, RST, PSH, ACK, URG, ECE, CWR uint32
}

// Flow is a bidirectional TCP or UDP flow. Src is the endpoint that initiated it: the
// source of its first packet, or the destination when that packet was a SYN+ACK.
type Flow struct {
	Protocol  Protocol
	Src, Dst  netip.AddrPort // IPv4 addresses are plain IPv4, never v4-mapped
	VLAN      uint16         // outer 802.1Q/802.1ad VID, 0 when untagged
	Fwd       Counters       // Src to Dst
	Rev       Counters       // Dst to Src
	FirstSeen time.Time      // the flow's first packet, in either direction
	LastSeen  time.Time      // its last packet
	// EndReason is set on flows handed to a callback; it is zero on active flows.
	EndReason EndReason
	// DuplicatePackets are packets of the flow seen again after they were
	// counted: at another interface than the one their direction is counted at
	// (Counters.Interface), as when the host routes them, or they cross a
	// container's veth and then a bridge. They count here and nowhere else.
	DuplicatePackets uint64
	// Process is the flow's local process: the sender of Fwd (Src's) when the
	// kernel found one, else of Rev (Dst's); zero for a flow with no local socket,
	// such as one the host forwards. A flow between two local processes has both,
	// in Fwd.Process and Rev.Process.
	Process Process
	// PacketRate and ByteRate are the flow's moving rates, per second, as of its
	// last packet: from exponential moving averages of the gap between its packets
	// (both directions) and of their size, each new packet weighing 1/8. 0 below
	// two packets.
	PacketRate, ByteRate float64
	// HandshakeRTT is the TCP handshake's round trip at the capture point, with
	// Options.TCPQuality: from the latest SYN to the first segment with ACK and
	// without SYN after it, as tshark's tcp.analysis.initial_rtt, when the
	// responder's SYN+ACK came between and that segment was the initiator's,
	// without RST; Fwd.RTT + Rev.RTT. 0 when the capture saw no whole handshake.
	HandshakeRTT time.Duration
	// Tunnel is the tunnel the flow's first packet came through, with
	// Options.Decap; zero for a flow that came through none.
	Tunnel Tunnel

	history *userspace.History
	aToB    bool  // the history's direction 0 is Src to Dst
	offset  int64 // turns the history's clock into Unix ns
}

// PacketCount is the number of packets in both directions.
func (f *Flow) PacketCount() uint64 { return f.Fwd.Packets + f.Rev.Packets }

// ByteCount is the number of bytes in both directions.
func (f *Flow) ByteCount() uint64 { return f.Fwd.Bytes + f.Rev.Bytes }

// Packet is the headers of one packet of a flow, as the history keeps them
// (Options.Packets). Flags, Seq, Ack and Window are zero for UDP and for IP fragments
// after the first; IPID is zero for IPv6, whose TTL is the hop limit.
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

// History yields the headers of the flow's packets in arrival order, as the original
// FParser's flow iteration does: all of them, or the first Options.Packets. It
// yields nothing when the history is off. The history of an active flow (from Flows
// or Find) holds the packets up to when it was taken. How many packets the flow had
// is PacketCount, or each direction's Counters.Packets.
func (f *Flow) History() iter.Seq[Packet] {
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

// HistoryIncomplete says packets are missing from the flow's history: storing
// stopped at Options.MaxPacketMemory, or (live) records were lost.
func (f *Flow) HistoryIncomplete() bool { return f.history != nil && f.history.Incomplete() }

// Packets is History.
//
// Deprecated: use History; Packets reads like the count, which is PacketCount.
func (f *Flow) Packets() iter.Seq[Packet] { return f.History() }

// PacketsIncomplete is HistoryIncomplete.
//
// Deprecated: use HistoryIncomplete.
func (f *Flow) PacketsIncomplete() bool { return f.HistoryIncomplete() }

// PacketsStored is HistoryLen.
//
// Deprecated: use HistoryLen.
func (f *Flow) PacketsStored() int { return f.HistoryLen() }

// HistoryLen is the number of packets in the flow's history.
func (f *Flow) HistoryLen() int {
	if f.history == nil {
		return 0
	}
	return f.history.Len()
}

// Duration is the time from the first packet to the last.
func (f *Flow) Duration() time.Duration { return f.LastSeen.Sub(f.FirstSeen) }

// flowOf converts a flow of the engine, with the names of its interfaces when the
// source knows them.
func (p *Parser) flowOf(r *userspace.Record, ended bool) Flow {
	f := flowOf(r, p.offset, p.statistics)
	if procs, ok := p.src.(interface {
		Processes(*userspace.Key, *userspace.State, bool) [2]live.Process
	}); ok && r.State.Owner != 0 {
		found := procs.Processes(&r.Key, &r.State, ended)
		fwd, rev := &f.Fwd, &f.Rev
		if !f.aToB {
			fwd, rev = rev, fwd
		}
		fwd.Process, rev.Process = Process(found[0]), Process(found[1])
		f.Process = f.Fwd.Process
		if f.Process.IsZero() {
			f.Process = f.Rev.Process
		}
	}
	if names, ok := p.src.(interface{ InterfaceName(index int) string }); ok {
		for _, c := range []*Counters{&f.Fwd, &f.Rev} {
			if c.InterfaceIndex != 0 {
				c.Interface = names.InterfaceName(c.InterfaceIndex)
			}
		}
	}
	return f
}

// flowOf converts a flow of the engine; offset turns the datapath's clock into Unix
// ns, and statistics says its FlowStats hold statistics, not only the TCP quality
// (which is zero when not kept).
func flowOf(r *userspace.Record, offset int64, statistics bool) Flow {
	f := flowOfState(&r.Key, &r.State, r.Stats, statistics, EndReason(r.Reason), offset)
	f.history, f.offset = r.History, offset
	return f
}

func flowOfState(k *userspace.Key, s *userspace.State, st *userspace.FlowStats, statistics bool, reason EndReason, offset int64) Flow {
	fwd, rev := 0, 1
	src, dst := k.EndpointA(), k.EndpointB()
	if s.Initiator == 1 {
		fwd, rev = 1, 0
		src, dst = dst, src
	}
	withStats := st
	if !statistics {
		withStats = nil
	}
	pps, bps := s.Rates()
	f := Flow{
		PacketRate: pps,
		ByteRate:   bps,
		Protocol:   Protocol(k.Proto),
		Src:        src,
		Dst:        dst,
		VLAN:       k.VLAN,
		Fwd:        countersOf(&s.Dir[fwd], s.Flags[fwd], s.Where[fwd], dirStats(withStats, fwd), offset),
		Rev:        countersOf(&s.Dir[rev], s.Flags[rev], s.Where[rev], dirStats(withStats, rev), offset),
		FirstSeen:  time.Unix(0, s.FirstSeen()+offset).UTC(),
		LastSeen:   time.Unix(0, s.LastSeen()+offset).UTC(),
		EndReason:  reason,
		aToB:       s.Initiator == 0,

		DuplicatePackets: s.Duplicates,
	}
	if st != nil {
		f.Tunnel = tunnelOf(&st.Tunnel, s.Initiator == 0)
	}
	if st != nil && k.Proto == userspace.ProtoTCP {
		q := &st.TCP
		if rtt, responder, initiator, ok := q.Handshake(); ok {
			// The SYN went to Dst and the SYN+ACK came back: Dst's side of the
			// capture point; the SYN+ACK went to Src and the ACK came back.
			f.HandshakeRTT = time.Duration(rtt)
			f.Fwd.RTT, f.Rev.RTT = time.Duration(responder), time.Duration(initiator)
		}
		for _, d := range [...]struct {
			c   *Counters
			dir int
		}{{&f.Fwd, fwd}, {&f.Rev, rev}} {
			d.c.Retransmissions = q.Dir[d.dir].Retransmissions
			d.c.OutOfOrder = q.Dir[d.dir].OutOfOrder
			d.c.ZeroWindows = q.Dir[d.dir].ZeroWindows
		}
	}
	return f
}

// dirStats returns direction dir's statistics, or nil when none were kept.
func dirStats(st *userspace.FlowStats, dir int) *userspace.DirStats {
	if st == nil {
		return nil
	}
	return &st.Dir[dir]
}

func countersOf(c *userspace.Counters, flags uint8, where userspace.Where, st *userspace.DirStats, offset int64) Counters {
	out := Counters{Packets: c.Packets, Bytes: c.Bytes, Flags: TCPFlags(flags), InterfaceIndex: int(where.Index()), Egress: where.Egress()}
	if c.Packets == 0 {
		return out
	}
	out.First = time.Unix(0, c.First+offset).UTC()
	out.Last = time.Unix(0, c.Last+offset).UTC()
	if st == nil {
		return out
	}
	out.Size = SizeStats{
		Min: st.SizeMin, Max: st.SizeMax,
		Mean:   float64(c.Bytes) / float64(c.Packets),
		Stddev: stddev(c.Packets, c.Bytes, st.SizeSquares),
	}
	if gaps := c.Packets - 1; gaps > 0 {
		out.Gap = GapStats{
			Min:    time.Duration(st.GapMin) * time.Microsecond,
			Max:    time.Duration(st.GapMax) * time.Microsecond,
			Mean:   time.Duration(float64(st.GapSum) / float64(gaps) * 1e3),
			Stddev: time.Duration(stddev(gaps, st.GapSum, st.GapSquares) * 1e3),
		}
	}
	f := &st.FlagPackets
	out.FlagPackets = FlagCounts{FIN: f[0], SYN: f[1], RST: f[2], PSH: f[3], ACK: f[4], URG: f[5], ECE: f[6], CWR: f[7]}
	return out
}

// stddev is the sample standard deviation of n values from their sum and the sum of
// their squares. The numerator n·Σx² − (Σx)² is computed exactly in 128 bits, so
// large values near each other lose nothing to cancellation.
func stddev(n, sum, squares uint64) float64 {
	if n < 2 {
		return 0
	}
	hi1, lo1 := bits.Mul64(n, squares)
	hi2, lo2 := bits.Mul64(sum, sum)
	lo, borrow := bits.Sub64(lo1, lo2, 0)
	hi, _ := bits.Sub64(hi1, hi2, borrow)
	if hi>>63 != 0 {
		// Negative: a sum of squares overflowed 64 bits (docs/statistics.md),
		// or live, a race lost one packet's square.
		return 0
	}
	num := float64(hi)*0x1p64 + float64(lo)
	return math.Sqrt(num / (float64(n) * float64(n-1)))
}
