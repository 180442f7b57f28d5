package fparser

import (
	"context"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/userspace"
)

// source is where a parser's flows come from: the replay of a capture file
// (offline.Replayer) or the kernel datapath on an interface (live.Source). The
// parser's goroutine calls Run once, then Close; Counters and SetFilter may come from
// any goroutine meanwhile.
type source interface {
	// Engine is the engine the source counts into, which answers lookups.
	Engine() *userspace.Engine
	// ClockOffset turns the source's timestamps into Unix nanoseconds.
	ClockOffset() int64
	// Run counts until the source ends or ctx is done, calling deliver each time
	// flows have ended, and at the end ends every flow left.
	Run(ctx context.Context, deliver func()) error
	// Counters are the kernel's packet counters; ok is false offline, where the
	// engine keeps them.
	Counters() (c userspace.DatapathCounters, ok bool)
	// SetFilter swaps the packet filter; nil counts everything.
	SetFilter(f *filter.Filter) error
	// Close releases the source once Run has returned.
	Close() error
}
