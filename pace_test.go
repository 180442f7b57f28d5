package fparser_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fparser/fparser"
	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/testharness"
)

// TestReplaySpeed: a capture replayed at its own pace, sped up 4 times, takes a
// quarter of its span, shows its flows while it runs, and reports the same flows as
// the replay at full speed, reasons and times included.
func TestReplaySpeed(t *testing.T) {
	var pkts []pkt
	for i := range 20 {
		at := time.Duration(i) * 50 * time.Millisecond
		pkts = append(pkts, pkt{at: at, src: "192.0.2.1:1000", dst: "192.0.2.2:53", payloadLength: 10 + i})
		if i%4 == 0 {
			pkts = append(pkts, pkt{at: at + time.Millisecond, src: "192.0.2.3:2000", dst: "192.0.2.4:80", tcp: true, flags: pb.ACK})
		}
	}
	// One that ends idle while the others go on.
	pkts = append([]pkt{{at: 0, src: "192.0.2.5:3000", dst: "192.0.2.6:53", payloadLength: 5}}, pkts...)
	path := writeCapture(t, pkts)
	run := func(speed float64) ([]string, time.Duration, int) {
		var flows []string
		add := func(f fparser.Flow) {
			flows = append(flows, fmt.Sprintf("%v %v %v %d/%d %d/%d %v %v %v", f.Protocol, f.Src, f.Dst, f.Fwd.Packets, f.Fwd.Bytes,
				f.Rev.Packets, f.Rev.Bytes, f.FirstSeen.UnixNano(), f.LastSeen.UnixNano(), f.EndReason))
		}
		p, err := fparser.New(path, &fparser.Options{ReplaySpeed: speed, FlowTimeout: 300 * time.Millisecond, OnTCP: add, OnUDP: add, Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		p.Start()
		// While it runs, the flows are there to see: looked for until the replay
		// ends (a fast one may end before they are).
		seen := 0
		testharness.Poll(5*time.Second, func() bool {
			select {
			case <-p.Done():
				return true
			default:
			}
			seen = len(slices.Collect(p.Flows()))
			return seen > 0
		})
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(flows)
		return flows, time.Since(began), seen
	}
	fast, _, _ := run(0)
	paced, took, seen := run(4)
	if !slices.Equal(fast, paced) {
		t.Errorf("paced replay differs:\n fast %q\npaced %q", fast, paced)
	}
	if span := 950 * time.Millisecond; took < span/4 || took > span/4+400*time.Millisecond {
		t.Errorf("a %v capture at 4x took %v", span, took)
	}
	if seen == 0 {
		t.Error("no active flow while the paced replay ran")
	}
	if _, err := fparser.New(path, &fparser.Options{ReplaySpeed: -1}); err == nil {
		t.Error("a negative ReplaySpeed was accepted")
	}
	t.Logf("%d flows, paced replay took %v, %d active while it ran", len(fast), took, seen)
}
