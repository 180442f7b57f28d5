package ipfix_test

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/kerneltest"
	"github.com/fparser/fparser/internal/testnet"
	"github.com/fparser/fparser/internal/testpackets"
	"github.com/fparser/fparser/ipfix"
)

// freeUDPPort returns a port on 127.0.0.1 that nothing listens on.
func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// rowOf is a flow as nfdump prints it with testnet.NfdumpRows, and as fparser's
// flow is written for comparison.
func rowOf(proto fparser.Protocol, src, dst endpoint, inP, inB, outP, outB uint64) string {
	return fmt.Sprintf("%d,%s,%d,%s,%d,%d,%d,%d,%d", uint8(proto), src.addr, src.port, dst.addr, dst.port, inP, inB, outP, outB)
}

type endpoint struct {
	addr string
	port uint16
}

// TestNfcapdRoundTrip exports every flow of the test captures to nfdump's nfcapd on
// loopback, reads the records back with nfdump, and compares: protocol, addresses,
// ports, and packets and bytes in each direction. Biflow and uniflow, and each with
// the TCP quality, whose elements nfdump does not know and skips.
func TestNfcapdRoundTrip(t *testing.T) {
	for _, tool := range []string{"nfcapd", "nfdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			kerneltest.Skip(t, "the collector round trip needs nfdump's %s (apt-get install nfdump): skipped", tool)
		}
	}
	flows := replay(t, testpackets.Files(t), 20)
	for _, tc := range []struct {
		name             string
		uniflow, quality bool
	}{{"biflow", false, false}, {"uniflow", true, false}, {"biflow-quality", false, true}, {"uniflow-quality", true, true}} {
		uniflow := tc.uniflow
		t.Run(tc.name, func(t *testing.T) {
			nfcapd := testnet.StartNfcapd(t)
			e, err := ipfix.Dial(ipfix.Config{Address: nfcapd.Addr(), Uniflow: uniflow, ObservationDomain: 7, TCPQuality: tc.quality})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for i := range flows {
				f := &flows[i]
				if err := e.Export(f); err != nil {
					t.Fatal(err)
				}
				src := endpoint{f.Src.Addr().String(), f.Src.Port()}
				dst := endpoint{f.Dst.Addr().String(), f.Dst.Port()}
				if uniflow {
					if f.Fwd.Packets > 0 {
						want = append(want, rowOf(f.Protocol, src, dst, f.Fwd.Packets, f.Fwd.Bytes, 0, 0))
					}
					if f.Rev.Packets > 0 {
						want = append(want, rowOf(f.Protocol, dst, src, f.Rev.Packets, f.Rev.Bytes, 0, 0))
					}
				} else {
					want = append(want, rowOf(f.Protocol, src, dst, f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes))
				}
				if i%8 == 7 {
					// Loopback UDP drops what the collector's socket buffer
					// cannot hold: pace the messages.
					e.Flush()
					time.Sleep(2 * time.Millisecond)
				}
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			st := e.Stats()
			log := nfcapd.Stop()
			// nfcapd checks the sequence numbers and the messages' structure.
			if !strings.Contains(log, "Sequence Errors: 0, Bad Packets: 0") {
				t.Errorf("nfcapd's log:\n%s", log)
			}
			if files, _ := filepath.Glob(filepath.Join(nfcapd.Dir, "nfcapd.*")); len(files) == 0 {
				t.Fatalf("nfcapd wrote no file in %s", nfcapd.Dir)
			}
			got := nfcapd.Rows(t)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				missing, extra := diff(want, got), diff(got, want)
				t.Logf("nfcapd's log:\n%s", log)
				t.Fatalf("nfdump read %d records, fparser exported %d; %d missing, e.g. %q; %d unexpected, e.g. %q",
					len(got), len(want), len(missing), first(missing), len(extra), first(extra))
			}
			t.Logf("%d flows exported in %d messages (%d records); nfdump read back %d records, all equal", len(flows), st.Messages, st.Records, len(got))
		})
	}
}

func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
