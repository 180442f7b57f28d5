package filter_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/kerneltest"
	"github.com/fparser/fparser/internal/testpackets"
)

// emptyCapture writes a pcap file with no packets, so that tcpdump compiles for its
// link type and byte order, as it would reading a capture.
func emptyCapture(t testing.TB, dir string, l filter.Link) string {
	var order binary.ByteOrder = binary.LittleEndian
	if l.BigEndian {
		order = binary.BigEndian
	}
	hdr := make([]byte, 24)
	order.PutUint32(hdr[0:], 0xa1b2c3d4)
	order.PutUint16(hdr[4:], 2)
	order.PutUint16(hdr[6:], 4)
	order.PutUint32(hdr[16:], 262144)
	order.PutUint32(hdr[20:], l.Type)
	path := filepath.Join(dir, fmt.Sprintf("link%d-%v.pcap", l.Type, l.BigEndian))
	if err := os.WriteFile(path, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// libpcap compiles expr with tcpdump -ddd for the link type of capture. rejectsAll
// is libpcap's optimizer refusing an expression that can match nothing.
func libpcap(capture, expr string) (prog *filter.Program, rejectsAll bool, err error) {
	var stdout, stderr strings.Builder
	cmd := exec.Command("tcpdump", "-ddd", "-r", capture, "--", expr)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if runErr := cmd.Run(); runErr != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "expression rejects all packets") {
			return nil, true, nil
		}
		lines := strings.Split(msg, "\n")
		return nil, false, errors.New(lines[len(lines)-1])
	}
	f, err := filter.Parse(stdout.String())
	if err != nil {
		return nil, false, fmt.Errorf("reading tcpdump -ddd output: %w", err)
	}
	prog, err = f.Compile(filter.Ethernet)
	return prog, false, err
}

// withLoopbackOrders adds, for each BSD loopback (NULL) packet written
// little-endian, the same packet as a big-endian writer would have stored it, and as
// OpenBSD loopback (LOOP, always big-endian), so that the byte orders libpcap
// distinguishes are all compared.
func withLoopbackOrders(pkts []testpackets.Packet) []testpackets.Packet {
	out := pkts
	for _, p := range pkts {
		if p.Link.Type != 0 || p.Link.BigEndian || len(p.Data) < 4 {
			continue
		}
		swapped := append([]byte(nil), p.Data...)
		binary.BigEndian.PutUint32(swapped, binary.LittleEndian.Uint32(p.Data))
		for _, l := range []filter.Link{{Type: 0, BigEndian: true}, {Type: 108}} {
			q := p
			q.Data, q.Link, q.Source = swapped, l, p.Source+" (byte order changed)"
			out = append(out, q)
		}
	}
	return out
}

func linkKey(l filter.Link) filter.Link {
	if l.Type != 0 {
		l.BigEndian = false
	}
	return l
}

// TestOracle compares fparser's decision with libpcap's, for every expression of
// testdata/expressions.txt and every packet of testdata and ../shared/corpus. Each
// link type gets its own libpcap program, from tcpdump -ddd reading an empty capture
// of that link type. Where libpcap refuses an expression, fparser must refuse it too.
func TestOracle(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		kerneltest.Skip(t, "the libpcap oracle needs tcpdump: skipped")
	}
	exprs := testpackets.Expressions(t)
	packets := withLoopbackOrders(testpackets.Load(t))
	byLink := map[filter.Link][]testpackets.Packet{}
	for _, p := range packets {
		byLink[linkKey(p.Link)] = append(byLink[linkKey(p.Link)], p)
	}
	links := make([]filter.Link, 0, len(byLink))
	for l := range byLink {
		links = append(links, l)
	}
	sort.Slice(links, func(i, j int) bool {
		return links[i].Type < links[j].Type || links[i].Type == links[j].Type && !links[i].BigEndian
	})
	dir := t.TempDir()
	var decisions, matches, bothRefused, disagreements int
	for _, l := range links {
		capture := emptyCapture(t, dir, l)
		pkts := byLink[l]
		for _, expr := range exprs {
			want, rejectsAll, wantErr := libpcap(capture, expr)
			got, gotErr := filter.Compile(expr, l)
			switch {
			case wantErr != nil && gotErr != nil:
				bothRefused++
				continue
			case wantErr != nil:
				disagreements++
				t.Errorf("link %d: %q: libpcap refuses it (%v), fparser compiles it", l.Type, expr, wantErr)
				continue
			case gotErr != nil:
				disagreements++
				t.Errorf("link %d: %q: libpcap compiles it, fparser refuses it: %v", l.Type, expr, gotErr)
				continue
			}
			bad := 0
			for _, p := range pkts {
				w := !rejectsAll && want.Match(p.Data, p.Wire)
				g := got.Match(p.Data, p.Wire)
				decisions++
				if g {
					matches++
				}
				if w != g {
					bad++
					if bad <= 3 {
						t.Errorf("link %d: %q: %s packet %d (%d of %d bytes): libpcap %v, fparser %v",
							l.Type, expr, p.Source, p.Index, len(p.Data), p.Wire, w, g)
					}
				}
			}
			if bad > 0 {
				disagreements++
				t.Logf("fparser's program:\n%s", got.DDD())
				if want != nil {
					t.Logf("libpcap's program:\n%s", want.DDD())
				}
			}
		}
	}
	t.Logf("%d expressions, %d link types, %d packets: %d decisions (%d matches), %d refused by both, %d disagreements",
		len(exprs), len(links), len(packets), decisions, matches, bothRefused, disagreements)
}

