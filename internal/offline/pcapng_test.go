package offline

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

// ngFile writes pcapng blocks in one byte order.
type ngFile struct {
	order binary.AppendByteOrder
	b     bytes.Buffer
}

func (w *ngFile) block(typ uint32, body []byte) {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	size := uint32(12 + len(body))
	w.b.Write(w.order.AppendUint32(nil, typ))
	w.b.Write(w.order.AppendUint32(nil, size))
	w.b.Write(body)
	w.b.Write(w.order.AppendUint32(nil, size))
}

func (w *ngFile) section() {
	body := w.order.AppendUint32(nil, ngByteOrderMagic)
	body = w.order.AppendUint16(body, 1)
	body = w.order.AppendUint16(body, 0)
	body = w.order.AppendUint64(body, ^uint64(0)) // section length not given
	w.block(ngSectionHeader, body)
}

// iface describes an interface; resolution 0 leaves the default, µs; offset is
// if_tsoffset, in seconds.
func (w *ngFile) iface(link uint16, resolution uint8, offset uint64) {
	body := w.order.AppendUint16(nil, link)
	body = w.order.AppendUint16(body, 0)
	body = w.order.AppendUint32(body, 0)
	if resolution != 0 {
		body = w.order.AppendUint16(body, ngOptionTSResolution)
		body = w.order.AppendUint16(body, 1)
		body = append(body, resolution, 0, 0, 0)
	}
	if offset != 0 {
		body = w.order.AppendUint16(body, ngOptionTSOffset)
		body = w.order.AppendUint16(body, 8)
		body = w.order.AppendUint64(body, offset)
	}
	body = w.order.AppendUint32(body, 0) // end of options
	w.block(ngInterfaceBlock, body)
}

// named describes an interface with a name (if_name) and the default resolution.
func (w *ngFile) named(link uint16, name string) {
	body := w.order.AppendUint16(nil, link)
	body = w.order.AppendUint16(body, 0)
	body = w.order.AppendUint32(body, 0)
	body = w.order.AppendUint16(body, ngOptionName)
	body = w.order.AppendUint16(body, uint16(len(name)))
	body = append(body, name...)
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	body = w.order.AppendUint32(body, 0) // end of options
	w.block(ngInterfaceBlock, body)
}

func (w *ngFile) packet(iface uint32, ts uint64, data []byte) {
	body := w.order.AppendUint32(nil, iface)
	body = w.order.AppendUint32(body, uint32(ts>>32))
	body = w.order.AppendUint32(body, uint32(ts))
	body = w.order.AppendUint32(body, uint32(len(data)))
	body = w.order.AppendUint32(body, uint32(len(data)+4))
	w.block(ngEnhancedPacket, append(body, data...))
}

func writeTestFile(t *testing.T, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.pcapng")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFrames(t *testing.T, path string) ([]Frame, error) {
	t.Helper()
	src, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var out []Frame
	for {
		var f Frame
		if err := src.Next(&f); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		f.Data = bytes.Clone(f.Data)
		out = append(out, f)
	}
}

