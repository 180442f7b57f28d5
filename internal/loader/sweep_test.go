package loader

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/userspace"
)

const sec = int64(time.Second)

// sweepTimeouts are short, so that the tests' flows end within a few seconds of the
// test clock.
var sweepTimeouts = userspace.Timeouts{Idle: 10 * time.Second, FIN: 2 * time.Second}

// testClockDatapath loads the datapath with the clock the tests set, and the tests'
// timeouts.
func testClockDatapath(t *testing.T) (*Datapath, *Table) {
	t.Helper()
	requireBPF(t)
	d, err := Load(Config{testClock: true, Timeouts: sweepTimeouts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	tab := d.Table()
	tab.SetTimeouts(sweepTimeouts)
	return d, tab
}

// sendAt runs a TCP packet from benchA:sport to benchB:443 through the XDP program at
// time at of the test clock.
func sendAt(t *testing.T, d *Datapath, at int64, sport uint16, flags uint8) {
	t.Helper()
	if err := d.objs.TestNow.Set(uint64(at)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.objs.FparserXdp.Run(&ebpf.RunOptions{Data: tcpFrame(benchA, sport, flags)}); err != nil {
		t.Fatal(err)
	}
}

func keyOf(sport uint16) userspace.Key {
	return userspace.KeyOf(userspace.ProtoTCP, 0, netip.AddrPortFrom(benchA, sport), netip.AddrPortFrom(benchB, 443))
}

type endedFlow struct {
	reason userspace.EndReason
	end    int64
}

func expire(tab *Table, now int64) map[userspace.Key]endedFlow {
	got := map[userspace.Key]endedFlow{}
	tab.Expire(now, func(k *userspace.Key, _ *userspace.State, _ *userspace.FlowStats, reason userspace.EndReason, end int64) {
		got[*k] = endedFlow{reason, end}
	})
	return got
}

// TestSweepEndsFlowsAtTheirDeadline: a FIN-marked flow is filed in the key wheel and
// ends at its deadline, in the first sweep after it, though the walk of a map of 50,000
// flows reads only a slice of it per sweep; a flow a sweep finds due late ends with
// its deadline as its end time, not the sweep's; a flow kept busy does not end.
func TestSweepEndsFlowsAtTheirDeadline(t *testing.T) {
	d, tab := testClockDatapath(t)
	t0 := int64(1e18)
	fillMap(t, tab, 50_000, t0+60*sec) // others, busy until long after
	sendAt(t, d, t0, 1000, pb.ACK)     // idle: ends at t0+10s
	sendAt(t, d, t0, 2000, pb.ACK)
	sendAt(t, d, t0+sec, 2000, pb.FIN|pb.ACK) // fin: ends at t0+3s
	k2 := keyOf(2000)
	tab.Mark(&k2, t0+sec+int64(sweepTimeouts.FIN)) // the kernel's event, as the engine passes it on
	sendAt(t, d, t0, 3000, pb.ACK)

	if got := expire(tab, t0+2*sec); len(got) != 0 {
		t.Fatalf("at 2 s: %v ended", got)
	}
	if _, filed := tab.marks.filed[k2]; !filed {
		t.Fatal("the FIN'd flow is not filed in the key wheel")
	}
	got := expire(tab, t0+3*sec+int64(wheelWidth))
	if got[k2] != (endedFlow{userspace.EndFIN, t0 + 3*sec}) {
		t.Fatalf("at 3.1 s: %v, want the FIN'd flow, ended at 3 s", got)
	}
	if seen := tab.sweep.seen; seen >= 50_000 {
		t.Fatalf("the walk read %d flows in two sweeps: not a slice", seen)
	}
	sendAt(t, d, t0+9*sec, 3000, pb.ACK) // busy until 19 s
	ended := map[userspace.Key]endedFlow{}
	for range 200 { // enough sweeps for whole walks
		for k, e := range expire(tab, t0+25*sec) {
			ended[k] = e
		}
	}
	if len(ended) != 2 || ended[keyOf(1000)] != (endedFlow{userspace.EndIdle, t0 + 10*sec}) || ended[keyOf(3000)] != (endedFlow{userspace.EndIdle, t0 + 19*sec}) {
		t.Fatalf("at 25 s: %v, want both idle flows, ended at 10 s and 19 s", ended)
	}
}

// TestKernelEndsAnExpiredFlowAtItsNextPacket: a flow whose timeout passed while no
// sweep came ends in the kernel when its next packet arrives, with its deadline as
// its end time, and the packet starts a new flow: however late a sweep comes, two
// flows are never merged into one.
func TestKernelEndsAnExpiredFlowAtItsNextPacket(t *testing.T) {
	d, tab := testClockDatapath(t)
	events, err := d.Events()
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	t0 := int64(1e18)
	sendAt(t, d, t0, 4000, pb.ACK)
	sendAt(t, d, t0+sec, 4000, pb.ACK)
	sendAt(t, d, t0+11*sec+1, 4000, pb.ACK) // a nanosecond after the idle deadline
	events.Flush()
	var ended []Event
	for {
		var ev Event
		err := events.Read(&ev)
		if errors.Is(err, ErrFlushed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == EventEnded {
			ended = append(ended, ev)
		}
	}
	if len(ended) != 1 || ended[0].Reason != userspace.EndIdle || ended[0].Time != t0+11*sec || ended[0].State.Packets() != 2 {
		t.Fatalf("ended events %+v, want one: idle, at 11 s, with 2 packets", ended)
	}
	k := keyOf(4000)
	s, _, ok := tab.Lookup(&k)
	if !ok || s.Packets() != 1 || s.FirstSeen() != t0+11*sec+1 {
		t.Fatalf("the flow in the map: %+v (found %v), want a new one of 1 packet", s, ok)
	}
}

// TestSweepWalksTheMapInSlices: the walk of a large map is spread over several
// sweeps, each a bounded slice, and ends every due flow exactly once, with its
// deadline as its end time.
func TestSweepWalksTheMapInSlices(t *testing.T) {
	_, tab := testClockDatapath(t)
	const n = 20_000
	t0 := int64(1e18)
	fillMap(t, tab, n, t0)
	ended := map[userspace.Key]int{}
	calls := 0
	for len(ended) < n && calls < 1000 {
		calls++
		tab.Expire(t0+20*sec, func(k *userspace.Key, _ *userspace.State, _ *userspace.FlowStats, reason userspace.EndReason, end int64) {
			ended[*k]++
			if reason != userspace.EndIdle || end != t0+10*sec {
				t.Fatalf("ended %v at %d, want idle at %d", reason, end, t0+10*sec)
			}
		})
	}
	for k, c := range ended {
		if c != 1 {
			t.Fatalf("%v ended %d times", k, c)
		}
	}
	if len(ended) != n || calls < 2 {
		t.Errorf("%d of %d flows ended in %d sweeps; want all, in slices", len(ended), n, calls)
	}
}

// fillMap puts n distinct TCP flows into the kernel's map from userspace, each with
// one packet at time last.
func fillMap(tb testing.TB, t *Table, n int, last int64) {
	keys := make([]userspace.Key, 0, 8192)
	states := make([]userspace.State, 0, 8192)
	for i := range n {
		var k userspace.Key
		k.A[10], k.A[11], k.B[10], k.B[11] = 0xff, 0xff, 0xff, 0xff
		binary.BigEndian.PutUint32(k.A[12:], 0x0a000000+uint32(i))
		binary.BigEndian.PutUint32(k.B[12:], 0xc6120001)
		k.PortA, k.PortB, k.Proto = 1024, 443, userspace.ProtoTCP
		keys = append(keys, k)
		states = append(states, userspace.State{Dir: [2]userspace.Counters{{Packets: 1, Bytes: 60, First: last, Last: last}}})
		if len(keys) == cap(keys) || i == n-1 {
			if _, err := t.m.BatchUpdate(keys, states, nil); err != nil {
				tb.Fatal(err)
			}
			keys, states = keys[:0], states[:0]
		}
	}
}

// BenchmarkLiveSweep measures the sweeper on the kernel's map at 100k and 1M active
// flows in steady state: the engine's Tick, as the live parser calls it every 100 ms,
// run back to back on a clock that advances 100 ms a tick. It reports the share of a
// core the sweeper takes (its time per tick over the 100 ms of a tick) and the time a
// whole walk of the map takes at that pace, which bounds how late a flow that no
// event filed can end. "fin" has a tenth of the flows marked by FIN events, with
// deadlines spread over the run, so that those end as the clock reaches them.
func BenchmarkLiveSweep(b *testing.B) {
	requireBPF(b)
	for _, n := range []int{100_000, 1_000_000} {
		for _, kind := range []string{"steady", "fin"} {
			b.Run(kind+"/flows="+itoaB(n), func(b *testing.B) {
				d, err := Load(Config{MaxFlows: uint32(2 * n)})
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				tab := d.Table()
				eng := userspace.NewEngine(tab, userspace.DefaultTimeouts)
				const ticks = 600 // a minute of ticks
				tick := int64(100 * time.Millisecond)
				t0 := int64(1e18)
				var took time.Duration
				var ended, passes, ticksRun int
				for range b.N {
					b.StopTimer()
					fillMap(b, tab, n, t0)
					if kind == "fin" {
						for i := range n / 10 {
							var k userspace.Key
							k.A[10], k.A[11], k.B[10], k.B[11] = 0xff, 0xff, 0xff, 0xff
							binary.BigEndian.PutUint32(k.A[12:], 0x0a000000+uint32(i))
							binary.BigEndian.PutUint32(k.B[12:], 0xc6120001)
							k.PortA, k.PortB, k.Proto = 1024, 443, userspace.ProtoTCP
							// Their last packet at t0: they are due at these times.
							eng.Apply([]userspace.Event{{Kind: userspace.EventMark, Key: k, Time: t0 + int64(i%ticks)*tick - int64(userspace.DefaultTimeouts.FIN)}}, false)
							var st userspace.State
							st.Dir[0] = userspace.Counters{Packets: 1, Bytes: 60, First: t0 - int64(userspace.DefaultTimeouts.FIN) + int64(i%ticks)*tick, Last: t0 - int64(userspace.DefaultTimeouts.FIN) + int64(i%ticks)*tick}
							st.Marks = userspace.MarkFIN
							if err := tab.m.Update(&k, &st, ebpf.UpdateExist); err != nil {
								b.Fatal(err)
							}
						}
					}
					walks := tab.sweep.walks
					b.StartTimer()
					for i := range ticks {
						began := time.Now()
						eng.Tick(t0 + int64(i)*tick)
						took += time.Since(began)
						ended += len(eng.TakeEnded(nil))
					}
					ticksRun += ticks
					passes += tab.sweep.walks - walks
					b.StopTimer()
					for tab.Drain(batch, func(*userspace.Key, *userspace.State, *userspace.FlowStats) {}) {
					}
					b.StartTimer()
				}
				b.ReportMetric(100*took.Seconds()/(float64(ticksRun)*0.1), "%core")
				if passes > 0 {
					b.ReportMetric(float64(ticksRun)*0.1/float64(passes), "s/walk")
				}
				b.ReportMetric(float64(ended)/float64(b.N), "ended/run")
			})
		}
	}
}

func itoaB(n int) string {
	if n%1_000_000 == 0 {
		return strconv.Itoa(n/1_000_000) + "M"
	}
	return strconv.Itoa(n/1000) + "k"
}
