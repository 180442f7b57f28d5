package userspace

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// IP protocol numbers of the flows we track.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// TCP flag bits, as they sit in byte 13 of the TCP header.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagPSH = 0x08
	FlagACK = 0x10
	FlagURG = 0x20
	FlagECE = 0x40
	FlagCWR = 0x80
)

// Key identifies a bidirectional flow. The two endpoints are in canonical order,
// (A, PortA) < (B, PortB) comparing address bytes then port, so both directions of a
// conversation map to one key. IPv4 addresses are stored v4-mapped. The layout is the
// one the kernel map uses: 40 bytes, no implicit padding.
type Key struct {
	A, B         [16]byte
	PortA, PortB uint16
	VLAN         uint16 // VID of the outer 802.1Q/802.1ad tag, 0 when untagged
	Proto        uint8
	_            uint8
}

// Canonicalize puts a key written as (A, PortA) = source, (B, PortB) = destination
// into canonical order, and reports whether the source is endpoint A.
func (k *Key) Canonicalize() (srcIsA bool) {
	if endpointLess(&k.A, k.PortA, &k.B, k.PortB) {
		return true
	}
	k.A, k.B = k.B, k.A
	k.PortA, k.PortB = k.PortB, k.PortA
	return false
}

// KeyOf returns the canonical key for a conversation between two endpoints given in
// either order.
func KeyOf(proto uint8, vlan uint16, a, b netip.AddrPort) Key {
	k := Key{A: a.Addr().As16(), B: b.Addr().As16(), PortA: a.Port(), PortB: b.Port(), VLAN: vlan, Proto: proto}
	k.Canonicalize()
	return k
}

// endpointLess orders endpoints by address bytes, then port. The addresses compare as
// two big-endian words each, which orders them as their bytes.
func endpointLess(a *[16]byte, ap uint16, b *[16]byte, bp uint16) bool {
	if x, y := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8]); x != y {
		return x < y
	}
	if x, y := binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:]); x != y {
		return x < y
	}
	return ap < bp
}

// EndpointA returns the key's first endpoint, with IPv4 unmapped.
func (k *Key) EndpointA() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(k.A).Unmap(), k.PortA)
}

// EndpointB returns the key's second endpoint, with IPv4 unmapped.
func (k *Key) EndpointB() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(k.B).Unmap(), k.PortB)
}

// Counters count one direction of a flow. Times are nanoseconds since the Unix epoch.
type Counters struct {
	Packets uint64
	Bytes   uint64
	First   int64
	Last    int64
}

// State is the value the datapath keeps per flow: counters indexed by canonical
// direction (0: A to B, 1: B to A), the OR of TCP flags per direction, which endpoint
// initiated, the end marks left by FIN and RST, how many packet records it sent, and
// the moving averages behind the flow's rates. 88 bytes, the kernel's layout; when
// the datapath keeps statistics, its FlowStats follow in the kernel's map value.
type State struct {
	Dir       [2]Counters
	Flags     [2]uint8
	Initiator uint8 // 0: A initiated, 1: B initiated
	Marks     uint8 // MarkFIN | MarkRST
	// Recorded is how many of the flow's packets the datapath recorded for the
	// history (HistoryConfig.Limit); live, a record the ring buffer had no room for
	// is in Recorded but never arrives.
	Recorded uint32
	// Moving averages over both directions, each new packet weighing 1/8: the gap
	// since the flow's previous packet, and the packet size in 1/16 bytes.
	GapAvg    uint64 // ns
	SizeAvg16 uint32
	// Where is the place each direction is counted at: the first place a packet
	// of it was seen at (0 before its first packet). Duplicates are the packets
	// seen again at another place, counted nowhere else.
	Where [2]Where
	// Owner says, live, by direction, whether the kernel looked for the local
	// socket that sent it (bit 0 for direction 0, bit 1 for direction 1) and found
	// it (bits 2 and 3): its sender is then in the kernel's owners map. Offline
	// there are no sockets, and it stays 0.
	Owner      uint32
	Duplicates uint64
}

