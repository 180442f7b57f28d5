package loader

import (
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/userspace"
)

// TestRecordsLost: when the ring buffer has no room, the kernel counts the lost
// records, the flow's state still counts them as recorded, and the engine marks the
// flow's history incomplete and counts the records it never received.
func TestRecordsLost(t *testing.T) {
	requireBPF(t)
	pageSize := uint32(os.Getpagesize())
	d, err := Load(Config{testClock: true, HistoryLimit: -1, RingBufferSize: int(pageSize)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ip := pktbuild.IPv4{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), Proto: 17, TTL: 64}
	frame := pktbuild.Ethernet(pktbuild.EtherIPv4, nil, ip.Build(pktbuild.UDP(4000, 53, make([]byte, 20))))
	const sent = 200
	for i := range sent {
		d.objs.TestNow.Set(uint64(1e18 + int64(i)*1e6))
		if _, err := d.objs.FparserXdp.Run(&ebpf.RunOptions{Data: frame}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// The page holds this many 80-byte records (72 and the ring's 8-byte header).
	fit := uint64(pageSize / 80)
	if c.RecordsLost != sent-fit || c.Accepted != sent {
		t.Fatalf("%d records lost, %d packets accepted; want %d lost of %d", c.RecordsLost, c.Accepted, sent-fit, sent)
	}

	eng := userspace.NewEngine(d.Table(), userspace.DefaultTimeouts)
	eng.SetHistory(userspace.HistoryConfig{Limit: -1})
	events, err := d.Events()
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	events.Flush()
	var ev [1]Event
	for events.Read(&ev[0]) == nil {
		if ev[0].Kind == EventPacket {
			eng.Apply(ev[:], false)
		}
	}
	eng.Flush(userspace.EndStopped, func() {})
	ended := eng.TakeEnded(nil)
	st := eng.HistoryStats()
	if len(ended) != 1 {
		t.Fatalf("%d flows ended, want 1", len(ended))
	}
	h := ended[0].History
	if h == nil || !h.Incomplete() || uint64(h.Len()) != fit || ended[0].State.Recorded != sent || st.Lost != sent-fit {
		t.Fatalf("history %v of %d records (incomplete %v), state recorded %d, engine lost %d; want %d records, %d lost",
			h != nil, h.Len(), h != nil && h.Incomplete(), ended[0].State.Recorded, st.Lost, fit, sent-fit)
	}
}
