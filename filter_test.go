package fparser_test

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/kerneltest"
)

// replayRows replays a capture and returns its flows as sorted text rows, and Info.
func replayRows(t *testing.T, path string, opts fparser.Options) ([]string, fparser.Info, error) {
	t.Helper()
	var rows []string
	add := func(f fparser.Flow) {
		rows = append(rows, fmt.Sprintf("%v %v %v %d %+v %+v %v", f.Protocol, f.Src, f.Dst, f.VLAN, f.Fwd, f.Rev, f.EndReason))
	}
	opts.OnTCP, opts.OnUDP, opts.Logger = add, add, discard()
	p, err := fparser.New(path, &opts)
	if err != nil {
		return nil, fparser.Info{}, err
	}
	err = p.Run(t.Context())
	slices.Sort(rows)
	return rows, p.Info(), err
}

// TestFilterAsTcpdump: replaying a capture with a filter gives the flows of the same
// capture filtered by tcpdump first, for each testdata capture tcpdump can write.
func TestFilterAsTcpdump(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		kerneltest.Skip(t, "needs tcpdump: skipped")
	}
	exprs := []string{"tcp", "udp", "port 53", "tcp port 8080", "host 192.0.2.1", "vlan", "vlan and udp",
		"ip6", "not tcp", "ip[8] > 60", "greater 100", "tcp[tcpflags] & tcp-syn != 0", "src net 192.0.2.0/24 and dst port 5353"}
	captures, _ := filepath.Glob("testdata/*.pcap")
	more, _ := filepath.Glob("testdata/*.pcapng")
	captures = append(captures, more...) // tcpdump does not read gzip
	checked := 0
	for _, capture := range captures {
		for _, expr := range exprs {
			filtered := filepath.Join(t.TempDir(), "filtered.pcap")
			if out, err := exec.Command("tcpdump", "-r", capture, "-w", filtered, "--", expr).CombinedOutput(); err != nil {
				if strings.Contains(string(out), "different from the type of the first interface") {
					continue // several link types in one pcapng: tcpdump cannot write them
				}
				t.Fatalf("tcpdump -r %s %q: %v\n%s", capture, expr, err, out)
			}
			want, wantInfo, err := replayRows(t, filtered, fparser.Options{})
			if err != nil && !errors.Is(err, fparser.ErrBadCapture) {
				t.Fatal(err)
			}
			got, gotInfo, err := replayRows(t, capture, fparser.Options{Filter: expr})
			if err != nil && !errors.Is(err, fparser.ErrBadCapture) {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s, %q: flows differ from tcpdump-filtered replay\n got %q\nwant %q", capture, expr, got, want)
			}
			if gotInfo.PacketsSeen-gotInfo.Filtered != wantInfo.PacketsSeen || gotInfo.PacketsAccepted != wantInfo.PacketsAccepted {
				t.Errorf("%s, %q: %d seen - %d filtered, %d accepted; tcpdump-filtered: %d seen, %d accepted", capture, expr,
					gotInfo.PacketsSeen, gotInfo.Filtered, gotInfo.PacketsAccepted, wantInfo.PacketsSeen, wantInfo.PacketsAccepted)
			}
			checked++
		}
	}
	t.Logf("%d capture and expression pairs equal to tcpdump's filtering", checked)
}

// TestFilterLinkTypeMidCapture: a filter that cannot apply to a link type the
// capture turns to ends the replay with a clear error, after the flows before it.
func TestFilterLinkTypeMidCapture(t *testing.T) {
	rows, info, err := replayRows(t, "testdata/linktypes.pcapng", fparser.Options{Filter: "ether src 02:00:00:00:00:01"})
	if !errors.Is(err, fparser.ErrFilter) || !errors.Is(err, filter.ErrLinkType) {
		t.Fatalf("err %v, want ErrFilter and filter.ErrLinkType", err)
	}
	for _, want := range []string{"testdata/linktypes.pcapng", "packet", "link type", "Ethernet addresses"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if len(rows) == 0 || info.PacketsAccepted == 0 {
		t.Errorf("no flow reported before the error: %d flows, %+v", len(rows), info)
	}
	for _, r := range rows {
		if !strings.HasSuffix(r, "end-of-capture") {
			t.Errorf("flow %s not flushed at the end", r)
		}
	}
	// On a pcap the link type is known at Open, so the error comes from New.
	if _, err := fparser.New("testdata/http.pcap", &fparser.Options{Filter: "ether host 1:2:3:4:5:6", Logger: discard()}); err != nil {
		t.Errorf("ether host on an Ethernet capture: %v", err)
	}
}

// TestSetFilterOffline: SetFilter applies to the packets after it; a bad filter
// changes nothing.
func TestSetFilterOffline(t *testing.T) {
	var got []fparser.Flow
	p, err := fparser.New("testdata/http.pcap", &fparser.Options{Filter: "udp", Logger: discard(),
		OnTCP: func(f fparser.Flow) { got = append(got, f) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetFilter("tcp prot 8080"); !errors.Is(err, fparser.ErrFilter) || !errors.Is(err, filter.ErrSyntax) {
		t.Fatalf("SetFilter with a bad filter: %v", err)
	}
	if err := p.SetFilter("ip6"); err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	info := p.Info()
	if len(got) != 1 || !got[0].Src.Addr().Is6() || info.Filtered != info.PacketsSeen-got[0].PacketCount() {
		t.Errorf("with ip6: flows %v, %+v", got, info)
	}
}
