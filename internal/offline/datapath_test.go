package offline

import (
	"net/netip"
	"testing"
	"time"

	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/userspace"
)

var (
	cli = netip.MustParseAddr("192.0.2.1")
	srv = netip.MustParseAddr("192.0.2.2")
)

// pkt is one packet of a scripted conversation: at seconds, from the client (c2s) or
// the server, with TCP flags (UDP when tcp is false).
type pkt struct {
	at    float64
	c2s   bool
	flags uint8
}

type flowWant struct {
	reason  userspace.EndReason
	fwd     uint64 // packets from the initiator
	rev     uint64
	srcIsCl bool // the client is the initiator
}

func frame(tcp bool, p pkt) []byte {
	src, dst, sp, dp := cli, srv, uint16(40000), uint16(80)
	if !p.c2s {
		src, dst, sp, dp = srv, cli, 80, 40000
	}
	if tcp {
		return pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoTCP}.Build(pb.TCP(sp, dp, p.flags, 1, 1, nil)))
	}
	return pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoUDP}.Build(pb.UDP(sp, dp, nil)))
}

// run counts the packets through a datapath and returns every flow it reports,
// flushing at the end as a capture's end would.
func run(t *testing.T, to userspace.Timeouts, tcp bool, pkts []pkt) []userspace.Record {
	t.Helper()
	tab := userspace.NewFlowTable(16)
	eng := userspace.NewEngine(tab, to)
	dp := NewDatapath(eng, tab, 0)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for _, p := range pkts {
		f := frame(tcp, p)
		dp.Packet(f, len(f), LinkEthernet, base+int64(p.at*float64(time.Second)))
	}
	eng.Flush(userspace.EndEndOfCapture, func() {})
	recs := eng.TakeEnded(nil)
	var sum uint64
	for i := range recs {
		sum += recs[i].State.Packets()
	}
	if accepted := dp.Counters().Accepted; sum != accepted || accepted != uint64(len(pkts)) {
		t.Errorf("reported %d packets, accepted %d, sent %d", sum, accepted, len(pkts))
	}
	return recs
}

const (
	S  = pb.SYN
	SA = pb.SYN | pb.ACK
	A  = pb.ACK
	FA = pb.FIN | pb.ACK
	R  = pb.RST
)

func TestUpdateRules(t *testing.T) {
	def := userspace.Timeouts{Idle: 600 * time.Second, FIN: 30 * time.Second}
	for _, tc := range []struct {
		name string
		to   userspace.Timeouts
		tcp  bool
		pkts []pkt
		want []flowWant
	}{
		{"udp idle", def, false,
			[]pkt{{0, true, 0}, {5, false, 0}, {700, true, 0}},
			[]flowWant{{userspace.EndIdle, 1, 1, true}, {userspace.EndEndOfCapture, 1, 0, true}}},
		{"a packet exactly a timeout later starts a new flow", def, false,
			[]pkt{{0, false, 0}, {600, true, 0}},
			[]flowWant{{userspace.EndIdle, 1, 0, false}, {userspace.EndEndOfCapture, 1, 0, true}}},
		{"handshake and FIN close", def, true,
			[]pkt{{0, true, S}, {0.1, false, SA}, {0.2, true, A}, {1, true, FA}, {1.1, false, FA}, {1.2, true, A}, {40, true, A}},
			[]flowWant{{userspace.EndFIN, 4, 2, true}, {userspace.EndEndOfCapture, 1, 0, true}}},
		{"packets within fin timeout stay in the flow", def, true,
			[]pkt{{0, true, S}, {0.1, false, SA}, {1, true, FA}, {20, false, A}, {31, true, A}},
			[]flowWant{{userspace.EndEndOfCapture, 3, 2, true}}},
		{"rst", def, true,
			[]pkt{{0, true, S}, {0.1, false, R | A}, {31, true, S}},
			[]flowWant{{userspace.EndRST, 1, 1, true}, {userspace.EndEndOfCapture, 1, 0, true}}},
		{"port reused after FIN", def, true,
			[]pkt{{0, true, S}, {0.1, false, SA}, {1, true, FA}, {1.1, false, FA}, {2, true, S}, {2.1, false, SA}},
			[]flowWant{{userspace.EndReused, 2, 2, true}, {userspace.EndEndOfCapture, 1, 1, true}}},
		{"a retransmitted SYN on a live flow is the same flow", def, true,
			[]pkt{{0, true, S}, {1, true, S}, {1.1, false, SA}},
			[]flowWant{{userspace.EndEndOfCapture, 2, 1, true}}},
		{"a SYN+ACK on a finished flow is not a reuse", def, true,
			[]pkt{{0, true, S}, {1, true, FA}, {2, false, SA}},
			[]flowWant{{userspace.EndEndOfCapture, 2, 1, true}}},
		{"syn+ack first: the receiver initiated", def, true,
			[]pkt{{0, false, SA}, {0.1, true, A}},
			[]flowWant{{userspace.EndEndOfCapture, 1, 1, true}}},
		{"active timeout", userspace.Timeouts{Idle: 600 * time.Second, FIN: 30 * time.Second, Active: 10 * time.Second}, false,
			[]pkt{{0, true, 0}, {3, false, 0}, {6, true, 0}, {9, true, 0}, {12, false, 0}, {15, true, 0}, {21, true, 0}, {22, true, 0}},
			[]flowWant{{userspace.EndActive, 3, 1, true}, {userspace.EndActive, 1, 2, false}, {userspace.EndEndOfCapture, 1, 0, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := run(t, tc.to, tc.tcp, tc.pkts)
			if len(recs) != len(tc.want) {
				t.Fatalf("%d flows, want %d: %+v", len(recs), len(tc.want), recs)
			}
			for i, w := range tc.want {
				r := &recs[i]
				// The client 192.0.2.1 sorts first: it is endpoint A.
				fwd, rev := r.State.Dir[0].Packets, r.State.Dir[1].Packets
				if r.State.Initiator == 1 {
					fwd, rev = rev, fwd
				}
				if r.Reason != w.reason || fwd != w.fwd || rev != w.rev || (r.State.Initiator == 0) != w.srcIsCl {
					t.Errorf("flow %d: %v fwd %d rev %d client-initiated %v; want %v %d %d %v",
						i, r.Reason, fwd, rev, r.State.Initiator == 0, w.reason, w.fwd, w.rev, w.srcIsCl)
				}
			}
		})
	}
}

func TestPacketAllocatesNothing(t *testing.T) {
	tab := userspace.NewFlowTable(16)
	eng := userspace.NewEngine(tab, userspace.DefaultTimeouts)
	dp := NewDatapath(eng, tab, 0)
	frames := [][]byte{
		frame(true, pkt{c2s: true, flags: A}),
		frame(false, pkt{c2s: false}),
		pb.Ethernet(pb.EtherIPv6, []uint16{7}, pb.IPv6{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Next: pb.ProtoUDP, PayloadLen: -1,
			Exts: []pb.Ext{{Type: pb.ExtHopByHop}}}.Build(pb.UDP(1, 2, nil))),
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	i := 0
	allocs := testing.AllocsPerRun(10000, func() {
		f := frames[i%len(frames)]
		dp.Packet(f, len(f), LinkEthernet, now+int64(i)*1000)
		i++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet", allocs)
	}
}
