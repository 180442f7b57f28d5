package fparser

import (
	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/live"
	"github.com/fparser/fparser/internal/loader"
	"github.com/fparser/fparser/internal/userspace"
)

// egressAttached says the attach mode counts on egress, where the kernel finds the
// local sockets that send a flow's packets: only there is attribution possible.
func egressAttached(mode string) bool {
	switch loader.Mode(mode) {
	case "", loader.ModeAuto, loader.ModeTC, loader.ModeTCLegacy:
		return true
	}
	return false
}

// openLive loads the kernel datapath and attaches it to the chosen interfaces.
func (p *Parser) openLive(chosen []string, t userspace.Timeouts, o *Options, f *filter.Filter) error {
	sel, err := live.NewSelection(chosen)
	if err != nil {
		return &OptionError{Option: "Interfaces", Value: chosen, Reason: err.Error()}
	}
	src, err := live.Open(live.Config{
		Interfaces: sel,
		Loader: loader.Config{Mode: loader.Mode(o.Attach), Timeouts: t, MaxFlows: uint32(o.MaxFlows),
			CoarseClock: o.CoarseClock, HistoryLimit: o.Packets, Statistics: o.Statistics, TCPQuality: o.TCPQuality, Decap: o.Decap, PinDir: o.PinDir,
			RingBufferSize: o.RingBufferSize, Owners: egressAttached(o.Attach)},
		History: o.history(),
		Logger:  p.log,
	}, f)
	if err != nil {
		return err
	}
	p.src = src
	return nil
}
