package fparser_test

import (
	"io"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/offline"
	"github.com/fparser/fparser/internal/testpackets"
)

// expectedStats are a direction's statistics computed here from its packet records,
// the textbook way: two passes over the values, in floating point.
type expectedStats struct {
	sizes, gaps []float64 // bytes; µs
	flags       [8]uint32
	minGap      uint64
	maxGap      uint64
}

func (e *expectedStats) add(p fparser.Packet, prev time.Time) {
	e.sizes = append(e.sizes, float64(p.Length))
	if !prev.IsZero() {
		us := uint64(0)
		if d := p.Time.Sub(prev); d > 0 {
			us = uint64(d / time.Microsecond)
		}
		if len(e.gaps) == 0 {
			e.minGap, e.maxGap = us, us
		}
		e.minGap, e.maxGap = min(e.minGap, us), max(e.maxGap, us)
		e.gaps = append(e.gaps, float64(us))
	}
	for i := range 8 {
		if p.Flags&(1<<i) != 0 {
			e.flags[i]++
		}
	}
}

func meanStddev(v []float64) (mean, sd float64) {
	if len(v) == 0 {
		return 0, 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(v)-1))
}

// monotonic reports whether a capture's timestamps never go back: then the clock the
// datapath keeps (the largest timestamp so far) is each packet's own, and gaps can be
// computed from the records.
func monotonic(t *testing.T, path string) bool {
	src, err := offline.Open(path)
	if err != nil {
		return false
	}
	defer src.Close()
	var f offline.Frame
	var last int64
	for {
		err := src.Next(&f)
		if err == io.EOF {
			return true
		}
		if err != nil || f.Time < last {
			return err != nil
		}
		last = f.Time
	}
}

// TestStatisticsFromPackets: each flow's statistics, kept by the datapath as sums,
// equal those computed here from its packet records, in every capture of testdata
// and of the corpus when present.
func TestStatisticsFromPackets(t *testing.T) {
	flowsChecked, gapsSkipped := 0, 0
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	for _, path := range testpackets.Files(t) {
		name := filepath.Base(path)
		withGaps := monotonic(t, path)
		if !withGaps {
			gapsSkipped++
		}
		var flows []fparser.Flow
		add := func(f fparser.Flow) { flows = append(flows, f) }
		p, err := fparser.New(path, &fparser.Options{Packets: fparser.AllPackets, Statistics: true, OnTCP: add, OnUDP: add, Logger: discard()})
		if err != nil {
			continue // not a capture fparser reads: tested elsewhere
		}
		p.Run(t.Context())
		for _, f := range flows {
			if f.HistoryIncomplete() || f.HistoryLen() != int(f.PacketCount()) {
				t.Fatalf("%s: flow %v-%v: history incomplete", name, f.Src, f.Dst)
			}
			var want [2]expectedStats
			var prev [2]time.Time
			for pk := range f.History() {
				d := 0
				if pk.Reverse {
					d = 1
				}
				want[d].add(pk, prev[d])
				prev[d] = pk.Time
			}
			for d, c := range []fparser.Counters{f.Fwd, f.Rev} {
				w := &want[d]
				if c.Packets == 0 {
					continue
				}
				mean, sd := meanStddev(w.sizes)
				smin, smax := math.Inf(1), 0.0
				for _, x := range w.sizes {
					smin, smax = math.Min(smin, x), math.Max(smax, x)
				}
				if float64(c.Size.Min) != smin || float64(c.Size.Max) != smax || !near(c.Size.Mean, mean) || !near(c.Size.Stddev, sd) {
					t.Errorf("%s: flow %v-%v dir %d: sizes %+v, want min %v max %v mean %v stddev %v", name, f.Src, f.Dst, d, c.Size, smin, smax, mean, sd)
				}
				fc := c.FlagPackets
				if got := [8]uint32{fc.FIN, fc.SYN, fc.RST, fc.PSH, fc.ACK, fc.URG, fc.ECE, fc.CWR}; got != w.flags {
					t.Errorf("%s: flow %v-%v dir %d: flag packets %v, want %v", name, f.Src, f.Dst, d, got, w.flags)
				}
				if !withGaps {
					continue
				}
				gmean, gsd := meanStddev(w.gaps)
				us := func(d time.Duration) float64 { return float64(d) / 1e3 }
				// The Durations hold whole ns: within a ns of the float.
				if uint64(c.Gap.Min/time.Microsecond) != w.minGap || uint64(c.Gap.Max/time.Microsecond) != w.maxGap ||
					math.Abs(us(c.Gap.Mean)-gmean) > 1e-3 || math.Abs(us(c.Gap.Stddev)-gsd) > 1e-3+1e-9*gsd {
					t.Errorf("%s: flow %v-%v dir %d: gaps %+v, want min %dµs max %dµs mean %vµs stddev %vµs", name, f.Src, f.Dst, d, c.Gap, w.minGap, w.maxGap, gmean, gsd)
				}
			}
			flowsChecked++
		}
	}
	if flowsChecked < 25 { // testdata alone has 29
		t.Errorf("only %d flows checked", flowsChecked)
	}
	t.Logf("%d flows checked; %d captures whose timestamps go back had their gaps left out", flowsChecked, gapsSkipped)
}
