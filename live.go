package fparser

import (
	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/live"
	"github.com/fparser/fparser/internal/loader"
	"github.com/fparser/fparser/internal/userspace"
)

// Errors of the live datapath, to test with errors.Is.
var (
	// ErrNotPermitted: the process may not load or attach BPF programs; the message
	// names the capabilities it lacks.
	ErrNotPermitted = loader.ErrNotPermitted
	// ErrKernelTooOld: the kernel lacks a feature the datapath needs.
	ErrKernelTooOld = loader.ErrKernelTooOld
	// ErrVerifier: the kernel's verifier rejected the program; the message carries
	// the last lines of its log.
	ErrVerifier = loader.ErrVerifier
	// ErrAttach: the kernel refused to attach the program to the interface.
	ErrAttach = loader.ErrAttachRefused
	// ErrInterfaceGone: the interface the parser counted on was deleted. The flows
	// counted until then are reported first, with reason stopped.
	ErrInterfaceGone = live.ErrInterfaceGone
)

// openLive loads the kernel datapath and attaches it to the interface.
func (p *Parser) openLive(iface string, t userspace.Timeouts, o *Options, f *filter.Filter) error {
	src, err := live.Open(live.Config{
		Loader: loader.Config{Interface: iface, Mode: loader.Mode(o.Attach), Timeouts: t, MaxFlows: uint32(o.MaxFlows),
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
