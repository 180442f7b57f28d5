package userspace

import (
	"encoding/binary"
	"iter"
)

// PacketRecord is what the history keeps of one packet: its time and the header
// fields the original FParser stores. L4 fields are zero for UDP and for non-first
// fragments; IPID is zero for IPv6.
type PacketRecord struct {
	Time   int64 // ns, the datapath's clock
	Dir    uint8 // 0: endpoint A to B; 1: B to A
	TTL    uint8 // hop limit for IPv6
	Flags  uint8
	IPID   uint16
	Window uint16
	Length uint32 // IP length
	Seq    uint32
	Ack    uint32
}

// History is the compressed record of a flow's packets, in arrival order.
//
// Each record starts with a byte of bits: the direction, and which fields are not
// what the previous records predict. The prediction is "the same as this direction's
// last" for TTL, length, flags and window, "one more" for the IP id, "the same step
// as last time" for the sequence number, and for the acknowledgement number, what
// acknowledges the other direction's last packet (predictAck). A bulk transfer
// costs the byte, the time since the previous packet (a varint, in µs when whole),
// and little else.
type History struct {
	buf        []byte
	n          int
	incomplete bool
	capped     uint32 // records not stored for MaxBytes
	enc        historyState
}

type historyState struct {
	last int64
	dir  [2]dirPrediction
}

type dirPrediction struct {
	ipid         uint16
	ttl, flags   uint8
	window       uint16
	length       uint32
	seq, seqStep uint32
	ack          uint32
	seen         bool // a packet of this direction was recorded
}

// predictAck is the acknowledgement number expected from a packet of direction p:
// what acknowledges the other direction's last packet, taking its payload to be
// the step its sequence numbers last made (1 for a SYN); the same as before when
// the other direction has sent nothing.
func predictAck(p, o *dirPrediction) uint32 {
	switch {
	case !o.seen:
		return p.ack
	case o.flags&(FlagSYN|FlagFIN) != 0:
		return o.seq + 1
	}
	return o.seq + o.seqStep
}

const (
	hDir = 1 << iota
	hIPID
	hTTL
	hLength
	hFlags
	hSeq
	hAck
	hWindow
)

// Len is the number of packets recorded.
func (h *History) Len() int { return h.n }

// Size is the encoded size in bytes.
func (h *History) Size() int { return len(h.buf) }

// Incomplete says packets of the flow are missing from the history: it stopped at
// a memory cap, or records were lost on the way.
func (h *History) Incomplete() bool { return h.incomplete }

// Clone returns an independent copy.
func (h *History) Clone() *History {
	c := *h
	c.buf = append([]byte(nil), h.buf...)
	return &c
}

// timeDelta encodes a time step: in µs when it is whole µs (most captures), else ns.
func appendTimeDelta(b []byte, d int64) []byte {
	if d%1000 == 0 {
		return binary.AppendVarint(b, d/1000<<1|1)
	}
	return binary.AppendVarint(b, d<<1)
}

func readTimeDelta(v int64) int64 {
	if v&1 != 0 {
		return v >> 1 * 1000
	}
	return v >> 1
}

// Append adds a packet.
func (h *History) Append(r *PacketRecord) {
	p, o := &h.enc.dir[r.Dir&1], &h.enc.dir[r.Dir&1^1]
	ack := predictAck(p, o)
	var bits byte
	if r.Dir&1 != 0 {
		bits |= hDir
	}
	if r.IPID != p.ipid+1 {
		bits |= hIPID
	}
	if r.TTL != p.ttl {
		bits |= hTTL
	}
	if r.Length != p.length {
		bits |= hLength
	}
	if r.Flags != p.flags {
		bits |= hFlags
	}
	if r.Seq != p.seq+p.seqStep {
		bits |= hSeq
	}
	if r.Ack != ack {
		bits |= hAck
	}
	if r.Window != p.window {
		bits |= hWindow
	}
	b := append(h.buf, bits)
	b = appendTimeDelta(b, r.Time-h.enc.last)
	if bits&hIPID != 0 {
		b = binary.AppendVarint(b, int64(int16(r.IPID-p.ipid-1)))
	}
	if bits&hTTL != 0 {
		b = append(b, r.TTL)
	}
	if bits&hLength != 0 {
		b = binary.AppendUvarint(b, uint64(r.Length))
	}
	if bits&hFlags != 0 {
		b = append(b, r.Flags)
	}
	if bits&hSeq != 0 {
		b = binary.AppendVarint(b, int64(int32(r.Seq-p.seq-p.seqStep)))
	}
	if bits&hAck != 0 {
		b = binary.AppendVarint(b, int64(int32(r.Ack-ack)))
	}
	if bits&hWindow != 0 {
		b = binary.AppendVarint(b, int64(int16(r.Window-p.window)))
	}
	h.buf = b
	h.n++
	h.enc.last = r.Time
	p.advance(r)
}

func (p *dirPrediction) advance(r *PacketRecord) {
	p.seqStep, p.seq = r.Seq-p.seq, r.Seq
	p.ack, p.seen = r.Ack, true
	p.ipid, p.ttl, p.flags, p.window, p.length = r.IPID, r.TTL, r.Flags, r.Window, r.Length
}

// All yields the packets in arrival order.
func (h *History) All() iter.Seq[PacketRecord] {
	return func(yield func(PacketRecord) bool) {
		var st historyState
		b := h.buf
		for len(b) > 0 {
			bits := b[0]
			b = b[1:]
			var r PacketRecord
			r.Dir = bits & hDir
			p, o := &st.dir[r.Dir], &st.dir[r.Dir^1]
			v, n := binary.Varint(b)
			b = b[n:]
			r.Time = st.last + readTimeDelta(v)
			r.IPID, r.TTL, r.Length, r.Flags = p.ipid+1, p.ttl, p.length, p.flags
			r.Seq, r.Ack, r.Window = p.seq+p.seqStep, predictAck(p, o), p.window
			if bits&hIPID != 0 {
				v, n = binary.Varint(b)
				b = b[n:]
				r.IPID += uint16(v)
			}
			if bits&hTTL != 0 {
				r.TTL, b = b[0], b[1:]
			}
			if bits&hLength != 0 {
				u, n := binary.Uvarint(b)
				b = b[n:]
				r.Length = uint32(u)
			}
			if bits&hFlags != 0 {
				r.Flags, b = b[0], b[1:]
			}
			if bits&hSeq != 0 {
				v, n = binary.Varint(b)
				b = b[n:]
				r.Seq += uint32(v)
			}
			if bits&hAck != 0 {
				v, n = binary.Varint(b)
				b = b[n:]
				r.Ack += uint32(v)
			}
			if bits&hWindow != 0 {
				v, n = binary.Varint(b)
				b = b[n:]
				r.Window += uint16(v)
			}
			st.last = r.Time
			p.advance(&r)
			if !yield(r) {
				return
			}
		}
	}
}
