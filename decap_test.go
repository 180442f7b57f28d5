package fparser_test

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testpackets"
)

// innerView is a capture's flows by their innermost headers, as tsharkInner makes
// them.
type innerView struct {
	rows map[rowKey]flowRow
	// tunneled counts the frames in which tshark found a tunnel: an IP header
	// inside another, or MPLS or PPPoE.
	tunneled int
	// fallback counts, by flow, the packets counted under a tunnel's outer headers
	// because what the tunnel carries is not TCP or UDP (ICMP, ARP).
	fallback map[rowKey]uint64
	// ids are, by flow, the Community IDs tshark gave its packets.
	ids map[rowKey]map[string]bool
}

// tsharkInner runs tshark over a capture and returns its flows by their innermost
// headers, in the corpus's row form: each frame counts under the deepest IP header
// that carries TCP or UDP, never looking inside an ICMP message (whose quoted
// headers are not the frame's), with that header's IP length as its bytes and the
// VID of the frame's first 802.1Q/802.1ad tag, when it comes before the first IP
// header. Frames with no such header count nowhere. This is the oracle of
// --decap's flows.
func tsharkInner(path string) (*innerView, error) {
	fields := []string{"frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
		"tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "ip.len", "ipv6.plen", "vlan.id", "communityid"}
	args := []string{"-r", path, "-n", "--enable-protocol", "communityid", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("tshark: %w", err)
	}
	view := &innerView{rows: map[rowKey]flowRow{}, fallback: map[rowKey]uint64{}, ids: map[rowKey]map[string]bool{}}
	rows := view.rows
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != len(fields) {
			continue
		}
		v := map[string][]string{}
		for i, name := range fields {
			v[name] = strings.Split(f[i], ",")
		}
		nth := func(name string, n int) string {
			if n < len(v[name]) {
				return v[name][n]
			}
			return ""
		}
		protos := strings.Split(f[0], ":")
		ipAt, l4At, ips, deepest := -1, -1, 0, -1
		for i, p := range protos {
			if p == "icmp" || p == "icmpv6" {
				break
			}
			if p == "mpls" || p == "pppoes" {
				ips++ // a tunnel below the first IP header
			}
			if p == "eth" && i > 0 {
				deepest = i // an Ethernet frame in a tunnel
			}
			if p != "ip" && p != "ipv6" {
				continue
			}
			ips, deepest = ips+1, i
			j := i + 1
			for j < len(protos) && strings.HasPrefix(protos[j], "ipv6.") {
				j++
			}
			if j < len(protos) && (protos[j] == "tcp" || protos[j] == "udp") {
				ipAt, l4At = i, j
			}
		}
		if ips > 1 {
			view.tunneled++
		}
		if ipAt < 0 {
			continue
		}
		before := func(i int) (n int) { // the layers of protos[i]'s name before it
			for _, p := range protos[:i] {
				if p == protos[i] {
					n++
				}
			}
			return n
		}
		ipN, l4N := before(ipAt), before(l4At)
		ipName, l4Name := protos[ipAt], protos[l4At]
		src, err1 := netip.ParseAddr(nth(ipName+".src", ipN))
		dst, err2 := netip.ParseAddr(nth(ipName+".dst", ipN))
		sp, err3 := strconv.ParseUint(nth(l4Name+".srcport", l4N), 10, 16)
		dp, err4 := strconv.ParseUint(nth(l4Name+".dstport", l4N), 10, 16)
		var length uint64
		var err5 error
		if ipName == "ip" {
			length, err5 = strconv.ParseUint(nth("ip.len", ipN), 10, 32)
		} else {
			length, err5 = strconv.ParseUint(nth("ipv6.plen", ipN), 10, 32)
			length += 40
		}
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("tshark's row %q: %w", line, err)
		}
		vlan := "0"
		if first := slices.Index(protos, "vlan"); first >= 0 && first < slices.IndexFunc(protos, func(p string) bool { return p == "ip" || p == "ipv6" }) {
			vlan = nth("vlan.id", 0)
		}
		a, b := netip.AddrPortFrom(src, uint16(sp)), netip.AddrPortFrom(dst, uint16(dp))
		c := flowRow{pa: 1, ba: length}
		if x := a.Addr().Compare(b.Addr()); x > 0 || x == 0 && a.Port() > b.Port() {
			a, b, c = b, a, flowRow{pb: 1, bb: length}
		}
		k := rowKey{l4Name, a.Addr().String(), strconv.Itoa(int(a.Port())), b.Addr().String(), strconv.Itoa(int(b.Port())), vlan}
		r := rows[k]
		rows[k] = flowRow{r.pa + c.pa, r.ba + c.ba, r.pb + c.pb, r.bb + c.bb}
		if deepest > ipAt {
			view.fallback[k]++
		}
		if id := f[len(fields)-1]; id != "" {
			if view.ids[k] == nil {
				view.ids[k] = map[string]bool{}
			}
			view.ids[k][id] = true
		}
	}
	return view, nil
}

