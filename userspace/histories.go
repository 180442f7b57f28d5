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
	// (live: the kernel counts a packet, then sends its record). The sweeps then drop
	// the histories such records leave behind. Offline a record comes with its
	// packet, and the sweeps skip that work.
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
	stats HistoryStats
	sweep uint32 // sweeps so far, to find histories left by ended flows
}

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
		h = &History{swept: hs.sweep}
		hs.m[*k] = h
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
	} else if s.Recorded > 0 {
		h = &History{}
	}
	if h != nil {
		if missing := int64(s.Recorded) - int64(h.n) - int64(h.capped); missing > 0 {
			h.incomplete = true
			hs.stats.Lost += uint64(missing)
		}
	}
	return h
}

// sawActive notes that a sweep found the flow with key k active.
func (hs *histories) sawActive(k *Key) {
	if h := hs.m[*k]; h != nil {
		h.swept = hs.sweep
	}
}

// endSweep drops the histories of flows that two sweeps in a row did not find
// active. Live, a packet's record can reach the engine just after the sweep that
// ended its flow (the kernel counts the packet first, then sends the record); its
// flow was reported with the record counted as lost, and the record has no flow left
// to go to. Offline, records reach the engine with their packets and none is left.
func (hs *histories) endSweep() {
	for k, h := range hs.m {
		if hs.sweep-h.swept >= 2 {
			delete(hs.m, k)
			hs.stats.Bytes -= int64(cap(h.buf))
		}
	}
	hs.sweep++
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
