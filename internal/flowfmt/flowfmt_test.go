package flowfmt

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser"
)

// TestEncoder: a JSON line holds Fields in order (FeatureFields, QualityFields and
// TunnelFields after them, each group when its option is on), a CSV line as many
// values as the header names, and once the buffer has room, appending a flow
// allocates nothing.
func TestEncoder(t *testing.T) {
	f := fparser.Flow{Protocol: fparser.TCP, Src: netip.MustParseAddrPort("192.0.2.1:40000"), Dst: netip.MustParseAddrPort("[2001:db8::1]:443"),
		FirstSeen: time.Date(2026, 12, 6, 6, 0, 0, 5, time.UTC), LastSeen: time.Date(2026, 12, 6, 6, 0, 1, 0, time.UTC),
		Fwd: fparser.Counters{Packets: 3, Bytes: 180, Flags: 0x12, Interface: `eth"0`}, Process: fparser.Process{PID: 7, Name: "a,b", Cgroup: "/x"},
		Tunnel: fparser.Tunnel{Kind: fparser.TunnelGeneve, ID: 1 << 23, OuterSrc: netip.MustParseAddr("2001:db8::a"), OuterDst: netip.MustParseAddr("198.51.100.1")}}
	for _, opts := range [][3]bool{{false, false, false}, {true, false, false}, {false, true, false}, {false, false, true}, {true, true, true}} {
		e := Encoder{Features: opts[0], Quality: opts[1], Tunnel: opts[2]}
		line := e.AppendJSON(nil, &f)
		dec := json.NewDecoder(strings.NewReader(string(line)))
		dec.Token()
		var keys []string
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			keys = append(keys, k.(string))
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
		}
		want := slices.Clone(Fields)
		if e.Features {
			want = append(want, FeatureFields...)
		}
		if e.Quality {
			want = append(want, QualityFields...)
		}
		if e.Tunnel {
			want = append(want, TunnelFields...)
		}
		if !slices.Equal(keys, want) {
			t.Errorf("%+v: JSON keys %v, want %v", e, keys, want)
		}
		header, row := string(e.AppendCSVHeader(nil)), string(e.AppendCSV(nil, &f))
		// The process name "a,b" is quoted: one comma more in the row than values.
		if got, want := strings.Count(row, ",")-1, strings.Count(header, ","); got != want {
			t.Errorf("%+v: CSV row %q has %d separators, header %d", e, row, got, want)
		}
		buf := make([]byte, 0, 4096)
		if n := testing.AllocsPerRun(100, func() { buf = e.AppendJSON(buf[:0], &f); buf = e.AppendCSV(buf[:0], &f) }); n != 0 {
			t.Errorf("%+v: %v allocations a flow", e, n)
		}
	}
}

// TestTunnelFields: the tunnel's kind by name, its ID, and the outer addresses,
// src's side first; a tunnel without an outer IP header has no addresses, and a
// flow that came through none has no tunnel fields: empty in CSV, null in JSON.
func TestTunnelFields(t *testing.T) {
	e := Encoder{Tunnel: true}
	for _, tc := range []struct {
		tunnel    fparser.Tunnel
		csv, json string
	}{
		{fparser.Tunnel{}, ",,,,", `,"tunnel":null,"tunnel_id":null,"outer_src_ip":null,"outer_dst_ip":null}`},
		{fparser.Tunnel{Kind: fparser.TunnelVXLAN, ID: 42, OuterSrc: netip.MustParseAddr("192.0.2.2"), OuterDst: netip.MustParseAddr("192.0.2.1")},
			",vxlan,42,192.0.2.2,192.0.2.1", `,"tunnel":"vxlan","tunnel_id":42,"outer_src_ip":"192.0.2.2","outer_dst_ip":"192.0.2.1"}`},
		{fparser.Tunnel{Kind: fparser.TunnelIPv6inIP, OuterSrc: netip.MustParseAddr("2001:db8::1"), OuterDst: netip.MustParseAddr("2001:db8::2")},
			",ipv6-in-ip,0,2001:db8::1,2001:db8::2", `,"tunnel":"ipv6-in-ip","tunnel_id":0,"outer_src_ip":"2001:db8::1","outer_dst_ip":"2001:db8::2"}`},
		{fparser.Tunnel{Kind: fparser.TunnelGTPU, ID: 1<<32 - 1, OuterSrc: netip.MustParseAddr("10.0.0.1"), OuterDst: netip.MustParseAddr("10.0.0.2")},
			",gtp-u,4294967295,10.0.0.1,10.0.0.2", `,"tunnel":"gtp-u","tunnel_id":4294967295,"outer_src_ip":"10.0.0.1","outer_dst_ip":"10.0.0.2"}`},
		{fparser.Tunnel{Kind: fparser.TunnelMPLS, ID: 1048575}, ",mpls,1048575,,", `,"tunnel":"mpls","tunnel_id":1048575,"outer_src_ip":null,"outer_dst_ip":null}`},
		{fparser.Tunnel{Kind: fparser.TunnelPPPoE, ID: 0x1234}, ",pppoe,4660,,", `,"tunnel":"pppoe","tunnel_id":4660,"outer_src_ip":null,"outer_dst_ip":null}`},
	} {
		f := fparser.Flow{Protocol: fparser.UDP, Src: netip.MustParseAddrPort("10.1.0.1:5000"), Dst: netip.MustParseAddrPort("10.1.0.2:53"), Tunnel: tc.tunnel}
		base := string((&Encoder{}).AppendCSV(nil, &f))
		if got, want := string(e.AppendCSV(nil, &f)), strings.TrimSuffix(base, "\n")+tc.csv+"\n"; got != want {
			t.Errorf("%+v: CSV\n got %q\nwant %q", tc.tunnel, got, want)
		}
		base = string((&Encoder{}).AppendJSON(nil, &f))
		if got, want := string(e.AppendJSON(nil, &f)), strings.TrimSuffix(base, "}\n")+tc.json+"\n"; got != want {
			t.Errorf("%+v: JSON\n got %q\nwant %q", tc.tunnel, got, want)
		}
	}
}
