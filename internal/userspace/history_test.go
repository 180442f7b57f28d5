package userspace

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistoryRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	var want []PacketRecord
	var h History
	now := int64(1_700_000_000_000_000_000)
	for i := range 5000 {
		// Mostly predictable fields, sometimes anything: both paths of each field.
		rec := PacketRecord{Time: now, Dir: uint8(r.IntN(2)), TTL: 64, Flags: 0x10, Length: 1500, Window: 512}
		if i > 0 && r.IntN(4) != 0 {
			prev := want[len(want)-1]
			rec = prev
			rec.Time = now
			rec.IPID++
			rec.Seq += 1448
		}
		switch r.IntN(6) {
		case 0:
			rec.IPID, rec.TTL, rec.Flags = uint16(r.Uint32()), uint8(r.Uint32()), uint8(r.Uint32())
		case 1:
			rec.Seq, rec.Ack, rec.Window, rec.Length = r.Uint32(), r.Uint32(), uint16(r.Uint32()), r.Uint32()
		case 2:
			rec.Time = now - int64(r.IntN(1_000_000)) // timestamps that go backwards
		}
		now += int64(r.IntN(3))*1000*int64(r.IntN(5000)) + int64(r.IntN(2))
		want = append(want, rec)
		h.Append(&rec)
	}
	got := slices.Collect(h.All())
	if !slices.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("record %d: got %+v, want %+v", i, got[i], want[i])
			}
		}
		t.Fatalf("%d records back, %d in", len(got), len(want))
	}
	if h.Len() != len(want) {
		t.Errorf("Len %d", h.Len())
	}
}

// bulkTransfer is a TCP bulk transfer as a capture shows it: full segments every
// 12 µs one way, a delayed ACK for every second one the other way.
func bulkTransfer(n int) []PacketRecord {
	var out []PacketRecord
	t := int64(1_700_000_000_000_000_000)
	seq, ack, ipid, ipidBack := uint32(1000), uint32(5000), uint16(100), uint16(7)
	for i := range n {
		t += 12_000
		out = append(out, PacketRecord{Time: t, Dir: 0, IPID: ipid, TTL: 64, Length: 1500, Flags: 0x10, Seq: seq, Ack: ack, Window: 502})
		ipid++
		seq += 1448
		if i%2 == 1 {
			t += 3_000
			out = append(out, PacketRecord{Time: t, Dir: 1, IPID: ipidBack, TTL: 64, Length: 52, Flags: 0x10, Seq: ack, Ack: seq, Window: 24567})
			ipidBack++
		}
	}
	return out
}

// TestHistoryBulkTCPSize: at most 6 bytes per stored packet for a bulk transfer.
func TestHistoryBulkTCPSize(t *testing.T) {
	var h History
	recs := bulkTransfer(10000)
	for i := range recs {
		h.Append(&recs[i])
	}
	per := float64(h.Size()) / float64(h.Len())
	t.Logf("%d packets in %d bytes: %.2f bytes per packet", h.Len(), h.Size(), per)
	if per > 6 {
		t.Errorf("%.2f bytes per packet, want at most 6", per)
	}
	if !slices.Equal(slices.Collect(h.All()), recs) {
		t.Error("bulk transfer does not decode to itself")
	}
}

func BenchmarkHistoryAppend(b *testing.B) {
	recs := bulkTransfer(1 << 14)
	var h History
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(recs) {
			h, i = History{buf: h.buf[:0]}, 0
		}
		h.Append(&recs[i])
		i++
	}
	b.ReportMetric(float64(h.Size())/float64(max(h.Len(), 1)), "bytes/packet")
}

// TestHistoryMemoryCap: past MaxBytes, packets are not stored, the flows that miss
// some say so, and the engine counts them.
func TestHistoryMemoryCap(t *testing.T) {
	eng := NewEngine(NewFlowTable(16), DefaultTimeouts)
	eng.SetHistory(HistoryConfig{Limit: -1, MaxBytes: 256})
	k := Key{Proto: ProtoTCP}
	recs := bulkTransfer(500)
	evs := make([]Event, len(recs))
	for i := range recs {
		evs[i] = Event{Kind: EventPacket, Key: k, Packet: recs[i]}
	}
	eng.Apply(evs, false)
	st := eng.HistoryStats()
	h := eng.hist.m[k]
	if st.Capped == 0 || !h.Incomplete() || h.Len()+int(st.Capped) != len(recs) || st.Bytes < 256 {
		t.Errorf("stats %+v, history of %d packets, incomplete %v", st, h.Len(), h.Incomplete())
	}
	eng.Apply([]Event{{Kind: EventEnded, Key: k, Reason: EndIdle}}, false)
	if ended := eng.TakeEnded(nil); len(ended) != 1 || ended[0].History != h || eng.HistoryStats().Bytes != 0 {
		t.Errorf("the ended flow's history was not handed out, or its memory not released")
	}
}
