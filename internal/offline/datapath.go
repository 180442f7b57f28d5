package offline

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/userspace"
)

// Datapath is the Go mirror of the kernel program: it parses a frame, finds its flow
// and updates the flow's state in place, under the same rules. It works in two
// stages, so that a replay can run them on two cores: parsing (the filter, the
// headers, the flow key and its hash) needs nothing but the frame; counting (the
// table, fragments, the engine) runs in order, inside the engine's Count.
type Datapath struct {
	eng          *userspace.Engine
	table        *userspace.FlowTable
	timeout      userspace.Timeouts
	frags        fragTable
	snaplen      int
	history      bool   // the engine keeps packet histories
	stats        bool   // KeepStatistics
	quality      bool   // KeepTCPQuality
	decap        bool   // Decapsulate
	historyLimit uint32 // records per flow, as the kernel's history_limit; 0 when off

	// The packet filter, as SetFilter last set it; each parsing goroutine compiles
	// it for the link types it meets (frameParser).
	filters  atomic.Pointer[filterSet]
	filterMu sync.Mutex // SetFilter, and links
	links    []uint32   // the link types met so far, which SetFilter compiles for

	own    frameParser // the counting goroutine's: Packet, and parsing again after SetFilter
	single packets     // Packet's batch of one
}

// filterSet is a filter as SetFilter set it, compiled for the link types known then.
type filterSet struct {
	f         *filter.Filter // nil: every frame counts
	bigEndian bool
	progs     []linkProgram
}

type linkProgram struct {
	link uint32
	prog *filter.Program
}

// SetFilter makes the datapath count only the frames f matches (nil: every frame),
// compiled for the link types given and for those met so far, then for each new one
// the capture brings. bigEndian is the capture's byte order (Source.BigEndian), which
// one link type's header depends on. If f cannot apply to one of those link types,
// SetFilter changes nothing and says why. It may be called from any goroutine: a
// replay counts with the new filter from the next packet it counts after the engine
// hands out flows, or from its next batch.
func (d *Datapath) SetFilter(f *filter.Filter, bigEndian bool, links ...uint32) error {
	d.filterMu.Lock()
	defer d.filterMu.Unlock()
	set := &filterSet{f: f, bigEndian: bigEndian}
	if f != nil {
		for _, lt := range append(links, d.links...) {
			if err := set.compileOnce(lt); err != nil {
				return err
			}
		}
	}
	d.filters.Store(set)
	return nil
}

// compileOnce adds the filter compiled for link type lt, unless it is there.
func (s *filterSet) compileOnce(lt uint32) error {
	for _, lp := range s.progs {
		if lp.link == lt {
			return nil
		}
	}
	p, err := s.f.Compile(filter.Link{Type: lt, BigEndian: s.bigEndian})
	if err != nil {
		return err
	}
	s.progs = append(s.progs, linkProgram{lt, p})
	return nil
}

// met notes a link type the capture brings, for SetFilter.
func (d *Datapath) met(lt uint32) {
	d.filterMu.Lock()
	defer d.filterMu.Unlock()
	for _, l := range d.links {
		if l == lt {
			return
		}
	}
	d.links = append(d.links, lt)
}

// frameParser parses frames for one goroutine, with the filter as that goroutine
// last read it and its own programs for it.
type frameParser struct {
	dp    *Datapath
	set   *filterSet
	progs []linkProgram
	last  linkProgram // the program of the last frame's link type
	err   error       // the filter cannot apply to a link type met in the capture
}

// refresh takes up the filter SetFilter last set, and reports whether it changed.
func (fp *frameParser) refresh() bool {
	set := fp.dp.filters.Load()
	if set == fp.set {
		return false
	}
	fp.set, fp.progs, fp.last = set, append(fp.progs[:0], set.progs...), linkProgram{}
	return true
}