// decapDeviations are where --decap's rules and tshark's decoding of the inner
// headers differ by design (docs/flows.md, Tunnels), as oracleDeviations: the value
// is what fparser reports for the key, a zero flowRow that it reports none.
var decapDeviations = map[string]map[rowKey]flowRow{
	"tunnels.pcap": {
		// VXLAN without the I flag has no VNI: not opened, it counts in its outer
		// UDP flow; tshark decodes it by its port.
		{"udp", "10.50.2.1", "1002", "10.50.2.2", "53", "0"}:    {},
		{"udp", "192.0.2.1", "49153", "192.0.2.2", "4789", "0"}: {1, 100, 0, 0},
		// A third tunnel (IP in IP) is not opened: other traffic.
		{"udp", "10.50.7.1", "1007", "10.50.7.2", "53", "0"}: {},
		// Five MPLS labels are more than opened: non-IP.
		{"udp", "10.50.10.1", "1010", "10.50.10.2", "53", "0"}: {},
	},
	// A fragment is not opened: both fragments of the VXLAN packet count in its
	// outer UDP flow. tshark reassembles them, and opens the whole packet.
	"tunnel-fragments.pcap": {
		{"udp", "10.50.17.1", "1017", "10.50.17.2", "53", "0"}:  {},
		{"udp", "192.0.2.1", "49158", "192.0.2.2", "4789", "0"}: {2, 198, 0, 0},
	},
}

// diffRows lists how got differs from want, but for the rows of want that deliberate
// says fparser leaves out, which it returns apart.
func diffRows(got, want map[rowKey]flowRow, deliberate func(rowKey, flowRow) bool) (diffs, left []string) {
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok && deliberate(k, w):
			left = append(left, fmt.Sprintf("%v %v", k, w))
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %v want %v", k, w))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%v: got %v want %v", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %v got %v", k, g))
		}
	}
	slices.Sort(diffs)
	slices.Sort(left)
	return diffs, left
}

