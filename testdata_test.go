package fparser_test

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/fparser/fparser"
)

// oracleDeviations are where fparser and the tshark oracle disagree on testdata by
// design (DESIGN section 2). The value is what fparser must report for the key; a
// zero flowRow means the key must be absent.
var oracleDeviations = map[string]map[rowKey]flowRow{
	// Nine extension headers exceed the fixed walk bound of 8: other L4, no flow.
	"ipv6ext.pcap": {{"udp", "2001:db8::1", "33002", "2001:db8::2", "53", "0"}: {}},
	// tshark counts a TCP header that the IP total length cuts short, and a data
	// offset past the IP length; fparser counts both as malformed.
	"truncated.pcap": {{"tcp", "192.0.2.1", "42000", "192.0.2.2", "80", "0"}: {1, 1440, 1, 40}},
	// tshark 4.0 reports the inner VID of an 802.1ad (0x88a8) QinQ frame and parses a
	// third tag; fparser keys on the outer VID and parses two tags.
	"vlan.pcap": {
		{"tcp", "192.0.2.1", "40000", "192.0.2.3", "443", "200"}: {},
		{"udp", "192.0.2.1", "5002", "192.0.2.2", "53", "200"}:   {},
		{"tcp", "192.0.2.1", "40000", "192.0.2.3", "443", "100"}: {2, 80, 1, 40},
	},
	// tshark reads through MPLS and PPPoE as link layers; without --decap fparser
	// counts their frames as non-IP (TestDecapAgainstTshark checks them with it).
	"tunnels.pcap": {
		{"udp", "10.50.9.1", "1009", "10.50.9.2", "53", "0"}:               {},
		{"udp", "10.50.10.1", "1010", "10.50.10.2", "53", "0"}:             {},
		{"udp", "192.0.2.1", "49155", "192.0.2.2", "4789", "0"}:            {},
		{"udp", "2001:db8:50:c::1", "1012", "2001:db8:50:c::2", "53", "0"}: {},
	},
}

// TestTestdataMatchesOracle compares every testdata capture with the flows tshark
// found in it (testdata/NAME.tshark.csv: tshark 4.0, one row per bidirectional key,
// bytes from the IP header, outer VLAN, later fragments following their first).
func TestTestdataMatchesOracle(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.tshark.csv")
	if len(files) < 13 {
		t.Fatalf("only %d oracle files in testdata", len(files))
	}
	for _, oracle := range files {
		capture := oracle[:len(oracle)-len(".tshark.csv")]
		name := filepath.Base(capture)
		t.Run(name, func(t *testing.T) {
			flows, info, err := replay(t, capture, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := readExpected(t, oracle)
			for k, v := range oracleDeviations[name] {
				if v == (flowRow{}) {
					delete(want, k)
				} else {
					want[k] = v
				}
			}
			got := aggregate(flows)
			if len(got) != len(want) {
				t.Errorf("%d keys, oracle has %d: got %v want %v", len(got), len(want), got, want)
			}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%v: got %v want %v", k, got[k], w)
				}
			}
			checkConservation(t, flows, info)
		})
	}
}

func aggregate(flows []fparser.Flow) map[rowKey]flowRow {
	got := map[rowKey]flowRow{}
	for i := range flows {
		k, c := canonicalRow(&flows[i])
		g := got[k]
		got[k] = flowRow{g.pa + c.pa, g.ba + c.ba, g.pb + c.pb, g.bb + c.bb}
	}
	return got
}

func checkConservation(t *testing.T, flows []fparser.Flow, info fparser.Info) {
	t.Helper()
	var sum uint64
	for i := range flows {
		sum += flows[i].PacketCount()
	}
	if sum != info.PacketsAccepted {
		t.Errorf("reported packets %d != accepted %d", sum, info.PacketsAccepted)
	}
	if parsed := info.PacketsAccepted + info.NonIP + info.OtherL4 + info.Malformed + info.Unattributed; parsed != info.PacketsSeen {
		t.Errorf("seen %d != accepted+non-IP+other+malformed+unattributed %d", info.PacketsSeen, parsed)
	}
}