// TestOracleTcpdumpFilters lets libpcap itself filter the Ethernet packets (tcpdump
// reading a capture of them all) and compares its choice with fparser's, packet by
// packet, so that the interpreter is checked against libpcap's as well as the
// compiler against libpcap's compiler.
func TestOracleTcpdumpFilters(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		kerneltest.Skip(t, "the libpcap oracle needs tcpdump: skipped")
	}
	var pkts []testpackets.Packet
	for _, p := range testpackets.Load(t) {
		if p.Link.Type == 1 {
			pkts = append(pkts, p)
		}
	}
	// Each packet's timestamp is its index, so tcpdump's output names the packets
	// it kept.
	path := filepath.Join(t.TempDir(), "all.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(int64(i), 0), CaptureLength: len(p.Data), Length: p.Wire}
		if err := w.WritePacket(ci, p.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	exprs := testpackets.Expressions(t)
	type result struct {
		expr string
		bad  []string
		err  error
	}
	results := make(chan result)
	work := make(chan string)
	for range 2 {
		go func() {
			for expr := range work {
				r := result{expr: expr}
				prog, err := filter.Compile(expr, filter.Ethernet)
				if err != nil {
					results <- r // refused: TestOracle checks libpcap refuses it too
					continue
				}
				cmd := exec.Command("tcpdump", "-r", path, "-w", "-", "--", expr)
				var out, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &stderr
				if err := cmd.Run(); err != nil {
					if !strings.Contains(stderr.String(), "rejects all packets") {
						r.err = fmt.Errorf("tcpdump: %v: %s", err, stderr.String())
					}
					for _, p := range pkts {
						if prog.Match(p.Data, p.Wire) {
							r.bad = append(r.bad, fmt.Sprintf("%s packet %d: libpcap rejects all, fparser matches", p.Source, p.Index))
							break
						}
					}
					results <- r
					continue
				}
				kept := map[int]bool{}
				rd, err := pcapgo.NewReader(&out)
				if err != nil {
					r.err = err
					results <- r
					continue
				}
				for {
					_, ci, err := rd.ZeroCopyReadPacketData()
					if err != nil {
						break
					}
					kept[int(ci.Timestamp.Unix())] = true
				}
				for i, p := range pkts {
					if g := prog.Match(p.Data, p.Wire); g != kept[i] {
						r.bad = append(r.bad, fmt.Sprintf("%s packet %d: libpcap %v, fparser %v", p.Source, p.Index, kept[i], g))
					}
				}
				results <- r
			}
		}()
	}
	go func() {
		for _, e := range exprs {
			work <- e
		}
		close(work)
	}()
	disagreements := 0
	for range exprs {
		r := <-results
		if r.err != nil {
			t.Errorf("%q: %v", r.expr, r.err)
		}
		if len(r.bad) > 0 {
			disagreements++
			t.Errorf("%q: %d packets differ, first: %s", r.expr, len(r.bad), r.bad[0])
		}
	}
	t.Logf("%d expressions on %d Ethernet packets filtered by tcpdump itself: %d disagreements", len(exprs), len(pkts), disagreements)
}
