package loader

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/arch/x86/x86asm"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/loader/benchref"
	"github.com/fparser/fparser/internal/offline"
	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/userspace"
)

var (
	benchA  = netip.MustParseAddr("198.18.0.1")
	benchB  = netip.MustParseAddr("198.18.0.2")
	bench6A = netip.MustParseAddr("2001:db8::1")
	bench6B = netip.MustParseAddr("2001:db8::2")
)

// tcpAck is a TCP segment with ACK and no payload.
func tcpAck(src netip.Addr, sport uint16) []byte {
	return pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src, Dst: benchB, Proto: pb.ProtoTCP}.Build(pb.TCP(sport, 443, pb.ACK, 1, 1, nil)))
}

func tcpFrame(src netip.Addr, sport uint16, flags uint8) []byte {
	return pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src, Dst: benchB, Proto: pb.ProtoTCP}.Build(pb.TCP(sport, 443, flags, 1, 1, make([]byte, 100))))
}

// BenchmarkKernelPacket measures the XDP program's time per packet with
// BPF_PROG_TEST_RUN and repeat, as the kernel times it, for each kind of packet,
// against the reference counter (bpf/bench/counter.c) in the same run: each case
// runs its program and the reference's hot TCP flow in turns, and reports both
// (ns/packet, ref-ns/packet) and their ratio (x-ref), which is what the targets are
// stated in; absolute times drift from hour to hour and machine to machine. "empty"
// is an XDP program that only returns, the floor. The new-flow cases time one run
// per packet, each into an empty map, against the reference's new flow.
func BenchmarkKernelPacket(b *testing.B) {
	requireBPF(b)
	load := func(cfg Config) *Datapath { return loadForBench(b, cfg) }
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
		License:      "MIT",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	d := load(Config{})
	ref, err := benchref.Load(d.objs.Flows.MaxEntries()) // the same size as fparser's
	if err != nil {
		b.Fatal(err)
	}
	defer ref.Close()
	refFrame := tcpFrame(benchA, 40000, pb.ACK)
	recording := load(Config{HistoryLimit: -1, RingBufferSize: 1 << 29}) // room for the whole run, no reader
	pastLimit := load(Config{HistoryLimit: 1})
	withStats := load(Config{Statistics: true})
	withQuality := load(Config{TCPQuality: true})
	withBoth := load(Config{Statistics: true, TCPQuality: true})
	coarse := load(Config{CoarseClock: true})
	attributing := load(Config{Owners: true})
	decap := load(Config{Decap: true})

	cases := []struct {
		name  string
		prog  *ebpf.Program
		frame []byte
	}{
		{"empty", empty, tcpFrame(benchA, 40000, pb.ACK)},
		{"reference", ref.Program(), refFrame},
		{"hot-tcp", d.objs.FparserXdp, tcpFrame(benchA, 40000, pb.ACK)},
		{"udp", d.objs.FparserXdp, pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: benchA, Dst: benchB, Proto: pb.ProtoUDP}.Build(pb.UDP(5353, 53, make([]byte, 60))))},
		{"ipv6-tcp", d.objs.FparserXdp, pb.Ethernet(pb.EtherIPv6, nil, pb.IPv6{Src: bench6A, Dst: bench6B, Next: pb.ProtoTCP, PayloadLen: -1}.Build(pb.TCP(40001, 443, pb.ACK, 1, 1, make([]byte, 100))))},
		{"fin", d.objs.FparserXdp, tcpFrame(benchA, 40002, pb.FIN|pb.ACK)},
		{"non-ip", d.objs.FparserXdp, pb.Ethernet(pb.EtherARP, nil, make([]byte, 28))},
		{"hot-tcp-coarse-clock", coarse.objs.FparserXdp, tcpFrame(benchA, 40000, pb.ACK)},
		{"hot-tcp-history", recording.objs.FparserXdp, tcpFrame(benchA, 40000, pb.ACK)},
		{"hot-tcp-history-past-limit", pastLimit.objs.FparserXdp, tcpFrame(benchA, 40000, pb.ACK)},
		{"hot-tcp-statistics", withStats.objs.FparserXdp, tcpFrame(benchA, 40000, pb.ACK)},
		// The same segment again and again: after the first, each is a
		// retransmission, the TCP quality's longest way through its rules.
		{"hot-tcp-quality", withQuality.objs.FparserXdp, tcpFrame(benchA, 40000, pb.ACK)},
		{"hot-tcp-statistics-quality", withBoth.objs.FparserXdp, tcpFrame(benchA, 40000, pb.ACK)},
		// A pure ACK again and again: each a duplicate ACK.
		{"hot-tcp-ack-statistics", withStats.objs.FparserXdp, tcpAck(benchA, 40003)},
		{"hot-tcp-ack-statistics-quality", withBoth.objs.FparserXdp, tcpAck(benchA, 40003)},
		{"udp-statistics-quality", withBoth.objs.FparserXdp, pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: benchA, Dst: benchB, Proto: pb.ProtoUDP}.Build(pb.UDP(5353, 53, make([]byte, 60))))},
		// Tunnels: a TCP segment in VXLAN, counted as its outer UDP flow without
		// --decap and by its inner headers with it; plain TCP with --decap.
		{"vxlan-tcp", d.objs.FparserXdp, vxlanFrame(tcpFrame(benchA, 40000, pb.ACK))},
		{"vxlan-tcp-decap", decap.objs.FparserXdp, vxlanFrame(tcpFrame(benchA, 40000, pb.ACK))},
		{"hot-tcp-decap", decap.objs.FparserXdp, tcpFrame(benchA, 40000, pb.ACK)},
		// Attribution is in the TC programs: each with it off, then on (a flow
		// whose directions are decided, as every one is after its first packets;
		// a test run's packet has no socket).
		{"tc-egress-hot-tcp", d.objs.FparserTcEgress, tcpFrame(benchA, 40000, pb.ACK)},
		{"tc-egress-hot-tcp-processes", attributing.objs.FparserTcEgress, tcpFrame(benchA, 40000, pb.ACK)},
		{"tc-ingress-hot-tcp", d.objs.FparserTcIngress, tcpFrame(benchA, 40000, pb.ACK)},
		{"tc-ingress-hot-tcp-processes", attributing.objs.FparserTcIngress, tcpFrame(benchA, 40000, pb.ACK)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			own, theirs := inTenths(b, c.prog, c.frame, ref.Program(), refFrame)
			reportRatio(b, own, theirs)
			reportSize(b, c.prog)
		})
	}

	// The TCP quality's cost over the statistics alone, in turns with the program
	// with statistics only: x-ref is the ratio the target is stated in.
	for _, c := range []struct {
		name  string
		frame []byte
	}{{"quality-over-statistics", tcpFrame(benchA, 40000, pb.ACK)}, {"quality-over-statistics-ack", tcpAck(benchA, 40003)}} {
		b.Run(c.name, func(b *testing.B) {
			own, theirs := inTenths(b, withBoth.objs.FparserXdp, c.frame, withStats.objs.FparserXdp, c.frame)
			reportRatio(b, own, theirs)
		})
	}

	// --decap's cost on a packet that is in no tunnel, in turns with the program
	// without it.
	b.Run("decap-over-plain", func(b *testing.B) {
		frame := tcpFrame(benchA, 40000, pb.ACK)
		own, theirs := inTenths(b, decap.objs.FparserXdp, frame, d.objs.FparserXdp, frame)
		reportRatio(b, own, theirs)
	})

	// One run per packet adds the kernel's per-run overhead: an existing flow timed
	// the same way is the baseline that new-flow compares with.
	b.Run("hot-tcp-single", func(b *testing.B) {
		f := tcpFrame(benchA, 40000, pb.ACK)
		var own, theirs time.Duration
		for range b.N {
			o, r := inTurns(b, d.objs.FparserXdp, f, ref.Program(), refFrame, 1)
			own, theirs = own+o, theirs+r
		}
		reportRatio(b, own, theirs)
	})

	// A new flow per packet: distinct sources, one run each, times summed, into an
	// empty map of its own (a full LRU map evicts on insert, which costs more); the
	// reference inserts the same keys into its own empty map of the same size.
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"new-flow", Config{}}, {"new-flow-statistics", Config{Statistics: true}}, {"new-flow-statistics-quality", Config{Statistics: true, TCPQuality: true}}} {
		b.Run(c.name, func(b *testing.B) {
			b.StopTimer()
			size := uint32(max(2*b.N, 1<<16))
			c.cfg.MaxFlows = size
			d := load(c.cfg)
			ref, err := benchref.Load(size)
			if err != nil {
				b.Fatal(err)
			}
			defer ref.Close()
			frames := make([][]byte, 1<<16)
			for i := range frames {
				src := netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)})
				frames[i] = tcpFrame(src, uint16(1024+i%50000), pb.SYN)
			}
			b.StartTimer()
			var own, theirs time.Duration
			for i := range b.N {
				f := frames[i%len(frames)]
				// Vary the port too, so every run is a new key.
				binary.BigEndian.PutUint16(f[14+20:], uint16(i/len(frames)))
				o, r := inTurns(b, d.objs.FparserXdp, f, ref.Program(), f, 1)
				own, theirs = own+o, theirs+r
			}
			reportRatio(b, own, theirs)
			reportSize(b, d.objs.FparserXdp)
		})
	}
}

