package fparser_test

import (
	"testing"
	"time"

	"github.com/fparser/fparser"
)

// TestTCPQuality: with Options.TCPQuality, the first connection of
// testdata/tcp-quality.pcap has the handshake and the events the capture was written
// to show (internal/edgecases), as tshark flags them; with Statistics alone it has no
// quality, and with TCPQuality alone no statistics.
func TestTCPQuality(t *testing.T) {
	const capture = "testdata/tcp-quality.pcap"
	one := func(opts *fparser.Options) fparser.Flow {
		t.Helper()
		flows, _, err := replay(t, capture, opts)
		if err != nil || len(flows) != 2 {
			t.Fatalf("%d flows, %v", len(flows), err)
		}
		for _, f := range flows {
			if f.Src.Port() == 42000 {
				return f
			}
		}
		t.Fatal("no flow from port 42000")
		return fparser.Flow{}
	}
	f := one(&fparser.Options{TCPQuality: true})
	if f.HandshakeRTT != 12*time.Millisecond || f.Fwd.RTT != 10*time.Millisecond || f.Rev.RTT != 2*time.Millisecond {
		t.Errorf("handshake %v = %v + %v, want 12ms = 10ms + 2ms", f.HandshakeRTT, f.Fwd.RTT, f.Rev.RTT)
	}
	type quality struct{ retransmissions, outOfOrder, zeroWindows uint32 }
	for _, c := range []struct {
		name string
		got  quality
		want quality
	}{
		{"src2dst", quality{f.Fwd.Retransmissions, f.Fwd.OutOfOrder, f.Fwd.ZeroWindows}, quality{3, 1, 0}},
		{"dst2src", quality{f.Rev.Retransmissions, f.Rev.OutOfOrder, f.Rev.ZeroWindows}, quality{0, 0, 2}},
	} {
		if c.got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, c.got, c.want)
		}
	}
	if f.Fwd.Size != (fparser.SizeStats{}) || f.Fwd.FlagPackets != (fparser.FlagCounts{}) {
		t.Errorf("TCPQuality alone gave statistics: %+v %+v", f.Fwd.Size, f.Fwd.FlagPackets)
	}

	s := one(&fparser.Options{Statistics: true})
	if s.HandshakeRTT != 0 || s.Fwd.RTT != 0 || s.Fwd.Retransmissions != 0 || s.Rev.ZeroWindows != 0 {
		t.Errorf("Statistics alone gave a TCP quality: %v %d %d", s.HandshakeRTT, s.Fwd.Retransmissions, s.Rev.ZeroWindows)
	}
	if s.Fwd.FlagPackets.SYN != 1 {
		t.Errorf("statistics: %d SYN packets, want 1", s.Fwd.FlagPackets.SYN)
	}
	both := one(&fparser.Options{Statistics: true, TCPQuality: true})
	if both.HandshakeRTT != f.HandshakeRTT || both.Fwd.Retransmissions != 3 || both.Fwd.Size != s.Fwd.Size {
		t.Errorf("both: %v, %d retransmissions, sizes %+v (alone: %+v)", both.HandshakeRTT, both.Fwd.Retransmissions, both.Fwd.Size, s.Fwd.Size)
	}
}
