package userspace

import "time"

// Timeouts decide when a flow ends. Both the datapath (when a packet arrives for a flow
// that is already over) and the engine's sweep apply them through Expired, so a result
// never depends on when a sweep happens to run.
type Timeouts struct {
	Idle   time.Duration // since the last packet
	FIN    time.Duration // since the last packet, once a FIN or RST was seen
	Active time.Duration // since the first packet; 0 disables it
}

// DefaultTimeouts are the original FParser's: 600 s idle, 30 s after FIN/RST, no active
// timeout.
var DefaultTimeouts = Timeouts{Idle: 600 * time.Second, FIN: 30 * time.Second}

// Expired reports whether the flow is over at time now, why, and when it ended. A flow
// ends at the first instant its timeout has fully passed: a packet that arrives exactly
// a timeout after the last one belongs to a new flow.
func (t *Timeouts) Expired(s *State, now int64) (EndReason, int64, bool) {
	last := s.LastSeen()
	if s.Marks != 0 {
		if end := last + int64(t.FIN); now >= end {
			if s.Marks&MarkRST != 0 {
				return EndRST, end, true
			}
			return EndFIN, end, true
		}
	}
	if end := last + int64(t.Idle); now >= end {
		return EndIdle, end, true
	}
	if t.Active > 0 {
		if end := s.FirstSeen() + int64(t.Active); now >= end {
			return EndActive, end, true
		}
	}
	return 0, 0, false
}

// shortest is the smallest timeout in force.
func (t *Timeouts) shortest() time.Duration {
	d := min(t.Idle, t.FIN)
	if t.Active > 0 {
		d = min(d, t.Active)
	}
	return d
}
