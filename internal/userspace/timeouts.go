package userspace

import (
	"math"
	"time"
)

// Timeouts decide when a flow ends. Both the datapath (when a packet arrives for a flow
// that is already over) and the engine's sweep apply them through Expired, so a result
// never depends on when a sweep happens to run.
type Timeouts struct {
	Idle   time.Duration // since the last packet
	FIN    time.Duration // since the last packet, once a FIN or RST was seen
	Active time.Duration // since the first packet; 0 disables it
}

// The original FParser's timeouts, the defaults of every layer: 600 s idle, 30 s
// after FIN/RST, no active timeout.
const (
	DefaultIdle = 600 * time.Second
	DefaultFIN  = 30 * time.Second
)

// DefaultTimeouts are DefaultIdle and DefaultFIN, with no active timeout.
var DefaultTimeouts = Timeouts{Idle: DefaultIdle, FIN: DefaultFIN}

// Deadline returns when the flow will end if no packet comes first, and why: the
// earliest of its timeouts that apply.
func (t *Timeouts) Deadline(s *State) (EndReason, int64) {
	last := s.LastSeen()
	reason, end := EndIdle, After(last, t.Idle)
	if s.Marks != 0 {
		if fin := After(last, t.FIN); fin <= end {
			reason, end = EndFIN, fin
			if s.Marks&MarkRST != 0 {
				reason = EndRST
			}
		}
	}
	if t.Active > 0 {
		if act := After(s.FirstSeen(), t.Active); act < end {
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

// After is time t plus d, or the last instant an int64 holds when that is later: a
// flow whose timeout would pass after it ends only at the end of its capture, instead
// of at once by an overflow (captures may be dated up to the year 2262).
func After(t int64, d time.Duration) int64 {
	if d > 0 && t > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	if d < 0 && t < math.MinInt64-int64(d) {
		return math.MinInt64
	}
	return t + int64(d)
}
