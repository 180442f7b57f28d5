package offline

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// pcapng block types and options that the reader uses; the others are skipped.
const (
	ngSectionHeader      = 0x0A0D0D0A
	ngInterfaceBlock     = 0x00000001
	ngObsoletePacket     = 0x00000002
	ngSimplePacket       = 0x00000003
	ngEnhancedPacket     = 0x00000006
	ngByteOrderMagic     = 0x1A2B3C4D
	ngOptionEnd          = 0
	ngOptionName         = 2
	ngOptionTSResolution = 9
	ngOptionTSOffset     = 14
	ngBlockMin           = 12 // type, length and the length again

	// ngMaxBlock is the largest block the reader takes: far above any packet
	// (pcap's records stop at maxSnaplen), and a bound on what a compressed file's
	// length field can make it hold in memory.
	ngMaxBlock = 16 << 20
	// ngMaxInterfaces is how many interfaces a section may describe: their memory is
	// 24 B each, 1.5 MiB at most, whatever the file.
	ngMaxInterfaces = 1 << 16
)

// ngSection is what a pcapng section says of itself and its interfaces. Each section
// has interfaces of its own, numbered from 0.
type ngSection struct {
	big    bool
	ifaces []ngInterface
	// clocks holds what each if_tsresol value makes of a timestamp, filled in as
	// interfaces name them, so that an interface costs 24 B however many there are.
	clocks [256]ngClock
}

// ngInterface is an interface description block: the link type, how the
// interface's timestamps turn into time, and the place its packets are seen at.
type ngInterface struct {
	offset     uint64 // if_tsoffset: seconds to add to every timestamp
	snaplen    uint32
	place      uint32 // in the Source's places
	link       uint16
	resolution uint8 // if_tsresol: its clock in the section's clocks
}

// ngClock turns timestamps of one resolution into time: a timestamp is units of
// 1/perSecond seconds, whose fraction becomes ns as ·scaleUp/scaleDown.
type ngClock struct {
	perSecond, scaleUp, scaleDown uint64
}

