package fparser

import (
	"errors"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/live"
	"github.com/fparser/fparser/internal/loader"
	"github.com/fparser/fparser/internal/offline"
)

// Errors that callers test with errors.Is. The errors returned wrap them and keep
// their cause: errors.As finds an *OptionError, a *filter.Error, the *fs.PathError of
// a file, or the kernel's own error (the verifier's *ebpf.VerifierError, EPERM).
var (
	// ErrBadCapture: the capture file is damaged or not a capture. The flows read
	// before the fault were still reported. New returns it for a bad header, Wait
	// for a fault further on.
	ErrBadCapture = errors.New("bad capture")
	// ErrUnsupportedLink: the capture's link type is not one fparser reads. It also
	// matches ErrBadCapture.
	ErrUnsupportedLink = errors.New("unsupported link type")
	// ErrNoSource: the source names neither a file nor a network interface.
	ErrNoSource = errors.New("no such capture file or network interface")
	// ErrFilter: the filter is not valid, not supported, or cannot apply to the
	// capture's link type. The error names the expression, and the column where
	// it is wrong; filter.ErrSyntax, filter.ErrUnsupported, filter.ErrHostName,
	// filter.ErrLinkType, filter.ErrTooLarge and filter.ErrProgram tell the cases
	// apart.
	ErrFilter = filter.ErrFilter
	// ErrOption: an option has a value out of its range, or is for the other kind
	// of source. The error is an *OptionError.
	ErrOption = errors.New("invalid option")
	// ErrStopped: SetFilter was called once the parser had been stopped (Stop,
	// Close, Run's context) or had finished: no packet is left for a filter to
	// decide.
	ErrStopped = errors.New("the parser has stopped")
	// ErrInCallback: Close, Wait, WaitContext or Run was called from one of the
	// parser's own callbacks, which the parser would have to finish first: it
	// returns at once instead of waiting forever. Use Stop there.
	ErrInCallback = errors.New("called from a callback of the same parser, which it would wait for")

	// ErrNotPermitted: the process may not load or attach BPF programs; the message
	// names the capabilities it lacks, and the error wraps the kernel's EPERM.
	ErrNotPermitted = errors.New("not permitted")
	// ErrKernelTooOld: the kernel lacks a feature the datapath needs.
	ErrKernelTooOld = errors.New("kernel too old")
	// ErrVerifier: the kernel's verifier rejected the program; the message carries
	// the last lines of its log, and errors.As finds the *ebpf.VerifierError with
	// all of it.
	ErrVerifier = errors.New("the verifier rejected the program")
	// ErrAttach: the kernel refused to attach the program to the interface.
	ErrAttach = errors.New("attach refused")
	// ErrInterfaceGone: the interfaces the parser counted on were deleted, and no
	// pattern (Options.Interfaces) can bring another; Wait returns it. The flows
	// counted until then are reported first, with reason EndStopped.
	ErrInterfaceGone = errors.New("the network interface is gone")
)

// internalErrors are the errors of the internal packages that stand for the root's
// sentinels.
var internalErrors = []struct{ internal, public error }{
	{offline.ErrBadCapture, ErrBadCapture},
	{offline.ErrUnsupportedLink, ErrUnsupportedLink},
	{loader.ErrNotPermitted, ErrNotPermitted},
	{loader.ErrKernelTooOld, ErrKernelTooOld},
	{loader.ErrVerifier, ErrVerifier},
	{loader.ErrAttachRefused, ErrAttach},
	{live.ErrInterfaceGone, ErrInterfaceGone},
	{loader.ErrNoInterface, ErrNoSource},
}

// publicError is err as the root's callers see it: matching the root's sentinels for
// the internal errors it wraps, with its message and causes unchanged.
func publicError(err error) error {
	if err == nil {
		return nil
	}
	var matches []error
	for _, e := range internalErrors {
		if errors.Is(err, e.internal) {
			matches = append(matches, e.public)
		}
	}
	if len(matches) == 0 {
		return err
	}
	return &sentinelError{err: err, sentinels: matches}
}

// sentinelError is an error that also matches the root's sentinels.
type sentinelError struct {
	err       error
	sentinels []error
}

func (e *sentinelError) Error() string   { return e.err.Error() }
func (e *sentinelError) Unwrap() []error { return append([]error{e.err}, e.sentinels...) }
