package filter_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/fparser/fparser/filter"
	pb "github.com/fparser/fparser/internal/pktbuild"
)

// BenchExpressions are typical filters, for the benchmarks here and in internal/loader/.
var benchExpressions = []string{
	"tcp port 443",
	"host 192.0.2.1",
	"net 10.0.0.0/8 and not port 22",
	"udp port 53 or udp port 5353",
	"tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
	"ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) != 0",
}

func benchFrames() map[string][]byte {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.1")
	a6, b6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	return map[string][]byte{
		"ipv4-tcp-443": pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: a, Dst: b, Proto: pb.ProtoTCP}.Build(pb.TCP(40000, 443, pb.ACK, 1, 1, make([]byte, 100)))),
		"ipv4-udp-53":  pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: a, Dst: b, Proto: pb.ProtoUDP}.Build(pb.UDP(40000, 53, make([]byte, 40)))),
		"ipv6-tcp-443": pb.Ethernet(pb.EtherIPv6, nil, pb.IPv6{Src: a6, Dst: b6, Next: pb.ProtoTCP, PayloadLen: -1}.Build(pb.TCP(40000, 443, pb.ACK, 1, 1, make([]byte, 100)))),
	}
}

// BenchmarkMatch is the interpreter's time per packet (ns/op) for typical filters.
func BenchmarkMatch(b *testing.B) {
	frames := benchFrames()
	for _, expr := range benchExpressions {
		prog, err := filter.Compile(expr, filter.Ethernet)
		if err != nil {
			b.Fatal(err)
		}
		for _, name := range []string{"ipv4-tcp-443", "ipv4-udp-53", "ipv6-tcp-443"} {
			f := frames[name]
			b.Run(expr+"/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					prog.Match(f, len(f))
				}
			})
		}
	}
}

// BenchmarkCompile is the time to parse and compile a filter.
func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := filter.Compile("tcp port 443 and not net 10.0.0.0/8", filter.Ethernet); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompileHostile is the time and allocation of compiling, or refusing, the
// hostile shapes at 10 kB, 1 MB and 10 MB, and the slowest expressions found that
// stay within the limits (refused only once laid out, or compiled).
func BenchmarkCompileHostile(b *testing.B) {
	type input struct{ name, expr string }
	var inputs []input
	for _, h := range hostile {
		for _, size := range []int{10_000, 1_000_000, 10_000_000} {
			inputs = append(inputs, input{fmt.Sprintf("%s/%dB", h.name, size), h.build(size)})
		}
	}
	for _, sep := range []string{" or ", " and "} {
		inputs = append(inputs,
			input{"limits/2340 vlan" + sep, chain(2340, func(int) string { return "vlan" }, sep)},
			input{"limits/1365 tcp" + sep, chain(1365, func(int) string { return "tcp" }, sep)},
			input{"limits/800 ip6 host" + sep, chain(800, func(i int) string { return fmt.Sprintf("ip6 host 2001:db8::%x", i) }, sep)})
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				filter.Compile(in.expr, filter.Ethernet)
			}
		})
	}
}
