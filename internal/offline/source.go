package offline

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
)

// ErrBadCapture is the error every fault of a capture file wraps: test for it with
// errors.Is.
var ErrBadCapture = errors.New("bad capture")

// ErrUnsupportedLink wraps ErrBadCapture for a link type the datapath does not read.
var ErrUnsupportedLink = fmt.Errorf("%w: unsupported link type", ErrBadCapture)

// CaptureError is a fault in a capture file, with where it was found.
type CaptureError struct {
	Path   string
	Packet int // 1-based number of the packet being read; 0 for the file header
	// Offset is the byte offset, in the decompressed file, of that packet's pcap
	// record or of the pcapng block being read.
	Offset int64
	Err    error
}

func (e *CaptureError) Error() string {
	where := e.Path
	if e.Packet > 0 {
		where += fmt.Sprintf(": packet %d at byte %d", e.Packet, e.Offset)
	} else {
		where += fmt.Sprintf(": at byte %d", e.Offset)
	}
	return where + ": " + e.Err.Error()
}

func (e *CaptureError) Unwrap() []error { return []error{ErrBadCapture, e.Err} }

// Frame is one packet read from a capture. Data is valid until the next Next.
type Frame struct {
	Data     []byte
	Wire     int    // length on the wire
	LinkType uint32 // LINKTYPE_* of the interface it was captured on
	Time     int64  // ns since the epoch
	// Interface is the place the frame was captured at: the capture's interfaces
	// numbered from 0 as the file first describes them, one number for those of
	// the same name (see InterfaceName); 0 in a pcap file.
	Interface uint32
}

// Source reads the packets of a pcap or pcapng file. It recognises the format by its
// magic bytes, whatever the file is called, and decompresses gzip transparently.
//
// The file is read straight into the memory of the batches that ReadBatch fills, and
// each frame points into it: no record is copied but the one a batch's end cuts in
// two.
type Source struct {
	path string
	file io.Closer
	size int64           // the file's size, for Progress
	read progressCounter // bytes read from the file (compressed, if it is)
	in   io.Reader       // the capture's bytes, decompressed
	n    int             // packets read
	big  bool            // written big-endian (pcapng: its first section)
	err  error           // sticky: the first error, io.EOF at the end

	offset  int64  // offset of the next record or block in the decompressed stream
	carry   []byte // the start of a record that the last batch's memory cut off
	readErr error  // what the last read returned, not yet acted on

	// pcap
	pcap       bool
	order      binary.ByteOrder
	nanoFactor uint32 // 1000 for µs timestamps, 1 for ns
	snaplen    uint32
	link       uint32 // the file's link type

	// pcapng
	section  ngSection // the section being read
	sections int       // sections begun
	places   places    // the interfaces of every section, as places

	one     FrameBatch // for Next
	oneNext int
}

// LinkType is the file's link type; ok is false for pcapng, whose interfaces each
// have their own, known as the packets arrive.
func (s *Source) LinkType() (lt uint32, ok bool) { return s.link, s.pcap }

// InterfaceName is the name (pcapng's if_name) of the interface that the datapath
// counts as place index (userspace.Where: Frame.Interface plus one), "" when the
// capture gives it none. Interfaces of one name are one place: a merged capture
// describes an interface again for each file it merges.
func (s *Source) InterfaceName(index int) string {
	if index <= 0 {
		return ""
	}
	return s.places.name(uint32(index - 1))
}

// BigEndian says the file was written big-endian (for pcapng, its first section).
// A filter needs it for LINKTYPE_NULL, whose header is in the writer's byte order.
func (s *Source) BigEndian() bool { return s.big }

// progressCounter counts the bytes read from the file, for another goroutine to
// read: one atomic add per read.
type progressCounter struct {
	r io.Reader
	n atomic.Int64
}

