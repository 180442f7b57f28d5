package fparser

import (
	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/live"
	"github.com/fparser/fparser/internal/loader"
	"github.com/fparser/fparser/internal/userspace"
)

// openLive loads the kernel datapath and attaches it to the chosen interfaces.
func (p *Parser) openLive(chosen []string, t userspace.Timeouts, o *Options, f *filter.Filter) error {
	sel, err := live.NewSelection(chosen)
	if err != nil {
		return &OptionError{Option: "Interfaces", Value: chosen, Reason: err.Error()}
	}
	src, err := live.Open(live.Config{
		Interfaces: sel,
		Loader: loader.Config{Mode: loader.Mode(o.Attach), Timeouts: t, MaxFlows: uint32(o.MaxFlows),
			CoarseClock: o.CoarseClock, HistoryLimit: o.Packets, Statistics: o.Statistics, PinDir: o.PinDir,
			RingBufferSize: o.RingBufferSize},
		History: o.history(),
		Logger:  p.log,
	}, f)
	if err != nil {
		return err
	}
	p.src = src
	return nil
}
