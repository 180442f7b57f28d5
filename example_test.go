package fparser_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/fparser/fparser"
)

// Replay a capture file and print each flow as it ends.
func ExampleOpen() {
	p, err := fparser.Open("testdata/reuse.pcap", &fparser.Options{
		OnTCP: func(f fparser.Flow) {
			fmt.Printf("%s %v -> %v: %d/%d packets, %d/%d bytes, %s\n",
				f.Protocol, f.Src, f.Dst, f.Fwd.Packets, f.Rev.Packets, f.Fwd.Bytes, f.Rev.Bytes, f.EndReason)
		},
		OnKill: func() { fmt.Println("done") },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Wait(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// tcp 192.0.2.1:45000 -> 192.0.2.2:8080: 6/6 packets, 408/539 bytes, reused
	// tcp 192.0.2.1:45000 -> 192.0.2.2:8080: 6/6 packets, 408/539 bytes, end-of-capture
	// done
}

// A callback that needs the parser gets it from New, which does not start it. A
// callback sees the parser as it was when its flow ended: the first connection ends
// 10 ms after its last packet, when the second is under way; the others are still
// active when the capture ends, and end together, in the order of the table's
// entries (the third connection took the first one's).
func ExampleNew() {
	var p *fparser.Parser
	p, err := fparser.New("testdata/http.pcap", &fparser.Options{
		FinTimeout: 10 * time.Millisecond,
		OnTCP: func(f fparser.Flow) {
			fmt.Println(f.Src, "ended:", f.EndReason, "- active flows left:", p.Info().TCPFlows)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// 192.0.2.1:52534 ended: fin - active flows left: 1
	// 192.0.2.1:52544 ended: end-of-capture - active flows left: 0
	// [2001:db8::1]:53864 ended: end-of-capture - active flows left: 0
}

// FindTCPFlow takes the two endpoints in either order. Here the first connection's
// callback looks up the second, still active.
func ExampleParser_FindTCPFlow() {
	client := netip.MustParseAddrPort("192.0.2.1:52544")
	server := netip.MustParseAddrPort("192.0.2.2:8080")
	var p *fparser.Parser
	p, _ = fparser.New("testdata/http.pcap", &fparser.Options{
		FinTimeout: 10 * time.Millisecond,
		OnTCP: func(ended fparser.Flow) {
			if f, ok := p.FindTCPFlow(server, client); ok && ended.EndReason == fparser.EndFIN {
				fmt.Printf("%v -> %v: %d packets so far\n", f.Src, f.Dst, f.PacketCount())
			}
		},
	})
	p.Start()
	p.Wait()
	// Output:
	// 192.0.2.1:52544 -> 192.0.2.2:8080: 17 packets so far
}

// Info reports the counters of the datapath and of the engine.
func ExampleParser_Info() {
	p, _ := fparser.Open("testdata/truncated.pcap", nil)
	p.Wait()
	in := p.Info()
	fmt.Printf("seen %d, in flows %d, malformed %d, non-IP %d, other L4 %d\n",
		in.PacketsSeen, in.PacketsAccepted, in.Malformed, in.NonIP, in.OtherL4)
	// Output:
	// seen 8, in flows 2, malformed 4, non-IP 1, other L4 1
}