func (sec *ngSection) u16(b []byte) uint16 {
	if sec.big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (sec *ngSection) u32(b []byte) uint32 {
	if sec.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func (sec *ngSection) u64(b []byte) uint64 {
	if sec.big {
		return binary.BigEndian.Uint64(b)
	}
	return binary.LittleEndian.Uint64(b)
}

// zeroTime is the time of a simple packet block, which has none: the zero time, as
// pcap readers give it.
var zeroTime = time.Time{}.UnixNano()

// ngBlockSize returns the size of the pcapng block at the start of rest, which holds
// at least ngBlockMin bytes; a section header's own byte order decides how its size
// reads.
func (s *Source) ngBlockSize(rest []byte) (int, error) {
	sec := &s.section
	if binary.LittleEndian.Uint32(rest) == ngSectionHeader {
		switch {
		case binary.BigEndian.Uint32(rest[8:]) == ngByteOrderMagic:
			sec.big = true
		case binary.LittleEndian.Uint32(rest[8:]) == ngByteOrderMagic:
			sec.big = false
		default:
			return 0, s.fail(s.n+1, s.offset, errors.New("pcapng: a section header without its byte-order magic"))
		}
	}
	size := sec.u32(rest[4:])
	if size < ngBlockMin || size%4 != 0 {
		return 0, s.fail(s.n+1, s.offset, fmt.Errorf("pcapng: a block of %d bytes (want a multiple of 4, at least 12)", size))
	}
	if size > ngMaxBlock {
		return 0, s.fail(s.n+1, s.offset, fmt.Errorf("pcapng: a block of %d bytes (the reader takes up to %d)", size, ngMaxBlock))
	}
	return int(size), nil
}

// ngBlock reads the whole pcapng block at the start of rest, size bytes long, and
// fills f when it holds a packet.
func (s *Source) ngBlock(rest []byte, size int, f *Frame) (frame bool, err error) {
	sec := &s.section
	if sec.u32(rest[size-4:]) != uint32(size) {
		return false, s.fail(s.n+1, s.offset, errors.New("pcapng: a block's two lengths differ"))
	}
	body := rest[8 : size-4]
	switch sec.u32(rest) {
	case ngSectionHeader:
		if len(body) < 16 {
			return false, s.fail(s.n+1, s.offset, errors.New("pcapng: a section header cut short"))
		}
		if major, minor := sec.u16(body[4:]), sec.u16(body[6:]); major != 1 || minor != 0 {
			return false, s.fail(s.n+1, s.offset, fmt.Errorf("pcapng: section version %d.%d (want 1.0)", major, minor))
		}
		if s.sections == 0 {
			s.big = sec.big
		}
		s.sections++
		sec.ifaces = sec.ifaces[:0] // a new section numbers its interfaces afresh
		return false, nil
	case ngInterfaceBlock:
		return false, s.ngDescribe(body)
	case ngEnhancedPacket, ngObsoletePacket:
		if len(body) < 20 {
			return false, s.fail(s.n+1, s.offset, errors.New("pcapng: a packet block cut short"))
		}
		var idx uint32
		if sec.u32(rest) == ngEnhancedPacket {
			idx = sec.u32(body)
		} else {
			idx = uint32(sec.u16(body))
		}
		capLen, wire := sec.u32(body[12:]), sec.u32(body[16:])
		if uint64(capLen) > uint64(len(body)-20) {
			return false, s.fail(s.n+1, s.offset, fmt.Errorf("pcapng: a packet of %d bytes in a block of %d", capLen, size))
		}
		if capLen > wire { // as the pcap reader refuses it
			return false, s.fail(s.n+1, s.offset, fmt.Errorf("capture length exceeds original packet length: %d > %d", capLen, wire))
		}
		iface, err := s.ngInterfaceOf(idx)
		if err != nil {
			return false, err
		}
		ts := uint64(sec.u32(body[4:]))<<32 | uint64(sec.u32(body[8:]))
		t, ok := sec.time(iface, ts)
		if !ok {
			return false, s.fail(s.n+1, s.offset, fmt.Errorf("pcapng: timestamp %d on interface %d is past 2262-04-11T23:47:15Z or as far before 1970, which int64 ns cannot hold", ts, idx))
		}
		*f = Frame{Data: body[20 : 20+capLen : 20+capLen], Wire: int(wire), LinkType: uint32(iface.link), Time: t, Interface: iface.place}
		return true, nil
	case ngSimplePacket:
		if len(body) < 4 {
			return false, s.fail(s.n+1, s.offset, errors.New("pcapng: a simple packet block cut short"))
		}
		iface, err := s.ngInterfaceOf(0)
		if err != nil {
			return false, err
		}
		wire := sec.u32(body)
		capLen := min(uint64(wire), uint64(len(body)-4))
		if iface.snaplen != 0 {
			capLen = min(capLen, uint64(iface.snaplen))
		}
		*f = Frame{Data: body[4 : 4+capLen : 4+capLen], Wire: int(wire), LinkType: uint32(iface.link), Time: zeroTime, Interface: iface.place}
		return true, nil
	}
	return false, nil // statistics, name resolution, secrets, custom: nothing to count
}

// ngInterfaceOf returns interface idx of the current section, which must have a link
// type the datapath reads.
func (s *Source) ngInterfaceOf(idx uint32) (*ngInterface, error) {
	sec := &s.section
	if uint64(idx) >= uint64(len(sec.ifaces)) {
		return nil, s.fail(s.n+1, s.offset, fmt.Errorf("pcapng: packet on interface %d, which section %d does not describe (it has %d)", idx, s.sections, len(sec.ifaces)))
	}
	iface := &sec.ifaces[idx]
	if !SupportedLink(uint32(iface.link)) {
		return nil, s.fail(s.n+1, s.offset, fmt.Errorf("%w %d on interface %d", ErrUnsupportedLink, iface.link, idx))
	}
	return iface, nil
}

// ngInterface reads an interface description block's body.
func (s *Source) ngDescribe(body []byte) error {
	sec := &s.section
	if len(body) < 8 {
		return s.fail(s.n+1, s.offset, errors.New("pcapng: an interface description cut short"))
	}
	if len(sec.ifaces) >= ngMaxInterfaces {
		return s.fail(s.n+1, s.offset, fmt.Errorf("pcapng: section %d describes more than %d interfaces", s.sections, ngMaxInterfaces))
	}
	iface := ngInterface{link: sec.u16(body), snaplen: sec.u32(body[4:]), resolution: 6} // µs, unless the options say otherwise
	var name []byte
	for opts := body[8:]; len(opts) >= 4; {
		code, n := sec.u16(opts), int(sec.u16(opts[2:]))
		if code == ngOptionEnd {
			break
		}
		if 4+n > len(opts) {
			return s.fail(s.n+1, s.offset, errors.New("pcapng: an interface option runs past its block"))
		}
		v := opts[4 : 4+n]
		switch {
		case code == ngOptionTSResolution && n >= 1 && v[0] != 0:
			iface.resolution = v[0]
		case code == ngOptionTSOffset && n >= 8:
			iface.offset = sec.u64(v)
		case code == ngOptionName:
			name = bytes.TrimRight(v, "\x00") // UTF-8, not always terminated
		}
		opts = opts[min(len(opts), 4+(n+3)&^3):]
	}
	// 2^-e or 10^-e seconds per unit; the fraction is scaled in integers, as pcap
	// readers have done, so that every reader gives the same times.
	exp := iface.resolution & 0x7F
	if exp > 63 {
		return s.fail(s.n+1, s.offset, fmt.Errorf("pcapng: timestamp resolution exponent %d is too high", exp))
	}
	c := &sec.clocks[iface.resolution]
	if iface.resolution&0x80 != 0 {
		c.perSecond = 1 << exp
	} else {
		c.perSecond = 1
		for range exp {
			c.perSecond *= 10
		}
	}
	c.scaleUp, c.scaleDown = 1, 1
	if c.perSecond < 1e9 {
		c.scaleUp = 1e9 / c.perSecond
	} else {
		c.scaleDown = c.perSecond / 1e9
	}
	if len(sec.ifaces) == cap(sec.ifaces) { // double, so that growing costs 2× the end size, not 5×
		sec.ifaces = slices.Grow(sec.ifaces, max(8, len(sec.ifaces)))
	}
	iface.place = s.places.place(uint32(len(sec.ifaces)), string(name))
	sec.ifaces = append(sec.ifaces, iface)
	return nil
}

// lastSecond is the last second whose every instant int64 ns since the epoch hold:
// 2262-04-11T23:47:15Z, and as far before 1970.
const lastSecond = math.MaxInt64/1_000_000_000 - 1

// time turns a timestamp of interface iface into ns since the epoch; it is false when
// the time is too far from 1970 for ns to hold.
func (sec *ngSection) time(iface *ngInterface, ts uint64) (int64, bool) {
	c := &sec.clocks[iface.resolution]
	if c.perSecond == 0 {
		return zeroTime, true // a resolution whose units wrapped to nothing
	}
	whole, offset := ts/c.perSecond, int64(iface.offset) // if_tsoffset is signed
	if whole > 1<<62 || offset > 1<<62 || offset < -1<<62 {
		return 0, false
	}
	secs := int64(whole) + offset
	if secs > lastSecond || secs < -lastSecond {
		return 0, false
	}
	frac := int64(ts % c.perSecond * c.scaleUp / c.scaleDown)
	return secs*1e9 + frac, true
}