func (c *progressCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Progress reports how much of the file was read, and its size: the compressed
// bytes, for a gzip file. Safe to call from another goroutine.
func (s *Source) Progress() (read, size int64) { return s.read.n.Load(), s.size }

const (
	magicPcapMicro = 0xA1B2C3D4
	magicPcapNano  = 0xA1B23C4D
	magicPcapng    = 0x0A0D0D0A
)

// Open opens the capture at path and reads its header.
func Open(path string) (*Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var size int64
	if fi, err := f.Stat(); err == nil {
		if fi.IsDir() {
			f.Close()
			return nil, &os.PathError{Op: "open", Path: path, Err: syscall.EISDIR}
		}
		if fi.Mode().IsRegular() {
			size = fi.Size()
		}
	}
	return newSource(path, f, f, size)
}

// OpenReader reads a capture from r, a pipe or standard input, say; name is what its
// errors call it. Closing the Source does not close r.
func OpenReader(r io.Reader, name string) (*Source, error) {
	return newSource(name, r, io.NopCloser(nil), 0)
}

func newSource(name string, r io.Reader, c io.Closer, size int64) (*Source, error) {
	s := &Source{path: name, file: c, size: size}
	s.read.r = r
	if err := s.init(); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

func (s *Source) fail(packet int, offset int64, err error) error {
	return &CaptureError{Path: s.path, Packet: packet, Offset: offset, Err: err}
}

// readBuffer is the read-ahead of the gzip decompressor: large, so that reading a
// capture takes few system calls.
const readBuffer = 1024 << 10

// headBytes is how much of the file Open reads to find its format. What follows the
// header is the start of the first batch: after it, reads go straight from the file
// into the memory of the batches.
const headBytes = 64 << 10

// readHead reads up to headBytes from r; a shorter file is not an error.
func readHead(r io.Reader) ([]byte, error) {
	head := make([]byte, headBytes)
	n, err := io.ReadFull(r, head)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return head[:n], err
}

func (s *Source) init() error {
	s.in = &s.read
	head, err := readHead(s.in)
	if err != nil {
		return s.fail(0, 0, err)
	}
	if len(head) == 0 {
		return s.fail(0, 0, errors.New("empty file, not a capture"))
	}
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(bufio.NewReaderSize(io.MultiReader(bytes.NewReader(head), s.in), readBuffer))
		if err != nil {
			return s.fail(0, 0, fmt.Errorf("gzip: %w", err))
		}
		s.in = zr
		if head, err = readHead(zr); err != nil {
			return s.fail(0, 0, fmt.Errorf("gzip: %w", err))
		}
		if len(head) == 0 {
			return s.fail(0, 0, fmt.Errorf("empty gzip stream, not a capture: %w", io.EOF))
		}
	}
	if len(head) < 4 {
		return s.fail(0, 0, fmt.Errorf("file too short for a capture header (%d bytes)", len(head)))
	}
	be, le := binary.BigEndian.Uint32(head), binary.LittleEndian.Uint32(head)
	switch {
	case be == magicPcapng:
		if len(head) >= 12 {
			s.big = binary.BigEndian.Uint32(head[8:]) == 0x1A2B3C4D
		}
		return s.initPcapng(head)
	case le == magicPcapMicro || le == magicPcapNano || be == magicPcapMicro || be == magicPcapNano:
		return s.initPcap(head)
	}
	return s.fail(0, 0, fmt.Errorf("not a pcap or pcapng file (magic bytes % x)", head[:4]))
}

func (s *Source) initPcap(head []byte) error {
	if len(head) < 24 {
		return s.fail(0, 0, fmt.Errorf("pcap file header cut short: %w", io.EOF))
	}
	var hdr [24]byte
	copy(hdr[:], head)
	s.carry = append(s.carry[:0], head[24:]...)
	s.order = binary.LittleEndian
	magic := binary.LittleEndian.Uint32(hdr[:])
	if m := binary.BigEndian.Uint32(hdr[:]); m == magicPcapMicro || m == magicPcapNano {
		s.order, magic, s.big = binary.BigEndian, m, true
	}
	s.nanoFactor = 1000
	if magic == magicPcapNano {
		s.nanoFactor = 1
	}
	// Version 2.1 has the same records as 2.4, and libpcap reads both.
	major, minor := s.order.Uint16(hdr[4:]), s.order.Uint16(hdr[6:])
	if major != 2 || (minor != 4 && minor != 1) {
		return s.fail(0, 4, fmt.Errorf("unknown pcap version %d.%d", major, minor))
	}
	s.snaplen = s.order.Uint32(hdr[16:])
	s.link = s.order.Uint32(hdr[20:])
	s.pcap = true
	s.offset = 24
	if !SupportedLink(s.link) {
		return s.fail(0, 20, fmt.Errorf("%w %d", ErrUnsupportedLink, s.link))
	}
	return nil
}

func (s *Source) initPcapng(head []byte) error {
	// The blocks are read as the records of a pcap file are, the section header
	// first.
	s.carry = append(s.carry[:0], head...)
	return nil
}

// FrameBatch is frames read together, with the memory their bytes are in. Frames
// stay valid until the batch is passed to ReadBatch again.
type FrameBatch struct {
	Frames []Frame
	buf    []byte
}

// batchBytes and batchFrames size a batch's memory: 256 KiB of records, and room for
// as many frames as records of 64 bytes fill, so that the bytes, not the frames, run
// out first, and what a batch carries over to the next is at most one record cut in
// two.
const (
	batchBytes  = 256 << 10
	batchFrames = batchBytes / 64
)

// ReadBatch reads the next frames of the capture into b, as many as fit in its
// memory, reusing it. It returns the error that ended the reading, if one did, after
// the frames read before it: io.EOF at the end of the file, a *CaptureError for a
// fault. The frames read before a fault are in b and should still be counted.
func (s *Source) ReadBatch(b *FrameBatch) error {
	if b.Frames == nil {
		b.Frames = make([]Frame, 0, batchFrames)
	}
	b.Frames = b.Frames[:0]
	if s.err != nil {
		return s.err
	}
	s.err = s.readRecords(b)
	return s.err
}

// pcapRecord is the size of a pcap record's header.
const pcapRecord = 16

// readRecords reads the file into b's memory and frames its pcap records, or the
// packets of its pcapng blocks, in place.
func (s *Source) readRecords(b *FrameBatch) error {
	if cap(b.buf) < len(s.carry)+batchBytes/2 {
		b.buf = make([]byte, len(s.carry)+batchBytes)
	}
	buf := b.buf[:cap(b.buf)]
	have := copy(buf, s.carry)
	s.carry = s.carry[:0]
	have, readErr := s.fill(buf, have)
	pos := 0
	for len(b.Frames) < cap(b.Frames) {
		rest := buf[pos:have]
		var size int
		var err error
		if s.pcap {
			if len(rest) < pcapRecord {
				break
			}
			size, err = s.recordSize(rest)
		} else {
			if len(rest) < ngBlockMin {
				break
			}
			size, err = s.ngBlockSize(rest)
		}
		if err != nil {
			return err
		}
		if len(rest) < size {
			if pos > 0 || readErr != nil {
				break
			}
			// A record larger than the batch's memory: grow it as far as the
			// file backs the record, so that a length field the file does not
			// back allocates little.
			b.buf = append(buf[:have], make([]byte, min(size-have, have))...)
			buf = b.buf[:cap(b.buf)]
			have, readErr = s.fill(buf, have)
			continue
		}
		if s.pcap {
			b.Frames = append(b.Frames, s.frame(rest, size))
		} else {
			var f Frame
			ok, err := s.ngBlock(rest, size, &f)
			if err != nil {
				return err
			}
			if ok {
				s.n++
				b.Frames = append(b.Frames, f)
			}
			s.offset += int64(size)
		}
		pos += size
	}
	s.carry = append(s.carry, buf[pos:have]...)
	switch {
	case readErr == nil || len(b.Frames) == cap(b.Frames):
		// More to read, or to frame from what was read: the error, if any,
		// comes again when reading goes on.
		s.readErr = readErr
		return nil
	case readErr != io.EOF:
		return s.fail(s.n+1, s.offset, readErr)
	case len(s.carry) > 0 && s.pcap:
		return s.fail(s.n+1, s.offset, errors.New("record cut short: the file ends inside it"))
	case len(s.carry) > 0:
		return s.fail(s.n+1, s.offset, errors.New("pcapng: block cut short: the file ends inside it"))
	}
	return io.EOF
}

// recordSize checks the header of the pcap record at the start of rest, and returns the
// record's size with it.
func (s *Source) recordSize(rest []byte) (int, error) {
	capLen := s.order.Uint32(rest[8:])
	wire := s.order.Uint32(rest[12:])
	if capLen > max(s.snaplen, maxSnaplen) {
		return 0, s.fail(s.n+1, s.offset, fmt.Errorf("capture length exceeds snap length: %d > %d", capLen, s.snaplen))
	}
	if capLen > wire {
		return 0, s.fail(s.n+1, s.offset, fmt.Errorf("capture length exceeds original packet length: %d > %d", capLen, wire))
	}
	return pcapRecord + int(capLen), nil
}

// frame is the frame of the whole pcap record at the start of rest, size bytes long;
// it counts the record as read.
func (s *Source) frame(rest []byte, size int) Frame {
	// The fraction is multiplied in 32 bits, as pcap readers have done; only a
	// corrupt file can tell.
	sec, frac := s.order.Uint32(rest), s.order.Uint32(rest[4:])
	s.n++
	s.offset += int64(size)
	return Frame{
		Data:     rest[pcapRecord:size:size],
		Wire:     int(s.order.Uint32(rest[12:])),
		LinkType: s.link,
		Time:     int64(sec)*1e9 + int64(frac*s.nanoFactor),
	}
}

// fill reads into buf[have:] until it is full or reading fails, and returns how much
// of buf holds data.
func (s *Source) fill(buf []byte, have int) (int, error) {
	err := s.readErr
	s.readErr = nil
	for have < len(buf) && err == nil {
		var n int
		n, err = s.in.Read(buf[have:])
		have += n
	}
	return have, err
}

// maxSnaplen is the longest record a pcap file may hold whatever its header says, as
// tcpdump and Wireshark read files whose writers did not cut to their snaplen.
const maxSnaplen = 262144

// Next reads the next packet into f. At the end of the file it returns io.EOF; any
// other error is a *CaptureError. Its frames stay valid until the next call.
func (s *Source) Next(f *Frame) error {
	for s.oneNext >= len(s.one.Frames) {
		s.oneNext = 0
		// A batch of blocks that hold no packet has no frame and no error.
		if err := s.ReadBatch(&s.one); len(s.one.Frames) == 0 && err != nil {
			return err
		}
	}
	*f = s.one.Frames[s.oneNext]
	s.oneNext++
	return nil
}

// Close closes the file.
func (s *Source) Close() error { return s.file.Close() }
