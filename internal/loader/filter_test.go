package loader

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/net/bpf"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/kerneltest"
	"github.com/fparser/fparser/internal/offline"
	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/testpackets"
)

const (
	xdpDrop = 1
	xdpPass = 2
)

// probeDecisions runs frames through a filter probe, two at a time.
func probeDecisions(t *testing.T, probe *ebpf.Program, frames [][]byte) []bool {
	t.Helper()
	out := make([]bool, len(frames))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(frames); i += 2 {
				ret, err := probe.Run(&ebpf.RunOptions{Data: frames[i]})
				if err != nil || (ret != xdpPass && ret != xdpDrop) {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						if err == nil {
							t.Errorf("frame %d: probe returned %d", i, ret)
						}
					}
					mu.Unlock()
					return
				}
				out[i] = ret == xdpPass
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	return out
}

// testFrames are the packets of testdata and the corpus as Ethernet frames (the
// others rewrapped, as the XDP program would see them), cut to what
// BPF_PROG_TEST_RUN takes. The kernel sees a frame's length as its wire length, so
// the Go side is given the same.
func testFrames(t testing.TB) [][]byte {
	var frames [][]byte
	for _, p := range testpackets.Load(t) {
		f, ok := asEthernet(&offline.Frame{Data: p.Data, Wire: p.Wire, LinkType: p.Link.Type})
		if !ok || len(f) < 14 {
			continue
		}
		if len(f) > maxTestFrame {
			f = f[:maxTestFrame]
		}
		frames = append(frames, f)
	}
	return frames
}

// TestFilterDifferential: for every expression the oracle test uses and every
// packet (as an Ethernet frame), the filter translated to eBPF and run in the kernel decides as
// the Go interpreter does.
func TestFilterDifferential(t *testing.T) {
	kerneltest.RequireRoot(t, "filter differential tests")
	frames := testFrames(t)
	exprs := testpackets.Expressions(t)
	compiled, decisions, disagreements := 0, 0, 0
	for _, expr := range exprs {
		prog, err := filter.Compile(expr, filter.Ethernet)
		if err != nil {
			continue
		}
		compiled++
		probe, err := FilterProbe(prog)
		if err != nil {
			t.Errorf("%q: %v", expr, err)
			continue
		}
		got := probeDecisions(t, probe, frames)
		probe.Close()
		bad := 0
		for i, f := range frames {
			decisions++
			if want := prog.Match(f, len(f)); got[i] != want {
				bad++
				if bad <= 3 {
					t.Errorf("%q: frame %d (%d bytes): kernel %v, Go %v", expr, i, len(f), got[i], want)
				}
			}
		}
		if bad > 0 {
			disagreements++
		}
	}
	t.Logf("%d expressions compiled, %d frames: %d kernel decisions, %d expressions disagree", compiled, len(frames), decisions, disagreements)
}

