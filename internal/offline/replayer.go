package offline

import (
	"context"
	"fmt"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/userspace"
)

// ReplayConfig is what a Replayer needs besides its capture.
type ReplayConfig struct {
	Timeouts   userspace.Timeouts
	History    userspace.HistoryConfig
	Snaplen    int
	Statistics bool
	TCPQuality bool    // dp.KeepTCPQuality
	Decap      bool    // dp.Decapsulate
	Speed      float64 // a multiple of the capture's pace; 0 replays as fast as it can
}

// Replayer replays one capture through the Go datapath into its engine: the
// offline counterpart of live.Source, behind the same interface of the root package.
type Replayer struct {
	src   *Source
	dp    *Datapath
	eng   *userspace.Engine
	speed float64
}

// NewReplayer sets up the replay of src, whose errors call it by its name already.
func NewReplayer(src *Source, cfg ReplayConfig) *Replayer {
	table := userspace.NewFlowTable(1024)
	eng := userspace.NewEngine(table, cfg.Timeouts)
	eng.SetHistory(cfg.History)
	dp := NewDatapath(eng, table, cfg.Snaplen)
	if cfg.Statistics {
		dp.KeepStatistics()
	}
	if cfg.TCPQuality {
		dp.KeepTCPQuality()
	}
	if cfg.Decap {
		dp.Decapsulate()
	}
	return &Replayer{src: src, dp: dp, eng: eng, speed: cfg.Speed}
}

// Engine is the engine the replay counts into.
func (r *Replayer) Engine() *userspace.Engine { return r.eng }

// ClockOffset is 0: a capture's timestamps are Unix times already.
func (r *Replayer) ClockOffset() int64 { return 0 }

// Run replays the capture until its end or until ctx is done (see Replay).
func (r *Replayer) Run(ctx context.Context, deliver func()) error {
	if r.speed > 0 {
		return ReplayPaced(ctx, r.src, r.dp, r.eng, deliver, r.speed)
	}
	return Replay(ctx, r.src, r.dp, r.eng, deliver)
}

// Counters reports ok false: the engine keeps the Go datapath's counters.
func (r *Replayer) Counters() (userspace.DatapathCounters, bool) {
	return userspace.DatapathCounters{}, false
}

// SetFilter makes f (nil: none) decide the packets, compiled for the capture's link
// type, or for each pcapng interface's as it comes.
func (r *Replayer) SetFilter(f *filter.Filter) error {
	var links []uint32
	if lt, ok := r.src.LinkType(); ok {
		links = append(links, lt)
	}
	if err := r.dp.SetFilter(f, r.src.BigEndian(), links...); err != nil {
		return fmt.Errorf("%s: %w", r.src.path, err)
	}
	return nil
}

// Progress reports how much of the capture was read, and its size.
func (r *Replayer) Progress() (read, size int64) { return r.src.Progress() }

// InterfaceName is the name the capture gives the place index (Source.InterfaceName).
func (r *Replayer) InterfaceName(index int) string { return r.src.InterfaceName(index) }

// Close closes the capture.
func (r *Replayer) Close() error { return r.src.Close() }