// program returns the filter program for link type lt, compiling it the first time.
func (fp *frameParser) program(lt uint32) *filter.Program {
	if fp.last.prog != nil && fp.last.link == lt {
		return fp.last.prog
	}
	for _, lp := range fp.progs {
		if lp.link == lt {
			fp.last = lp
			return lp.prog
		}
	}
	fp.dp.met(lt)
	p, err := fp.set.f.Compile(filter.Link{Type: lt, BigEndian: fp.set.bigEndian})
	if err != nil {
		if fp.err == nil {
			fp.err = fmt.Errorf("a frame of link type %d: %w", lt, err)
		}
		return nil
	}
	fp.progs = append(fp.progs, linkProgram{lt, p})
	fp.last = fp.progs[len(fp.progs)-1]
	return p
}

// NewDatapath returns a datapath that counts into table and reports the flows it ends
// to eng. Frames longer than snaplen are cut to it first, as a capture would have cut
// them; 0 means no limit.
func NewDatapath(eng *userspace.Engine, table *userspace.FlowTable, snaplen int) *Datapath {
	d := &Datapath{eng: eng, table: table, timeout: eng.Timeouts(), frags: newFragTable(fragTableSize), snaplen: snaplen, history: eng.HistoryOn(), historyLimit: eng.HistoryLimit()}
	d.filters.Store(&filterSet{})
	d.own = frameParser{dp: d}
	return d
}

// KeepStatistics makes the datapath keep each direction's statistics
// (userspace.DirStats), as the kernel program does with stats_on. Call it before the
// first packet.
func (d *Datapath) KeepStatistics() { d.table.KeepStatistics(); d.stats = true }

// KeepTCPQuality makes the datapath keep each TCP flow's quality
// (userspace.TCPQuality), as the kernel program does with quality_on. Call it before
// the first packet.
func (d *Datapath) KeepTCPQuality() { d.table.KeepStatistics(); d.quality = true }

// Decapsulate makes the datapath open tunnels and count their packets by the
// headers inside, keeping each flow's tunnel (userspace.Tunnel), as the kernel
// program does with decap_on. Call it before the first packet.
func (d *Datapath) Decapsulate() { d.table.KeepStatistics(); d.decap = true }

// Packet counts one frame of link type lt, wire bytes long on the wire, captured at ts
// (ns since the epoch), and returns the error that a filter which cannot apply to lt
// gives. A flow it ends waits in the engine (TakeEnded).
func (d *Datapath) Packet(frame []byte, wire int, lt uint32, ts int64) error {
	return d.PacketAt(frame, wire, lt, ts, 1)
}

// PacketAt is Packet for a frame seen at the place where (userspace.Where), as the
// kernel sees a packet that crosses the host at several.
func (d *Datapath) PacketAt(frame []byte, wire int, lt uint32, ts int64, where userspace.Where) error {
	b := &d.single
	b.dp, b.parsed, b.recs, b.tuns = d, b.one[:1], b.oneRec[:1], b.oneTun[:1]
	d.own.refresh()
	d.own.parse(&b.parsed[0], &b.recs[0], &b.tuns[0], frame, wire, lt, ts, where)
	if err := d.own.err; err != nil {
		d.own.err = nil
		return err
	}
	for i := 0; i < 1; {
		i = d.eng.Count(b, i)
	}
	return nil
}

// Counters returns the datapath's counters.
func (d *Datapath) Counters() userspace.DatapathCounters { return d.eng.Counters() }

// Parsed is a frame parsed and keyed, ready to count: what counting needs and nothing
// more, since it crosses from the core that parses to the one that counts. It holds
// nothing of the frame, so the frame's buffer may be reused before it is counted.
type Parsed struct {
	key    userspace.Key // canonical
	ts     int64
	hash   uint32 // the high half of the table's hash, all that the table uses
	length uint32
	fragID uint32
	flags  uint8
	frag   uint8
	v      verdict
	srcIsA bool
	where  userspace.Where   // offline, the capture's interface, plus one
	seg    userspace.Segment // a whole TCP segment's, when the datapath keeps the TCP quality
}

