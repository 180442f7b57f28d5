package fparser_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/fparser/fparser"
)

// recordOffsets returns the byte offset of every record of a pcap file.
func recordOffsets(b []byte) []int {
	var offs []int
	for off := 24; off+16 <= len(b); {
		offs = append(offs, off)
		off += 16 + int(binary.LittleEndian.Uint32(b[off+8:]))
	}
	return offs
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadInput(t *testing.T) {
	good, err := os.ReadFile("testdata/http.pcap")
	if err != nil {
		t.Fatal(err)
	}
	offs := recordOffsets(good)
	if len(offs) != 41 {
		t.Fatalf("http.pcap has %d records, want 41", len(offs))
	}
	// Record 30 begins inside the third connection; the first two are complete.
	cutAt := offs[29]

	corrupt := bytes.Clone(good)
	binary.LittleEndian.PutUint32(corrupt[cutAt+8:], 0xFFFFFFFF) // captured length 4 GiB
	binary.LittleEndian.PutUint32(corrupt[cutAt+12:], 0xFFFFFFFF)

	unknownLink := bytes.Clone(good)
	binary.LittleEndian.PutUint32(unknownLink[20:], 147) // LINKTYPE_USER0

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(good[:cutAt+20])
	zw.Close()

	for _, tc := range []struct {
		name      string
		data      []byte
		wantErr   string // in the message, after the path
		wantFlows int    // flows reported before the error
		openFails bool
	}{
		{"truncated.pcap", good[:cutAt+20], "packet 30 at byte " + itoa(cutAt) + ": record cut short", 2, false},
		{"truncated-header.pcap", good[:cutAt+7], "packet 30 at byte " + itoa(cutAt) + ": record cut short", 2, false},
		{"corrupt-length.pcap", corrupt, "packet 30 at byte " + itoa(cutAt) + ":", 2, false},
		{"truncated.pcap.gz", gz.Bytes(), "packet 30 at byte " + itoa(cutAt) + ": record cut short", 2, false},
		{"garbage.pcap", []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"), "at byte 0: not a pcap or pcapng file (magic bytes 47 45 54 20)", 0, true},
		{"empty.pcap", nil, "empty file", 0, true},
		{"short.pcap", good[:10], "pcap file header cut short", 0, true},
		{"unknown-link.pcap", unknownLink, "at byte 20: bad capture: unsupported link type 147", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTemp(t, tc.name, tc.data)
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			flows, info, err := replay(t, path, nil)
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, fparser.ErrBadCapture) {
				t.Errorf("error %v does not match ErrBadCapture", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, path+": ") || !strings.Contains(msg, tc.wantErr) {
				t.Errorf("error %q, want %q after the path", msg, tc.wantErr)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
				t.Errorf("allocated %d MiB reading a %d-byte file", grew>>20, len(tc.data))
			}
			if tc.openFails {
				return
			}
			if len(flows) != tc.wantFlows+1 && len(flows) != tc.wantFlows {
				t.Errorf("%d flows reported, want the %d complete ones and the one cut", len(flows), tc.wantFlows)
			}
			for _, f := range flows {
				if f.EndReason != fparser.EndEndOfCapture {
					t.Errorf("flow ended %v, want end-of-capture", f.EndReason)
				}
			}
			if len(flows) < 2 || flows[0].PacketCount() != 12 || flows[1].PacketCount() != 17 {
				t.Errorf("the complete connections were not reported whole: %+v", flows)
			}
			checkConservation(t, flows, info)
			if info.PacketsSeen != 29 {
				t.Errorf("%d packets seen before the fault, want 29", info.PacketsSeen)
			}
		})
	}
}

func TestBadPcapng(t *testing.T) {
	good, err := os.ReadFile("testdata/linktypes.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, "cut.pcapng", good[:len(good)-10])
	flows, _, err := replay(t, path, nil)
	// The cut block is the last: its length ends the file.
	at := len(good) - int(binary.LittleEndian.Uint32(good[len(good)-4:]))
	if want := "packet 6 at byte " + itoa(at) + ": pcapng: block cut short"; !errors.Is(err, fparser.ErrBadCapture) || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want ErrBadCapture and %q", err, want)
	}
	if len(flows) != 5 {
		t.Errorf("%d flows before the cut, want 5", len(flows))
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
