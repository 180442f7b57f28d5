package tcpquality_test

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testpackets"
	"github.com/fparser/fparser/internal/userspace"
)

// tsharkPacket is what tshark's TCP analysis says of one packet.
type tsharkPacket struct {
	time                                   int64 // ns since the epoch
	src, dst                               netip.AddrPort
	stream                                 int
	flags                                  uint16
	initialRTT                             int64 // tcp.analysis.initial_rtt, ns; -1 when absent
	ackRTT                                 int64 // tcp.analysis.ack_rtt, ns; -1 when absent
	retransmission, outOfOrder, zeroWindow bool
}

var tsharkFields = []string{
	"frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "tcp.stream", "tcp.flags",
	"tcp.analysis.initial_rtt", "tcp.analysis.ack_rtt",
	"tcp.analysis.retransmission", "tcp.analysis.fast_retransmission", "tcp.analysis.spurious_retransmission",
	"tcp.analysis.out_of_order", "tcp.analysis.zero_window",
}

// nanos parses tshark's seconds with nine decimals, exactly.
func nanos(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	frac = (frac + "000000000")[:9]
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0, err
	}
	n := w*1e9 + f
	if neg {
		n = -n
	}
	return n, nil
}

// tsharkPackets runs tshark's TCP analysis over a capture: its TCP packets whose
// outermost IP header carries them (not those quoted in ICMP errors, nor those of
// tunnels, whose TCP header is not the outermost IP header's).
func tsharkPackets(path string) ([]tsharkPacket, error) {
	args := []string{"-r", path, "-n", "-Y", "tcp and not icmp and not icmpv6", "-T", "fields", "-E", "occurrence=f"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("tshark: %w", err)
	}
	var pkts []tsharkPacket
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != len(tsharkFields) {
			continue
		}
		src, dst := f[1], f[2]
		if src == "" {
			src, dst = f[3], f[4]
		}
		sa, err1 := netip.ParseAddr(src)
		da, err2 := netip.ParseAddr(dst)
		sp, err3 := strconv.ParseUint(f[5], 10, 16)
		dp, err4 := strconv.ParseUint(f[6], 10, 16)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			continue
		}
		p := tsharkPacket{src: netip.AddrPortFrom(sa, uint16(sp)), dst: netip.AddrPortFrom(da, uint16(dp)), initialRTT: -1, ackRTT: -1}
		if p.time, err = nanos(f[0]); err != nil {
			return nil, fmt.Errorf("tshark's time %q: %w", f[0], err)
		}
		p.stream, _ = strconv.Atoi(f[7])
		flags, _ := strconv.ParseUint(strings.TrimPrefix(f[8], "0x"), 16, 16)
		p.flags = uint16(flags)
		if f[9] != "" {
			p.initialRTT, _ = nanos(f[9])
		}
		if f[10] != "" {
			p.ackRTT, _ = nanos(f[10])
		}
		p.retransmission = f[11] != "" || f[12] != "" || f[13] != ""
		p.outOfOrder, p.zeroWindow = f[14] != "", f[15] != ""
		pkts = append(pkts, p)
	}
	return pkts, nil
}

// theirs is what tshark says of one fparser flow: the sums over the packets it
// assigns to it.
type theirs struct {
	packets          uint64
	streams          map[int]bool
	initialRTT       int64     // -1: none
	synAckRTT        int64     // ack_rtt of the first SYN+ACK from Dst after the latest SYN; -1: none
	retrans, ooo, zw [2]uint32 // by direction: 0 Src to Dst
	hs               handshake
	first, last      int64 // the times tshark gives the first and last packets
}

// handshake is what the flow's packets show of its handshake, in tshark's order.
type handshake struct {
	syns       int   // SYNs from Src before the first ACK
	resent     int   // of them, those since the last SYN+ACK from Dst
	partSyns   int   // resent, when the SYN+ACK that gave the src2dst part came
	synAck     bool  // a SYN+ACK from Dst after a SYN, before the first ACK
	answered   bool  // one after the latest SYN
	ackDone    bool  // the first ACK after a SYN was seen
	ackFromDst bool  // it was Dst's
	ackRST     bool  // it carried RST
	synTime    int64 // the latest SYN's
	zeroTime   bool  // the SYN+ACK or the first ACK had the latest SYN's time
}

// add notes a packet of direction dir (0: Src to Dst).
func (h *handshake) add(dir int, flags uint16, time int64) {
	if h.ackDone {
		return
	}
	switch flags & 0x12 {
	case 0x02:
		if dir == 0 {
			h.syns++
			h.resent++
			h.synTime, h.answered = time, false
		}
	case 0x12:
		if dir == 1 && h.syns > 0 && !h.answered {
			h.synAck, h.answered = true, true
			h.partSyns, h.resent = h.resent, 0
			h.zeroTime = h.zeroTime || time == h.synTime
		}
	case 0x10:
		if h.syns > 0 {
			h.ackDone, h.ackFromDst, h.ackRST = true, dir == 1, flags&0x04 != 0
			h.zeroTime = h.zeroTime || time == h.synTime
		}
	}
}