// randomProgram builds a valid classic BPF program of every instruction kind, with
// forward jumps only, for the translator's randomized differential test.
func randomProgram(r *rand.Rand) []bpf.RawInstruction {
	n := 4 + r.IntN(40)
	k := func() uint32 {
		switch r.IntN(4) {
		case 0:
			return uint32(r.IntN(64))
		case 1:
			return 0x80000000 | r.Uint32()
		case 2:
			return r.Uint32()
		}
		return []uint32{0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0xfff0, 0xffff}[r.IntN(7)]
	}
	off := func() uint32 {
		if r.IntN(12) == 0 { // at or past the verifier's packet bound
			return []uint32{65530, 65534, 65535, 70000, 0x7fffffff}[r.IntN(5)]
		}
		return uint32(r.IntN(90))
	}
	sizes := []uint16{0x00, 0x08, 0x10}
	alus := []uint16{0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xa0}
	jmps := []uint16{0x10, 0x20, 0x30, 0x40}
	prog := make([]bpf.RawInstruction, n)
	for i := 0; i < n-1; i++ {
		var in bpf.RawInstruction
		switch r.IntN(14) {
		case 0:
			in = bpf.RawInstruction{Op: 0x00 | sizes[r.IntN(3)] | 0x20, K: off()}
		case 1:
			in = bpf.RawInstruction{Op: 0x00 | sizes[r.IntN(3)] | 0x40, K: off() % 70001}
		case 2:
			in = bpf.RawInstruction{Op: 0x01 | 0x10 | 0xa0, K: off()} // ldxb msh
		case 3:
			in = bpf.RawInstruction{Op: uint16(r.IntN(2)), K: k()} // ld/ldx imm
		case 4:
			in = bpf.RawInstruction{Op: uint16(r.IntN(2)) | 0x80} // ld/ldx len
		case 5:
			in = bpf.RawInstruction{Op: uint16(r.IntN(2)) | 0x60, K: uint32(r.IntN(16))} // ld/ldx mem
		case 6:
			in = bpf.RawInstruction{Op: 0x02 + uint16(r.IntN(2)), K: uint32(r.IntN(16))} // st/stx
		case 7, 8:
			op := alus[r.IntN(len(alus))]
			kk := k()
			if (op == 0x30 || op == 0x90) && kk == 0 {
				kk = 3
			}
			if op == 0x60 || op == 0x70 {
				kk &= 31
			}
			in = bpf.RawInstruction{Op: 0x04 | op, K: kk}
		case 9:
			in = bpf.RawInstruction{Op: 0x04 | 0x08 | alus[r.IntN(len(alus))]}
		case 10:
			in = bpf.RawInstruction{Op: 0x04 | 0x80} // neg
		case 11, 12:
			src := uint16(r.IntN(2)) * 0x08
			room := n - 1 - (i + 1)
			in = bpf.RawInstruction{Op: 0x05 | jmps[r.IntN(4)] | src, K: k(), Jt: uint8(r.IntN(min(room, 255) + 1)), Jf: uint8(r.IntN(min(room, 255) + 1))}
		case 13:
			in = bpf.RawInstruction{Op: 0x07 | uint16(r.IntN(2))*0x80} // tax/txa
		}
		prog[i] = in
	}
	if r.IntN(2) == 0 {
		prog[n-1] = bpf.RawInstruction{Op: 0x06 | 0x10} // ret A
	} else {
		prog[n-1] = bpf.RawInstruction{Op: 0x06, K: uint32(r.IntN(2))}
	}
	return prog
}

// TestTranslateRandom runs random programs, in the kernel and in Go, on frames cut
// at every length around the offsets they read, and on the test frames.
func TestTranslateRandom(t *testing.T) {
	kerneltest.RequireRoot(t, "filter differential tests")
	r := rand.New(rand.NewPCG(1, 2))
	base := testFrames(t)
	var frames [][]byte
	for i := 0; i < 40; i++ {
		f := base[r.IntN(len(base))]
		frames = append(frames, f)
		if len(f) > 20 {
			frames = append(frames, f[:14+r.IntN(min(len(f)-14, 100))])
		}
	}
	programs, disagreements, matched := 0, 0, 0
	for range 500 {
		raw := randomProgram(r)
		prog, err := filter.NewProgram(raw)
		if err != nil {
			t.Fatalf("random program refused: %v\n%s", err, ddd(raw))
		}
		programs++
		probe, err := FilterProbe(prog)
		if err != nil {
			t.Fatalf("verifier refused a translated program: %v\n%s", err, ddd(raw))
		}
		got := probeDecisions(t, probe, frames)
		probe.Close()
		for i, f := range frames {
			want := prog.Match(f, len(f))
			if want {
				matched++
			}
			if got[i] != want {
				disagreements++
				t.Errorf("frame %d (%d bytes): kernel %v, Go %v for\n%s", i, len(f), got[i], want, ddd(raw))
				break
			}
		}
	}
	t.Logf("%d random programs on %d frames: %d matches, %d programs disagree", programs, len(frames), matched, disagreements)
}

