package offline

import (
	"context"
	"io"

	"github.com/fparser/fparser/userspace"
)

// batchSize is how many packets the replay counts per hold of the engine's lock: large
// enough that the lock costs nothing per packet, small enough that a lookup from
// another goroutine waits well under a millisecond.
const batchSize = 1024

// Replay runs every packet of src through dp. After each batch it calls delivered, so
// the caller can hand out the flows that ended. When the file ends, or fails, every
// flow still active is flushed with reason end-of-capture and delivered before Replay
// returns the file's error (nil at a clean end). When ctx is done first, the flows are
// flushed with reason stopped and Replay returns ctx's error.
func Replay(ctx context.Context, src *Source, dp *Datapath, eng *userspace.Engine, delivered func()) error {
	var f Frame
	var err error
	for err == nil {
		if ctx.Err() != nil {
			eng.Do(func() { eng.FlushLocked(userspace.EndStopped) })
			delivered()
			return ctx.Err()
		}
		eng.Do(func() {
			for range batchSize {
				if err = src.Next(&f); err != nil {
					return
				}
				dp.Packet(f.Data, f.Wire, f.LinkType, f.Time)
			}
		})
		delivered()
	}
	eng.Do(func() { eng.FlushLocked(userspace.EndEndOfCapture) })
	delivered()
	if err == io.EOF {
		return nil
	}
	return err
}
