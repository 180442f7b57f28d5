package communityid_test

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testpackets"
	"github.com/fparser/fparser/internal/userspace"
)

// tsharkIDs runs tshark over a capture and returns, for each TCP and UDP
// conversation of the packets' outermost IP header, the communityid values tshark
// gave its packets. Packets whose outermost IP header carries ICMP are left out:
// the ports they quote are not theirs.
func tsharkIDs(path string) (map[userspace.Key]map[string]bool, error) {
	out, err := exec.Command("tshark", "-r", path, "-n", "--enable-protocol", "communityid", "-T", "fields", "-E", "occurrence=f",
		"-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
		"-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "communityid",
		"-e", "ip.proto", "-e", "ipv6.nxt").Output()
	if err != nil {
		return nil, fmt.Errorf("tshark: %w", err)
	}
	ids := map[userspace.Key]map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 11 || f[8] == "" || f[9] == "1" || f[9] == "" && f[10] == "58" {
			continue // an ICMP error's quoted ports are not the packet's conversation
		}
		src, dst := f[0], f[1]
		if src == "" {
			src, dst = f[2], f[3]
		}
		proto, sport, dport := fparser.TCP, f[4], f[5]
		if sport == "" {
			proto, sport, dport = fparser.UDP, f[6], f[7]
		}
		sa, err1 := netip.ParseAddr(src)
		da, err2 := netip.ParseAddr(dst)
		sp, err3 := strconv.ParseUint(sport, 10, 16)
		dp, err4 := strconv.ParseUint(dport, 10, 16)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			continue // no TCP or UDP ports in the outermost IP header's packet
		}
		k := userspace.KeyOf(uint8(proto), 0, netip.AddrPortFrom(sa, uint16(sp)), netip.AddrPortFrom(da, uint16(dp)))
		if ids[k] == nil {
			ids[k] = map[string]bool{}
		}
		ids[k][f[8]] = true
	}
	return ids, nil
}

// tunnelPorts are the UDP ports of the tunnels whose inner headers tshark computes
// the communityid from: GTP-U, VXLAN, Geneve, Teredo. fparser, without --decap,
// counts the tunnel as its outer flow, and gives it the outer flow's ID; with it
// (but for Teredo, which it does not open), the inner flows' IDs equal tshark's:
// TestDecapAgainstTshark checks them.
var tunnelPorts = map[uint16]string{2152: "GTP-U", 4789: "VXLAN", 6081: "Geneve", 3544: "Teredo"}

// TestCommunityIDAgainstTshark: every flow of every capture has the Community ID
// that tshark 4.0 gives its packets (--enable-protocol communityid), but for the
// outer flows of tunnels, whose packets tshark gives their inner headers' IDs:
// those are counted and listed apart, as deliberate. A flow whose packets tshark
// gives no ID to (no such conversation in its outermost headers) is counted apart
// too; any other difference fails the test.
func TestCommunityIDAgainstTshark(t *testing.T) {
	testharness.Require(t, testharness.HasTool("tshark"), "tshark is not installed (apt-get install tshark): the Community ID cross-check is skipped")
	files := testpackets.Files(t)
	type result struct {
		file                       string
		compared, equal, notInPkts int
		differ, tunnels, missing   []string
		err                        error
	}
	results := make([]result, len(files))
	testpackets.EachFile(files, func(i int, path string) {
		r := &results[i]
		r.file = path
		var flows []fparser.Flow
		keep := func(f fparser.Flow) { flows = append(flows, f) }
		p, err := fparser.Open(path, &fparser.Options{OnTCP: keep, OnUDP: keep})
		if err != nil {
			return // not a capture fparser reads: the corpus has a few on purpose
		}
		p.Wait()
		p.Close()
		ids, err := tsharkIDs(path)
		if err != nil {
			r.err = err
			return
		}
		for i := range flows {
			f := &flows[i]
			r.compared++
			theirs := ids[userspace.KeyOf(uint8(f.Protocol), 0, f.Src, f.Dst)]
			switch {
			case len(theirs) == 0:
				r.notInPkts++
				r.missing = append(r.missing, fmt.Sprintf("%s %s -> %s", f.Protocol, f.Src, f.Dst))
			case theirs[f.CommunityID()] && len(theirs) == 1:
				r.equal++
			default:
				var list []string
				for id := range theirs {
					list = append(list, id)
				}
				sort.Strings(list)
				d := fmt.Sprintf("%s %s -> %s: %s, tshark %v", f.Protocol, f.Src, f.Dst, f.CommunityID(), list)
				kind, ok := tunnelPorts[f.Dst.Port()]
				if !ok {
					kind, ok = tunnelPorts[f.Src.Port()]
				}
				if f.Protocol == fparser.UDP && ok {
					r.tunnels = append(r.tunnels, kind+": "+d)
				} else {
					r.differ = append(r.differ, d)
				}
			}
		}
	})
	var compared, equal, notInPkts, differ, tunnels int
	for _, r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", filepath.Base(r.file), r.err)
		}
		compared += r.compared
		equal += r.equal
		notInPkts += r.notInPkts
		differ += len(r.differ)
		tunnels += len(r.tunnels)
		for _, d := range r.differ {
			t.Errorf("%s: %s", filepath.Base(r.file), d)
		}
		for _, d := range r.tunnels {
			t.Logf("%s: tunnel, tshark's ID is the inner headers': %s", filepath.Base(r.file), d)
		}
		for _, d := range r.missing {
			t.Logf("%s: no packet tshark gave an ID: %s", filepath.Base(r.file), d)
		}
	}
	t.Logf("%d flows of %d captures: %d equal to tshark's communityid, %d tunnels' outer flows (tshark: the inner headers'), %d different, %d without a packet tshark gave an ID",
		compared, len(files), equal, tunnels, differ, notInPkts)
	if compared == 0 || equal == 0 {
		t.Fatal("nothing compared")
	}
}