// Where is a place a packet is seen at: live, the interface's index, with
// WhereEgress set when the packet is leaving by it; offline, the capture's
// interface (its number in a pcapng file) plus one. 0 is no place.
type Where uint32

// WhereEgress marks a place where packets leave an interface.
const WhereEgress Where = 0x80000000

// Index is the place's interface, without WhereEgress.
func (w Where) Index() uint32 { return uint32(w &^ WhereEgress) }

// Egress says the place is an interface's way out.
func (w Where) Egress() bool { return w&WhereEgress != 0 }

// SeenElsewhere decides, for a packet of direction dir seen at where, whether it is
// a duplicate, as the kernel's seen_elsewhere: it is when the direction is counted
// at another place. A direction with no place yet takes this one. A duplicate is
// counted in Duplicates, and nowhere else in the state.
func (s *State) SeenElsewhere(dir int, where Where) bool {
	switch s.Where[dir] {
	case where:
		return false
	case 0:
		s.Where[dir] = where
		return false
	}
	s.Duplicates++
	return true
}

// FlowStats are what a datapath keeps of a flow beyond its State, when asked to:
// each canonical direction's statistics, the flow's TCP quality, and the tunnel
// it came through, each zero unless kept. The kernel's map value has this layout
// after the State's.
type FlowStats struct {
	Dir    [2]DirStats
	TCP    TCPQuality
	Tunnel Tunnel
}

// Rates are the flow's moving packet and byte rates, per second, from its moving
// averages: 0 below two packets.
func (s *State) Rates() (pps, bps float64) {
	if s.Packets() < 2 {
		return 0, 0
	}
	pps = 1e9 / float64(max(s.GapAvg, 1))
	return pps, pps * float64(s.SizeAvg16) / 16
}

// DirStats are one direction's statistics, kept as sums so that the kernel can update
// them in place with no loop and no division: packet sizes (IP lengths, as Bytes),
// gaps between consecutive packets in whole microseconds, and how many packets
// carried each TCP flag. The means and standard deviations derive from them.
type DirStats struct {
	SizeMin, SizeMax uint32
	SizeSquares      uint64    // the sum of each size squared
	GapMin, GapMax   uint64    // µs; Packets-1 gaps
	GapSum           uint64    // µs
	GapSquares       uint64    // µs²
	FlagPackets      [8]uint32 // packets with each flag, by bit: FIN, SYN, RST, PSH, ACK, URG, ECE, CWR
}

// gapMicros is the gap between a direction's previous packet (at prev) and this one,
// in whole microseconds: 0 when the clock went backwards (live, two CPUs).
func gapMicros(prev, now int64) uint64 {
	if now <= prev {
		return 0
	}
	return uint64(now-prev) / 1000
}

// AddPacket counts a packet of length bytes with TCP flags into direction dir at
// time now, and into the direction's statistics st unless it is nil, as the kernel
// program's fresh_state and add_packet do. The caller handles the flow's creation,
// its end, its marks, its records and its TCP quality.
func (s *State) AddPacket(dir int, length uint32, flags uint8, now int64, st *DirStats) {
	c := &s.Dir[dir]
	switch total := s.Dir[0].Packets + s.Dir[1].Packets; total {
	case 0:
		s.SizeAvg16 = length << 4
	default:
		var flowGap uint64
		if last := max(s.Dir[0].Last, s.Dir[1].Last); now > last {
			flowGap = uint64(now - last)
		}
		if total == 1 {
			s.GapAvg = flowGap
		} else {
			s.GapAvg = s.GapAvg - s.GapAvg>>3 + flowGap>>3
		}
		s.SizeAvg16 = s.SizeAvg16 - s.SizeAvg16>>3 + length<<1
	}
	before, prev := c.Packets, c.Last
	c.Packets++
	c.Bytes += uint64(length)
	c.Last = now
	if before == 0 {
		c.First = now
	}
	if st != nil {
		st.add(before, prev, length, flags, now)
	}
	s.Flags[dir] |= flags
}