func ddd(raw []bpf.RawInstruction) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", len(raw))
	for _, in := range raw {
		fmt.Fprintf(&b, "%d %d %d %d\n", in.Op, in.Jt, in.Jf, in.K)
	}
	return b.String()
}

// verifierExpressions are heavy filters: variable offsets, scratch memory, long
// jumps, large constants, VLAN shifts.
var verifierExpressions = []string{
	"tcp port 443",
	"ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) != 0",
	"tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420",
	"vlan and vlan 200 and udp port 53",
	"ip6 net 2001:db8::/32 or portrange 1000-2000",
	"ip[12:4] > 0x80000000 and len % 3 = 1",
	"ether host 02:00:00:00:00:01 and not arp",
	"port 53 or port 80 or port 443 or port 8080 or host 192.0.2.1 or net 10.0.0.0/8 or icmp6",
	// Loads past any packet the verifier allows: the code after them is reached only
	// from elsewhere.
	"ether[70000] = 1 or udp",
	"ip[65530:4] = 1 or tcp[65535] = 2 or tcp",
}

// verifierFrames are synthetic frames for the tests that also run on older kernels,
// where the module's captures are not at hand.
func verifierFrames(r *rand.Rand) [][]byte {
	base := [][]byte{
		tcpFrame(benchA, 40000, pb.SYN),
		pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: benchA, Dst: benchB, Proto: pb.ProtoTCP}.Build(pb.TCP(40000, 80, pb.ACK|pb.PSH, 1, 1, []byte("GET / HTTP/1.1\r\n\r\n")))),
		pb.Ethernet(pb.EtherIPv4, []uint16{100, 200}, pb.IPv4{Src: benchA, Dst: benchB, Proto: pb.ProtoUDP}.Build(pb.UDP(5353, 53, make([]byte, 30)))),
		pb.Ethernet(pb.EtherIPv6, nil, pb.IPv6{Src: bench6A, Dst: bench6B, Next: pb.ProtoUDP, PayloadLen: -1}.Build(pb.UDP(1500, 53, make([]byte, 10)))),
		pb.Ethernet(pb.EtherARP, nil, make([]byte, 28)),
	}
	var frames [][]byte
	for _, f := range base {
		frames = append(frames, f)
		for range 6 {
			frames = append(frames, f[:14+r.IntN(len(f)-14)])
		}
	}
	return frames
}

// TestFilterPassesTheVerifier loads the full programs with heavy filters spliced in,
// then random translated programs, and checks their decisions against Go's. It needs
// no files, so that it also runs on the older kernel of .ci/kernel-vm.sh.
func TestFilterPassesTheVerifier(t *testing.T) {
	kerneltest.RequireRoot(t, "filter verifier tests")
	r := rand.New(rand.NewPCG(3, 4))
	frames := verifierFrames(r)
	check := func(what string, prog *filter.Program) {
		probe, err := FilterProbe(prog)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer probe.Close()
		got := probeDecisions(t, probe, frames)
		for i, f := range frames {
			if want := prog.Match(f, len(f)); got[i] != want {
				t.Errorf("%s: frame %d (%d bytes): kernel %v, Go %v", what, i, len(f), got[i], want)
			}
		}
	}
	for _, expr := range verifierExpressions {
		prog, err := filter.Compile(expr, filter.Ethernet)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		d, err := Load(Config{Filter: prog})
		if err != nil {
			t.Fatalf("%q: the datapath with this filter: %v", expr, err)
		}
		d.Close()
		check(expr, prog)
	}
	for range 100 {
		raw := randomProgram(r)
		prog, err := filter.NewProgram(raw)
		if err != nil {
			t.Fatal(err)
		}
		check(ddd(raw), prog)
	}
}
