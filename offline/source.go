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

	"github.com/gopacket/gopacket/pcapgo"
)

// ErrBadCapture is the error every fault of a capture file wraps: test for it with
// errors.Is.
var ErrBadCapture = errors.New("bad capture")

// ErrUnsupportedLink wraps ErrBadCapture for a link type the datapath does not read.
var ErrUnsupportedLink = fmt.Errorf("%w: unsupported link type", ErrBadCapture)

// CaptureError is a fault in a capture file, with where it was found.
type CaptureError struct {
	Path   string
	Packet int   // 1-based number of the packet being read; 0 for the file header
	Offset int64 // byte offset of that packet's record; -1 when not known exactly
	Near   int64 // for pcapng: bytes read from the (decompressed) file so far
	Err    error
}

func (e *CaptureError) Error() string {
	where := e.Path
	switch {
	case e.Packet > 0 && e.Offset >= 0:
		where += fmt.Sprintf(": packet %d at byte %d", e.Packet, e.Offset)
	case e.Packet > 0:
		where += fmt.Sprintf(": packet %d near byte %d", e.Packet, e.Near)
	case e.Offset >= 0:
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
}

// Source reads the packets of a pcap or pcapng file. It recognises the format by its
// magic bytes, whatever the file is called, and decompresses gzip transparently.
type Source struct {
	path   string
	file   *os.File
	size   int64           // the file's size, for Progress
	read   progressCounter // bytes read from the file (compressed, if it is)
	count  *countingReader
	pcap   *pcapgo.Reader
	ng     *pcapgo.NgReader
	link   uint32   // pcap: the file's link type
	links  []uint32 // pcapng: link type per interface index
	n      int      // packets read
	offset int64    // pcap: offset of the next record in the decompressed stream
	big    bool     // written big-endian (pcapng: its first section)
}

// LinkType is the file's link type; ok is false for pcapng, whose interfaces each
// have their own, known as the packets arrive.
func (s *Source) LinkType() (lt uint32, ok bool) { return s.link, s.pcap != nil }

// BigEndian says the file was written big-endian (for pcapng, its first section).
// A filter needs it for LINKTYPE_NULL, whose header is in the writer's byte order.
func (s *Source) BigEndian() bool { return s.big }

// progressCounter counts the bytes read from the file, for another goroutine to
// read: one atomic add per read of the large buffer.
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

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

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
	s := &Source{path: path, file: f}
	if fi, err := f.Stat(); err == nil {
		s.size = fi.Size()
	}
	s.read.r = f
	if err := s.init(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func (s *Source) fail(packet int, offset int64, err error) error {
	return &CaptureError{Path: s.path, Packet: packet, Offset: offset, Near: s.near(), Err: err}
}

func (s *Source) near() int64 {
	if s.count == nil {
		return 0
	}
	return s.count.n
}

// readBuffer is the read-ahead under the readers: large, so that reading a capture
// takes few system calls.
const readBuffer = 1024 << 10

func (s *Source) init() error {
	br := bufio.NewReaderSize(&s.read, readBuffer)
	var r io.Reader = br
	head, _ := br.Peek(4)
	if len(head) == 0 {
		return s.fail(0, 0, errors.New("empty file, not a capture"))
	}
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return s.fail(0, 0, fmt.Errorf("gzip: %w", err))
		}
		zbr := bufio.NewReaderSize(zr, readBuffer)
		r = zbr
		br = zbr
		head, err = zbr.Peek(4)
		if len(head) == 0 && err != io.EOF {
			return s.fail(0, 0, fmt.Errorf("gzip: %w", err))
		}
		if len(head) == 0 {
			return s.fail(0, 0, fmt.Errorf("empty gzip stream, not a capture: %w", err))
		}
	}
	if len(head) < 4 {
		return s.fail(0, 0, fmt.Errorf("file too short for a capture header (%d bytes)", len(head)))
	}
	s.count = &countingReader{r: r}
	be, le := binary.BigEndian.Uint32(head), binary.LittleEndian.Uint32(head)
	switch {
	case be == magicPcapng:
		if shb, _ := br.Peek(12); len(shb) == 12 {
			s.big = binary.BigEndian.Uint32(shb[8:]) == 0x1A2B3C4D
		}
		return s.initPcapng()
	case le == magicPcapMicro || le == magicPcapNano || be == magicPcapMicro || be == magicPcapNano:
		return s.initPcap(br)
	}
	return s.fail(0, 0, fmt.Errorf("not a pcap or pcapng file (magic bytes % x)", head))
}

