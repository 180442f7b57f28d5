package offline

import (
	"bufio"
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fparser/fparser/filter"
	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/userspace"
)

// The benchmark workload: benchFlows flows, all active at once, whose packets take
// turns (flow 0, 1, ..., benchFlows-1, 0, 1, ...) so that every packet lands on a
// different flow than the one before: the cache-unfriendly case. A quarter are IPv6,
// half are TCP; packets alternate direction; the capture spans 10 s.
const (
	benchFlows   = 100_000
	benchPackets = 1_000_000
)

var benchCapture struct {
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchCapture.path != "" {
		os.RemoveAll(filepath.Dir(benchCapture.path))
	}
	os.Exit(code)
}

func benchFile(b *testing.B) string {
	benchCapture.once.Do(func() {
		dir, err := os.MkdirTemp("", "fparser-bench-")
		if err != nil {
			benchCapture.err = err
			return
		}
		benchCapture.path = filepath.Join(dir, "bench.pcap")
		benchCapture.err = writeBenchCapture(benchCapture.path)
	})
	if benchCapture.err != nil {
		b.Fatal(benchCapture.err)
	}
	return benchCapture.path
}

func writeBenchCapture(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	defer bw.Flush()
	w := pcapgo.NewWriterNanos(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	frames := make([][2][]byte, benchFlows)
	for i := range frames {
		var src, dst netip.Addr
		if i%4 == 3 {
			var a, c [16]byte
			a[0], a[1], c[0], c[1] = 0x20, 0x01, 0x20, 0x01
			binary.BigEndian.PutUint32(a[12:], uint32(i))
			c[15] = 1
			src, dst = netip.AddrFrom16(a), netip.AddrFrom16(c)
		} else {
			src = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			dst = netip.AddrFrom4([4]byte{192, 0, 2, 1})
		}
		sport, dport := uint16(1024+i%60000), uint16(443)
		for dir := range 2 {
			s, d, sp, dp := src, dst, sport, dport
			if dir == 1 {
				s, d, sp, dp = dst, src, dport, sport
			}
			payload := make([]byte, 20+i%40)
			var l4 []byte
			proto := uint8(pb.ProtoUDP)
			if i%2 == 0 {
				l4, proto = pb.TCP(sp, dp, pb.ACK, 1, 1, payload), pb.ProtoTCP
			} else {
				l4 = pb.UDP(sp, dp, payload)
			}
			if s.Is4() {
				frames[i][dir] = pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: s, Dst: d, Proto: proto}.Build(l4))
			} else {
				frames[i][dir] = pb.Ethernet(pb.EtherIPv6, nil, pb.IPv6{Src: s, Dst: d, Next: proto, PayloadLen: -1}.Build(l4))
			}
		}
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	step := 10 * time.Second / benchPackets
	for n := range benchPackets {
		fr := frames[n%benchFlows][(n/benchFlows)%2]
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(n) * step), CaptureLength: len(fr), Length: len(fr)}
		if err := w.WritePacket(ci, fr); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkReplay replays the workload through the whole offline path: reading the
// file, parsing, the flow table, sweeps, the final flush and handing out the ended
// flows. One op is one replay of the file.
func BenchmarkReplay(b *testing.B) { replayBench(b, "", 0, false, benchFlows, benchPackets) }

// BenchmarkReplayStatistics is BenchmarkReplay keeping each direction's statistics
// (Options.Statistics).
func BenchmarkReplayStatistics(b *testing.B) { replayBench(b, "", 0, true, benchFlows, benchPackets) }

// BenchmarkReplayHistory is BenchmarkReplay keeping every packet's headers
// (Options.Packets = AllPackets): the history's cost per packet and its size.
func BenchmarkReplayHistory(b *testing.B) { replayBench(b, "", -1, false, benchFlows, benchPackets) }

// BenchmarkReplayFiltered is BenchmarkReplay with a filter that keeps the TCP half
// of the workload: the filter's cost per packet is the difference.
func BenchmarkReplayFiltered(b *testing.B) {
	for _, expr := range []string{"tcp port 443", "net 10.0.0.0/8 and tcp[tcpflags] & tcp-ack != 0"} {
		b.Run(expr, func(b *testing.B) { replayBench(b, expr, 0, false, benchFlows/2, benchPackets/2) })
	}
}

