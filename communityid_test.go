package fparser_test

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/fparser/fparser"
)

// TestCommunityIDBaseline checks AppendCommunityID against the specification's
// baseline data (testdata/communityid): every entry with ports (TCP, UDP, SCTP),
// with seed 0 and seed 1, in both directions.
func TestCommunityIDBaseline(t *testing.T) {
	for file, seed := range map[string]uint16{"baseline_deflt.json": 0, "baseline_seed1.json": 1} {
		b, err := os.ReadFile(filepath.Join("testdata", "communityid", file))
		if err != nil {
			t.Fatal(err)
		}
		var entries []struct {
			Proto        uint8
			Saddr, Daddr string
			Sport, Dport *uint16
			CommunityID  string `json:"communityid"`
		}
		if err := json.Unmarshal(b, &entries); err != nil {
			t.Fatal(err)
		}
		checked := 0
		for _, e := range entries {
			if e.Proto != 6 && e.Proto != 17 && e.Proto != 132 {
				continue // ICMP's types and codes, and protocols without ports: fparser has no such flows
			}
			src := netip.AddrPortFrom(netip.MustParseAddr(e.Saddr), *e.Sport)
			dst := netip.AddrPortFrom(netip.MustParseAddr(e.Daddr), *e.Dport)
			if got := string(fparser.AppendCommunityID(nil, seed, fparser.Protocol(e.Proto), src, dst)); got != e.CommunityID {
				t.Errorf("%s: seed %d, %d %s -> %s: %s, want %s", file, seed, e.Proto, src, dst, got, e.CommunityID)
			}
			checked++
		}
		if checked < 8 {
			t.Errorf("%s: only %d entries checked", file, checked)
		}
		t.Logf("%s: %d entries equal", file, checked)
	}
}

// TestCommunityID: a flow's ID is the default seed's, the same whichever endpoint
// is Src, and computing it into a buffer allocates nothing.
func TestCommunityID(t *testing.T) {
	f := fparser.Flow{Protocol: fparser.TCP, Src: netip.MustParseAddrPort("1.2.3.4:1122"), Dst: netip.MustParseAddrPort("5.6.7.8:3344")}
	if got := f.CommunityID(); got != "1:wCb3OG7yAFWelaUydu0D+125CLM=" {
		t.Errorf("CommunityID %s", got)
	}
	r := fparser.Flow{Protocol: fparser.TCP, Src: f.Dst, Dst: f.Src, VLAN: 7}
	if r.CommunityID() != f.CommunityID() {
		t.Errorf("reversed, with a VLAN: %s, want %s", r.CommunityID(), f.CommunityID())
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = fparser.AppendCommunityID(buf[:0], 0, f.Protocol, f.Src, f.Dst) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