// TestDecapAgainstTshark replays every capture with Options.Decap: testdata's
// always, the corpus's when it is beside the module. Where tshark finds tunnels, the
// flows must equal tshark's by their innermost headers (tsharkInner), but for one
// deliberate difference, listed by flow: a tunnel that carries neither TCP nor UDP
// (ICMP, ARP), or what is cut short, counts, with --decap, as what it carries
// (other traffic, non-IP, malformed), where tshark's view counts it in the tunnel's
// outer UDP flow; and the cases of decapDeviations. Where tshark finds
// none, the flows must equal those of the replay without Options.Decap, which the
// oracle tests of the outer headers check. Each tunnel's flow's CommunityID, of its
// inner headers, must be the one tshark gives its packets.
func TestDecapAgainstTshark(t *testing.T) {
	testharness.Require(t, testharness.HasTool("tshark"), "tshark is not installed (apt-get install tshark): the --decap oracle is skipped")
	var captures, tunneled, same, flows, equal, deliberate, ids, idsEqual int
	for _, path := range testpackets.Files(t) {
		name := filepath.Base(path)
		decapped, _, err := replay(t, path, &fparser.Options{Decap: true})
		plain, _, err2 := replay(t, path, nil)
		if err != nil || err2 != nil {
			if (err == nil) != (err2 == nil) || err.Error() != err2.Error() {
				t.Errorf("%s: replay with --decap: %v; without: %v", name, err, err2)
			}
			continue
		}
		view, err := tsharkInner(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		captures++
		got := aggregate(decapped)
		if view.tunneled == 0 {
			if diffs, _ := diffRows(got, aggregate(plain), func(rowKey, flowRow) bool { return false }); len(diffs) > 0 {
				t.Errorf("%s: no tunnel, yet --decap changes %d flows:\n  %s", name, len(diffs), strings.Join(diffs, "\n  "))
			} else {
				same++
			}
			continue
		}
		tunneled++
		// tshark's flows, each equal to fparser's, or apart on purpose: by a
		// rule of decapDeviations, or a tunnel's that carries no TCP or UDP.
		flows += len(view.rows)
		apart := 0
		want := maps.Clone(view.rows)
		for k, v := range decapDeviations[name] {
			t.Logf("%s: by design, %v: %v, tshark %v", name, k, v, view.rows[k])
			if _, ok := view.rows[k]; ok {
				apart++
			}
			if v == (flowRow{}) {
				delete(want, k)
			} else {
				want[k] = v
			}
		}
		diffs, left := diffRows(got, want, func(k rowKey, w flowRow) bool { return view.fallback[k] == w.pa+w.pb })
		deliberate += apart + len(left)
		for k, w := range view.rows {
			if got[k] == w {
				equal++
			}
		}
		for i := range decapped {
			f := &decapped[i]
			k, _ := canonicalRow(f)
			if f.Tunnel.Kind == fparser.TunnelNone || view.ids[k] == nil {
				continue
			}
			ids++
			if view.ids[k][f.CommunityID()] {
				idsEqual++
			} else {
				t.Errorf("%s: %v: community id %s, tshark's %v", name, k, f.CommunityID(), view.ids[k])
			}
		}
		for _, l := range left {
			t.Logf("%s: a tunnel that carries neither TCP nor UDP, or is cut short, in tshark's outer flow: %s", name, l)
		}
		if len(diffs) > 0 {
			t.Errorf("%s: %d differences from tshark's inner headers:\n  %s", name, len(diffs), strings.Join(diffs, "\n  "))
		}
	}
	t.Logf("%d captures: %d with no tunnel, %d the same with --decap; %d with tunnels: %d flows by tshark's inner headers: %d equal, %d apart on purpose; %d tunnels' flows with tshark's community id, %d equal",
		captures, captures-tunneled, same, tunneled, flows, equal, deliberate, ids, idsEqual)
}

// TestDecapTunnelVariants: testdata/tunnels.pcap (internal/edgecases), with
// Options.Decap, gives each header variant's flow with its tunnel's kind, id and
// outer addresses, the outer source on the side of the flow's Src; and counts what
// is not opened, or carries no TCP or UDP, as docs/flows.md says.
func TestDecapTunnelVariants(t *testing.T) {
	flows, info, err := replay(t, filepath.Join("testdata", "tunnels.pcap"), &fparser.Options{Decap: true})
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	want := map[string]fparser.Tunnel{
		"10.50.1.1:1001":          {fparser.TunnelVXLAN, 7000, a, b},
		"192.0.2.1:49153":         {}, // VXLAN without the I flag: its outer flow
		"10.50.3.2:53":            {fparser.TunnelGeneve, 0x123, a, b},
		"10.50.4.1:1004":          {fparser.TunnelGTPU, 0x1234, a, b},
		"192.0.2.1:2152":          {}, // a GTP-U echo request: its outer flow
		"[2001:db8:50:6::1]:1006": {fparser.TunnelGRE, 9, a, b},
		"[2001:db8:50:8::1]:1008": {fparser.TunnelIPv6inIP, 0, a, b},
		"10.50.9.1:1009":          {Kind: fparser.TunnelMPLS, ID: 100},
		"10.50.11.1:1011":         {fparser.TunnelMPLS, 300, a, b}, // the outermost tunnel, the outermost IP header
		"[2001:db8:50:c::1]:1012": {Kind: fparser.TunnelPPPoE, ID: 0x42},
		"10.50.14.1:1014":         {fparser.TunnelGRE, 0x77, a, b},
	}
	for _, f := range flows {
		w, ok := want[f.Src.String()]
		if !ok {
			t.Errorf("unexpected flow %v %v -> %v %+v", f.Protocol, f.Src, f.Dst, f.Tunnel)
			continue
		}
		delete(want, f.Src.String())
		if f.Tunnel != w {
			t.Errorf("%v -> %v: tunnel %+v, want %+v", f.Src, f.Dst, f.Tunnel, w)
		}
	}
	for src := range want {
		t.Errorf("no flow from %s", src)
	}
	// Non-IP: five MPLS labels, PPPoE's LCP, ARP in VXLAN; other traffic: IP in
	// IP three deep, ICMP in VXLAN; malformed: an inner IPv4 header cut short.
	if info.PacketsAccepted != 12 || info.NonIP != 3 || info.OtherL4 != 2 || info.Malformed != 1 {
		t.Errorf("accepted %d, non-IP %d, other %d, malformed %d; want 12, 3, 2, 1", info.PacketsAccepted, info.NonIP, info.OtherL4, info.Malformed)
	}
}
