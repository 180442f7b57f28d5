package loader

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/fparser/fparser/internal/userspace"
)

// Event kinds the kernel sends.
const (
	EventMark   = userspace.EventMark   // a FIN or RST first marked the flow at Time
	EventEnded  = userspace.EventEnded  // the kernel ended the flow (Reason, at Time) and started it anew
	EventPacket = userspace.EventPacket // a packet of the flow, for its history (Packet)
)

// Event is a record from the kernel's ring buffer.
type Event = userspace.Event

// Events reads the kernel's events until Close.
type Events struct {
	rd  *ringbuf.Reader
	rec ringbuf.Record // reused: reading allocates nothing
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
// (ErrFlushed), or Close is called (ErrClosed). It fills only the fields of ev that
// the event's kind uses.
func (e *Events) Read(ev *Event) error {
	if err := e.rd.ReadInto(&e.rec); err != nil {
		return err
	}
	raw := e.rec.RawSample
	if len(raw) == 0 {
		return fmt.Errorf("empty event")
	}
	ev.Kind = userspace.EventKind(raw[0])
	switch ev.Kind {
	case EventPacket:
		if len(raw) < int(unsafe.Sizeof(fparserRecord{})) {
			return fmt.Errorf("short packet record: %d bytes", len(raw))
		}
		r := (*fparserRecord)(unsafe.Pointer(&raw[0]))
		ev.Time = r.Time
		ev.Key = *(*userspace.Key)(unsafe.Pointer(&r.Key))
		ev.Packet = userspace.PacketRecord{
			Time: r.Time, Dir: r.Dir, TTL: r.Ttl, Flags: r.Flags, IPID: r.Ipid,
			Window: r.Window, Length: r.Length, Seq: r.Seq, Ack: r.Ack,
		}
	case EventMark, EventEnded:
		if len(raw) < int(unsafe.Sizeof(fparserEvent{})) {
			return fmt.Errorf("short event: %d bytes", len(raw))
		}
		r := (*fparserEvent)(unsafe.Pointer(&raw[0]))
		ev.Reason = userspace.EndReason(r.Reason)
		ev.Time = r.Time
		ev.Key = *(*userspace.Key)(unsafe.Pointer(&r.Key))
		if ev.Kind == EventEnded {
			v := (*fullValue)(unsafe.Pointer(&r.State))
			ev.State, ev.Stats = v.State, v.Stats
		}
	default:
		return fmt.Errorf("unknown event kind %d", ev.Kind)
	}
	return nil
}

// Pending reports whether more events wait in the ring buffer, so that a Read
// would not block.
func (e *Events) Pending() bool { return e.rd.AvailableBytes() > 0 }

// Flush makes Read return every event already in the ring buffer, then an error for
// which matches ErrFlushed. Unlike SetDeadline it may be called while Read blocks.
func (e *Events) Flush() error { return e.rd.Flush() }

// ErrFlushed is what Read returns once it has returned every event sent before a
// Flush.
var ErrFlushed = ringbuf.ErrFlushed

// Close ends Read.
func (e *Events) Close() error { return e.rd.Close() }

// ErrClosed is what Read returns once Close was called.
var ErrClosed = ringbuf.ErrClosed