func replayBench(b *testing.B, expr string, history int, stats bool, wantFlows, wantPackets int) {
	path := benchFile(b)
	var f *filter.Filter
	if expr != "" {
		var err error
		if f, err = filter.Parse(expr); err != nil {
			b.Fatal(err)
		}
	}
	var ms0, ms1 runtime.MemStats
	var mallocs uint64
	var stored, storedBytes int
	for b.Loop() {
		b.StopTimer()
		src, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		tab := userspace.NewFlowTable(0) // grows as a real run does
		eng := userspace.NewEngine(tab, userspace.DefaultTimeouts)
		eng.SetHistory(userspace.HistoryConfig{Limit: history})
		dp := NewDatapath(eng, tab, 0)
		if stats {
			dp.KeepStatistics()
		}
		if f != nil {
			err = dp.SetFilter(f, false, LinkEthernet)
			if err != nil {
				b.Fatal(err)
			}
		}
		ended := 0
		var spare []userspace.Record
		stored, storedBytes = 0, 0
		runtime.ReadMemStats(&ms0)
		b.StartTimer()

		// Hand ended flows out as the Parser does, reusing one buffer.
		err = Replay(context.Background(), src, dp, eng, func() {
			if recs := eng.TakeEnded(spare); recs != nil {
				ended += len(recs)
				for i := range recs {
					if h := recs[i].History; h != nil {
						stored += h.Len()
						storedBytes += h.Size()
					}
				}
				spare = recs[:0]
			}
		})

		b.StopTimer()
		runtime.ReadMemStats(&ms1)
		mallocs += ms1.Mallocs - ms0.Mallocs
		if accepted := dp.Counters().Accepted; err != nil || ended != wantFlows || accepted != uint64(wantPackets) {
			b.Fatalf("%v: %d flows, %d packets accepted", err, ended, accepted)
		}
		src.Close()
		b.StartTimer()
	}
	perPacket := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / benchPackets
	b.ReportMetric(perPacket, "ns/packet")
	b.ReportMetric(1e9/perPacket, "packets/s")
	b.ReportMetric(float64(mallocs)/float64(b.N)/benchPackets, "allocs/packet")
	if expr == "" && history == 0 && !stats {
		b.ReportMetric(heapPerFlow(b, path), "heap-B/flow")
	}
	if history != 0 {
		if stored != wantPackets {
			b.Fatalf("%d packets stored, want %d", stored, wantPackets)
		}
		b.ReportMetric(float64(storedBytes)/float64(stored), "history-B/packet")
	}
}

// heapPerFlow replays the workload up to its last packet, with every flow still
// active, and returns the live heap it took per flow.
func heapPerFlow(b *testing.B, path string) float64 {
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	src, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	tab := userspace.NewFlowTable(0)
	eng := userspace.NewEngine(tab, userspace.DefaultTimeouts)
	dp := NewDatapath(eng, tab, 0)
	var f Frame
	for src.Next(&f) == nil {
		dp.Packet(f.Data, f.Wire, f.LinkType, f.Time)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	if tab.Len() != benchFlows {
		b.Fatalf("%d flows active", tab.Len())
	}
	runtime.KeepAlive(dp)
	return float64(ms1.HeapAlloc-ms0.HeapAlloc) / float64(tab.Len())
}

// BenchmarkReadOnly reads the workload's file and touches nothing else: the floor that
// the reader alone sets.
func BenchmarkReadOnly(b *testing.B) {
	path := benchFile(b)
	for b.Loop() {
		src, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		var f Frame
		n := 0
		for src.Next(&f) == nil {
			n++
		}
		src.Close()
		if n != benchPackets {
			b.Fatalf("%d packets", n)
		}
	}
	perPacket := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / benchPackets
	b.ReportMetric(perPacket, "ns/packet")
	b.ReportMetric(1e9/perPacket, "packets/s")
}

// BenchmarkDatapath counts frames already in memory and parsed, a batch at a time as
// a replay does: key, table, update, with no reading. "flows=N" takes N flows in turn.
func BenchmarkDatapath(b *testing.B) {
	for _, nflows := range []int{1, 1000, benchFlows} {
		b.Run("flows="+itoa(nflows), func(b *testing.B) {
			tab := userspace.NewFlowTable(nflows)
			eng := userspace.NewEngine(tab, userspace.DefaultTimeouts)
			dp := NewDatapath(eng, tab, 0)
			// Batches of 1024 packets that take the flows in turn, parsed once;
			// their times are set afresh for each count.
			const size = 1024
			fp := frameParser{dp: dp}
			fp.refresh()
			var batches []*packets
			for first := 0; first < max(nflows, size); first += size {
				pk := &packets{dp: dp, parsed: make([]Parsed, size)}
				for i := range size {
					n := (first + i) % nflows
					src := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
					f := pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src, Dst: netip.MustParseAddr("192.0.2.1"), Proto: pb.ProtoUDP}.Build(pb.UDP(1000, 53, make([]byte, 20))))
					fp.parse(&pk.parsed[i], nil, nil, f, len(f), LinkEthernet, 0, 1)
				}
				batches = append(batches, pk)
			}
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
			b.ReportAllocs()
			now := t0
			count := 0
			for b.Loop() {
				pk := batches[count%len(batches)]
				for i := range pk.parsed {
					now++
					pk.parsed[i].ts = now
				}
				for i := 0; i < size; {
					i = eng.Count(pk, i)
				}
				count++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(count*size), "ns/packet")
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// BenchmarkPcapgoAlone reads the workload's file with pcapgo's zero-copy reader and
// nothing of ours: the floor for any reader built on it.
func BenchmarkPcapgoAlone(b *testing.B) {
	path := benchFile(b)
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		r, err := pcapgo.NewReader(bufio.NewReaderSize(f, readBuffer))
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			if _, _, err := r.ZeroCopyReadPacketData(); err != nil {
				break
			}
			n++
		}
		f.Close()
		if n != benchPackets {
			b.Fatalf("%d packets", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchPackets, "ns/packet")
}
