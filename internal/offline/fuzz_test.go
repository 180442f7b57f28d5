package offline

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/fparser/fparser/internal/userspace"
)

// seedCaptures adds the test captures (and the corpus's, cut to 64 KiB) as seeds.
func seedCaptures(f *testing.F) {
	paths, _ := filepath.Glob("../../testdata/*.pcap*")
	more, _ := filepath.Glob("../../../shared/corpus/pcaps/*/*.pcap*")
	for _, p := range append(paths, more...) {
		if filepath.Ext(p) == ".csv" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f.Add(b[:min(len(b), 64<<10)])
	}
}

// FuzzSource feeds arbitrary files to the capture reader: it must end every file
// with io.EOF or an error that wraps ErrBadCapture, never panic, hand out no frame
// longer than the file, allocate nothing in proportion to a length field the file
// does not back (and, compressed, no more than the reader's limits allow whatever
// the file inflates to), and read it within a few seconds.
func FuzzSource(f *testing.F) {
	seedCaptures(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "capture")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		began := time.Now()
		src, err := Open(path)
		if err != nil {
			if !errors.Is(err, ErrBadCapture) {
				t.Fatalf("Open: %v, which is not ErrBadCapture", err)
			}
			return
		}
		defer src.Close()
		var fr Frame
		for n := 0; ; n++ {
			err := src.Next(&fr)
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrBadCapture) {
					t.Fatalf("packet %d: %v, which is not ErrBadCapture", n+1, err)
				}
				break
			}
			if len(fr.Data) > len(data) && !gzipped(data) {
				t.Fatalf("packet %d: %d bytes from a %d-byte file", n+1, len(fr.Data), len(data))
			}
		}
		took := time.Since(began)
		runtime.ReadMemStats(&after)
		// The reader's buffers (two of readBuffer with gzip), and what the data
		// itself backs, with room for the runtime's own. Compressed, the data backs
		// as much as it inflates to, but no block may pass ngMaxBlock (grown to it
		// by doubling) and no section's interfaces 16 B·ngMaxInterfaces (likewise).
		limit := uint64(3*readBuffer + 64*len(data) + (1 << 20))
		if gzipped(data) {
			limit += 2*ngMaxBlock + 2*16*ngMaxInterfaces
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > limit {
			t.Fatalf("reading a %d-byte file allocated %d bytes (limit %d)", len(data), alloc, limit)
		}
		// A safety bound, far above the milliseconds a fuzzed file takes: a reader
		// that loops or inflates without end fails here rather than hanging.
		if took > 5*time.Second {
			t.Fatalf("reading a %d-byte file took %v", len(data), took)
		}
	})
}

func gzipped(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// FuzzDatapath feeds arbitrary frames of every link type to the Go datapath (opening
// tunnels or not, by the link argument's high bit), twice
// (a flow's creation, then its update): it must not panic, and every frame must end
// in exactly one counter.
func FuzzDatapath(f *testing.F) {
	links := []uint32{LinkNull, LinkEthernet, LinkRawBSD, LinkRawBSD2, LinkRaw, LinkLoop, LinkSLL, LinkIPv4, LinkIPv6, LinkSLL2}
	paths, _ := filepath.Glob("../../testdata/*.pcap*")
	more, _ := filepath.Glob("../../../shared/corpus/pcaps/*/*.pcap*")
	for _, p := range append(paths, more...) {
		src, err := Open(p)
		if err != nil {
			continue
		}
		var fr Frame
		for i := 0; i < 8 && src.Next(&fr) == nil; i++ {
			for j, lt := range links {
				if lt == fr.LinkType {
					f.Add(append([]byte(nil), fr.Data...), uint8(j))
				}
			}
		}
		src.Close()
	}
	f.Fuzz(func(t *testing.T, frame []byte, link uint8) {
		lt := links[int(link)%len(links)]
		tab := userspace.NewFlowTable(4)
		eng := userspace.NewEngine(tab, userspace.DefaultTimeouts)
		eng.SetHistory(userspace.HistoryConfig{Limit: -1})
		dp := NewDatapath(eng, tab, 0)
		dp.KeepStatistics()
		if link&0x80 != 0 {
			dp.Decapsulate() // the tunnels' parsing too
		}
		dp.Packet(frame, len(frame), lt, 1e18)
		dp.Packet(frame, len(frame)+10, lt, 1e18+1e9)
		eng.Flush(userspace.EndEndOfCapture, func() {})
		c := dp.Counters()
		if c.Seen != 2 || c.Accepted+c.NonIP+c.OtherL4+c.Malformed+c.Unattributed+c.Filtered != c.Seen {
			t.Fatalf("counters do not add up: %+v", c)
		}
		var packets uint64
		for _, r := range eng.TakeEnded(nil) {
			packets += r.State.Packets()
			if r.History == nil || r.History.Len() != int(r.State.Packets()) {
				t.Fatalf("a flow of %d packets has a history of %v", r.State.Packets(), r.History)
			}
		}
		if packets != c.Accepted {
			t.Fatalf("%d packets in flows, %d accepted", packets, c.Accepted)
		}
	})
}
