package fparser_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/fparser/fparser/internal/testharness"
)

// TestMain runs the tests, or, in a process a test started with
// testharness.Command, the role that process is for (the roles are registered next
// to the tests that run them: live_*_test.go, soak_test.go, veth_bench_test.go).
func TestMain(m *testing.M) { testharness.Main(m) }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