// add adds a packet to the statistics, as the kernel's add_stats: before is the
// direction's packet count before it, prev the time of the one before it.
func (st *DirStats) add(before uint64, prev int64, length uint32, flags uint8, now int64) {
	size := uint64(length)
	st.SizeSquares += size * size
	if before == 0 {
		st.SizeMin, st.SizeMax = length, length
	} else {
		gap := gapMicros(prev, now)
		st.GapSum += gap
		st.GapSquares += gap * gap
		if before == 1 {
			st.GapMin, st.GapMax = gap, gap
		} else {
			st.GapMin, st.GapMax = min(st.GapMin, gap), max(st.GapMax, gap)
		}
		st.SizeMin, st.SizeMax = min(st.SizeMin, length), max(st.SizeMax, length)
	}
	for f := flags; f != 0; f &= f - 1 {
		st.FlagPackets[bits.TrailingZeros8(f)]++
	}
}

// copyStats returns a copy of st, or nil.
func copyStats(st *FlowStats) *FlowStats {
	if st == nil {
		return nil
	}
	c := *st
	return &c
}

// End marks in State.Marks.
const (
	MarkFIN = 0x01
	MarkRST = 0x02
)

// FirstSeen is the time of the flow's first packet.
func (s *State) FirstSeen() int64 {
	switch {
	case s.Dir[0].Packets == 0:
		return s.Dir[1].First
	case s.Dir[1].Packets == 0:
		return s.Dir[0].First
	}
	return min(s.Dir[0].First, s.Dir[1].First)
}

// LastSeen is the time of the flow's last packet.
func (s *State) LastSeen() int64 { return max(s.Dir[0].Last, s.Dir[1].Last) }

// Packets is the flow's packet count in both directions.
func (s *State) Packets() uint64 { return s.Dir[0].Packets + s.Dir[1].Packets }

// EndReason says why a flow ended.
type EndReason uint8

// End reasons, as DESIGN section 2 lists them.
const (
	EndIdle         EndReason = iota + 1 // no packet for the flow timeout
	EndFIN                               // fin timeout passed after a FIN
	EndRST                               // fin timeout passed after a RST
	EndReused                            // a new SYN arrived on a finished 5-tuple
	EndActive                            // the active timeout passed since the first packet
	EndEndOfCapture                      // the capture file ended
	EndStopped                           // the parser was stopped
	EndEvicted                           // the table had no room and dropped it
)

var endReasonNames = [...]string{
	EndIdle: "idle", EndFIN: "fin", EndRST: "rst", EndReused: "reused", EndActive: "active",
	EndEndOfCapture: "end-of-capture", EndStopped: "stopped", EndEvicted: "evicted",
}

func (r EndReason) String() string {
	if int(r) < len(endReasonNames) && endReasonNames[r] != "" {
		return endReasonNames[r]
	}
	return "unknown"
}

// Record is a flow that has ended, with its final counters.
type Record struct {
	Key     Key
	State   State
	Stats   *FlowStats // when the datapath keeps statistics
	Reason  EndReason
	End     int64    // when the engine considers it ended, ns since the epoch
	History *History // the packets, when the engine keeps them
}

// DatapathCounters are a datapath's counters: the fields of the kernel program's
// per-CPU stats array, and of the Go datapath's.
type DatapathCounters struct {
	Seen          uint64 // frames handed to the datapath
	Filtered      uint64 // rejected by the packet filter, before anything else
	Accepted      uint64 // counted in a flow
	AcceptedTCP   uint64
	AcceptedUDP   uint64
	NonIP         uint64
	OtherL4       uint64 // IP, but not TCP or UDP
	Malformed     uint64
	Fragments     uint64 // IP fragments, first and later
	Unattributed  uint64 // later fragments with no first fragment seen before them
	NewFlows      uint64
	Restarts      uint64 // of NewFlows, those begun in place of one the datapath ended and reported
	RingbufFailed uint64 // kernel events lost because the ring buffer was full
	LostInserts   uint64 // kernel: a new flow evicted before its first packet was counted
	RecordsLost   uint64 // kernel: packet records for the history the ring buffer had no room for
	Duplicates    uint64 // of Accepted, packets seen before at another place (State.Duplicates)
	MapReadErrors uint64 // kernel: walks of the flow map that failed part way
}
