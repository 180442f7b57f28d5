package userspace

// TCPQuality is a TCP flow's quality as the datapath measures it, packet by packet,
// in the kernel (struct tcp_quality) and offline alike: the handshake's round trip
// and, by canonical direction, the retransmissions, out-of-order segments and zero
// windows. The rules are tshark 4.0's sequence analysis (tcp_analyze_sequence_number
// and its initial RTT), reduced to the state that decides these counts: see Add.
// Times are ns, 0 until measured, as tshark's.
type TCPQuality struct {
	SynTime   int64 // the latest SYN without ACK (tshark's ts_mru_syn)
	FirstRTT  int64 // from SynTime to the first segment with ACK and without SYN after it (tshark's initial_rtt)
	SynAckRTT int64 // from SynTime to the responder's first SYN+ACK after it; 0 again at a SYN
	// Completed says the ACK that gave FirstRTT completed the handshake: it was
	// the initiator's, without RST. tshark takes any.
	Completed uint32
	_         uint32
	Dir       [2]TCPDirQuality
}

// TCPDirQuality is one direction's sequence analysis: the state tshark keeps for it
// (nextseq and when it last grew, maxseqtobeacked (how far it sent in order),
// lastack, the last window, the
// duplicate ACK count, and the keep-alive or zero-window-probe mark of its last
// segment), and the counts.
type TCPDirQuality struct {
	NextSeqTime     int64
	NextSeq         uint32
	MaxSeqToAck     uint32
	LastAck         uint32
	Window          uint32 // raw; NoWindow before the direction's first segment
	DupAcks         uint32
	Retransmissions uint32 // plain, fast and spurious
	OutOfOrder      uint32
	ZeroWindows     uint32
	LastMarks       uint32 // markKeepAlive | markZeroWindowProbe
	_               uint32
}

// NoWindow is a direction's window before its first segment: no TCP window equals it.
const NoWindow = 0xFFFFFFFF

const (
	markKeepAlive       = 0x01
	markZeroWindowProbe = 0x02

	fastRetransmissionNS = 20_000_000
	outOfOrderNS         = 3_000_000 // before the handshake's RTT is known
)

// Segment is what the TCP quality reads of a segment: its header's sequence and
// acknowledgment numbers, window (unscaled) and flags, and its payload's length.
type Segment struct {
	Seq, Ack uint32
	Len      uint32
	Window   uint16
	Flags    uint8
}

// Reset makes q a new flow's quality.
func (q *TCPQuality) Reset() {
	*q = TCPQuality{}
	q.Dir[0].Window, q.Dir[1].Window = NoWindow, NoWindow
}

func seqLT(a, b uint32) bool { return int32(a-b) < 0 }
func seqGT(a, b uint32) bool { return int32(b-a) < 0 }
func seqLE(a, b uint32) bool { return int32(a-b) <= 0 }