// parse parses a frame, and with the history on, reads its record into rec; with
// decapsulation, its tunnel into tun. It changes nothing but pp, rec, tun and (when
// it meets a link type the filter cannot apply to) fp.err, so another goroutine may
// parse ahead of the one that counts.
func (fp *frameParser) parse(pp *Parsed, rec *userspace.PacketRecord, tun *userspace.Tunnel, frame []byte, wire int, lt uint32, ts int64, where userspace.Where) {
	d := fp.dp
	if d.snaplen > 0 && len(frame) > d.snaplen {
		frame = frame[:d.snaplen]
	}
	pp.ts = ts
	pp.where = where
	if fp.set.f != nil {
		if p := fp.program(lt); p == nil || !p.Match(frame, wire) {
			pp.v = vFiltered
			return
		}
	}
	var p packet
	if d.decap {
		*tun, p.tun = userspace.Tunnel{}, tun
	}
	pp.v = parse(&p, frame, lt, wire)
	if pp.v != vFlow && pp.v != vLaterFrag {
		return
	}
	if d.history {
		readRecord(rec, frame, &p)
		rec.Time = ts
	}
	pp.key, pp.length, pp.fragID, pp.flags, pp.frag = p.key, p.length, p.fragID, p.flags, p.frag
	if d.quality && pp.v == vFlow && p.frag == fragNone && p.key.Proto == userspace.ProtoTCP {
		readSegment(&pp.seg, frame, &p)
	}
	if pp.v == vFlow {
		pp.srcIsA = pp.key.Canonicalize()
		pp.hash = uint32(d.table.Hash(&pp.key) >> 32)
	}
}

// packets is a batch of frames parsed for the engine to count (a userspace.Batch).
type packets struct {
	dp     *Datapath
	frames FrameBatch // the frames, for parsing again when the filter changes
	parsed []Parsed
	recs   []userspace.PacketRecord // beside parsed, with the history on
	tuns   []userspace.Tunnel       // beside parsed, with decapsulation
	one    [1]Parsed                // Packet's
	oneRec [1]userspace.PacketRecord
	oneTun [1]userspace.Tunnel
	set    *filterSet
	first  int   // the number in the capture of the first frame, less one
	limit  int   // packets to count, when less than all (a paced replay)
	err    error // what ended the reading after these frames
}

func (b *packets) Len() int {
	if b.limit > 0 {
		return b.limit
	}
	return len(b.parsed)
}

func (b *packets) Time(i int) int64 { return b.parsed[i].ts }

// Prefetch distances: the flow table's slot for the packet this far ahead, and the
// entry the slot points at for the packet half as far, so that their cache misses
// overlap with the counting of the packets between.
const (
	slotAhead  = 16
	entryAhead = 8
)

func (b *packets) Count(i int, now int64, tx userspace.Tx) {
	if j := i + slotAhead; j < len(b.parsed) && b.parsed[j].v == vFlow {
		b.dp.table.PrefetchSlot(uint64(b.parsed[j].hash) << 32)
	}
	if j := i + entryAhead; j < len(b.parsed) && b.parsed[j].v == vFlow {
		b.dp.table.PrefetchEntry(uint64(b.parsed[j].hash) << 32)
	}
	var rec *userspace.PacketRecord
	if b.dp.history {
		rec = &b.recs[i]
	}
	var tun *userspace.Tunnel
	if b.dp.decap {
		tun = &b.tuns[i]
	}
	b.dp.count(&b.parsed[i], rec, tun, now, tx)
}

