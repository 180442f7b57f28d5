package main

import (
	"bytes"
	"encoding/csv"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/cmd/fparser/testdata/naivemap"
	"github.com/fparser/fparser/internal/flowgen"
)

// TestNaiveMapCountsWhatFparserCounts keeps BenchmarkFlowHeavy's yardstick honest:
// on a small flowgen capture, the naive map finds the 5-tuples fparser finds, with
// the same counters, but where an answer came in fragments, which it does not
// follow.
func TestNaiveMapCountsWhatFparserCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "small.pcap")
	sum, err := flowgen.WriteFile(path, flowgen.Small)
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	st, err := naivemap.Run(path, &out)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkNaive(st, sum); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	naive := map[rowKey]flowCounts{}
	for _, r := range rows[1:] {
		var n flowCounts
		for i := range n {
			n[i], _ = strconv.ParseUint(r[5+i], 10, 64)
		}
		naive[rowKey{r[0], r[1], r[2], r[3], r[4]}] = n
	}

	ours := map[rowKey]flowCounts{}
	add := func(f fparser.Flow) {
		a, b, n := f.Src, f.Dst, flowCounts{f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes}
		if c := a.Addr().Compare(b.Addr()); c > 0 || c == 0 && a.Port() > b.Port() {
			a, b, n = b, a, flowCounts{n[2], n[3], n[0], n[1]}
		}
		k := rowKey{f.Protocol.String(), a.Addr().String(), strconv.Itoa(int(a.Port())), b.Addr().String(), strconv.Itoa(int(b.Port()))}
		o := ours[k]
		for i := range o {
			o[i] += n[i]
		}
		ours[k] = o
	}
	p, err := fparser.Open(path, &fparser.Options{OnTCP: add, OnUDP: add})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}

	if len(naive) != len(ours) {
		t.Errorf("naive map: %d 5-tuples, fparser %d", len(naive), len(ours))
	}
	differ := 0
	for k, o := range ours {
		n, ok := naive[k]
		if !ok {
			t.Errorf("%v: not in the naive map", k)
			continue
		}
		if n != o {
			differ++
			if n[0] != o[0] || n[1] != o[1] || n[2] > o[2] || n[3] > o[3] {
				t.Errorf("%v: naive map %v, fparser %v: more than an answer's later fragments apart", k, n, o)
			}
		}
	}
	if differ > sum.Fragmented {
		t.Errorf("%d 5-tuples differ, only %d have fragments", differ, sum.Fragmented)
	}
}

type rowKey struct{ proto, ipA, portA, ipB, portB string }

// flowCounts are packets and bytes from A to B, then from B to A.
type flowCounts [4]uint64
