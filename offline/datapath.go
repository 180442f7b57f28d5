package offline

import (
	"fmt"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/userspace"
)

// Datapath is the Go mirror of the kernel program: it parses a frame, finds its flow
// and updates the flow's state in place, under the same rules. Every method must be
// called inside [userspace.Engine.Do].
type Datapath struct {
	eng          *userspace.Engine
	table        *userspace.FlowTable
	timeout      userspace.Timeouts
	frags        fragTable
	snaplen      int
	history      bool   // the engine keeps packet histories
	historyLimit uint32 // records per flow, as the kernel's history_limit; 0 when off
	userspace.DatapathCounters

	// The packet filter, compiled once per link type the capture uses.
	filter    *filter.Filter
	bigEndian bool
	progs     []linkProgram
	last      linkProgram // the program of the last frame's link type
	err       error       // the filter cannot apply to a link type met in the capture
}

type linkProgram struct {
	link uint32
	prog *filter.Program
}

// SetFilter makes the datapath count only the frames f matches (nil: every frame),
// compiled for the link types given and then for each new one the capture brings.
// bigEndian is the capture's byte order (Source.BigEndian), which one link type's
// header depends on. If f cannot apply to one of the link types given, SetFilter
// changes nothing and says why. Call it inside Engine.Do.
func (d *Datapath) SetFilter(f *filter.Filter, bigEndian bool, links ...uint32) error {
	var progs []linkProgram
	if f != nil {
		for _, lt := range links {
			if err := compileOnce(&progs, f, lt, bigEndian); err != nil {
				return err
			}
		}
		for _, lp := range d.progs {
			if err := compileOnce(&progs, f, lp.link, bigEndian); err != nil {
				return err
			}
		}
	}
	d.filter, d.bigEndian, d.progs, d.last = f, bigEndian, progs, linkProgram{}
	return nil
}

// compileOnce adds f compiled for link type lt to progs, unless it is there.
func compileOnce(progs *[]linkProgram, f *filter.Filter, lt uint32, bigEndian bool) error {
	for _, lp := range *progs {
		if lp.link == lt {
			return nil
		}
	}
	p, err := f.Compile(filter.Link{Type: lt, BigEndian: bigEndian})
	if err != nil {
		return err
	}
	*progs = append(*progs, linkProgram{lt, p})
	return nil
}

// Err reports a filter that could not be compiled for a frame's link type; that
// frame and those after it were not counted.
func (d *Datapath) Err() error { return d.err }

// program returns the filter program for link type lt, compiling it the first time.
func (d *Datapath) program(lt uint32) *filter.Program {
	if d.last.prog != nil && d.last.link == lt {
		return d.last.prog
	}
	for _, lp := range d.progs {
		if lp.link == lt {
			d.last = lp
			return lp.prog
		}
	}
	p, err := d.filter.Compile(filter.Link{Type: lt, BigEndian: d.bigEndian})
	if err != nil {
		if d.err == nil {
			d.err = fmt.Errorf("a frame of link type %d: %w", lt, err)
		}
		return nil
	}
	d.progs = append(d.progs, linkProgram{lt, p})
	d.last = d.progs[len(d.progs)-1]
	return p
}

// NewDatapath returns a datapath that counts into table and reports the flows it ends
// to eng. Frames longer than snaplen are cut to it first, as a capture would have cut
// them; 0 means no limit.
func NewDatapath(eng *userspace.Engine, table *userspace.FlowTable, snaplen int) *Datapath {
	return &Datapath{eng: eng, table: table, timeout: eng.Timeouts(), frags: newFragTable(fragTableSize), snaplen: snaplen, history: eng.HistoryOn(), historyLimit: eng.HistoryLimit()}
}

// KeepStatistics makes the datapath keep each direction's statistics
// (userspace.DirStats), as the kernel program does with stats_on. Call it before the
// first packet.
func (d *Datapath) KeepStatistics() { d.table.KeepStatistics() }

// Packet counts one frame of link type lt, wire bytes long on the wire, captured at ts
// (ns since the epoch).
func (d *Datapath) Packet(frame []byte, wire int, lt uint32, ts int64) {
	var pp Parsed
	d.Parse(&pp, frame, wire, lt, ts)
	d.Count(&pp)
}

// Parsed is a frame parsed and keyed, ready to count. It holds nothing of the frame,
// so the frame's buffer may be reused before Count.
type Parsed struct {
	p      packet
	v      verdict
	srcIsA bool
	hash   uint64
	ts     int64
	rec    userspace.PacketRecord // filled when the engine keeps histories
}

