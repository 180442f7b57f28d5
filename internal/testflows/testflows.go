// Package testflows gives the sinks' tests the flows of every capture of testdata
// and of the shared corpus, as a replay with default options and the TCP quality
// reports them.
package testflows

import (
	"testing"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testpackets"
)

// All replays every capture testpackets.Files lists and returns its flows, and how
// many captures there were. A file fparser does not read is left out: the corpus has
// a few on purpose; a damaged capture's flows before the damage count.
func All(t testing.TB) (flows []fparser.Flow, captures int) {
	t.Helper()
	files := testpackets.Files(t)
	for _, path := range files {
		keep := func(f fparser.Flow) { flows = append(flows, f) }
		parser, err := fparser.Open(path, &fparser.Options{OnTCP: keep, OnUDP: keep, TCPQuality: true})
		if err != nil {
			continue
		}
		parser.Wait()
		parser.Close()
	}
	return flows, len(files)
}