// parseAll parses the batch's frames from the i-th on with fp, and stops at the first
// frame whose link type the filter cannot apply to, making that the batch's error.
func (b *packets) parseAll(fp *frameParser, path string, i int) {
	fp.refresh()
	b.set = fp.set
	n := len(b.frames.Frames)
	if cap(b.parsed) < n {
		b.parsed = make([]Parsed, n, max(n, batchFrames))
	}
	b.parsed = b.parsed[:n]
	var rec userspace.PacketRecord // a place to write to when the history is off
	if fp.dp.history {
		if cap(b.recs) < n {
			b.recs = make([]userspace.PacketRecord, n, max(n, batchFrames))
		}
		b.recs = b.recs[:n]
	}
	var tun userspace.Tunnel // likewise, without decapsulation
	if fp.dp.decap {
		if cap(b.tuns) < n {
			b.tuns = make([]userspace.Tunnel, n, max(n, batchFrames))
		}
		b.tuns = b.tuns[:n]
	}
	for ; i < n; i++ {
		f := &b.frames.Frames[i]
		r, t := &rec, &tun
		if fp.dp.history {
			r = &b.recs[i]
		}
		if fp.dp.decap {
			t = &b.tuns[i]
		}
		fp.parse(&b.parsed[i], r, t, f.Data, f.Wire, f.LinkType, f.Time, userspace.Where(f.Interface+1))
		if fp.err != nil {
			b.parsed = b.parsed[:i]
			b.err = fmt.Errorf("%s: packet %d: %w", path, b.first+i+1, fp.err)
			fp.err = nil
			return
		}
	}
}

// count counts a parsed frame: the datapath's update, under the rules the kernel
// program follows. tun is its tunnel, nil without decapsulation.
func (d *Datapath) count(pp *Parsed, rec *userspace.PacketRecord, tun *userspace.Tunnel, now int64, tx userspace.Tx) {
	c := tx.Counters()
	c.Seen++
	p := pp
	switch pp.v {
	case vFlow:
		if p.frag == fragFirst {
			c.Fragments++
			src, dst := &p.key.A, &p.key.B
			if !pp.srcIsA {
				src, dst = dst, src
			}
			d.frags.put(fragKey{src: *src, dst: *dst, id: p.fragID, proto: p.key.Proto}, &p.key, pp.srcIsA)
		}
		seg := &pp.seg
		if p.frag != fragNone {
			seg = nil
		}
		d.update(&p.key, uint64(pp.hash)<<32, pp.srcIsA, pp.where, p.length, p.flags, seg, tun, now, rec, tx)
	case vLaterFrag:
		c.Fragments++
		k, srcIsA, ok := d.frags.get(fragKey{src: p.key.A, dst: p.key.B, id: p.fragID, proto: p.key.Proto})
		if !ok {
			c.Unattributed++
			return
		}
		d.update(&k, d.table.Hash(&k), srcIsA, pp.where, p.length, 0, nil, tun, now, rec, tx)
	case vNonIP:
		c.NonIP++
	case vOtherL4:
		c.OtherL4++
	case vMalformed:
		c.Malformed++
	case vFiltered:
		c.Filtered++
	}
}

