package userspace

// HistoryConfig says which packets the engine keeps the headers of.
type HistoryConfig struct {
	// Limit is the number of packets kept per flow, from its first; 0 keeps none,
	// a negative limit keeps all.
	Limit int
	// MaxBytes caps the memory the histories of active flows take. When it is
	// reached, storing stops: the flows that miss packets are marked incomplete.
	MaxBytes int64
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

// HistoryStatsLocked returns the history's counters.
func (e *Engine) HistoryStatsLocked() HistoryStats {
	if e.hist == nil {
		return HistoryStats{}
	}
	return e.hist.stats
}

// RecordLocked adds a packet to the history of the active flow with key k, which the
// datapath has just counted it in.
func (e *Engine) RecordLocked(k *Key, r *PacketRecord) {
	hs := e.hist
	if hs == nil {
		return
	}
	h := hs.m[*k]
	if h == nil {
		h = &History{}
		hs.m[*k] = h
	}
	if hs.cfg.Limit > 0 && h.n >= hs.cfg.Limit {
		return
	}
	if hs.cfg.MaxBytes > 0 && hs.stats.Bytes >= hs.cfg.MaxBytes {
		h.incomplete = true
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

// LostLocked marks the flow with key k as missing a packet record.
func (e *Engine) LostLocked(k *Key) {
	if hs := e.hist; hs != nil {
		hs.stats.Lost++
		if h := hs.m[*k]; h != nil {
			h.incomplete = true
		} else {
			hs.m[*k] = &History{incomplete: true}
		}
	}
}

// take removes and returns the history of a flow that ended.
func (hs *histories) take(k *Key) *History {
	if hs == nil {
		return nil
	}
	h := hs.m[*k]
	if h != nil {
		delete(hs.m, *k)
		hs.stats.Bytes -= int64(cap(h.buf))
	}
	return h
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