// TestPcapngSections: each section numbers its interfaces afresh, as the pcapng spec
// says, with their own link types and byte order: a capture of two captures, the
// second with fewer interfaces and another link type, reads each packet with its
// own section's interface.
func TestPcapngSections(t *testing.T) {
	var all bytes.Buffer
	first := &ngFile{order: binary.LittleEndian}
	first.section()
	first.iface(LinkEthernet, 0, 0)
	first.iface(LinkRaw, 0, 0)
	first.packet(0, 1_000_000, []byte("ether"))
	first.packet(1, 2_000_000, []byte("raw"))
	second := &ngFile{order: binary.BigEndian}
	second.section()
	second.iface(LinkSLL2, 9, 0) // ns
	second.packet(0, 3_000_000_000, []byte("sll2"))
	all.Write(first.b.Bytes())
	all.Write(second.b.Bytes())
	frames, err := readFrames(t, writeTestFile(t, all.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		link uint32
		time int64
		data string
	}{{LinkEthernet, 1e9, "ether"}, {LinkRaw, 2e9, "raw"}, {LinkSLL2, 3e9, "sll2"}}
	if len(frames) != len(want) {
		t.Fatalf("%d frames, want %d", len(frames), len(want))
	}
	for i, w := range want {
		if f := frames[i]; f.LinkType != w.link || f.Time != w.time || string(f.Data) != w.data {
			t.Errorf("frame %d: link %d, time %d, %q; want %d, %d, %q", i, f.LinkType, f.Time, f.Data, w.link, w.time, w.data)
		}
	}

	// A packet on an interface the second section does not describe is an error,
	// though the first section had one of that number.
	second.packet(1, 4_000_000_000, []byte("nowhere"))
	all.Write(second.b.Bytes()[second.b.Len()-(12+20+8):])
	_, err = readFrames(t, writeTestFile(t, all.Bytes()))
	if !errors.Is(err, ErrBadCapture) {
		t.Errorf("a packet on interface 1 of a section with one: %v", err)
	}
}

// TestPcapngPlaces: a capture's interfaces are numbered as places in the order the
// file first describes them, those of one name being one place in every section (a
// merged capture describes an interface again for each file it merges), those
// without a name by their number in the section; the Source names each place.
func TestPcapngPlaces(t *testing.T) {
	var all bytes.Buffer
	first := &ngFile{order: binary.LittleEndian}
	first.section()
	first.iface(LinkEthernet, 0, 0)   // place 0
	first.named(LinkEthernet, "eth0") // place 1
	first.named(LinkEthernet, "eth0") // merged: place 1 again
	for i := range uint32(3) {
		first.packet(i, 1, []byte("first"))
	}
	second := &ngFile{order: binary.BigEndian}
	second.section()
	second.named(LinkEthernet, "eth0")                  // place 1
	second.iface(LinkEthernet, 0, 0)                    // unnamed number 1: place 2
	second.iface(LinkEthernet, 0, 0)                    // unnamed number 2: place 3
	second.named(LinkEthernet, "\\Device\\NPF_{1}\x00") // place 4; the NUL is padding
	for i := range uint32(4) {
		second.packet(i, 1, []byte("second"))
	}
	third := &ngFile{order: binary.LittleEndian}
	third.section()
	third.iface(LinkEthernet, 0, 0) // unnamed number 0: place 0, as in the first
	third.packet(0, 1, []byte("third"))
	all.Write(first.b.Bytes())
	all.Write(second.b.Bytes())
	all.Write(third.b.Bytes())
	path := writeTestFile(t, all.Bytes())
	frames, err := readFrames(t, path)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for _, f := range frames {
		got = append(got, f.Interface)
	}
	if want := []uint32{0, 1, 1, 1, 2, 3, 4, 0}; !slices.Equal(got, want) {
		t.Errorf("places %v, want %v", got, want)
	}
	src, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for f := (Frame{}); src.Next(&f) == nil; {
	}
	var names []string
	for index := range 7 {
		names = append(names, src.InterfaceName(index))
	}
	if want := []string{"", "", "eth0", "", "", "\\Device\\NPF_{1}", ""}; !slices.Equal(names, want) {
		t.Errorf("names by index (place plus one) %q, want %q", names, want)
	}
}

// TestPcapngTimesAsPcapgo: timestamps of every resolution and offset come out as the
// pcapng reader of gopacket gives them, which fparser used before it read pcapng
// itself.
func TestPcapngTimesAsPcapgo(t *testing.T) {
	w := &ngFile{order: binary.LittleEndian}
	w.section()
	resolutions := []uint8{0, 3, 6, 9, 12, 0x80 | 10, 0x80 | 20, 0x80 | 32, 0x80 | 40}
	for i, r := range resolutions {
		w.iface(LinkEthernet, r, uint64(i*1000))
	}
	for i, r := range resolutions {
		perSecond := math.Pow(10, float64(r))
		if r&0x80 != 0 {
			perSecond = math.Pow(2, float64(r&0x7F))
		} else if r == 0 {
			perSecond = 1e6
		}
		for _, ts := range []uint64{0, 1, 999_999, 1_700_000_000_123_456, 1 << 40, 1<<63 + 12345} {
			// Times past 2262 are refused (TestPcapngTimesBeyond2262).
			if float64(ts)/perSecond+float64(i*1000) < 9e9 {
				w.packet(uint32(i), ts, []byte{1, 2, 3, 4, 5})
			}
		}
	}
	path := writeTestFile(t, w.b.Bytes())
	frames, err := readFrames(t, path)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		_, ci, err := r.ZeroCopyReadPacketData()
		if err == io.EOF {
			if i != len(frames) {
				t.Fatalf("pcapgo read %d packets, fparser %d", i, len(frames))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(frames) || frames[i].Time != ci.Timestamp.UnixNano() || frames[i].Wire != ci.Length {
			t.Fatalf("packet %d: fparser %+v, pcapgo %v %d", i, frames[i], ci.Timestamp.UnixNano(), ci.Length)
		}
	}
}

// TestPcapngTimesBeyond2262: a timestamp is read up to the last second int64 ns
// since 1970 hold, 2262-04-11T23:47:15Z, and refused past it, with its packet and
// offset, whatever the resolution and offset that take it there; before, it wrapped
// around to some other time.
func TestPcapngTimesBeyond2262(t *testing.T) {
	last := time.Date(2262, 4, 11, 23, 47, 15, 999_999_999, time.UTC).UnixNano()
	for _, c := range []struct {
		name       string
		resolution uint8
		offset     uint64
		ts         uint64
		ok         bool
	}{
		{"ns, the last", 9, 0, uint64(last), true},
		{"ns, one past", 9, 0, uint64(last) + 1, false},
		{"µs, the last", 0, 0, uint64(last / 1000), true},
		{"µs, far past", 0, 0, 1<<63 + 12345, false},
		{"offset, the last", 9, 1 << 33, uint64(last) - 1<<33*1e9, true},
		{"offset, past", 9, 1 << 33, uint64(last) - 1<<33*1e9 + 1e9, false},
		{"negative offset, back in range", 6, uint64(1<<64 - 1_000_000), uint64(last/1000) + 1e12, true},
		{"2^-64 s units, the top", 0x80 | 63, 0, 1<<64 - 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := &ngFile{order: binary.LittleEndian}
			w.section()
			w.iface(LinkRaw, c.resolution, c.offset)
			w.packet(0, c.ts, []byte("packet"))
			frames, err := readFrames(t, writeTestFile(t, w.b.Bytes()))
			switch {
			case c.ok && (err != nil || len(frames) != 1):
				t.Fatalf("%d frames, %v", len(frames), err)
			case c.ok && frames[0].Time > last:
				t.Errorf("time %d, past %d", frames[0].Time, last)
			case !c.ok && (err == nil || !strings.Contains(err.Error(), "packet 1 at byte ") || !strings.Contains(err.Error(), ": pcapng: timestamp ") || len(frames) != 0):
				t.Errorf("%d frames, %v; want the packet refused", len(frames), err)
			}
		})
	}
}

// TestPcapngLyingLengths: a block whose trailing length differs from its leading one,
// and a packet whose capture length exceeds its length on the wire, are refused with
// their packet number and offset, as the pcap reader refuses a record that lies so.
func TestPcapngLyingLengths(t *testing.T) {
	good := func() *ngFile {
		w := &ngFile{order: binary.LittleEndian}
		w.section()
		w.iface(LinkRaw, 0, 0)
		w.packet(0, 1, []byte("first"))
		return w
	}
	head := good().b.Len() // where the second packet's block starts

	trailing := good()
	trailing.packet(0, 2, []byte("second"))
	b := trailing.b.Bytes()
	binary.LittleEndian.PutUint32(b[len(b)-4:], uint32(len(b)-head+4))

	wire := good()
	body := binary.LittleEndian.AppendUint32(nil, 0)
	body = binary.LittleEndian.AppendUint64(body, 2)
	body = binary.LittleEndian.AppendUint32(body, 6) // captured
	body = binary.LittleEndian.AppendUint32(body, 5) // on the wire
	wire.block(ngEnhancedPacket, append(body, "second"...))

	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"trailing length", b, "block's two lengths differ"},
		{"capture longer than wire", wire.b.Bytes(), "capture length exceeds original packet length: 6 > 5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			frames, err := readFrames(t, writeTestFile(t, c.file))
			if len(frames) != 1 {
				t.Errorf("%d frames before the error, want the first", len(frames))
			}
			var ce *CaptureError
			if !errors.As(err, &ce) || !errors.Is(err, ErrBadCapture) {
				t.Fatalf("got %v, want a *CaptureError", err)
			}
			if ce.Packet != 2 || ce.Offset != int64(head) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %q (packet %d at %d), want packet 2 at byte %d: %s", err, ce.Packet, ce.Offset, head, c.want)
			}
		})
	}
}

