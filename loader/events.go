package loader

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/fparser/fparser/userspace"
)

// Event kinds the kernel sends.
const (
	EventMark  = 1 // a FIN or RST first marked the flow at Time
	EventEnded = 2 // the kernel ended the flow (Reason, at Time) and started it anew
)

// Event is a record from the kernel's ring buffer.
type Event struct {
	Kind   uint8
	Reason userspace.EndReason
	Time   int64 // the kernel's monotonic clock, ns
	Key    userspace.Key
	State  userspace.State // EventEnded: the flow's final counters
}

// Events reads the kernel's events until Close.
type Events struct {
	rd *ringbuf.Reader
}

// Events opens the ring buffer.
func (d *Datapath) Events() (*Events, error) {
	rd, err := ringbuf.NewReader(d.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open the event ring buffer: %w", err)
	}
	return &Events{rd: rd}, nil
}

// Read blocks until an event arrives, a Flush has delivered every event before it
// (IsFlushed), or Close is called (IsClosed).
func (e *Events) Read(ev *Event) error {
	rec, err := e.rd.Read()
	if err != nil {
		return err
	}
	if len(rec.RawSample) < int(unsafe.Sizeof(fparserEvent{})) {
		return fmt.Errorf("short event: %d bytes", len(rec.RawSample))
	}
	raw := (*fparserEvent)(unsafe.Pointer(&rec.RawSample[0]))
	*ev = Event{
		Kind:   raw.Type,
		Reason: userspace.EndReason(raw.Reason),
		Time:   raw.Time,
		Key:    *(*userspace.Key)(unsafe.Pointer(&raw.Key)),
		State:  *(*userspace.State)(unsafe.Pointer(&raw.State)),
	}
	return nil
}

// Flush makes Read return every event already in the ring buffer, then an error for
// which IsFlushed is true. Unlike SetDeadline it may be called while Read blocks.
func (e *Events) Flush() error { return e.rd.Flush() }

// IsFlushed reports whether err is the end of a Flush.
func IsFlushed(err error) bool { return errors.Is(err, ringbuf.ErrFlushed) }

// Close ends Read.
func (e *Events) Close() error { return e.rd.Close() }

// IsClosed reports whether err says the reader was closed.
func IsClosed(err error) bool { return errors.Is(err, ringbuf.ErrClosed) }
