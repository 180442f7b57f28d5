package fparser

import (
	"time"

	"github.com/fparser/fparser/internal/userspace"
)

// Info describes a parser at one instant: the original FParser's info() and the loss
// and parse counters of the datapath.
type Info struct {
	// AvgPPS is the average rate of accepted packets since the first packet, by the
	// parser's clock: the capture's timestamps offline, the wall clock live.
	AvgPPS float64
	// TCPFlows and UDPFlows are the active flows; TCPPackets and UDPPackets the
	// packets counted in them.
	TCPFlows, UDPFlows     int
	TCPPackets, UDPPackets uint64
	TCPBytes, UDPBytes     uint64 // in the active flows, as TCPPackets and UDPPackets
	// TimeCollecting is the time spent sweeping the flow table for ended flows.
	TimeCollecting time.Duration
	// Elapsed is the span of the parser's clock, from the first packet to now.
	Elapsed time.Duration

	// Interfaces, live, are the interfaces the kernel programs are attached to
	// now, in the order attached: those chosen that exist (Options.Interfaces).
	// Empty offline, and once the parser has stopped.
	Interfaces []string

	PacketsSeen     uint64 // frames handed to the datapath
	Filtered        uint64 // rejected by the filter, and not parsed further
	PacketsAccepted uint64 // counted in a TCP or UDP flow
	AcceptedTCP     uint64 // PacketsAccepted, TCP
	AcceptedUDP     uint64 // PacketsAccepted, UDP
	NonIP           uint64 // not IPv4 or IPv6
	OtherL4         uint64 // IP, but not TCP or UDP
	Malformed       uint64 // headers cut short or inconsistent: skipped
	Fragments       uint64 // IP fragments seen, first and later
	Unattributed    uint64 // later fragments with no earlier first fragment: not counted
	// DuplicatePackets are packets seen again at another interface after they
	// were counted (Flow.DuplicatePackets); they are in PacketsAccepted too.
	DuplicatePackets uint64

	// With Options.Packets: packets whose headers were stored, per protocol, in all
	// flows so far; the memory the histories of active flows hold; packets not
	// stored, because of Options.MaxPacketMemory or, live, because the ring buffer
	// had no room for their records.
	StoredTCPPackets, StoredUDPPackets uint64
	PacketMemory                       int64
	PacketsNotStored                   uint64

	// EndedPackets and EndedBytes are the packets and bytes of the flows that
	// ended, all reasons together.
	EndedPackets, EndedBytes uint64
	// EventsLost are kernel events the ring buffer had no room for: a FIN or RST
	// mark, or a flow the kernel ended, whose final counters are then missing.
	EventsLost uint64
	// SweepTimes counts the sweeps that looked for ended flows, by duration.
	SweepTimes SweepHistogram

	// FlowsCreated counts the flows begun; FlowsEnded the flows reported as ended,
	// by reason (reasons with none are absent).
	FlowsCreated uint64
	FlowsEnded   map[EndReason]uint64
	// Evictions are flows dropped unreported: live, mostly flows the kernel's LRU
	// map evicted for lack of room; also flows whose end event the ring buffer
	// lost (EventsLost). They are the flows created, less those reported as ended
	// and those still active, counted so that an end on its way to userspace is not
	// one: a flow the datapath ends and begins anew in place (a reused port, say)
	// counts once its end event is sent. The counters are read before the active
	// flows are walked, so a flow begun meanwhile is never taken for evicted; one
	// that ends meanwhile may be missed until the next call, so Info reports the
	// highest value seen, which never decreases.
	Evictions uint64
	// CallbackPanics counts the callbacks that panicked; each panic was recovered
	// and logged, and the flows after it delivered.
	CallbackPanics uint64
	// MapReadErrors, live, counts the walks of the kernel's flow map (by sweeps,
	// Flows, Info) that failed part way: each missed the flows it had not reached
	// yet, which the next walk finds. 0 offline.
	MapReadErrors uint64
}

// SweepHistogram counts durations: Counts[i] those up to Bounds[i], the last those
// longer than every bound, so len(Counts) is len(Bounds)+1.
type SweepHistogram struct {
	Bounds []time.Duration
	Counts []uint64
	Sum    time.Duration // of every duration counted
}

func sweepHistogram(h *userspace.SweepHistogram) SweepHistogram {
	return SweepHistogram{Bounds: userspace.SweepBounds[:], Counts: append([]uint64(nil), h.Counts[:]...), Sum: h.Sum}
}

// Info reads the parser's counters. It visits every active flow once. Live, it walks
// the kernel's flow map without pausing the counting or the reading of the kernel's
// events, and calls that come while a walk is under way share the next one, so
// however often Info is called (by scrapes of the metrics, say), counting is not held
// up. A sweep for ended flows waits for a walk under way (a million flows: about a
// third of a second), so that the counts agree; flows are delivered that much later.
func (p *Parser) Info() Info {
	st := p.eng.Stats() // live, with the kernel's counters
	hs := &st.History
	c := st.Datapath
	in := Info{
		TCPFlows: st.TCPFlows, UDPFlows: st.UDPFlows,
		TCPPackets: st.TCPPackets, UDPPackets: st.UDPPackets,
		TCPBytes: st.TCPBytes, UDPBytes: st.UDPBytes,
		EndedPackets: st.Counts.EndedPackets, EndedBytes: st.Counts.EndedBytes,
		EventsLost:     c.RingbufFailed,
		SweepTimes:     sweepHistogram(&st.Counts.Sweeps),
		TimeCollecting: st.Collecting,
		Elapsed:        time.Duration(st.Now - st.Start),
		PacketsSeen:    c.Seen, PacketsAccepted: c.Accepted, Filtered: c.Filtered,
		AcceptedTCP: c.AcceptedTCP, AcceptedUDP: c.AcceptedUDP,
		NonIP: c.NonIP, OtherL4: c.OtherL4, Malformed: c.Malformed,
		Fragments: c.Fragments, Unattributed: c.Unattributed, DuplicatePackets: c.Duplicates,
		FlowsCreated:     c.NewFlows,
		StoredTCPPackets: hs.StoredTCP, StoredUDPPackets: hs.StoredUDP,
		PacketMemory: hs.Bytes, PacketsNotStored: hs.Capped + hs.Lost,
		FlowsEnded: make(map[EndReason]uint64),
	}
	var ended uint64
	for r, n := range st.Counts.FlowsEnded {
		if n > 0 {
			in.FlowsEnded[EndReason(r)] = n
			ended += n
		}
	}
	// A flow ended in place and its successor are one entry of the table: entered
	// counts the entries (the new flows less those begun in place of one whose end
	// was sent), left those gone from it reported (the ended flows less the ends
	// sent from in place, once they arrive). An end still in the ring buffer is in
	// neither.
	entered := c.NewFlows - min(c.Restarts, c.NewFlows)
	left := ended - min(st.Counts.EndedByDatapath, ended)
	if active := uint64(st.TCPFlows + st.UDPFlows); entered > left+active {
		in.Evictions = entered - left - active
	}
	for {
		seen := p.evictions.Load()
		if in.Evictions <= seen {
			in.Evictions = seen
			break
		}
		if p.evictions.CompareAndSwap(seen, in.Evictions) {
			break
		}
	}
	if in.Elapsed > 0 {
		in.AvgPPS = float64(in.PacketsAccepted) / in.Elapsed.Seconds()
	}
	if ifs, ok := p.src.(interface{ Interfaces() []string }); ok {
		in.Interfaces = ifs.Interfaces()
	}
	in.CallbackPanics = p.panics.Load()
	in.MapReadErrors = c.MapReadErrors
	return in
}