// Parse parses a frame and starts loading the flow table memory its flow will use.
// It changes no state: Parse a few frames, then Count them in the same order, and
// their cache misses overlap.
func (d *Datapath) Parse(pp *Parsed, frame []byte, wire int, lt uint32, ts int64) {
	if d.snaplen > 0 && len(frame) > d.snaplen {
		frame = frame[:d.snaplen]
	}
	pp.ts = ts
	if d.filter != nil {
		if p := d.program(lt); p == nil || !p.Match(frame, wire) {
			pp.v = vFiltered
			return
		}
	}
	pp.v = parse(&pp.p, frame, lt, wire)
	if d.history && (pp.v == vFlow || pp.v == vLaterFrag) {
		readRecord(&pp.rec, frame, &pp.p)
		pp.rec.Time = ts
	}
	if pp.v == vFlow {
		pp.srcIsA = pp.p.key.Canonicalize()
		pp.hash = d.table.Hash(&pp.p.key)
		d.table.PrefetchSlot(pp.hash)
	}
}

// Prefetch starts loading the flow's entry; call it between Parse and Count.
func (d *Datapath) Prefetch(pp *Parsed) {
	if pp.v == vFlow {
		d.table.PrefetchEntry(pp.hash)
	}
}

// Count counts a parsed frame: the datapath's update, under the rules the kernel
// program follows.
func (d *Datapath) Count(pp *Parsed) {
	now := d.eng.AdvanceLocked(pp.ts)
	d.Seen++
	p := &pp.p
	switch pp.v {
	case vFlow:
		if p.frag == fragFirst {
			d.Fragments++
			src, dst := &p.key.A, &p.key.B
			if !pp.srcIsA {
				src, dst = dst, src
			}
			d.frags.put(fragKey{src: *src, dst: *dst, id: p.fragID, proto: p.key.Proto}, &p.key, pp.srcIsA)
		}
		d.update(&p.key, pp.hash, pp.srcIsA, p.length, p.flags, now, &pp.rec)
	case vLaterFrag:
		d.Fragments++
		k, srcIsA, ok := d.frags.get(fragKey{src: p.key.A, dst: p.key.B, id: p.fragID, proto: p.key.Proto})
		if !ok {
			d.Unattributed++
			return
		}
		d.update(&k, d.table.Hash(&k), srcIsA, p.length, 0, now, &pp.rec)
	case vNonIP:
		d.NonIP++
	case vOtherL4:
		d.OtherL4++
	case vMalformed:
		d.Malformed++
	case vFiltered:
		d.Filtered++
	}
}

// update is the kernel's update routine: find or create the flow, end it first if it
// is already over or a new connection reuses its 5-tuple, then count the packet.
func (d *Datapath) update(k *userspace.Key, hash uint64, srcIsA bool, length uint32, flags uint8, now int64, rec *userspace.PacketRecord) {
	s, st, ref, inserted := d.table.UpsertHash(k, hash)
	created := inserted
	if !created {
		if reason, end, over := d.timeout.Expired(s, now); over {
			d.eng.EndLocked(k, s, st, reason, end)
			created = true
		} else if s.Marks != 0 && flags&(userspace.FlagSYN|userspace.FlagACK) == userspace.FlagSYN {
			d.eng.EndLocked(k, s, st, userspace.EndReused, now)
			created = true
		}
		if created && st != nil {
			*st = userspace.FlowStats{}
		}
	}
	dir := 0
	if !srcIsA {
		dir = 1
	}
	if created {
		*s = userspace.State{Initiator: uint8(dir)}
		if flags&(userspace.FlagSYN|userspace.FlagACK) == userspace.FlagSYN|userspace.FlagACK {
			// The capture began after the SYN: the side answering it is the responder.
			s.Initiator ^= 1
		}
		d.NewFlows++
	}
	s.AddPacket(dir, length, flags, now, st)
	marked := false
	if flags&(userspace.FlagFIN|userspace.FlagRST) != 0 {
		if s.Marks == 0 {
			// The kernel sends an event here; the engine learns the flow may now end
			// after the shorter FIN timeout.
			d.eng.ScheduleLocked(now + int64(d.timeout.FIN))
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
		d.eng.RecordLocked(k, rec)
	}
	d.Accepted++
	if k.Proto == userspace.ProtoTCP {
		d.AcceptedTCP++
	} else {
		d.AcceptedUDP++
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