func (s *Source) initPcap(br *bufio.Reader) error {
	head, err := br.Peek(24)
	if err != nil {
		return s.fail(0, 0, fmt.Errorf("pcap file header cut short: %w", err))
	}
	var hdr [24]byte
	copy(hdr[:], head)
	order := binary.ByteOrder(binary.LittleEndian)
	if m := binary.BigEndian.Uint32(hdr[:]); m == magicPcapMicro || m == magicPcapNano {
		order = binary.BigEndian
		s.big = true
	}
	major, minor := order.Uint16(hdr[4:]), order.Uint16(hdr[6:])
	if major != 2 || (minor != 4 && minor != 1) {
		return s.fail(0, 4, fmt.Errorf("unknown pcap version %d.%d", major, minor))
	}
	// pcapgo reads from br itself, which is already buffered, so no other layer
	// copies the records. Version 2.1 has the same records as 2.4; libpcap reads
	// both, pcapgo only 2.4, so a 2.1 file's header is rewritten on the way in.
	var in io.Reader = br
	if minor == 1 {
		order.PutUint16(hdr[6:], 4)
		br.Discard(24)
		in = io.MultiReader(bytes.NewReader(hdr[:]), br)
	}
	r, err := pcapgo.NewReader(in)
	if err != nil {
		return s.fail(0, 0, err)
	}
	s.pcap = r
	s.link = uint32(r.LinkType())
	s.offset = 24
	if !SupportedLink(s.link) {
		return s.fail(0, 20, fmt.Errorf("%w %d (%s)", ErrUnsupportedLink, s.link, r.LinkType()))
	}
	return nil
}

func (s *Source) initPcapng() error {
	r, err := pcapgo.NewNgReader(s.count, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return s.fail(0, -1, fmt.Errorf("pcapng: %w", err))
	}
	s.ng = r
	return nil
}

// Next reads the next packet into f. At the end of the file it returns io.EOF; any
// other error is a *CaptureError.
func (s *Source) Next(f *Frame) error {
	if s.pcap != nil {
		return s.nextPcap(f)
	}
	return s.nextPcapng(f)
}

func (s *Source) nextPcap(f *Frame) error {
	data, ci, err := s.pcap.ZeroCopyReadPacketData()
	if err != nil {
		if err == io.EOF {
			return io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			err = errors.New("record cut short: the file ends inside it")
		}
		return s.fail(s.n+1, s.offset, err)
	}
	s.n++
	s.offset += 16 + int64(ci.CaptureLength)
	*f = Frame{Data: data, Wire: ci.Length, LinkType: s.link, Time: ci.Timestamp.UnixNano()}
	return nil
}

func (s *Source) nextPcapng(f *Frame) error {
	data, ci, err := s.ng.ZeroCopyReadPacketData()
	if err != nil {
		if err == io.EOF {
			return io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			err = errors.New("block cut short: the file ends inside it")
		}
		return s.fail(s.n+1, -1, fmt.Errorf("pcapng: %w", err))
	}
	s.n++
	idx := ci.InterfaceIndex
	for idx >= len(s.links) {
		i := len(s.links)
		iface, err := s.ng.Interface(i)
		if err != nil {
			return s.fail(s.n, -1, fmt.Errorf("pcapng: packet on unknown interface %d", idx))
		}
		s.links = append(s.links, uint32(iface.LinkType))
	}
	lt := s.links[idx]
	if !SupportedLink(lt) {
		return s.fail(s.n, -1, fmt.Errorf("%w %d on interface %d", ErrUnsupportedLink, lt, idx))
	}
	*f = Frame{Data: data, Wire: ci.Length, LinkType: lt, Time: ci.Timestamp.UnixNano()}
	return nil
}

// Close closes the file.
func (s *Source) Close() error { return s.file.Close() }