func mustReplay(t *testing.T, name string, opts *fparser.Options) ([]fparser.Flow, fparser.Info) {
	t.Helper()
	flows, info, err := replay(t, filepath.Join("testdata", name), opts)
	if err != nil {
		t.Fatal(err)
	}
	checkConservation(t, flows, info)
	return flows, info
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestSynAckFirstKeepsClientAsInitiator(t *testing.T) {
	flows, _ := mustReplay(t, "synack-first.pcap", nil)
	if len(flows) != 1 {
		t.Fatalf("%d flows", len(flows))
	}
	f := flows[0]
	if f.Src != ap("192.0.2.1:41000") || f.Dst != ap("192.0.2.2:80") {
		t.Errorf("initiator %v -> %v, want the client 192.0.2.1:41000", f.Src, f.Dst)
	}
	if f.Fwd.Packets != 2 || f.Fwd.Bytes != 130 || f.Rev.Packets != 2 || f.Rev.Bytes != 580 {
		t.Errorf("counters fwd %+v rev %+v", f.Fwd, f.Rev)
	}
	if f.Rev.Flags != fparser.SYN|fparser.ACK|fparser.PSH || f.Fwd.Flags != fparser.ACK|fparser.PSH {
		t.Errorf("flags fwd %v rev %v", f.Fwd.Flags, f.Rev.Flags)
	}
}

func TestVLANsAreSeparateFlows(t *testing.T) {
	flows, info := mustReplay(t, "vlan.pcap", nil)
	var vlans []uint16
	for _, f := range flows {
		vlans = append(vlans, f.VLAN)
	}
	if want := []uint16{10, 0, 100, 0}; !equal(vlans, want) {
		t.Errorf("VLANs %v, want %v", vlans, want)
	}
	if info.NonIP != 1 {
		t.Errorf("non-IP %d, want 1 (the frame with three tags)", info.NonIP)
	}
}

func TestFragments(t *testing.T) {
	flows, info := mustReplay(t, "fragments.pcap", nil)
	if info.Fragments != 9 || info.Unattributed != 2 {
		t.Errorf("fragments %d unattributed %d, want 9 and 2", info.Fragments, info.Unattributed)
	}
	want := map[netip.AddrPort][4]uint64{
		ap("192.0.2.1:6000"):     {5, 3700, 1, 40},
		ap("[2001:db8::1]:6001"): {2, 1696, 0, 0},
	}
	for _, f := range flows {
		if w := want[f.Src]; w != [4]uint64{f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes} {
			t.Errorf("%v: got %+v/%+v want %v", f.Src, f.Fwd, f.Rev, w)
		}
	}
}

func TestTimestampsGoingBackwardsAreClamped(t *testing.T) {
	flows, _ := mustReplay(t, "backwards.pcap", nil)
	if len(flows) != 2 {
		t.Fatalf("%d flows, want 2", len(flows))
	}
	f := flows[0]
	if f.Fwd.Packets != 4 || !f.FirstSeen.Equal(t0.Add(10*time.Second)) || !f.LastSeen.Equal(t0.Add(13*time.Second)) || f.EndReason != fparser.EndIdle {
		t.Errorf("first flow %+v", f)
	}
	if g := flows[1]; g.Fwd.Packets != 1 || g.EndReason != fparser.EndEndOfCapture {
		t.Errorf("second flow %+v", g)
	}
}

func TestNanosecondsAndGzip(t *testing.T) {
	flows, _ := mustReplay(t, "nanoseconds.pcap.gz", nil)
	if len(flows) != 1 || !flows[0].FirstSeen.Equal(t0.Add(123456789)) || !flows[0].LastSeen.Equal(t0.Add(123456790)) {
		t.Errorf("flows %+v", flows)
	}
}

func TestTruncatedPacketsCountTheirIPLength(t *testing.T) {
	flows, info := mustReplay(t, "truncated.pcap", nil)
	if len(flows) != 1 || flows[0].Fwd.Bytes != 1440 {
		t.Errorf("flows %+v", flows)
	}
	if info.Malformed != 4 || info.NonIP != 1 || info.OtherL4 != 1 {
		t.Errorf("malformed %d non-IP %d other %d, want 4, 1, 1", info.Malformed, info.NonIP, info.OtherL4)
	}
}

func TestSnaplenDoesNotChangeBytes(t *testing.T) {
	full, _ := mustReplay(t, "http.pcap", nil)
	// 74 bytes hold Ethernet, IPv6 and TCP headers and nothing more.
	cut, _ := mustReplay(t, "http.pcap", &fparser.Options{Snaplen: 74})
	if len(full) != len(cut) {
		t.Fatalf("%d flows with snaplen 74, %d without", len(cut), len(full))
	}
	for i := range full {
		if full[i].Fwd != cut[i].Fwd || full[i].Rev != cut[i].Rev {
			t.Errorf("flow %d: %+v with snaplen 74, %+v without", i, cut[i], full[i])
		}
	}
}

func TestPortReuseAfterFIN(t *testing.T) {
	flows, _ := mustReplay(t, "reuse.pcap", nil)
	if len(flows) != 2 {
		t.Fatalf("%d flows, want 2", len(flows))
	}
	for i, want := range []fparser.EndReason{fparser.EndReused, fparser.EndEndOfCapture} {
		f := flows[i]
		if f.EndReason != want || f.Src != ap("192.0.2.1:45000") || f.PacketCount() != 12 || f.Fwd.Flags&fparser.SYN == 0 {
			t.Errorf("flow %d: %+v, want 12 packets from 192.0.2.1:45000 ending %v", i, f, want)
		}
	}
}

func TestResetEndsAfterFinTimeout(t *testing.T) {
	flows, _ := mustReplay(t, "reset.pcap", &fparser.Options{FinTimeout: time.Millisecond})
	if len(flows) != 2 {
		t.Fatalf("%d flows", len(flows))
	}
	// The capture ends right after the last flow's RST, before its fin timeout.
	for i, want := range []fparser.EndReason{fparser.EndRST, fparser.EndEndOfCapture} {
		if f := flows[i]; f.EndReason != want || f.Fwd.Flags&fparser.SYN == 0 || (f.Fwd.Flags|f.Rev.Flags)&fparser.RST == 0 {
			t.Errorf("%v -> %v ended %v flags %v/%v, want %v and a RST", f.Src, f.Dst, f.EndReason, f.Fwd.Flags, f.Rev.Flags, want)
		}
	}
	if f := flows[0]; f.Dst.Port() != 9 || f.Rev.Flags != fparser.RST|fparser.ACK {
		t.Errorf("closed port: %+v", f)
	}
}

func TestHTTPFlowsEndOnFIN(t *testing.T) {
	flows, _ := mustReplay(t, "http.pcap", &fparser.Options{FinTimeout: time.Millisecond})
	if len(flows) != 3 {
		t.Fatalf("%d flows", len(flows))
	}
	for i, want := range []fparser.EndReason{fparser.EndFIN, fparser.EndFIN, fparser.EndEndOfCapture} {
		if f := flows[i]; f.EndReason != want || f.Dst.Port() != 8080 || f.Fwd.Flags&fparser.FIN == 0 {
			t.Errorf("flow %d ended %v, want %v: %+v", i, f.EndReason, want, f)
		}
	}
	if flows[1].Rev.Bytes != 20613 {
		t.Errorf("page download: %d bytes back, want 20613", flows[1].Rev.Bytes)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
