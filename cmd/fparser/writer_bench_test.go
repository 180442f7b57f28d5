package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/fparser/fparser"
)

// BenchmarkWriter measures flowWriter.write per flow, in each format, on flows like a
// capture's: one day, mostly IPv4, TCP and UDP. The --packets cases write the flows
// of the captures in testdata, whose histories only the parser can make.
func BenchmarkWriter(b *testing.B) {
	for _, bc := range []struct {
		name              string
		format            string
		packets, features bool
	}{
		{"text", "text", false, false},
		{"csv", "csv", false, false},
		{"json", "json", false, false},
		{"csv-features", "csv", false, true},
		{"json-features", "json", false, true},
		{"text-packets5", "text", true, false},
		{"json-packets5", "json", true, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var flows []fparser.Flow
			if bc.packets {
				flows = captureFlows(b, 5)
			} else {
				flows = benchFlows(1024)
			}
			w, err := newFlowWriter(io.Discard, bc.format, false, bc.packets, bc.features, false, false)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				if err := w.write(&flows[n%len(flows)]); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/flow")
		})
	}
}

// benchFlows makes n flows of one hour of one day, with statistics, in end order.
func benchFlows(n int) []fparser.Flow {
	r := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	flows := make([]fparser.Flow, n)
	for i := range flows {
		f := &flows[i]
		f.Protocol = fparser.UDP
		if r.IntN(4) > 0 {
			f.Protocol = fparser.TCP
		}
		if r.IntN(8) == 0 {
			f.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(r.Uint32())}), uint16(r.Uint32()))
			f.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 14: byte(r.Uint32()), 15: 1}), 443)
		} else {
			f.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(r.Uint32()), byte(r.Uint32())}), uint16(32768+r.IntN(28000)))
			f.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(r.Uint32())}), []uint16{53, 80, 443, 8080}[r.IntN(4)])
		}
		f.FirstSeen = start.Add(time.Duration(r.Int64N(int64(time.Hour))))
		f.LastSeen = f.FirstSeen.Add(time.Duration(r.Int64N(int64(2 * time.Minute))))
		f.EndReason = fparser.EndReason(1 + r.IntN(6))
		for d, c := range []*fparser.Counters{&f.Fwd, &f.Rev} {
			c.Packets = 1 + uint64(r.IntN(1<<r.IntN(16)))
			c.Bytes = c.Packets * uint64(40+r.IntN(1460))
			c.First, c.Last = f.FirstSeen.Add(time.Duration(d)*time.Millisecond), f.LastSeen
			if f.Protocol == fparser.TCP {
				c.Flags = fparser.TCPFlags(r.Uint32()) | fparser.ACK
			}
			c.Size = fparser.SizeStats{Min: 40, Max: 1500, Mean: r.Float64() * 1500, Stddev: r.Float64() * 400}
			c.Gap = fparser.GapStats{Max: time.Duration(r.Int64N(int64(time.Second))).Truncate(time.Microsecond)}
			c.Gap.Mean = c.Gap.Max / 3
			c.Gap.Stddev = c.Gap.Max / 5
			c.FlagPackets = fparser.FlagCounts{ACK: uint32(c.Packets), PSH: uint32(c.Packets / 2)}
		}
		f.PacketRate = r.Float64() * 1000
		f.ByteRate = f.PacketRate * 600
	}
	return flows
}

// captureFlows returns the flows of every capture in testdata, with up to packets of
// each flow's packets (fparser.AllPackets: all of them) and their statistics.
func captureFlows(tb testing.TB, packets int) []fparser.Flow {
	tb.Helper()
	var flows []fparser.Flow
	keep := func(f fparser.Flow) { flows = append(flows, f) }
	for _, pat := range []string{"*.pcap", "*.pcapng", "*.pcap.gz"} {
		m, err := filepath.Glob(filepath.Join("..", "..", "testdata", pat))
		if err != nil {
			tb.Fatal(err)
		}
		for _, c := range m {
			p, err := fparser.New(c, &fparser.Options{Packets: packets, Statistics: true, OnTCP: keep, OnUDP: keep})
			if err != nil {
				tb.Fatal(err)
			}
			if err := p.Run(context.Background()); err != nil {
				tb.Fatalf("%s: %v", c, err)
			}
		}
	}
	if len(flows) == 0 {
		tb.Fatal("no flows in testdata")
	}
	return flows
}