// why explains a handshake RTT that fparser and tshark measure differently, by the
// rules where they differ on purpose; "" when none applies.
func (h *handshake) why(ours, theirs int64, part bool) string {
	switch {
	case part && h.partSyns > 1:
		return fmt.Sprintf("the SYN was seen %d times: tshark's ack_rtt of the SYN+ACK counts from the first, its initial_rtt and fparser from the latest", h.partSyns)
	case part:
		return ""
	case ours < 0 && !h.synAck:
		return "no SYN+ACK from the responder before the first ACK: tshark measures the SYN to that ACK all the same, fparser sees no whole handshake"
	case ours < 0 && !h.answered:
		return "the SYN came again after the SYN+ACK, and no SYN+ACK answered it before the ACK: the handshake is not whole from the latest SYN"
	case ours < 0 && (h.ackFromDst || h.ackRST):
		return "the first ACK after the SYN does not complete the handshake (the responder's, or a RST)"
	case ours < 0 && h.zeroTime:
		return "the SYN and the SYN+ACK or ACK share a timestamp: tshark takes a zero RTT for none, and measures to a later ACK"
	}
	return ""
}

// result is one flow's comparison.
type result struct {
	file, flow string
	rtts       bool      // both measured a handshake RTT, and it was compared
	equal      bool      // every field equal
	reason     string    // why not compared, or how it differs
	deliberate string    // why it differs on purpose, when it does
	counts     [3]uint32 // tshark's retransmissions, out-of-order segments and zero windows
}

func compareCapture(path string) ([]result, error) {
	var flows []fparser.Flow
	p, err := fparser.Open(path, &fparser.Options{TCPQuality: true, OnTCP: func(f fparser.Flow) { flows = append(flows, f) }})
	if err != nil {
		return nil, nil // not a capture fparser reads: the corpus has a few on purpose
	}
	p.Wait()
	p.Close()
	pkts, err := tsharkPackets(path)
	if err != nil {
		return nil, err
	}
	byConv := map[userspace.Key][]int{}
	for i := range flows {
		k := userspace.KeyOf(userspace.ProtoTCP, 0, flows[i].Src, flows[i].Dst)
		byConv[k] = append(byConv[k], i)
	}
	th := make([]theirs, len(flows))
	for i := range th {
		th[i] = theirs{streams: map[int]bool{}, initialRTT: -1, synAckRTT: -1}
	}
	streamPackets := map[int]uint64{}
	for _, pk := range pkts {
		streamPackets[pk.stream]++
		same := byConv[userspace.KeyOf(userspace.ProtoTCP, 0, pk.src, pk.dst)]
		for _, i := range same {
			f := &flows[i]
			// A conversation fparser made several flows of is split by time. One
			// of a single flow takes all its packets: a few pcapng files have
			// times that tshark reads otherwise (if_tsoffset).
			if len(same) > 1 && (pk.time < f.FirstSeen.UnixNano() || pk.time > f.LastSeen.UnixNano()) {
				continue
			}
			t := &th[i]
			if t.packets == 0 {
				t.first = pk.time
			}
			t.last = pk.time
			t.packets++
			t.streams[pk.stream] = true
			dir := 0
			if pk.src != f.Src {
				dir = 1
			}
			if pk.initialRTT >= 0 {
				t.initialRTT = pk.initialRTT
			}
			// The SYN+ACK's ack_rtt: the first after the latest SYN, before the
			// handshake's ACK, as fparser measures its src2dst part.
			switch {
			case t.hs.ackDone:
			case dir == 0 && pk.flags&0x12 == 0x02:
				t.synAckRTT = -1
			case dir == 1 && pk.flags&0x12 == 0x12 && t.synAckRTT < 0 && pk.ackRTT >= 0:
				t.synAckRTT = pk.ackRTT
			}
			t.hs.add(dir, pk.flags, pk.time)
			if pk.retransmission {
				t.retrans[dir]++
			}
			if pk.outOfOrder {
				t.ooo[dir]++
			}
			if pk.zeroWindow {
				t.zw[dir]++
			}
			break
		}
	}
	var res []result
	for i := range flows {
		f, t := &flows[i], &th[i]
		r := result{file: filepath.Base(path), flow: fmt.Sprintf("%s -> %s at %s", f.Src, f.Dst, f.FirstSeen.Format(time.RFC3339Nano))}
		var stream int
		for s := range t.streams {
			stream = s
		}
		switch {
		case t.packets != f.PacketCount():
			r.reason = fmt.Sprintf("tshark's TCP analysis has %d of its %d packets (IP fragments, or a tunnel's)", t.packets, f.PacketCount())
		case len(t.streams) != 1 || streamPackets[stream] != t.packets:
			r.reason = fmt.Sprintf("tshark's stream %d is not this flow alone: %d packets, across %d flows' worth", stream, streamPackets[stream], len(t.streams))
		}
		if r.reason != "" {
			res = append(res, r)
			continue
		}
		var diffs []string
		ours := []int64{int64(f.HandshakeRTT), int64(f.Fwd.RTT)}
		if f.HandshakeRTT == 0 {
			ours = []int64{-1, -1}
		}
		r.rtts = ours[0] >= 0 && t.initialRTT >= 0
		var why []string
		if ours[0] != t.initialRTT {
			diffs = append(diffs, fmt.Sprintf("handshake RTT %d ns, tshark's initial_rtt %d ns", ours[0], t.initialRTT))
			why = append(why, t.hs.why(ours[0], t.initialRTT, false))
		} else if r.rtts && ours[1] != t.synAckRTT {
			diffs = append(diffs, fmt.Sprintf("src2dst RTT %d ns, tshark's ack_rtt of the SYN+ACK %d ns", ours[1], t.synAckRTT))
			why = append(why, t.hs.why(ours[1], t.synAckRTT, true))
		}
		for d, c := range [2]*fparser.Counters{&f.Fwd, &f.Rev} {
			name := [2]string{"src2dst", "dst2src"}[d]
			if c.Retransmissions != t.retrans[d] {
				diffs = append(diffs, fmt.Sprintf("%s retransmissions %d, tshark %d", name, c.Retransmissions, t.retrans[d]))
			}
			if c.OutOfOrder != t.ooo[d] {
				diffs = append(diffs, fmt.Sprintf("%s out of order %d, tshark %d", name, c.OutOfOrder, t.ooo[d]))
			}
			if c.ZeroWindows != t.zw[d] {
				diffs = append(diffs, fmt.Sprintf("%s zero windows %d, tshark %d", name, c.ZeroWindows, t.zw[d]))
			}
		}
		for d := range 2 {
			r.counts[0] += t.retrans[d]
			r.counts[1] += t.ooo[d]
			r.counts[2] += t.zw[d]
		}
		r.equal = len(diffs) == 0
		r.reason = strings.Join(diffs, "; ")
		if len(why) == len(diffs) && !slices.Contains(why, "") {
			r.deliberate = strings.Join(why, "; ")
		}
		if len(diffs) > 0 && len(diffs) == len(why) && (t.first != f.FirstSeen.UnixNano() || t.last != f.LastSeen.UnixNano()) {
			// The round trips only: the counts must agree all the same.
			r.deliberate = "the capture's clock went back before these packets: fparser's clock is clamped so that it never goes backwards (docs/flows.md), so its gaps are not tshark's"
		}
		res = append(res, r)
	}
	return res, nil
}

