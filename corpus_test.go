package fparser_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testpackets"
)

// flowRow is a flow in the corpus's CSV form: canonical endpoints, a2b/b2a counters.
type flowRow struct {
	pa, ba, pb, bb uint64
}

type rowKey struct {
	proto, ipA, portA, ipB, portB, vlan string
}

// canonicalRow turns a reported flow into the corpus's row key and counters: the
// endpoints ordered IPv4 before IPv6, then by address bytes, then by port.
func canonicalRow(f *fparser.Flow) (rowKey, flowRow) {
	a, b := f.Src, f.Dst
	fa := flowRow{pa: f.Fwd.Packets, ba: f.Fwd.Bytes, pb: f.Rev.Packets, bb: f.Rev.Bytes}
	if c := a.Addr().Compare(b.Addr()); c > 0 || (c == 0 && a.Port() > b.Port()) {
		a, b = b, a
		fa = flowRow{pa: f.Rev.Packets, ba: f.Rev.Bytes, pb: f.Fwd.Packets, bb: f.Fwd.Bytes}
	}
	return rowKey{f.Protocol.String(), a.Addr().String(), strconv.Itoa(int(a.Port())), b.Addr().String(), strconv.Itoa(int(b.Port())), strconv.Itoa(int(f.VLAN))}, fa
}

type manifestRow struct {
	path, format, linktype, features, checked string
	packets                                   int
}

func readManifest(t testing.TB, dir string) []manifestRow {
	f, err := os.Open(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []manifestRow
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 6 {
			continue
		}
		n, _ := strconv.Atoi(c[3])
		rows = append(rows, manifestRow{path: c[0], format: c[1], linktype: c[2], packets: n, features: c[4], checked: c[5]})
	}
	return rows
}

func readExpected(t testing.TB, path string) map[rowKey]flowRow {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[rowKey]flowRow{}
	sc := bufio.NewScanner(f)
	sc.Scan()
	for sc.Scan() {
		c := strings.Split(sc.Text(), ",")
		if len(c) != 10 {
			t.Fatalf("%s: bad row %q", path, sc.Text())
		}
		n := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
		out[rowKey{c[0], c[1], c[2], c[3], c[4], c[9]}] = flowRow{n(c[5]), n(c[6]), n(c[7]), n(c[8])}
	}
	return out
}

// replay runs a capture through the offline path and returns every reported flow.
func replay(t testing.TB, path string, opts *fparser.Options) ([]fparser.Flow, fparser.Info, error) {
	var flows []fparser.Flow
	var o fparser.Options
	if opts != nil {
		o = *opts
	}
	collect := func(f fparser.Flow) { flows = append(flows, f) }
	o.OnTCP, o.OnUDP = collect, collect
	p, err := fparser.Open(path, &o)
	if err != nil {
		return nil, fparser.Info{}, err
	}
	err = p.Wait()
	return flows, p.Info(), err
}

func TestCorpus(t *testing.T) {
	dir := testpackets.CorpusDir(t)
	if dir == "" {
		t.Skip("no ../shared/corpus beside the module: corpus checks skipped")
	}
	rows := readManifest(t, dir)
	var checked, equal int
	for _, row := range rows {
		t.Run(row.path, func(t *testing.T) {
			flows, info, err := replay(t, filepath.Join(dir, row.path), nil)
			if err != nil {
				if row.checked == "yes" {
					t.Fatalf("replay: %v", err)
				}
				if !errors.Is(err, fparser.ErrBadCapture) {
					t.Fatalf("error does not match ErrBadCapture: %v", err)
				}
				t.Logf("unchecked capture fails cleanly: %v", err)
				return
			}
			// Conservation: every accepted packet is in exactly one reported flow.
			var sum uint64
			for i := range flows {
				sum += flows[i].PacketCount()
			}
			if sum != info.PacketsAccepted {
				t.Errorf("reported packets %d != accepted %d", sum, info.PacketsAccepted)
			}
			if info.PacketsSeen != uint64(row.packets) {
				t.Errorf("seen %d packets, manifest says %d", info.PacketsSeen, row.packets)
			}
			if row.checked != "yes" {
				return
			}
			checked++
			want := readExpected(t, filepath.Join(dir, strings.Replace(row.path, "pcaps/", "expected/", 1)+".flows.csv"))
			got := map[rowKey]flowRow{}
			for i := range flows {
				k, c := canonicalRow(&flows[i])
				g := got[k]
				got[k] = flowRow{g.pa + c.pa, g.ba + c.ba, g.pb + c.pb, g.bb + c.bb}
			}
			var diffs []string
			for k, w := range want {
				if g, ok := got[k]; !ok {
					diffs = append(diffs, fmt.Sprintf("missing %v want %v", k, w))
				} else if g != w {
					diffs = append(diffs, fmt.Sprintf("%v: got %v want %v", k, g, w))
				}
			}
			for k, g := range got {
				if _, ok := want[k]; !ok {
					diffs = append(diffs, fmt.Sprintf("extra %v: %v", k, g))
				}
			}
			if len(diffs) > 0 {
				slices.Sort(diffs)
				t.Errorf("%d of %d keys differ (info %+v):\n  %s", len(diffs), len(want), info, strings.Join(diffs[:min(5, len(diffs))], "\n  "))
				return
			}
			equal++
		})
	}
	t.Logf("%d captures, %d checked, %d equal to their expected flows", len(rows), checked, equal)
}
