package ipfix_test

import (
	"io"
	"net"
	"testing"

	"github.com/fparser/fparser/ipfix"
)

// BenchmarkExport exports biflow records to a collector on loopback that reads and
// discards them, over UDP and TCP: ns/flow is the exporter's cost per flow, the sends
// included.
//
//	go test -run XXX -bench Export -count 5 ./ipfix
func BenchmarkExport(b *testing.B) {
	flows := replay(b, []string{"../testdata/http.pcap", "../testdata/dns.pcap", "../testdata/vlan.pcap"}, 3)
	for _, network := range []string{"udp", "tcp"} {
		b.Run(network, func(b *testing.B) {
			var addr string
			if network == "tcp" {
				ln, err := net.Listen("tcp4", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				go func() {
					c, err := ln.Accept()
					if err == nil {
						io.Copy(io.Discard, c)
						c.Close()
					}
				}()
				addr = ln.Addr().String()
			} else {
				pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer pc.Close()
				go func() {
					buf := make([]byte, 65536)
					for {
						if _, _, err := pc.ReadFrom(buf); err != nil {
							return
						}
					}
				}()
				addr = pc.LocalAddr().String()
			}
			e, err := ipfix.Dial(ipfix.Config{Network: network, Address: addr})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				e.Export(&flows[n%len(flows)])
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/flow")
			b.StopTimer()
			e.Close()
		})
	}
}