// TestPcapngInterfacesBounded: interface descriptions cost the reader memory of the
// order of their own size, at most ngMaxInterfaces of them a section, and a section
// that describes more is refused, however well the file compresses. A packet on the
// last interface allowed reads.
func TestPcapngInterfacesBounded(t *testing.T) {
	describe := func(n int, packetOn uint32) []byte {
		w := &ngFile{order: binary.LittleEndian}
		w.section()
		for range n {
			w.iface(LinkRaw, 0, 0)
		}
		w.packet(packetOn, 1, []byte("packet"))
		return w.b.Bytes()
	}
	allocated := func(path string) (uint64, []Frame, error) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		frames, err := readFrames(t, path)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc, frames, err
	}

	most := describe(ngMaxInterfaces, ngMaxInterfaces-1)
	alloc, frames, err := allocated(writeTestFile(t, most))
	if err != nil || len(frames) != 1 {
		t.Fatalf("%d interfaces: %d frames, %v", ngMaxInterfaces, len(frames), err)
	}
	// Reading buffers, and the interfaces' 24 B grown by doubling with their 4 B
	// places: less than twice the 24 B blocks that describe them.
	// (The race detector's instrumentation allocates too: room for it.)
	if limit := uint64(6*readBuffer + 2*len(most)); alloc > limit {
		t.Errorf("%d interfaces in %d bytes: allocated %d (limit %d)", ngMaxInterfaces, len(most), alloc, limit)
	}

	// Two million interfaces, 48 MB that gzip makes about 120 KB of.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(describe(2_000_000, 0))
	zw.Close()
	alloc, frames, err = allocated(writeTestFile(t, gz.Bytes()))
	var ce *CaptureError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "more than 65536 interfaces") {
		t.Fatalf("2M interfaces: got %v, want them refused", err)
	}
	// A section header of 28 B, and interface descriptions of 24 B.
	if past := int64(28 + 24*ngMaxInterfaces); len(frames) != 0 || ce.Offset != past {
		t.Errorf("refused at byte %d after %d frames, want at %d (the interface past the limit)", ce.Offset, len(frames), past)
	}
	if limit := uint64(6*readBuffer + 2*(24+4)*ngMaxInterfaces); alloc > limit {
		t.Errorf("2M interfaces in %d gzip bytes: allocated %d (limit %d)", gz.Len(), alloc, limit)
	}
}