// BenchmarkKernelCaptures replays real captures through the XDP program and the
// reference counter in turns, frame by frame (one run per frame, so the kernel's
// per-run overhead is in both), from empty maps each time: flows that start, carry
// a few packets, and end with FIN or RST, as on a real link. The frames are those
// of ../shared/corpus when it is beside the module (the nDPI and Zeek test
// captures), else testdata's. It reports the same ratio as BenchmarkKernelPacket.
func BenchmarkKernelCaptures(b *testing.B) {
	requireBPF(b)
	paths, _ := filepath.Glob("../../testdata/*.pcap*")
	source := "testdata"
	if m, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "corpus", "MANIFEST.tsv")); err == nil {
		paths, source = nil, "../shared/corpus"
		for _, line := range strings.Split(string(m), "\n")[1:] {
			if p, _, _ := strings.Cut(line, "\t"); p != "" {
				paths = append(paths, filepath.Join("..", "..", "..", "shared", "corpus", p))
			}
		}
	}
	var frames [][]byte
	for _, p := range paths {
		if strings.HasSuffix(p, ".csv") {
			continue
		}
		src, err := offline.Open(p)
		if err != nil {
			continue // not a capture fparser reads
		}
		src.Close()
		f, _, _ := readEthernetFrames(b, p)
		frames = append(frames, f...)
	}
	if len(frames) == 0 {
		b.Fatal("no frames")
	}
	b.Logf("%d frames from %d captures of %s", len(frames), len(paths), source)
	load := func(cfg Config) *Datapath { return loadForBench(b, cfg) }
	d, attributing := load(Config{}), load(Config{Owners: true})
	stats, quality := load(Config{Statistics: true}), load(Config{Statistics: true, TCPQuality: true})
	decap := load(Config{Decap: true})
	ref, err := benchref.Load(d.objs.Flows.MaxEntries())
	if err != nil {
		b.Fatal(err)
	}
	defer ref.Close()
	// The XDP program; the TC program (egress), without attribution and with it:
	// no test run's packet has a socket, so each direction of each flow tries its
	// first four packets, as a forwarded flow's do.
	for _, c := range []struct {
		name string
		d    *Datapath
		prog *ebpf.Program
	}{
		{"xdp", d, d.objs.FparserXdp}, {"tc", d, d.objs.FparserTcEgress}, {"tc-processes", attributing, attributing.objs.FparserTcEgress},
		{"xdp-statistics", stats, stats.objs.FparserXdp}, {"xdp-statistics-quality", quality, quality.objs.FparserXdp},
		{"xdp-decap", decap, decap.objs.FparserXdp},
	} {
		b.Run(c.name, func(b *testing.B) {
			run := frames
			if c.prog.Type() == ebpf.SchedCLS {
				// A TC test run refuses a few frames that XDP takes (shorter
				// than an Ethernet header with a payload): those are left out.
				run = nil
				for _, f := range frames {
					if _, _, err := c.prog.Benchmark(f, 1, nil); err == nil {
						run = append(run, f)
					}
				}
				b.Logf("%d of the frames", len(run))
			}
			var own, theirs time.Duration
			for range b.N {
				clearMaps(b, c.d)
				emptyMap(b, ref.Flows())
				for _, f := range run {
					o, r := inTurns(b, c.prog, f, ref.Program(), f, 1)
					own, theirs = own+o, theirs+r
				}
			}
			packets := float64(b.N * len(run))
			b.ReportMetric(float64(own.Nanoseconds())/packets, "ns/packet")
			b.ReportMetric(float64(theirs.Nanoseconds())/packets, "ref-ns/packet")
			b.ReportMetric(float64(own)/float64(theirs), "x-ref")
		})
	}
}

