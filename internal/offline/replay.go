package offline

import (
	"context"
	"io"
	"time"

	"github.com/fparser/fparser/internal/userspace"
)

// inFlight is how many batches a replay has read ahead of the one it counts: enough
// that the reading goroutine never waits for the counting one to hand memory back.
const inFlight = 4

// Replay runs every packet of src through dp. Reading the file, decompressing and
// parsing run on a goroutine of their own, a batch ahead; counting runs on the
// caller's, in capture order, so the result is the same as on one core. After each
// batch, and right after any flow ends, it calls delivered, so the caller can hand
// out the flows that ended before the next packet counts: a Stop or SetFilter from
// there applies from the next packet. When the file ends, or fails, every flow still
// active is flushed with reason end-of-capture and delivered before Replay returns the
// file's error (nil at a clean end), or the filter's when it cannot apply to a link
// type the capture turns to. When ctx is done first, the flows are flushed with
// reason stopped and Replay returns ctx's error.
func Replay(ctx context.Context, src *Source, dp *Datapath, eng *userspace.Engine, delivered func()) error {
	read := make(chan *packets, inFlight)
	free := make(chan *packets, inFlight)
	for range inFlight {
		free <- &packets{dp: dp}
	}
	quit := make(chan struct{})
	reader := make(chan struct{})
	go func() {
		defer close(reader)
		fp := frameParser{dp: dp}
		for {
			var b *packets
			select {
			case b = <-free:
			case <-quit:
				return
			}
			b.first = src.n
			b.err = src.ReadBatch(&b.frames)
			readErr := b.err
			b.parseAll(&fp, src.path, 0)
			select {
			case read <- b:
			case <-quit:
				return
			}
			if readErr != nil || b.err != nil {
				return
			}
		}
	}()
	stop := func() {
		close(quit)
		<-reader
	}

	var err error
	for err == nil {
		b := <-read
		for i := 0; i < len(b.parsed); {
			if ctx.Err() != nil {
				stop()
				eng.Flush(userspace.EndStopped, delivered)
				return ctx.Err()
			}
			if b.set != dp.filters.Load() {
				// SetFilter ran since these frames were parsed.
				b.parseAll(&dp.own, src.path, i)
			}
			i = eng.Count(b, i)
			delivered()
		}
		err = b.err
		free <- b
	}
	stop()
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
	b := &packets{dp: dp}
	var first int64
	var start time.Time
	var err error
	for err == nil {
		b.first = src.n
		b.err = src.ReadBatch(&b.frames)
		b.parseAll(&dp.own, src.path, 0)
		for i := 0; i < len(b.parsed); {
			if ctx.Err() != nil {
				eng.Flush(userspace.EndStopped, delivered)
				return ctx.Err()
			}
			if start.IsZero() {
				first, start = b.parsed[0].ts, time.Now()
			}
			// Count the packets whose time has come, at once.
			elapsed := userspace.After(first, time.Duration(float64(time.Since(start))*speed))
			j := i
			for j < len(b.parsed) && b.parsed[j].ts <= elapsed {
				j++
			}
			if j > i {
				if b.set != dp.filters.Load() {
					b.parseAll(&dp.own, src.path, i)
					j = min(j, len(b.parsed))
				}
				b.limit = j
				i = eng.Count(b, i)
				b.limit = 0
				delivered()
			} else {
				// Sleep in steps, so that flows due to end meanwhile end on
				// time, and move the engine's clock on while nothing arrives,
				// as live; never past the packet waiting, so that it counts at
				// its own time.
				wait := time.Until(start.Add(time.Duration(float64(b.parsed[i].ts-first) / speed)))
				t := time.NewTimer(min(wait, 100*time.Millisecond))
				select {
				case <-ctx.Done():
					t.Stop()
				case <-t.C:
				}
				eng.Tick(min(userspace.After(first, time.Duration(float64(time.Since(start))*speed)), b.parsed[i].ts))
				delivered()
			}
		}
		err = b.err
	}
	eng.Flush(userspace.EndEndOfCapture, delivered)
	if err == io.EOF {
		return nil
	}
	return err
}
