package flowgen_test

import (
	"path/filepath"
	"testing"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/flowgen"
)

// TestFparserFindsTheFlows replays a small capture through fparser: it must report
// exactly the flows the generator meant, every packet in one of them, and end the
// connections that reused a port as reused, or on their FIN timeout when the next one
// came later than that.
func TestFparserFindsTheFlows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.pcap")
	s, err := flowgen.WriteFile(path, flowgen.Small)
	if err != nil {
		t.Fatal(err)
	}
	var flows, tcp int
	var packets uint64
	count := func(f fparser.Flow) {
		flows++
		packets += f.PacketCount()
		if f.Protocol == fparser.TCP {
			tcp++
		}
	}
	p, err := fparser.Open(path, &fparser.Options{OnTCP: count, OnUDP: count})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	info := p.Info()
	if flows != s.Flows || tcp != s.Web+s.BulkTCP {
		t.Errorf("fparser reported %d flows (%d TCP), the generator wrote %d (%d TCP)", flows, tcp, s.Flows, s.Web+s.BulkTCP)
	}
	if info.PacketsSeen != s.Packets || info.PacketsAccepted != s.Packets || packets != s.Packets {
		t.Errorf("%d packets seen, %d accepted, %d reported; the generator wrote %d", info.PacketsSeen, info.PacketsAccepted, packets, s.Packets)
	}
	if info.Fragments != s.Fragments || info.Unattributed != 0 {
		t.Errorf("%d fragments, %d unattributed; the generator wrote %d", info.Fragments, info.Unattributed, s.Fragments)
	}
	if got := info.FlowsEnded[fparser.EndReused]; got == 0 || got > uint64(s.Reused) {
		t.Errorf("%d flows ended as reused; %d connections reused a port", got, s.Reused)
	}
}
