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

// Deadline returns when the flow will end if no packet comes first, and why: the
// earliest of its timeouts that apply.
func (t *Timeouts) Deadline(s *State) (EndReason, int64) {
	last := s.LastSeen()
	reason, end := EndIdle, last+int64(t.Idle)
	if s.Marks != 0 {
		if fin := last + int64(t.FIN); fin <= end {
			reason, end = EndFIN, fin
			if s.Marks&MarkRST != 0 {
				reason = EndRST
			}
		}
	}
	if t.Active > 0 {
		if act := s.FirstSeen() + int64(t.Active); act < end {
			reason, end = EndActive, act
		}
	}
	return reason, end
}

// Expired reports whether the flow is over at time now, why, and when it ended. A flow
// ends at the first instant one of its timeouts has fully passed: a packet that
// arrives exactly a timeout after the last one belongs to a new flow.
func (t *Timeouts) Expired(s *State, now int64) (EndReason, int64, bool) {
	reason, end := t.Deadline(s)
	if now >= end {
		return reason, end, true
	}
	return 0, 0, false
}

// unmarked is the shortest time a flow without FIN or RST can live after its last
// packet: no flow created at or after time t ends before t + unmarked.
func (t *Timeouts) unmarked() time.Duration {
	if t.Active > 0 {
		return min(t.Idle, t.Active)
	}
	return t.Idle
}

// shortest is the smallest timeout in force.
func (t *Timeouts) shortest() time.Duration {
	return min(t.unmarked(), t.FIN)
}