// TestPcapngBlockBounded: a block longer than ngMaxBlock is refused before it is read,
// however well the file compresses.
func TestPcapngBlockBounded(t *testing.T) {
	w := &ngFile{order: binary.LittleEndian}
	w.section()
	w.iface(LinkRaw, 0, 0)
	w.block(0x0BAD, make([]byte, ngMaxBlock))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(w.b.Bytes())
	zw.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := readFrames(t, writeTestFile(t, gz.Bytes()))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "the reader takes up to 16777216") {
		t.Fatalf("a %d-byte block: %v, want it refused", ngMaxBlock+12, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4*readBuffer {
		t.Errorf("refusing it allocated %d bytes", alloc)
	}
}

// TestPlacesNamesBounded: the names places remembers stop at maxPlaceNames bytes; an
// interface named past it is known by its number, as an unnamed one.
func TestPlacesNamesBounded(t *testing.T) {
	var p places
	long := strings.Repeat("x", 60_000)
	for i := range 2 * maxPlaceNames / len(long) {
		p.place(0, fmt.Sprint(long, i))
	}
	if p.nameBytes > maxPlaceNames || len(p.names) != maxPlaceNames/len(long) {
		t.Errorf("%d names of %d bytes in all, want %d, at most %d", len(p.names), p.nameBytes, maxPlaceNames/len(long), maxPlaceNames)
	}
	past, unnamed := p.place(0, long+"past"), p.place(0, "")
	if past != unnamed || p.name(past) != "" {
		t.Errorf("a name past the bound is place %d (named %q), an unnamed interface 0 place %d; want the same, no name", past, p.name(past), unnamed)
	}
}