// update is the kernel's update routine: find or create the flow, end it first if it
// is already over or a new connection reuses its 5-tuple, then count the packet. seg
// is the packet's TCP segment for the quality, nil for a fragment; tun its tunnel,
// nil without decapsulation.
func (d *Datapath) update(k *userspace.Key, hash uint64, srcIsA bool, where userspace.Where, length uint32, flags uint8, seg *userspace.Segment, tun *userspace.Tunnel, now int64, rec *userspace.PacketRecord, tx userspace.Tx) {
	s, st, ref, inserted := d.table.UpsertHash(k, hash)
	created := inserted
	if !created {
		if reason, end, over := d.timeout.Expired(s, now); over {
			tx.End(k, s, st, reason, end)
			created = true
		} else if s.Marks != 0 && flags&(userspace.FlagSYN|userspace.FlagACK) == userspace.FlagSYN {
			tx.End(k, s, st, userspace.EndReused, now)
			created = true
		}
		if created {
			tx.Counters().Restarts++
			if st != nil {
				*st = userspace.FlowStats{}
			}
		}
	}
	dir := 0
	if !srcIsA {
		dir = 1
	}
	c := tx.Counters()
	if created {
		*s = userspace.State{Initiator: uint8(dir)}
		if flags&(userspace.FlagSYN|userspace.FlagACK) == userspace.FlagSYN|userspace.FlagACK {
			// The capture began after the SYN: the side answering it is the responder.
			s.Initiator ^= 1
		}
		s.Where[dir] = where
		if d.quality {
			st.TCP.Reset()
		}
		if d.decap {
			// The tunnel's outer addresses by endpoint, as the kernel's set_tunnel.
			st.Tunnel = *tun
			if dir == 1 {
				st.Tunnel.OuterA, st.Tunnel.OuterB = tun.OuterB, tun.OuterA
			}
		}
		c.NewFlows++
	} else if s.SeenElsewhere(dir, where) {
		c.Duplicates++
		accepted(c, k)
		return
	}
	var dst *userspace.DirStats
	if d.stats {
		dst = &st.Dir[dir]
	}
	s.AddPacket(dir, length, flags, now, dst)
	if d.quality && seg != nil && k.Proto == userspace.ProtoTCP {
		st.TCP.Add(dir, s.Initiator, seg, now, s.Dir[dir^1].Last)
	}
	marked := false
	if flags&(userspace.FlagFIN|userspace.FlagRST) != 0 {
		if s.Marks == 0 {
			// The kernel sends an event here; the engine learns the flow may now end
			// after the shorter FIN timeout.
			tx.Schedule(userspace.After(now, d.timeout.FIN))
			marked = true
		}
		if flags&userspace.FlagFIN != 0 {
			s.Marks |= userspace.MarkFIN
		}
		if flags&userspace.FlagRST != 0 {
			s.Marks |= userspace.MarkRST
		}
	}
	if inserted || marked {
		// A new flow is filed under its deadline, and a FIN or RST brings it
		// closer; a flow that ended and began again in its entry keeps its place,
		// which is earlier than its new deadline.
		d.table.Track(ref)
	}
	if s.Recorded < d.historyLimit {
		// The kernel sends this record through its ring buffer while the flow is
		// below the limit.
		s.Recorded++
		rec.Dir = uint8(dir)
		tx.Record(k, rec)
	}
	accepted(c, k)
}

// accepted counts a packet counted in k's flow, or as its duplicate.
func accepted(c *userspace.DatapathCounters, k *userspace.Key) {
	c.Accepted++
	if k.Proto == userspace.ProtoTCP {
		c.AcceptedTCP++
	} else {
		c.AcceptedUDP++
	}
}

const fragTableSize = 8192

// fragKey identifies the fragments of one IP datagram.
type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
}

type fragFlow struct {
	key    userspace.Key
	srcIsA bool
}

// fragTable remembers the flow of each first fragment, so later fragments of the same
// datagram count in it. It holds a bounded number of datagrams and forgets the oldest
// first, which makes a replay's result independent of anything but the capture. Its
// memory is taken at the first fragment: most captures have none.
type fragTable struct {
	size int
	m    map[fragKey]fragFlow
	ring []fragKey
	next int
}

func newFragTable(n int) fragTable { return fragTable{size: n} }

func (t *fragTable) put(fk fragKey, k *userspace.Key, srcIsA bool) {
	if t.m == nil {
		t.m, t.ring = make(map[fragKey]fragFlow, t.size), make([]fragKey, 0, t.size)
	}
	if _, ok := t.m[fk]; !ok {
		if len(t.ring) < cap(t.ring) {
			t.ring = append(t.ring, fk)
		} else {
			delete(t.m, t.ring[t.next])
			t.ring[t.next] = fk
			t.next = (t.next + 1) % len(t.ring)
		}
	}
	t.m[fk] = fragFlow{key: *k, srcIsA: srcIsA}
}

func (t *fragTable) get(fk fragKey) (userspace.Key, bool, bool) {
	f, ok := t.m[fk] // a nil map finds nothing
	return f.key, f.srcIsA, ok
}
