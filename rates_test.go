package fparser_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fparser/fparser"
)

// TestMovingRatesAndSortedFlows: steady flows report their exact rates; a flow that
// speeds up reports the moving average the datapath defines; and FlowsSorted, called
// while flows are active, yields them all, largest first by each order.
func TestMovingRatesAndSortedFlows(t *testing.T) {
	var pkts []pkt
	add := func(src string, start, gap time.Duration, n, payload int) {
		for i := range n {
			pkts = append(pkts, pkt{at: start + time.Duration(i)*gap, src: src, dst: "192.0.2.9:53", payloadLength: payload})
		}
	}
	// UDP payload + 28 bytes of headers: IP lengths of 100, 200 and 150.
	add("192.0.2.4:4000", 0, 0, 1, 72)                                    // ends at 1 s, while the others run
	add("192.0.2.1:1000", 600*time.Millisecond, time.Millisecond, 40, 72) // 1000 pps of 100 bytes
	add("192.0.2.2:2000", 600*time.Millisecond, 10*time.Millisecond, 60, 172)
	add("192.0.2.3:3000", 610*time.Millisecond, time.Millisecond, 20, 122)     // 1000 pps,
	add("192.0.2.3:3000", 630*time.Millisecond, 100*time.Microsecond, 20, 122) // then 10,000
	slices.SortStableFunc(pkts, func(a, b pkt) int { return int(a.at - b.at) })
	path := writeCapture(t, pkts)

	ended := map[string]fparser.Flow{}
	var sorted map[fparser.SortOrder][]fparser.Flow
	var p *fparser.Parser
	p, err := fparser.New(path, &fparser.Options{
		FlowTimeout: time.Second,
		Logger:      discard(),
		OnUDP: func(f fparser.Flow) {
			ended[f.Src.String()] = f
			if sorted != nil {
				return
			}
			sorted = map[fparser.SortOrder][]fparser.Flow{}
			for _, o := range []fparser.SortOrder{fparser.ByPackets, fparser.ByBytes, fparser.ByPacketRate, fparser.ByByteRate} {
				sorted[o] = slices.Collect(p.FlowsSorted(o))
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}

	for src, want := range map[string][2]float64{"192.0.2.1:1000": {1000, 100_000}, "192.0.2.2:2000": {100, 20_000}} {
		if f := ended[src]; f.PacketRate != want[0] || f.ByteRate != want[1] {
			t.Errorf("%s: %v pps, %v B/s; want %v and %v", src, f.PacketRate, f.ByteRate, want[0], want[1])
		}
	}
	// The moving average of the gap, each packet weighing 1/8, in integer ns: 20
	// gaps of 1 ms (the first sets it), then 19 of 0.1 ms.
	gapAvg := uint64(time.Millisecond)
	for range 19 {
		gapAvg = gapAvg - gapAvg>>3 + uint64(100*time.Microsecond)>>3
	}
	if f, want := ended["192.0.2.3:3000"], 1e9/float64(gapAvg); f.PacketRate != want || f.ByteRate != want*150 {
		t.Errorf("the flow that sped up: %v pps, %v B/s; want %v and %v", f.PacketRate, f.ByteRate, want, want*150)
	}
	if ended["192.0.2.4:4000"].PacketRate != 0 {
		t.Errorf("a one-packet flow has a rate: %v", ended["192.0.2.4:4000"].PacketRate)
	}

	metric := map[fparser.SortOrder]func(f fparser.Flow) float64{
		fparser.ByPackets:    func(f fparser.Flow) float64 { return float64(f.PacketCount()) },
		fparser.ByBytes:      func(f fparser.Flow) float64 { return float64(f.ByteCount()) },
		fparser.ByPacketRate: func(f fparser.Flow) float64 { return f.PacketRate },
		fparser.ByByteRate:   func(f fparser.Flow) float64 { return f.ByteRate },
	}
	for o, flows := range sorted {
		var order []string
		for i, f := range flows {
			order = append(order, fmt.Sprintf("%v=%v", f.Src, metric[o](f)))
			if i > 0 && metric[o](flows[i-1]) < metric[o](f) {
				t.Errorf("by %v: not largest first: %v", o, order)
			}
		}
		if len(flows) != 3 {
			t.Errorf("by %v: %d flows, want the 3 active: %v", o, len(flows), order)
		}
		t.Logf("by %v: %v", o, order)
	}
	if first := sorted[fparser.ByPacketRate][0].Src.String(); first != "192.0.2.3:3000" {
		t.Errorf("by pps, %s first; want the flow that sped up", first)
	}
	if o, err := fparser.ParseSortOrder("BPS"); err != nil || o != fparser.ByByteRate {
		t.Errorf("ParseSortOrder(BPS) = %v, %v", o, err)
	}
	if _, err := fparser.ParseSortOrder("size"); err == nil {
		t.Error("ParseSortOrder(size) accepted")
	}
}
