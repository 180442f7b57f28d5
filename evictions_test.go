package fparser_test

import (
	"path/filepath"
	"testing"

	"github.com/fparser/fparser"
)

// TestNoEvictionsWithRoom replays every capture of testdata, reused ports and all,
// calling Info from every callback, and checks that no flow is ever taken for
// evicted: the table has room, so created = ended + active at every instant.
func TestNoEvictionsWithRoom(t *testing.T) {
	pcaps, _ := filepath.Glob("testdata/*.pcap")
	pcapngs, _ := filepath.Glob("testdata/*.pcapng")
	files := append(pcaps, pcapngs...)
	if len(files) == 0 {
		t.Fatal("no captures in testdata")
	}
	for _, file := range files {
		var p *fparser.Parser
		calls := 0
		check := func(fparser.Flow) {
			calls++
			if in := p.Info(); in.Evictions != 0 {
				t.Errorf("%s: after %d flows, Evictions %d (created %d, ended %v, active %d)", file, calls, in.Evictions, in.FlowsCreated, in.FlowsEnded, in.TCPFlows+in.UDPFlows)
			}
		}
		var err error
		p, err = fparser.New(file, &fparser.Options{OnTCP: check, OnUDP: check})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		p.Start()
		if err := p.Wait(); err != nil {
			t.Logf("%s: %v", file, err) // a capture that ends badly still reports its flows
		}
		in := p.Info()
		var ended uint64
		for _, n := range in.FlowsEnded {
			ended += n
		}
		if in.Evictions != 0 || ended != in.FlowsCreated {
			t.Errorf("%s: %d created, %d ended, %d evicted", file, in.FlowsCreated, ended, in.Evictions)
		}
	}
}
