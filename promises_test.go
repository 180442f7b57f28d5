package fparser_test

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/filter"
)

// TestSetFilterOnceStopped: SetFilter returns ErrStopped once the parser has been
// stopped or has finished, as ErrStopped's doc says, and still reports a bad
// expression as such.
func TestSetFilterOnceStopped(t *testing.T) {
	for _, how := range []string{"Wait then Close", "Stop", "Close", "Run with a done context"} {
		t.Run(how, func(t *testing.T) {
			p, err := fparser.New("testdata/http.pcap", nil)
			if err != nil {
				t.Fatal(err)
			}
			switch how {
			case "Wait then Close":
				p.Start()
				p.Wait()
				p.Close()
			case "Stop":
				p.Stop()
			case "Close":
				p.Close()
			case "Run with a done context":
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				p.Run(ctx)
			}
			if err := p.SetFilter("tcp"); !errors.Is(err, fparser.ErrStopped) {
				t.Errorf("SetFilter after %s: %v, want ErrStopped", how, err)
			}
			if err := p.SetFilter("tcp port"); !errors.Is(err, fparser.ErrFilter) {
				t.Errorf("SetFilter of a bad expression after %s: %v, want ErrFilter", how, err)
			}
			p.Close()
		})
	}
	p, err := fparser.New("testdata/http.pcap", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.SetFilter("tcp"); err != nil {
		t.Errorf("SetFilter before Start: %v", err)
	}
}

// TestDefaultFilterAgainstNoFilter pins what DefaultFilter's doc says: on untagged
// traffic it counts what no filter counts, with non-IP packets filtered rather than
// non-IP; like libpcap's ip, it does not look past a VLAN tag, where the default
// does (two tags deep), and the expression the doc gives for tagged traffic counts
// what the default does.
func TestDefaultFilterAgainstNoFilter(t *testing.T) {
	type counts struct{ flows, inFlows, filtered, nonIP uint64 }
	run := func(path, expr string) counts {
		flows, info, err := replay(t, path, &fparser.Options{Filter: expr})
		if err != nil {
			t.Fatalf("%s with %q: %v", path, expr, err)
		}
		return counts{uint64(len(flows)), info.PacketsAccepted, info.Filtered, info.NonIP}
	}
	for _, c := range []struct {
		path, expr string
		want       counts
	}{
		{"testdata/http.pcap", "", counts{3, 41, 0, 0}},
		{"testdata/http.pcap", fparser.DefaultFilter, counts{3, 41, 0, 0}},
		{"testdata/vlan.pcap", "", counts{4, 8, 0, 1}},
		{"testdata/vlan.pcap", fparser.DefaultFilter, counts{1, 2, 7, 0}},
		{"testdata/vlan.pcap", "ip or ip6 or (vlan and (ip or ip6 or (vlan and (ip or ip6))))", counts{4, 8, 1, 0}},
	} {
		if got := run(c.path, c.expr); got != c.want {
			t.Errorf("%s with %q: %+v, want %+v", c.path, c.expr, got, c.want)
		}
	}
}

// TestSortOrderCompareSortsAFlowSlice: SortOrder.Compare is what slices.SortFunc
// takes for a []Flow, and FlowsSorted yields the same order; Unsorted is Flows; an
// order that is none of the constants panics, naming itself.
func TestSortOrderCompareSortsAFlowSlice(t *testing.T) {
	// A lone flow, then five of different sizes and rates; a last packet ends the
	// lone one while the five are active.
	const dst = "198.51.100.1:53"
	pkts := []pkt{{at: 0, src: "192.0.2.9:9", dst: dst, payloadLength: 10}}
	for i := range 5 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 1000).String()
		for j := range 1 + (i*3)%5 {
			at := time.Second + time.Duration(i*100+j*(5-i))*time.Millisecond
			pkts = append(pkts, pkt{at: at, src: src, dst: dst, payloadLength: 20 + (7*i)%5*100})
		}
	}
	slices.SortStableFunc(pkts, func(a, b pkt) int { return int(a.at - b.at) })
	pkts = append(pkts, pkt{at: 5500 * time.Millisecond, src: "192.0.2.10:10", dst: dst, payloadLength: 10})
	path := writeCapture(t, pkts)
	var checked bool
	var p *fparser.Parser
	p, err := fparser.New(path, &fparser.Options{FlowTimeout: 5 * time.Second, OnUDP: func(f fparser.Flow) {
		if checked {
			return
		}
		checked = true
		for _, o := range []fparser.SortOrder{fparser.ByPackets, fparser.ByBytes, fparser.ByPacketRate, fparser.ByByteRate} {
			flows := slices.Collect(p.Flows())
			if len(flows) != 5 {
				t.Fatalf("%d flows active when the lone one ended, want 5", len(flows))
			}
			slices.SortFunc(flows, o.Compare)
			got := slices.Collect(p.FlowsSorted(o))
			if !slices.EqualFunc(got, flows, func(a, b fparser.Flow) bool { return a.Src == b.Src }) {
				t.Errorf("%v: FlowsSorted and slices.SortFunc(flows, o.Compare) disagree", o)
			}
			if !slices.IsSortedFunc(got, o.Compare) || slices.IsSortedFunc(got, func(a, b fparser.Flow) int { return -o.Compare(a, b) }) {
				t.Errorf("%v: not sorted, largest first", o)
			}
		}
		if got, want := slices.Collect(p.FlowsSorted(fparser.Unsorted)), slices.Collect(p.Flows()); !slices.EqualFunc(got, want, func(a, b fparser.Flow) bool { return a.Src == b.Src }) {
			t.Error("FlowsSorted(Unsorted) is not Flows")
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil || !checked {
		t.Fatalf("Run: %v; checked %v", err, checked)
	}
	if fparser.Unsorted.String() != "unsorted" || fparser.SortOrder(9).String() != "SortOrder(9)" {
		t.Errorf("names %q, %q", fparser.Unsorted, fparser.SortOrder(9))
	}
	defer func() {
		if r, _ := recover().(string); !strings.Contains(r, "SortOrder(9)") {
			t.Errorf("FlowsSorted(SortOrder(9)): panic %q, want one that names SortOrder(9)", r)
		}
	}()
	p.FlowsSorted(fparser.SortOrder(9))
}

// TestKillCallbackRule: OnKill runs once for every parser New or Open returned,
// however it ended, a capture that fails in Wait included, and never when New or
// Open returns an error.
func TestKillCallbackRule(t *testing.T) {
	text := writeTemp(t, "notes.txt", []byte("not a capture\n"))
	kills := 0
	if _, err := fparser.Open(text, &fparser.Options{OnKill: func() { kills++ }}); !errors.Is(err, fparser.ErrBadCapture) || kills != 0 {
		t.Errorf("Open of a text file: %v, kill callback ran %d times; want ErrBadCapture, 0", err, kills)
	}
	// A pcapng whose first interface is 802.11 (link type 105): the file opens,
	// and the fault surfaces at its first packet.
	p, err := fparser.Open(writeTemp(t, "wifi.pcapng", wifiPcapng()), &fparser.Options{OnKill: func() { kills++ }})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := p.Wait(); !errors.Is(err, fparser.ErrUnsupportedLink) || kills != 1 {
		t.Errorf("Wait: %v, kill callback ran %d times; want ErrUnsupportedLink, 1", err, kills)
	}
	p.Close()
	if kills != 1 {
		t.Errorf("kill callback ran %d times after Close, want 1", kills)
	}
}

// wifiPcapng is a pcapng section with one 802.11 interface and one packet on it.
func wifiPcapng() []byte {
	var b []byte
	block := func(typ uint32, body []byte) {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		n := uint32(12 + len(body))
		b = binary.LittleEndian.AppendUint32(b, typ)
		b = binary.LittleEndian.AppendUint32(b, n)
		b = append(b, body...)
		b = binary.LittleEndian.AppendUint32(b, n)
	}
	shb := binary.LittleEndian.AppendUint32(nil, 0x1A2B3C4D)
	shb = binary.LittleEndian.AppendUint16(shb, 1)
	shb = binary.LittleEndian.AppendUint16(shb, 0)
	shb = binary.LittleEndian.AppendUint64(shb, ^uint64(0))
	block(0x0A0D0D0A, shb)
	idb := binary.LittleEndian.AppendUint16(nil, 105)
	idb = binary.LittleEndian.AppendUint16(idb, 0)
	idb = binary.LittleEndian.AppendUint32(idb, 65535)
	block(1, idb)
	frame := make([]byte, 24)
	epb := binary.LittleEndian.AppendUint32(nil, 0)
	epb = binary.LittleEndian.AppendUint32(epb, 0)
	epb = binary.LittleEndian.AppendUint32(epb, 1)
	epb = binary.LittleEndian.AppendUint32(epb, uint32(len(frame)))
	epb = binary.LittleEndian.AppendUint32(epb, uint32(len(frame)))
	block(6, append(epb, frame...))
	return b
}

// TestRunReturnsTheContextsError: Run that ctx ends returns ctx.Err(), as WaitContext
// does; Run that the source ends returns nil, and so do both once the parser has
// finished, whatever their context says.
func TestRunReturnsTheContextsError(t *testing.T) {
	p, err := fparser.New("testdata/http.pcap", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context: %v, want context.Canceled", err)
	}
	if err := p.WaitContext(ctx); err != nil {
		t.Errorf("WaitContext once finished: %v, want the capture's error, nil", err)
	}
	q, err := fparser.New("testdata/http.pcap", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Errorf("Run to the end: %v", err)
	}
	if err := q.Run(ctx); err != nil {
		t.Errorf("Run with a cancelled context on a finished parser: %v, want its result, nil", err)
	}
}

// TestOptionsForTheOtherSource: an option for the other kind of source is refused
// with an *OptionError that names it, rather than ignored; so are values out of
// range, one rule each.
func TestOptionsForTheOtherSource(t *testing.T) {
	for _, tc := range []struct {
		source string
		opts   fparser.Options
		option string
	}{
		{"testdata/http.pcap", fparser.Options{MaxFlows: 10}, "MaxFlows"},
		{"testdata/http.pcap", fparser.Options{Attach: "xdp"}, "Attach"},
		{"testdata/http.pcap", fparser.Options{PinDir: "/sys/fs/bpf/x"}, "PinDir"},
		{"testdata/http.pcap", fparser.Options{RingBufferSize: 1 << 16}, "RingBufferSize"},
		{"testdata/http.pcap", fparser.Options{CoarseClock: true}, "CoarseClock"},
		{"lo", fparser.Options{ReplaySpeed: 2}, "ReplaySpeed"},
		{"lo", fparser.Options{Snaplen: 96}, "Snaplen"},
		{"lo", fparser.Options{Attach: "tc-legacy", PinDir: "/sys/fs/bpf/x"}, "Attach"},
		{"lo", fparser.Options{Attach: "ebpf"}, "Attach"},
		{"lo", fparser.Options{RingBufferSize: 1000}, "RingBufferSize"},
		{"testdata/http.pcap", fparser.Options{FinTimeout: -1}, "FinTimeout"},
		{"testdata/http.pcap", fparser.Options{Packets: -2}, "Packets"},
	} {
		_, err := fparser.New(tc.source, &tc.opts)
		var oe *fparser.OptionError
		if !errors.As(err, &oe) || oe.Option != tc.option || !errors.Is(err, fparser.ErrOption) || !strings.Contains(err.Error(), tc.option) {
			t.Errorf("New(%q, %+v): %v, want an *OptionError for %s", tc.source, tc.opts, err, tc.option)
		}
	}
}

// TestSources: a directory, a missing name and standard input ("-") are told apart.
func TestSources(t *testing.T) {
	if _, err := fparser.New("testdata", nil); !errors.Is(err, syscall.EISDIR) || errors.Is(err, fparser.ErrNoSource) || !strings.Contains(err.Error(), "testdata: is a directory") {
		t.Errorf("a directory: %v", err)
	}
	if _, err := fparser.New("testdata/nothing-here.pcap", nil); !errors.Is(err, fparser.ErrNoSource) {
		t.Errorf("a missing file: %v", err)
	}
	f, err := os.Open("testdata/dns.pcap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stdin := os.Stdin
	os.Stdin = f
	var n int
	count := func(fparser.Flow) { n++ }
	p, err := fparser.Open(fparser.Stdin, &fparser.Options{OnTCP: count, OnUDP: count})
	os.Stdin = stdin
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil || n != len(mustFlows(t, "testdata/dns.pcap")) || n == 0 {
		t.Errorf("standard input: %v, %d flows", err, n)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Errorf("the parser closed standard input: %v", err)
	}
}

// mustFlows replays path and returns its flows.
func mustFlows(t *testing.T, path string) []fparser.Flow {
	t.Helper()
	var flows []fparser.Flow
	add := func(f fparser.Flow) { flows = append(flows, f) }
	p, err := fparser.Open(path, &fparser.Options{OnTCP: add, OnUDP: add})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	return flows
}

// TestCompileFilter: the program is the one for the capture's link type, and the
// default filter when the expression is empty.
func TestCompileFilter(t *testing.T) {
	eth, err := fparser.CompileFilter("", "")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filter.Compile(fparser.DefaultFilter, filter.Ethernet)
	if eth.DDD() != want.DDD() {
		t.Errorf("the empty expression on Ethernet:\n%s\nwant\n%s", eth.DDD(), want.DDD())
	}
	if _, err := fparser.CompileFilter("tcp", "testdata/nothing-here.pcap"); err == nil {
		t.Error("a missing capture compiled")
	}
	if _, err := fparser.CompileFilter("tcp prot 80", ""); !errors.Is(err, fparser.ErrFilter) {
		t.Errorf("a bad expression: %v", err)
	}
}

// TestVersion: the kernel object's id is its hash, and a test binary of the module
// has a module version to show.
func TestVersion(t *testing.T) {
	v := fparser.Version()
	if len(v.KernelObject) != 12 || v.Module == "" || !strings.HasPrefix(v.Go, "go") || !strings.Contains(v.String(), v.KernelObject) {
		t.Errorf("Version() = %+v, %q", v, v.String())
	}
}

// TestFlowsAtTheEndComeInTimeOrder: the flows the end of a capture ends come out in
// the order of their last packet, then their first, not in the table's order; the
// flows a stop ends likewise.
func TestFlowsAtTheEndComeInTimeOrder(t *testing.T) {
	paths, _ := filepath.Glob("testdata/*.pcap*")
	seen := 0
	for _, path := range paths {
		if strings.HasSuffix(path, ".csv") {
			continue
		}
		var atEnd []fparser.Flow
		for _, f := range mustFlows(t, path) {
			if f.EndReason == fparser.EndEndOfCapture {
				atEnd = append(atEnd, f)
			}
		}
		seen += len(atEnd)
		if !slices.IsSortedFunc(atEnd, func(a, b fparser.Flow) int {
			return cmp.Or(a.LastSeen.Compare(b.LastSeen), a.FirstSeen.Compare(b.FirstSeen))
		}) {
			for _, f := range atEnd {
				t.Logf("%v %v %v", f.Src, f.FirstSeen, f.LastSeen)
			}
			t.Errorf("%s: the flows ended at the end of the capture are not in the order of their last packets", path)
		}
	}
	if seen < 20 {
		t.Errorf("only %d flows ended at the end of the captures", seen)
	}
}