// Add analyzes segment g of direction dir at time now, as the kernel's tcp_quality:
// initiator is the flow's (State.Initiator), revLast the time of the other
// direction's last segment (its Counters.Last). docs/fields.md states the rules.
func (q *TCPQuality) Add(dir int, initiator uint8, g *Segment, now, revLast int64) {
	fwd, rev := &q.Dir[dir&1], &q.Dir[dir&1^1]
	seq, ack, win, n, f := g.Seq, g.Ack, uint32(g.Window), g.Len, g.Flags
	synFinRst := f&(FlagSYN|FlagFIN|FlagRST) != 0
	var marks uint32

	switch {
	case n == 1 && seq == fwd.NextSeq && rev.Window == 0:
		marks = markZeroWindowProbe
	default:
		if win == 0 && !synFinRst {
			fwd.ZeroWindows++
		}
		if n <= 1 && seq == fwd.NextSeq-1 && !synFinRst {
			marks = markKeepAlive
		}
		if n == 0 && win == fwd.Window && seq == fwd.NextSeq && ack == fwd.LastAck && !synFinRst {
			// A keep-alive's or a zero window probe's ACK is no duplicate ACK.
			switch {
			case win != 0 && rev.LastMarks&markKeepAlive != 0:
			case win == 0 && rev.LastMarks&markZeroWindowProbe != 0:
			case win != 0:
				fwd.DupAcks++
			}
		}
	}
	if ack != fwd.LastAck {
		fwd.DupAcks = 0
	}
	// An ACK beyond what the other side was seen to send in order: segments went
	// uncaptured. The other side's in-order mark catches up with its nextseq, or
	// if it has, its duplicate ACKs start over.
	if rev.MaxSeqToAck != 0 && seqGT(ack, rev.MaxSeqToAck) && f&FlagACK != 0 {
		if seqLT(rev.MaxSeqToAck, rev.NextSeq) {
			rev.MaxSeqToAck = rev.NextSeq
		} else {
			rev.DupAcks = 0
		}
	}

	synFin := f&(FlagSYN|FlagFIN) != 0
	if (n > 0 || synFin) && marks&markKeepAlive == 0 {
		behind := fwd.NextSeq != 0 && seqLT(seq, fwd.NextSeq)
		if n > 1 && fwd.NextSeq-1 == seq {
			behind = false
		}
		ooo := uint64(outOfOrderNS)
		if q.FirstRTT != 0 {
			ooo = uint64(q.FirstRTT)
		}
		var one uint32
		if synFin {
			one = 1
		}
		switch {
		case n > 0 && rev.LastAck != 0 && seqLE(seq+n, rev.LastAck):
			fwd.Retransmissions++ // spurious: data already acknowledged
		case behind && rev.DupAcks >= 2 && rev.LastAck == seq && uint64(now-revLast) < fastRetransmissionNS:
			fwd.Retransmissions++ // fast
		case behind && uint64(now-fwd.NextSeqTime) < ooo && fwd.NextSeq != seq+n+one:
			fwd.OutOfOrder++
		case behind:
			fwd.Retransmissions++
		}
	}

	next := seq + n
	if synFin {
		next++
	}
	if (seqGT(next, fwd.NextSeq) || fwd.NextSeq == 0) && marks&markZeroWindowProbe == 0 {
		fwd.NextSeq, fwd.NextSeqTime = next, now
	}
	if (seq == fwd.MaxSeqToAck || fwd.MaxSeqToAck == 0) && marks&markZeroWindowProbe == 0 {
		fwd.MaxSeqToAck = fwd.NextSeq
	}
	fwd.Window, fwd.LastAck, fwd.LastMarks = win, ack, marks

	// The handshake: the latest SYN, the responder's first SYN+ACK after it, and
	// the first segment with ACK and without SYN after it (tshark's initial_rtt).
	switch f & (FlagSYN | FlagACK) {
	case FlagSYN:
		q.SynTime = now
		q.SynAckRTT = 0 // a SYN+ACK before it answered another SYN
	case FlagSYN | FlagACK:
		if q.SynTime != 0 && q.SynAckRTT == 0 && uint8(dir) != initiator {
			q.SynAckRTT = now - q.SynTime
		}
	case FlagACK:
		if q.SynTime != 0 && q.FirstRTT == 0 {
			q.FirstRTT = now - q.SynTime
			q.Completed = 0
			if uint8(dir) == initiator && f&FlagRST == 0 {
				q.Completed = 1
			}
		}
	}
}

// Handshake returns the handshake's round trip and its two parts, when the capture
// point saw it whole: the latest SYN, the responder's SYN+ACK, then the first ACK
// without SYN after that SYN, the initiator's and without RST. responder is from the
// SYN to the SYN+ACK, initiator from the SYN+ACK to the ACK.
func (q *TCPQuality) Handshake() (rtt, responder, initiator int64, ok bool) {
	if q.SynAckRTT == 0 || q.FirstRTT == 0 || q.FirstRTT < q.SynAckRTT || q.Completed == 0 {
		return 0, 0, 0, false
	}
	return q.FirstRTT, q.SynAckRTT, q.FirstRTT - q.SynAckRTT, true
}
