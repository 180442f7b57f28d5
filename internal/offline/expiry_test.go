package offline_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/fparser/fparser/internal/offline"
	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/testpackets"
	"github.com/fparser/fparser/internal/userspace"
)

// expiryConfigs are the timeouts the deadline index is checked under: the defaults,
// short ones that end many flows within the captures, and an active timeout.
var expiryConfigs = []userspace.Timeouts{
	userspace.DefaultTimeouts,
	{Idle: 10 * time.Second, FIN: 2 * time.Second},
	{Idle: 60 * time.Second, FIN: 5 * time.Second, Active: 30 * time.Second},
	{Idle: time.Second, FIN: 300 * time.Millisecond, Active: 2 * time.Second},
}

// endedFlows is what an engine reported, in the order it reported it, but for flows
// that ended at the same instant, which are in the order of their keys.
type endedFlows struct {
	recs   []endedFlow
	counts userspace.EngineCounts
}

// endedFlow is a Record without its history, comparable with ==: formatting every
// record as text took most of these tests' time.
type endedFlow struct {
	key    userspace.Key
	state  userspace.State
	stats  userspace.FlowStats
	reason userspace.EndReason
	end    int64
}

func (f endedFlow) String() string {
	return fmt.Sprintf("%x %+v %+v %v %d", f.key, f.state, f.stats, f.reason, f.end)
}

func (f *endedFlows) add(r *userspace.Record) {
	e := endedFlow{key: r.Key, state: r.State, reason: r.Reason, end: r.End}
	if r.Stats != nil {
		e.stats = *r.Stats
	}
	f.recs = append(f.recs, e)
}

// canonical sorts the runs of flows that ended at the same instant: a sweep that ends
// several at once hands them out in the order it finds them, which the deadline index
// and a walk of the table need not share.
func (f *endedFlows) canonical() {
	for i := 0; i < len(f.recs); {
		j := i + 1
		for j < len(f.recs) && f.recs[j].end == f.recs[i].end {
			j++
		}
		slices.SortFunc(f.recs[i:j], func(a, b endedFlow) int {
			x, y := (*[unsafe.Sizeof(a.key)]byte)(unsafe.Pointer(&a.key)), (*[unsafe.Sizeof(b.key)]byte)(unsafe.Pointer(&b.key))
			if c := bytes.Compare(x[:], y[:]); c != 0 {
				return c
			}
			return strings.Compare(a.String(), b.String()) // a flow that ended as the same 5-tuple's next began, rarely
		})
		i = j
	}
}

// replayWith replays a capture with the deadline index, or with the reference walk of
// the whole table (scan), and returns every flow in the order it was handed out.
func replayWith(t *testing.T, path string, to userspace.Timeouts, scan bool) endedFlows {
	t.Helper()
	src, err := offline.Open(path)
	if err != nil {
		t.Skipf("unreadable: %v", err)
	}
	defer src.Close()
	tab := userspace.NewFlowTable(1024)
	if scan {
		tab.ScanExpiry()
	}
	eng := userspace.NewEngine(tab, to)
	dp := offline.NewDatapath(eng, tab, 0)
	dp.KeepStatistics()
	var out endedFlows
	var spare []userspace.Record
	offline.Replay(context.Background(), src, dp, eng, func() {
		recs := eng.TakeEnded(spare)
		for i := range recs {
			out.add(&recs[i])
		}
		if recs != nil {
			spare = recs[:0]
		}
	})
	out.counts = eng.Stats().Counts
	out.counts.Sweeps = userspace.SweepHistogram{}
	return out
}

func compareEnded(t *testing.T, got, want endedFlows) {
	t.Helper()
	got.canonical()
	want.canonical()
	if len(got.recs) != len(want.recs) {
		t.Errorf("%d flows reported, the reference reports %d", len(got.recs), len(want.recs))
	}
	for i := range min(len(got.recs), len(want.recs)) {
		if got.recs[i] != want.recs[i] {
			t.Fatalf("flow %d differs:\n got %s\nwant %s", i, got.recs[i], want.recs[i])
		}
	}
	if got.counts != want.counts {
		t.Errorf("counts %+v, reference %+v", got.counts, want.counts)
	}
}

// TestDeadlineIndexMatchesScan: on every capture of testdata and the corpus, under
// several timeouts, the deadline index ends the same flows as a walk of the whole
// table at every sweep, with the same reasons and end times, handed out in the same
// order (flows that end at the same instant may come in another).
func TestDeadlineIndexMatchesScan(t *testing.T) {
	files := testpackets.Files(t)
	if testing.Short() {
		files = files[:min(len(files), 20)]
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			for _, to := range expiryConfigs {
				compareEnded(t, replayWith(t, path, to, false), replayWith(t, path, to, true))
			}
		})
	}
}

