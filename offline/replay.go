package offline

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/fparser/fparser/userspace"
)

// batchSize is how many packets the replay counts per hold of the engine's lock: large
// enough that the lock costs nothing per packet, small enough that a lookup from
// another goroutine waits well under a millisecond.
const batchSize = 1024

// group is how many packets are parsed ahead of counting, so that their flow table
// cache misses overlap.
const group = 16

// Replay runs every packet of src through dp. After each batch it calls delivered, so
// the caller can hand out the flows that ended. When the file ends, or fails, every
// flow still active is flushed with reason end-of-capture and delivered before Replay
// returns the file's error (nil at a clean end), or the filter's when it cannot apply
// to a link type the capture turns to. When ctx is done first, the flows are flushed
// with reason stopped and Replay returns ctx's error.
func Replay(ctx context.Context, src *Source, dp *Datapath, eng *userspace.Engine, delivered func()) error {
	var f Frame
	var pp [group]Parsed
	var err error
	for err == nil {
		if ctx.Err() != nil {
			eng.Flush(userspace.EndStopped, delivered)
			return ctx.Err()
		}
		eng.Do(func() {
			for range batchSize / group {
				n := 0
				for ; n < group; n++ {
					if err = src.Next(&f); err != nil {
						break
					}
					dp.Parse(&pp[n], f.Data, f.Wire, f.LinkType, f.Time)
					if dp.err != nil {
						err = fmt.Errorf("%s: packet %d: %w", src.path, src.n, dp.err)
						break
					}
				}
				for i := range n {
					dp.Prefetch(&pp[i])
				}
				for i := range n {
					dp.Count(&pp[i])
				}
				if err != nil {
					return
				}
			}
		})
		delivered()
	}
	eng.Flush(userspace.EndEndOfCapture, delivered)
	if err == io.EOF {
		return nil
	}
	return err
}

// ReplayPaced is Replay at speed times the capture's own pace (1: as it was
// captured): each packet is counted when as much time has passed since the first
// one, divided by speed, as its timestamp says. The engine's lock is free while the
// replay waits, so lookups and snapshots see the flows as they grow. Timestamps that
// go backwards are counted at once.
func ReplayPaced(ctx context.Context, src *Source, dp *Datapath, eng *userspace.Engine, delivered func(), speed float64) error {
	var f Frame
	var pp Parsed
	var err error
	var first int64
	var start time.Time
	pending := false // f is read, and waits for its time
	for err == nil {
		var wait time.Duration
		eng.Do(func() {
			for range batchSize {
				if !pending {
					if err = src.Next(&f); err != nil {
						return
					}
				}
				if start.IsZero() {
					first, start = f.Time, time.Now()
				}
				due := start.Add(time.Duration(float64(f.Time-first) / speed))
				if wait = time.Until(due); wait > 0 {
					pending = true
					return
				}
				pending = false
				dp.Parse(&pp, f.Data, f.Wire, f.LinkType, f.Time)
				if dp.err != nil {
					err = fmt.Errorf("%s: packet %d: %w", src.path, src.n, dp.err)
					return
				}
				dp.Count(&pp)
			}
		})
		delivered()
		if wait > 0 {
			// Sleep in steps, so that flows due to end meanwhile end on time.
			t := time.NewTimer(min(wait, 100*time.Millisecond))
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
			// Move the engine's clock on while nothing arrives, as live, so that
			// flows end when their time comes; never past the packet waiting, so
			// that it counts at its own time.
			now := min(first+int64(float64(time.Since(start))*speed), f.Time)
			eng.Do(func() { eng.AdvanceLocked(now) })
			delivered()
		}
		if ctx.Err() != nil {
			eng.Flush(userspace.EndStopped, delivered)
			return ctx.Err()
		}
	}
	eng.Flush(userspace.EndEndOfCapture, delivered)
	if err == io.EOF {
		return nil
	}
	return err
}