// TestTCPQualityAgainstTshark: for every TCP flow of every capture whose packets
// tshark analyzes as one TCP stream of its own, the handshake RTT and its
// src2dst part, and each direction's retransmissions, out-of-order segments and
// zero windows, equal tshark 4.0's (tcp.analysis.initial_rtt, the SYN+ACK's
// ack_rtt, and the packets it flags). Flows tshark analyzes otherwise (fragments,
// a stream that fparser's timeouts split) are counted apart, with the reason.
func TestTCPQualityAgainstTshark(t *testing.T) {
	testharness.Require(t, testharness.HasTool("tshark"), "tshark is not installed (apt-get install tshark): the TCP quality cross-check is skipped")
	files := testpackets.Files(t)
	results := make([][]result, len(files))
	errs := make([]error, len(files))
	testpackets.EachFile(files, func(i int, path string) { results[i], errs[i] = compareCapture(path) })
	var flows, compared, equal, rtts, apart, deliberate int
	var counts [3]uint32 // in the flows equal
	for i, rs := range results {
		if errs[i] != nil {
			t.Errorf("%s: %v", files[i], errs[i])
		}
		for _, r := range rs {
			flows++
			switch {
			case r.equal:
				compared++
				equal++
				for i, n := range r.counts {
					counts[i] += n
				}
				if r.rtts {
					rtts++
				}
			case !r.equal && strings.HasPrefix(r.reason, "tshark's"):
				apart++
				t.Logf("%s: %s: not compared: %s", r.file, r.flow, r.reason)
			default:
				compared++
				if r.deliberate != "" {
					deliberate++
					t.Logf("%s: %s: %s: deliberate: %s", r.file, r.flow, r.reason, r.deliberate)
				} else {
					t.Errorf("%s: %s: %s", r.file, r.flow, r.reason)
				}
			}
		}
	}
	t.Logf("%d TCP flows of %d captures: %d compared, %d equal to tshark's analysis in every field (%d with a handshake RTT, equal to the ns; %d retransmissions, %d out-of-order segments, %d zero windows), %d different on purpose (listed above), %d different otherwise; %d not analyzed by tshark as one stream of their own",
		flows, len(files), compared, equal, rtts, counts[0], counts[1], counts[2], deliberate, compared-equal-deliberate, apart)
	if equal == 0 {
		t.Fatal("nothing compared")
	}
}
