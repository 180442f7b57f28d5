package userspace

import "math"

// HistoryConfig says which packets the engine keeps the headers of.
type HistoryConfig struct {
	// Limit is the number of packets kept per flow, from its first; 0 keeps none,
	// a negative limit keeps all.
	Limit int
	// MaxBytes caps the memory the histories of active flows take. When it is
	// reached, storing stops: the flows that miss packets are marked incomplete.
	MaxBytes int64
	// Late says records may reach the engine after the sweep that ended their flow
	// (live: the kernel counts a packet, then sends its record). The engine then
	// remembers the flows that ended in the last two sweeps, so that such a record is
	// dropped rather than begin a history of its own. Offline a record comes with
	// its packet.
	Late bool
}

// RecordLimit is the number of packets recorded per flow for a Limit, as the
// kernel's history_limit counts it: 0 for none, the largest uint32 for all.
func RecordLimit(limit int) uint32 {
	if limit < 0 || uint64(limit) >= math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(limit)
}

// HistoryStats are the history's counters.
type HistoryStats struct {
	StoredTCP, StoredUDP uint64 // packets recorded, in all flows so far
	Bytes                int64  // held by the histories of active flows
	Capped               uint64 // packets not stored because of MaxBytes
	Lost                 uint64 // packets whose record never arrived (kernel ring buffer full)
}

// histories are the engine's per-flow packet histories, beside the flow table: the
// table (the kernel's map, live) has fixed-size values.
type histories struct {
	cfg   HistoryConfig
	m     map[Key]*History
	peak  int // the most histories m has held since it was made
	stats HistoryStats
	// With Late: the last packet's time of the flows that ended in this sweep and
	// the one before, by key.
	recent, older map[Key]int64
	// ending: Flush is ending every flow, so the map is not rebuilt smaller on the
	// way (a copy of up to a quarter of it, for nothing); it is let go once empty.
	ending bool
}

// keepHistories is the size below which the map of histories is never rebuilt. A Go
// map keeps the room its entries took after they are deleted: once the flows of a
// burst have ended, so that m holds a quarter of its peak or less, take rebuilds it
// at its present size. A rebuild copies at most a third of the flows that ended
// since the last, so it costs O(1) a flow. The maps of late records are let go
// likewise (newSweep).
const keepHistories = 1024

// SetHistory turns the per-packet history on (Limit != 0) or off. Call it before
// the first packet.
func (e *Engine) SetHistory(c HistoryConfig) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.Limit == 0 {
		e.hist = nil
		return
	}
	e.hist = &histories{cfg: c, m: make(map[Key]*History)}
	if c.Late {
		e.hist.recent, e.hist.older = make(map[Key]int64), make(map[Key]int64)
	}
}

// HistoryOn says the engine keeps packet histories.
func (e *Engine) HistoryOn() bool { return e.hist != nil }

// HistoryLimit is the number of packets recorded per flow, as the kernel's
// history_limit counts it: 0 when the history is off, the largest uint32 for all.
func (e *Engine) HistoryLimit() uint32 {
	if e.hist == nil {
		return 0
	}
	return RecordLimit(e.hist.cfg.Limit)
}

// HistoryStats returns the history's counters.
func (e *Engine) HistoryStats() HistoryStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.historyStats()
}

func (e *Engine) historyStats() HistoryStats {
	if e.hist == nil {
		return HistoryStats{}
	}
	return e.hist.stats
}

// record adds a packet to the history of the active flow with key k, which the
// datapath has just counted it in.
func (e *Engine) record(k *Key, r *PacketRecord) {
	hs := e.hist
	if hs == nil {
		return
	}
	h := hs.m[*k]
	if h == nil {
		if hs.late(k, r) {
			return
		}
		h = &History{}
		hs.m[*k] = h
		hs.peak = max(hs.peak, len(hs.m))
	}
	if hs.cfg.Limit > 0 && h.n >= hs.cfg.Limit {
		return
	}
	if hs.cfg.MaxBytes > 0 && hs.stats.Bytes >= hs.cfg.MaxBytes {
		h.incomplete = true
		h.capped++
		hs.stats.Capped++
		return
	}
	before := cap(h.buf)
	h.Append(r)
	hs.stats.Bytes += int64(cap(h.buf) - before)
	if k.Proto == ProtoTCP {
		hs.stats.StoredTCP++
	} else {
		hs.stats.StoredUDP++
	}
}

// take removes and returns the history of a flow that ended with state s. Records
// the datapath counted (s.Recorded) but that never arrived, live when the kernel's
// ring buffer was full, mark it incomplete and count as lost.
func (hs *histories) take(k *Key, s *State) *History {
	if hs == nil {
		return nil
	}
	h := hs.m[*k]
	if h != nil {
		delete(hs.m, *k)
		hs.stats.Bytes -= int64(cap(h.buf))
		switch n := len(hs.m); {
		case hs.ending:
			if n == 0 {
				hs.m, hs.peak = make(map[Key]*History), 0
			}
		case hs.peak > keepHistories && n <= hs.peak/4:
			hs.rebuild()
		}
	} else if s.Recorded > 0 {
		h = &History{}
	}
	if hs.recent != nil {
		hs.recent[*k] = s.LastSeen()
	}
	if h != nil {
		if missing := int64(s.Recorded) - int64(h.n) - int64(h.capped); missing > 0 {
			h.incomplete = true
			hs.stats.Lost += uint64(missing)
		}
	}
	return h
}

// rebuild copies the map of histories into one of its present size (maps.Clone
// would copy its room too).
func (hs *histories) rebuild() {
	m := make(map[Key]*History, len(hs.m))
	for k, h := range hs.m {
		m[k] = h
	}
	hs.m, hs.peak = m, len(m)
}

// late reports that a record for key k, which has no history, belongs to a flow that
// ended in one of the last two sweeps: live, the kernel counts a packet, then sends
// its record, which can reach the engine just after the sweep that ended its flow.
// That flow was reported with the record counted as lost. A record of a flow that
// began since is later than the ended flow's last packet.
func (hs *histories) late(k *Key, r *PacketRecord) bool {
	if hs.recent == nil {
		return false
	}
	if last, ok := hs.recent[*k]; ok && r.Time <= last {
		return true
	}
	last, ok := hs.older[*k]
	return ok && r.Time <= last
}

// noLateRecords forgets the flows that ended, and stops remembering them: no record
// can come late any more. It is Flush's: every flow ends now.
func (hs *histories) noLateRecords() {
	if hs != nil {
		hs.recent, hs.older = nil, nil
		hs.ending = true
	}
}

// newSweep forgets the flows that ended two sweeps ago: the records they had left to
// send have arrived, since the reader catches up before each sweep.
func (hs *histories) newSweep() {
	if hs == nil || hs.recent == nil {
		return
	}
	if len(hs.older) > keepHistories {
		hs.older = make(map[Key]int64) // let a burst's room go
	} else {
		clear(hs.older)
	}
	hs.recent, hs.older = hs.older, hs.recent
}

// copyOf returns a copy of an active flow's history.
func (hs *histories) copyOf(k *Key) *History {
	if hs == nil {
		return nil
	}
	if h := hs.m[*k]; h != nil {
		return h.Clone()
	}
	return nil
}