// loadForBench loads a datapath for the benchmark, closed at its end.
func loadForBench(b *testing.B, cfg Config) *Datapath {
	d, err := Load(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// inTurns runs prog on frame n times, then the reference on refFrame n times, and
// returns the kernel's total time for each.
func inTurns(b *testing.B, prog *ebpf.Program, frame []byte, refProg *ebpf.Program, refFrame []byte, n int) (own, theirs time.Duration) {
	_, per, err := prog.Benchmark(frame, n, nil)
	if err != nil {
		b.Fatal(err)
	}
	_, refPer, err := refProg.Benchmark(refFrame, n, nil)
	if err != nil {
		b.Fatal(err)
	}
	return per * time.Duration(n), refPer * time.Duration(n)
}

// reportRatio reports a case's ns per packet, the reference's, and their ratio.
// inTenths runs b.N packets through each of two programs in turns, a tenth of them
// at a time, so that a drift of the machine's speed falls on both, and returns each
// one's time.
func inTenths(b *testing.B, prog *ebpf.Program, frame []byte, ref *ebpf.Program, refFrame []byte) (own, theirs time.Duration) {
	for done := 0; done < b.N; {
		n := min(max(b.N/10, 1), b.N-done)
		o, r := inTurns(b, prog, frame, ref, refFrame, n)
		own, theirs = own+o, theirs+r
		done += n
	}
	return own, theirs
}

func reportRatio(b *testing.B, own, theirs time.Duration) {
	b.ReportMetric(float64(own.Nanoseconds())/float64(b.N), "ns/packet")
	b.ReportMetric(float64(theirs.Nanoseconds())/float64(b.N), "ref-ns/packet")
	if theirs > 0 {
		b.ReportMetric(float64(own)/float64(theirs), "x-ref")
	}
}

// BenchmarkKernelSweep measures the engine's work per flow on the kernel's map: a
// sweep that reads every flow and ends none ("scan"), one that ends them all ("reap",
// lookup-and-delete per flow), and the final flush ("drain", batched).
func BenchmarkKernelSweep(b *testing.B) {
	requireBPF(b)
	for _, n := range []int{100_000, 1_000_000} {
		d, err := Load(Config{MaxFlows: uint32(2 * n)})
		if err != nil {
			b.Fatal(err)
		}
		t := d.Table()
		t.SetTimeouts(userspace.DefaultTimeouts) // the flows were last seen at 1 ns
		for _, op := range []string{"scan", "reap", "drain"} {
			b.Run(op+"/flows="+strconv.Itoa(n), func(b *testing.B) {
				var total time.Duration
				for range b.N {
					b.StopTimer()
					fillMap(b, t, n, 1)
					b.StartTimer()
					began := time.Now()
					seen := 0
					switch op {
					case "scan":
						t.Range(func(*userspace.Key, *userspace.State, *userspace.FlowStats) bool { seen++; return true })
					case "reap":
						t.Expire(math.MaxInt64, func(*userspace.Key, *userspace.State, *userspace.FlowStats, userspace.EndReason, int64) { seen++ })
					case "drain":
						for more := true; more; {
							more = t.Drain(userspace.FlushChunk, func(*userspace.Key, *userspace.State, *userspace.FlowStats) { seen++ })
						}
					}
					total += time.Since(began)
					if seen != n {
						b.Fatalf("%s saw %d of %d flows", op, seen, n)
					}
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/float64(n)/1000, "µs/flow")
			})
		}
		d.Close()
	}
}

// BenchmarkKernelFilter measures the kernel's time per packet (BPF_PROG_TEST_RUN
// with repeat) for typical filters: the filter probe alone ("probe/none" runs the
// placeholder, which accepts everything: the floor), and the whole XDP program on a
// packet of a hot flow without and with "tcp port 443". The filter costs the
// difference.
func BenchmarkKernelFilter(b *testing.B) {
	requireBPF(b)
	frames := []struct {
		name  string
		frame []byte
	}{
		{"ipv4-tcp-443", tcpFrame(benchA, 40000, pb.ACK)},
		{"ipv4-udp-53", pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: benchA, Dst: benchB, Proto: pb.ProtoUDP}.Build(pb.UDP(40000, 53, make([]byte, 40))))},
		{"ipv6-tcp-443", pb.Ethernet(pb.EtherIPv6, nil, pb.IPv6{Src: bench6A, Dst: bench6B, Next: pb.ProtoTCP, PayloadLen: -1}.Build(pb.TCP(40001, 443, pb.ACK, 1, 1, make([]byte, 100))))},
	}
	run := func(b *testing.B, prog *ebpf.Program, frame []byte) {
		_, per, err := prog.Benchmark(frame, b.N, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
	}
	exprs := []string{"", "tcp port 443", "host 198.18.0.2", "net 10.0.0.0/8 and not port 22", "udp port 53 or udp port 5353",
		"tcp[tcpflags] & (tcp-syn|tcp-fin) != 0", "ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) != 0"}
	for _, expr := range exprs {
		var prog *filter.Program
		name := "none"
		if expr != "" {
			var err error
			if prog, err = filter.Compile(expr, filter.Ethernet); err != nil {
				b.Fatal(err)
			}
			name = expr
		}
		probe, err := FilterProbe(prog)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range frames {
			b.Run("probe/"+name+"/"+f.name, func(b *testing.B) { run(b, probe, f.frame) })
		}
		probe.Close()
	}
	for _, expr := range []string{"", "tcp port 443"} {
		var prog *filter.Program
		name := "none"
		if expr != "" {
			prog, _ = filter.Compile(expr, filter.Ethernet)
			name = expr
		}
		d, err := Load(Config{Filter: prog})
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range frames[:2] {
			b.Run("program/"+name+"/"+f.name, func(b *testing.B) { run(b, d.objs.FparserXdp, f.frame) })
		}
		d.Close()
	}
}

// BenchmarkRecords measures the packet history's ring buffer from the reading side:
// "drain" reads records the kernel already wrote into the engine's histories
// (records/s is what userspace can take); "sustained" runs the XDP program on one CPU
// as fast as it goes, a record per packet, while the reader drains on the other, and
// reports what arrived per second and the share the full ring buffer lost.
func BenchmarkRecords(b *testing.B) {
	requireBPF(b)
	frame := tcpFrame(benchA, 40000, pb.ACK)
	newEngine := func(d *Datapath) *userspace.Engine {
		eng := userspace.NewEngine(d.Table(), userspace.DefaultTimeouts)
		eng.SetHistory(userspace.HistoryConfig{Limit: -1})
		return eng
	}
	// drain reads every event into eng until the Flush that follows the last, in
	// batches of up to 256, as the live parser does.
	drain := func(b *testing.B, events *Events, eng *userspace.Engine) (n int) {
		batch := make([]Event, 256)
		for {
			k := 0
			var err error
			for k < len(batch) {
				if err = events.Read(&batch[k]); err != nil {
					break
				}
				if batch[k].Kind == EventPacket {
					k++
					n++
				}
				if !events.Pending() {
					break
				}
			}
			eng.Apply(batch[:k], false)
			if errors.Is(err, ErrFlushed) {
				return n
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}

	b.Run("drain", func(b *testing.B) {
		size := uint32(1 << 12)
		for size < uint32(b.N)*80 {
			size <<= 1
		}
		d, err := Load(Config{HistoryLimit: -1, RingBufferSize: int(size)})
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		if _, _, err := d.objs.FparserXdp.Benchmark(frame, b.N, nil); err != nil {
			b.Fatal(err)
		}
		events, err := d.Events()
		if err != nil {
			b.Fatal(err)
		}
		defer events.Close()
		eng := newEngine(d)
		b.ResetTimer()
		events.Flush()
		if n := drain(b, events, eng); n != b.N {
			b.Fatalf("%d records read, %d sent", n, b.N)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})

	b.Run("sustained", func(b *testing.B) {
		d, err := Load(Config{HistoryLimit: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		events, err := d.Events()
		if err != nil {
			b.Fatal(err)
		}
		defer events.Close()
		eng := newEngine(d)
		got := make(chan int)
		go func() { got <- drain(b, events, eng) }()
		b.ResetTimer()
		if _, _, err := d.objs.FparserXdp.Benchmark(frame, b.N, nil); err != nil {
			b.Fatal(err)
		}
		sent := b.Elapsed()
		events.Flush()
		n := <-got
		c, _ := d.Counters()
		if uint64(n)+c.RecordsLost != uint64(b.N) {
			b.Fatalf("%d records read and %d lost, %d sent", n, c.RecordsLost, b.N)
		}
		b.ReportMetric(float64(n)/sent.Seconds(), "records/s")
		b.ReportMetric(100*float64(c.RecordsLost)/float64(b.N), "%lost")
	})
}

// reportSize reports the size of the program a case measures: the instructions its
// JIT'd code holds (x86-64 only; 0 elsewhere), and those the verifier processed,
// which bounds its paths.
func reportSize(b *testing.B, prog *ebpf.Program) {
	info, err := prog.Info()
	if err != nil {
		b.Fatal(err)
	}
	if verified, ok := info.VerifiedInstructions(); ok {
		b.ReportMetric(float64(verified), "verified-insns")
	}
	if code, ok := info.JitedInsns(); ok && runtime.GOARCH == "amd64" {
		n := 0
		for len(code) > 0 {
			inst, err := x86asm.Decode(code, 64)
			if err != nil || inst.Len == 0 {
				break
			}
			code = code[inst.Len:]
			n++
		}
		b.ReportMetric(float64(n), "jit-insns")
	}
}

// vxlanFrame wraps an Ethernet frame in VXLAN (VNI 42) between two other hosts.
func vxlanFrame(inner []byte) []byte {
	vxlan := append([]byte{0x08, 0, 0, 0, 0, 0, 42, 0}, inner...)
	return pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: netip.AddrFrom4([4]byte{192, 0, 2, 1}), Dst: netip.AddrFrom4([4]byte{192, 0, 2, 2}), Proto: pb.ProtoUDP}.Build(pb.UDP(49152, 4789, vxlan)))
}
