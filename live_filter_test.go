package fparser_test

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
)

// TestLiveFilter filters in the kernel, then swaps the filter while attached, with
// XDP and TCX links and with clsact filters.
func TestLiveFilter(t *testing.T) {
	liveSkip(t)
	for _, mode := range []string{"auto", "tc-legacy"} {
		t.Run(mode, func(t *testing.T) {
			host := liveNamespacesAndServer(t)
			client := testharness.Command(host, roleFilterClient, envMode+"="+mode)
			b, err := client.CombinedOutput()
			t.Logf("client in %s:\n%s", host, b)
			if err != nil {
				t.Fatalf("client failed: %v", err)
			}
		})
	}
}

// roleFilterClient counts only the UDP port the filter names, swaps the filter to
// another port while running, and checks that the first flow kept its counts.
var roleFilterClient = testharness.Role("filter-client", liveFilterClient)

func liveFilterClient(t testing.TB) {
	var log flowLog
	p, err := fparser.Open(liveIface, &fparser.Options{
		Attach: os.Getenv(envMode),
		Filter: "udp port 41001",
		OnUDP:  log.add, OnTCP: log.add,
		Logger: discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	end := func(port int) (netip.AddrPort, netip.AddrPort) {
		return netip.MustParseAddrPort(net.JoinHostPort(liveHostAddr, strconv.Itoa(port))),
			netip.MustParseAddrPort(net.JoinHostPort(livePeerAddr, strconv.Itoa(liveUDPPort)))
	}
	counts := func(port int) (fparser.Flow, bool) {
		a, b := end(port)
		return p.FindUDPFlow(a, b)
	}

	udpEcho(t, 41001, 5, 100)
	udpEcho(t, 41002, 3, 100)
	ping(t, 2)
	f1, ok := counts(41001)
	if !ok || f1.Fwd.Packets != 5 || f1.Rev.Packets != 5 || f1.Fwd.Bytes != 5*128 {
		t.Fatalf("flow of the filtered port: %+v (found %v), want 5 packets of 128 bytes each way", f1, ok)
	}
	if f, ok := counts(41002); ok {
		t.Fatalf("flow outside the filter was counted: %+v", f)
	}
	before := p.Info()
	if before.Filtered < 6+4 || before.Filtered != before.PacketsSeen-before.PacketsAccepted || before.PacketsAccepted != 10 {
		t.Fatalf("before the swap: %d seen, %d filtered, %d accepted; want 10 accepted and at least 10 filtered", before.PacketsSeen, before.Filtered, before.PacketsAccepted)
	}

	if err := p.SetFilter("udp port 41002"); err != nil {
		t.Fatal(err)
	}
	if err := p.SetFilter("udp prot 41002"); err == nil {
		t.Fatal("SetFilter accepted a bad filter")
	}
	udpEcho(t, 41001, 2, 100)
	udpEcho(t, 41002, 4, 100)
	after := p.Info()
	if f, _ := counts(41001); f.Fwd != f1.Fwd || f.Rev != f1.Rev {
		t.Errorf("after the swap the first flow changed: %+v, was %+v", f, f1)
	}
	if f, ok := counts(41002); !ok || f.Fwd.Packets != 4 || f.Rev.Packets != 4 {
		t.Errorf("after the swap, the newly selected port: %+v (found %v), want 4 packets each way", f, ok)
	}
	if after.PacketsAccepted != 18 || after.Filtered < before.Filtered+4 || after.PacketsSeen < before.PacketsSeen+12 {
		t.Errorf("counters across the swap: before %d seen %d filtered %d accepted, after %d seen %d filtered %d accepted",
			before.PacketsSeen, before.Filtered, before.PacketsAccepted, after.PacketsSeen, after.Filtered, after.PacketsAccepted)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	flows := log.snapshot()
	if len(flows) != 2 {
		t.Fatalf("%d flows reported at stop, want 2: %+v", len(flows), flows)
	}
	for _, f := range flows {
		if f.EndReason != fparser.EndStopped || f.PacketCount() != 10 && f.PacketCount() != 8 {
			t.Errorf("flow at stop: %+v", f)
		}
	}
	t.Logf("filtered %d of %d packets; %d accepted", after.Filtered, after.PacketsSeen, after.PacketsAccepted)
}