// TestDeadlineIndexMatchesScanRandom drives both with random conversations among few
// endpoints, so that flows end by every reason, reuse their 5-tuples, and see time
// jump past the wheel's span and go backwards.
func TestDeadlineIndexMatchesScanRandom(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		frames, times := randomTraffic(r, 3000, 3)
		compareIndexAndScan(t, fmt.Sprintf("seed=%d", seed), frames, times)
	}
}

// TestDeadlineIndexMatchesScanAcrossShrinks is TestDeadlineIndexMatchesScanRandom
// with bursts of thousands of flows between quiet times of a few, so that the table
// grows and shrinks again and again while flows are active.
func TestDeadlineIndexMatchesScanAcrossShrinks(t *testing.T) {
	for seed := range uint64(2) {
		r := rand.New(rand.NewPCG(seed, 11))
		var frames [][]byte
		var times []int64
		last := int64(0)
		for range 3 {
			// A burst: a frame every 100 µs, among up to 20,000 flows.
			f, ts := randomTraffic(r, 10000, 2500)
			for i := range ts {
				ts[i] = last + int64(i)*100e3
			}
			frames, times = append(frames, f...), append(times, ts...)
			last = ts[len(ts)-1]
			// Then quiet, for an hour or so.
			f, ts = randomTraffic(r, 2000, 3)
			shift := last + 1e9 - ts[0]
			for i := range ts {
				ts[i] += shift
			}
			frames, times = append(frames, f...), append(times, ts...)
			last = ts[len(ts)-1] + 1e9
		}
		compareIndexAndScan(t, fmt.Sprintf("seed=%d", seed), frames, times)
	}
}

// compareIndexAndScan replays frames under every timeout of expiryConfigs, with the
// deadline index and with the scan, and compares the flows they end.
func compareIndexAndScan(t *testing.T, name string, frames [][]byte, times []int64) {
	t.Helper()
	{
		for _, to := range expiryConfigs {
			run := func(scan bool) endedFlows {
				tab := userspace.NewFlowTable(16)
				if scan {
					tab.ScanExpiry()
				}
				eng := userspace.NewEngine(tab, to)
				dp := offline.NewDatapath(eng, tab, 0)
				var out endedFlows
				for i, f := range frames {
					dp.Packet(f, len(f), offline.LinkEthernet, times[i])
				}
				eng.Flush(userspace.EndEndOfCapture, func() {})
				for _, rec := range eng.TakeEnded(nil) {
					out.add(&rec)
				}
				out.counts = eng.Stats().Counts
				out.counts.Sweeps = userspace.SweepHistogram{}
				return out
			}
			t.Run(fmt.Sprintf("%s/%v", name, to), func(t *testing.T) { compareEnded(t, run(false), run(true)) })
		}
	}
}

// randomTraffic returns n frames among a few TCP and UDP endpoints, each with ports
// client ports, with random flags and gaps: mostly short, some of seconds, a few of
// hours (past the wheel's span), and a few timestamps that go backwards.
func randomTraffic(r *rand.Rand, n, ports int) (frames [][]byte, times []int64) {
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")}
	flagChoices := []uint8{pb.SYN, pb.SYN | pb.ACK, pb.ACK, pb.ACK, pb.ACK, pb.FIN | pb.ACK, pb.RST, pb.PSH | pb.ACK}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for range n {
		switch x := r.IntN(1000); {
		case x < 5:
			now += int64(r.IntN(20)) * int64(time.Hour)
		case x < 15:
			now -= int64(r.IntN(3000)) * int64(time.Millisecond)
		case x < 200:
			now += int64(r.IntN(20_000)) * int64(time.Millisecond)
		default:
			now += int64(r.IntN(500)) * int64(time.Millisecond)
		}
		v6 := r.IntN(2) == 1
		a, b := addrs[r.IntN(2)], addrs[r.IntN(2)]
		if v6 {
			a, b = addrs[2+r.IntN(2)], addrs[2+r.IntN(2)]
		}
		sp, dp := uint16(1000+r.IntN(ports)), uint16(80+r.IntN(2))
		if r.IntN(2) == 0 {
			a, b, sp, dp = b, a, dp, sp
		}
		var l4 []byte
		proto := uint8(pb.ProtoUDP)
		if r.IntN(3) != 0 {
			l4, proto = pb.TCP(sp, dp, flagChoices[r.IntN(len(flagChoices))], 1, 1, nil), pb.ProtoTCP
		} else {
			l4 = pb.UDP(sp, dp, nil)
		}
		var f []byte
		if v6 {
			f = pb.Ethernet(pb.EtherIPv6, nil, pb.IPv6{Src: a, Dst: b, Next: proto, PayloadLen: -1}.Build(l4))
		} else {
			f = pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: a, Dst: b, Proto: proto}.Build(l4))
		}
		frames, times = append(frames, f), append(times, now)
	}
	return frames, times
}
