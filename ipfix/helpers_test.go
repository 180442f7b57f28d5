package ipfix_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fparser/fparser"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// replay returns the flows of the captures, with their TCP quality, failing with
// fewer than atLeast.
func replay(t testing.TB, paths []string, atLeast int) []fparser.Flow {
	t.Helper()
	var flows []fparser.Flow
	add := func(f fparser.Flow) { flows = append(flows, f) }
	for _, path := range paths {
		p, err := fparser.New(path, &fparser.Options{OnTCP: add, OnUDP: add, Logger: quiet(), FinTimeout: time.Second, TCPQuality: true})
		if err != nil {
			continue // not a capture fparser reads: tested elsewhere
		}
		p.Run(t.Context())
	}
	if len(flows) < atLeast {
		t.Fatalf("only %d flows from %d captures", len(flows), len(paths))
	}
	return flows
}
