package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/kerneltest"
	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/testnet"
)

// watchCapture is the capture made to be watched: 13 s of real traffic, concurrent
// flows at different paces (testdata/capture/capture.sh).
var watchCapture = filepath.Join("..", "..", "testdata", "watch.pcap")

// writeSlowCapture writes a capture of 8 s: UDP flows of different rates and sizes,
// for the live view to show while it is replayed at its own pace.
func writeSlowCapture(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "slow.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for ms := 0; ms < 8000; ms += 10 {
		for i := 1; i <= 6; i++ {
			if ms%(10*i) != 0 {
				continue // flow i sends every 10·i ms
			}
			src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
			dst := netip.AddrFrom4([4]byte{203, 0, 113, 1})
			frame := pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoUDP}.Build(pb.UDP(uint16(40000+i), 53, make([]byte, 100*i))))
			ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(ms) * time.Millisecond), CaptureLength: len(frame), Length: len(frame)}
			if err := w.WritePacket(ci, frame); err != nil {
				t.Fatal(err)
			}
		}
	}
	return path
}

// tmuxSession runs command in a detached tmux session of 80 by 24 on a server of its
// own, and returns a function that prints the pane.
func tmuxSession(t *testing.T, command string) (pane func() string, keys func(...string), alive func() bool) {
	sock := fmt.Sprintf("fpt-top-%d", os.Getpid())
	tmux := func(args ...string) ([]byte, error) {
		return exec.Command("tmux", append([]string{"-L", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
	}
	if out, err := tmux("new-session", "-d", "-s", "top", "-x", "80", "-y", "24", command); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	t.Cleanup(func() { tmux("kill-server") })
	pane = func() string {
		out, err := tmux("capture-pane", "-p", "-t", "top")
		if err != nil {
			t.Fatalf("capture-pane: %v\n%s", err, out)
		}
		return string(out)
	}
	keys = func(k ...string) {
		if out, err := tmux(append([]string{"send-keys", "-t", "top"}, k...)...); err != nil {
			t.Fatalf("send-keys: %v\n%s", err, out)
		}
	}
	alive = func() bool {
		_, err := tmux("has-session", "-t", "top")
		return err == nil
	}
	return pane, keys, alive
}

// eventually polls get until ok holds of what it returns, for up to 10 s, and
// returns that; past the deadline it fails the test, showing the last value.
func eventually(t *testing.T, what string, get func() string, ok func(string) bool) string {
	t.Helper()
	var s string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s = get(); ok(s) {
			return s
		}
	}
	t.Fatalf("never %s; the screen was:\n%s", what, s)
	return ""
}

// waitPane waits until the pane shows want, and returns it.
func waitPane(t *testing.T, pane func() string, want string) string {
	t.Helper()
	return eventually(t, "showed "+strconv.Quote(want), pane, func(s string) bool { return strings.Contains(s, want) })
}

// waitGone waits until the tmux session has ended: its command has exited.
func waitGone(t *testing.T, alive func() bool) {
	t.Helper()
	eventually(t, "quit on q", func() string {
		if alive() {
			return "still running"
		}
		return ""
	}, func(s string) bool { return s == "" })
}

// topRun is a view of fparser top that a test drives: it draws into a buffer, 80
// columns by 40 lines, and takes its keys from the test.
type topRun struct {
	screen testnet.Buffer
	keys   chan byte
	quit   chan struct{}
	done   chan struct{}
	err    error // the loop's, once done is closed
}

// startTop runs fparser top with args (its command line) until the test ends.
func startTop(t *testing.T, args ...string) *topRun {
	t.Helper()
	c, err := parseTopArgs(args, io.Discard)
	if err != nil || c == nil {
		t.Fatalf("fparser top %v: %v", args, err)
	}
	top, err := newTop(c.read, c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("fparser top %v: %v", args, err)
	}
	r := &topRun{keys: make(chan byte), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = top.loop(topScreen{out: &r.screen, size: func() (int, int) { return 80, 40 }, keys: r.keys, quit: r.quit})
	}()
	t.Cleanup(func() {
		close(r.quit)
		<-r.done
	})
	return r
}

// frame returns the last screen drawn, as lines of text, and how many were drawn.
func (r *topRun) frame() (string, int) {
	s := r.screen.String()
	n := strings.Count(s, "\033[H")
	if n == 0 {
		return "", 0
	}
	s = s[strings.LastIndex(s, "\033[H")+len("\033[H"):] // each frame is one write
	s = strings.TrimSuffix(s, "\033[J")
	return strings.ReplaceAll(strings.ReplaceAll(s, "\033[K", ""), "\r\n", "\n"), n
}

func (r *topRun) last() string {
	s, _ := r.frame()
	return s
}

// waitFrame waits until the last screen drawn satisfies ok, and returns it.
func (r *topRun) waitFrame(t *testing.T, what string, ok func(string) bool) string {
	t.Helper()
	return eventually(t, what, r.last, ok)
}

// press sends the key k as the person would type it.
func (r *topRun) press(t *testing.T, k byte) {
	t.Helper()
	select {
	case r.keys <- k:
	case <-time.After(5 * time.Second):
		t.Fatalf("the view took no key %q", k)
	}
}

// replayed waits until the view says the replay has ended, and returns that screen.
func (r *topRun) replayed(t *testing.T) string {
	t.Helper()
	return r.waitFrame(t, "showed the end of the replay", func(s string) bool { return strings.Contains(s, "[capture replayed") })
}

// screenRow is a flow's line of the view, its cells as written.
type screenRow struct {
	proto, src, dst, packets, bytes, pps, bps string
}

var rowPattern = regexp.MustCompile(`^(tcp\*?|udp\*?)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+ \S*B)\s+(\S+(?: [kMGTP])?)\s+(\S+ \S*B/s)$`)

// rows returns the flows' lines of a screen, top to bottom.
func rows(t *testing.T, screen string) []screenRow {
	t.Helper()
	var out []screenRow
	for _, l := range strings.Split(screen, "\n")[5:] {
		if l == "" {
			continue
		}
		m := rowPattern.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a flow's line: %q in\n%s", l, screen)
		}
		out = append(out, screenRow{m[1], m[2], m[3], m[4], m[5], m[6], m[7]})
	}
	return out
}

// siValue reads back a number the view wrote with topSI: "53.7 kB" is 53700.
func siValue(t *testing.T, s string) float64 {
	t.Helper()
	s = strings.TrimSuffix(strings.TrimSuffix(s, "/s"), "B")
	num, prefix, _ := strings.Cut(strings.TrimSpace(s), " ")
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		t.Fatalf("%q is not a number the view writes", s)
	}
	if prefix != "" {
		v *= map[string]float64{"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}[prefix]
	}
	return v
}

// goldenFlow is a flow of testdata's golden listing of a capture.
type goldenFlow struct {
	src, dst         string
	packets, bytes   uint64
	first, lastInCap time.Time
}

// goldenFlows reads capture's NAME.flows.csv, which TestGolden pins.
func goldenFlows(t *testing.T, capture string) []goldenFlow {
	t.Helper()
	f, err := os.Open(capture + ".flows.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	num := func(r []string, name string) uint64 {
		v, err := strconv.ParseUint(r[col[name]], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	stamp := func(r []string, name string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, r[col[name]])
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	var out []goldenFlow
	for _, r := range recs[1:] {
		out = append(out, goldenFlow{
			src:     netip.AddrPortFrom(netip.MustParseAddr(r[col["src_ip"]]), uint16(num(r, "src_port"))).String(),
			dst:     netip.AddrPortFrom(netip.MustParseAddr(r[col["dst_ip"]]), uint16(num(r, "dst_port"))).String(),
			packets: num(r, "src2dst_packets") + num(r, "dst2src_packets"),
			bytes:   num(r, "src2dst_bytes") + num(r, "dst2src_bytes"),
			first:   stamp(r, "first_seen"), lastInCap: stamp(r, "last_seen"),
		})
	}
	return out
}

// captureSpan is the first and the last packet of the flows of golden.
func captureSpan(golden []goldenFlow) (first, last time.Time) {
	for _, g := range golden {
		if first.IsZero() || g.first.Before(first) {
			first = g.first
		}
		if g.lastInCap.After(last) {
			last = g.lastInCap
		}
	}
	return first, last
}

// headerClock reads the clock of a replay's screen, on its second line.
func headerClock(t *testing.T, screen string) time.Time {
	t.Helper()
	lines := strings.Split(screen, "\n")
	if len(lines) < 2 || len(lines[1]) < len("2006-01-02 15:04:05 UTC") {
		t.Fatalf("no clock on the screen:\n%s", screen)
	}
	c, err := time.Parse("2006-01-02 15:04:05 UTC", lines[1][:len("2006-01-02 15:04:05 UTC")])
	if err != nil {
		t.Fatalf("the clock: %v\n%s", err, screen)
	}
	return c
}

// TestTopUsageAndErrors: -h prints the usage on standard output, status 0; a
// command line that cannot be done is one line that says what is wanted, status 2;
// a failure when it runs is one line, status 1.
func TestTopUsageAndErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pcap")
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-r", watchCapture, "-h"}} {
		var stdout, stderr bytes.Buffer
		code := runTop(args, os.Stdin, &stdout, &stderr)
		if code != 0 || !strings.Contains(stdout.String(), "Usage:") || !strings.Contains(stdout.String(), "packets, bytes, pps or bps") || stderr.Len() != 0 {
			t.Errorf("fparser top %v: exit %d, stdout %q, stderr %q; want the usage on standard output and exit 0", args, code, stdout.String(), stderr.String())
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "fparser top: nothing to watch: give -r FILE or -i IFACE (see fparser top -h)"},
		{[]string{"-r", watchCapture, "--bogus"}, 2, "fparser top: unknown option --bogus (see -h)"},
		{[]string{"-r"}, 2, "fparser top: -r needs a value"},
		{[]string{"-r", watchCapture, "--sort", "size"}, 2, "fparser top: --sort size: want packets, bytes, pps or bps"},
		{[]string{"-r", watchCapture, "--interval", "5"}, 2, "fparser top: --interval 5: want a duration with a unit"},
		{[]string{"-r", watchCapture, "--interval", "10ms"}, 2, "fparser top: --interval 10ms: want at least 100ms"},
		{[]string{"-r", watchCapture, "--speed", "fast"}, 2, "fparser top: --speed fast: want a number, such as 10 or 0.5"},
		{[]string{"-r", watchCapture, "--speed", "-1"}, 2, "fparser top: --speed -1: want a positive multiple"},
		{[]string{"-r", watchCapture, "--speed", "2", "--fast"}, 2, "fparser top: --speed and --fast exclude each other"},
		{[]string{"-r", watchCapture, "--attach", "xdp"}, 2, "fparser top: --attach is for -i, not -r"},
		{[]string{"-i", "lo", "--speed", "2"}, 2, "fparser top: --speed is for -r"},
		{[]string{"-i", "lo", "--fast"}, 2, "fparser top: --fast is for -r"},
		{[]string{"-r", watchCapture, "-i", "lo"}, 2, "fparser top: -r and -i exclude each other"},
		{[]string{"-r", "-"}, 2, "fparser top: -r -: the view reads its keys from standard input"},
		{[]string{"-r", watchCapture, "-f", "tcp", "udp"}, 2, "fparser top: give the filter once"},
		{[]string{"-r", missing}, 1, "fparser top: -r " + missing + ": no such file"},
		{[]string{"-r", dir}, 1, "fparser top: -r " + dir + ": is a directory, not a capture file"},
		{[]string{"-i", "fpt-none0"}, 1, "fparser top: -i fpt-none0: no such network interface"},
		{[]string{"-r", watchCapture}, 1, "fparser top: standard output is not a terminal; for a listing use fparser -r or -i"},
	} {
		var stdout, stderr bytes.Buffer
		code := runTop(tc.args, os.Stdin, &stdout, &stderr)
		if code != tc.code || !strings.HasPrefix(stderr.String(), tc.want) {
			t.Errorf("fparser top %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
		if strings.Count(stderr.String(), "\n") != 1 || stdout.Len() != 0 {
			t.Errorf("fparser top %v: want a one-line error and no output, got %q and %q", tc.args, stderr.String(), stdout.String())
		}
	}
}

// TestTopSortNamesAreTheListings: --sort takes the names of fparser --sort (and the
// view's old names), the header and the columns say them, and each key sorts the
// flows by its column, largest first.
func TestTopSortNamesAreTheListings(t *testing.T) {
	for name, want := range map[string]string{"packets": "packets", "bytes": "bytes", "pps": "pps", "bps": "bps", "BPS": "bps", "bytes/s": "bps", "pkt/s": "pps"} {
		c, err := parseTopArgs([]string{"-r", watchCapture, "--sort", name}, io.Discard)
		if err != nil {
			t.Errorf("--sort %s: %v", name, err)
			continue
		}
		listing, err := fparser.ParseSortOrder(want)
		if err != nil || c.order != listing || c.order.String() != want {
			t.Errorf("--sort %s: order %v, want the listing's %v (%v)", name, c.order, listing, err)
		}
	}

	r := startTop(t, "-r", watchCapture, "--fast", "--sort", "pps", "--interval", "100ms")
	s := r.replayed(t)
	lines := strings.Split(s, "\n")
	if !strings.Contains(lines[0], "sort: pps") || !strings.HasPrefix(lines[3], "keys: n packets  b bytes  p pps  t bps  s next") ||
		!regexp.MustCompile(`PACKETS\s+BYTES\s+PPS\s+BPS$`).MatchString(lines[4]) {
		t.Fatalf("the header does not name the orders as the listing does:\n%s", s)
	}
	column := map[string]func(screenRow) float64{
		"packets": func(r screenRow) float64 { return siValue(t, r.packets) },
		"bytes":   func(r screenRow) float64 { return siValue(t, r.bytes) },
		"pps":     func(r screenRow) float64 { return siValue(t, r.pps) },
		"bps":     func(r screenRow) float64 { return siValue(t, r.bps) },
	}
	for _, step := range []struct {
		key  byte
		sort string
	}{{'n', "packets"}, {'b', "bytes"}, {'t', "bps"}, {'p', "pps"}, {'s', "bps"}, {'s', "packets"}} {
		r.press(t, step.key)
		s := r.waitFrame(t, "sorted by "+step.sort, func(s string) bool { return strings.Contains(s, "sort: "+step.sort+" ") })
		rs := rows(t, s)
		if len(rs) < 2 {
			t.Fatalf("%d flows on the screen:\n%s", len(rs), s)
		}
		for i := 1; i < len(rs); i++ {
			if column[step.sort](rs[i]) > column[step.sort](rs[i-1]) {
				t.Errorf("key %c: by %s, row %d comes after a smaller one:\n%s", step.key, step.sort, i, s)
			}
		}
	}
}

// TestTopKeepsTheTableWhenTheReplayEnds: when the capture ends the view keeps the
// flows its end ended, each marked, with their final counts, and keeps them over
// the refreshes after.
func TestTopKeepsTheTableWhenTheReplayEnds(t *testing.T) {
	golden := goldenFlows(t, watchCapture)
	r := startTop(t, "-r", watchCapture, "--fast", "--interval", "100ms")
	end := r.replayed(t)
	_, n := r.frame()
	got := rows(t, end)
	if len(got) != len(golden) {
		t.Fatalf("%d flows on the last screen, the capture ends %d:\n%s", len(got), len(golden), end)
	}
	shown := map[[2]string]screenRow{}
	for _, row := range got {
		if !strings.HasSuffix(row.proto, "*") {
			t.Errorf("%s -> %s is not marked as ended", row.src, row.dst)
		}
		shown[[2]string{row.src, row.dst}] = row
	}
	for _, g := range golden {
		row, ok := shown[[2]string{g.src, g.dst}]
		if !ok {
			// IPv6 endpoints are cut at the left, keeping the port.
			for k, v := range shown {
				if strings.HasSuffix(g.src, strings.TrimPrefix(k[0], "~")) && strings.HasSuffix(g.dst, strings.TrimPrefix(k[1], "~")) {
					row, ok = v, true
				}
			}
		}
		if !ok || row.packets != strconv.FormatUint(g.packets, 10) || row.bytes != topSI(float64(g.bytes))+"B" {
			t.Errorf("%s -> %s: shown %+v, want %d packets, %d bytes", g.src, g.dst, row, g.packets, g.bytes)
		}
	}
	if !strings.Contains(end, fmt.Sprintf("flows %d (tcp 7, udp 5)", len(golden))) {
		t.Errorf("the header does not count the flows shown:\n%s", end)
	}
	// Refreshes come and go; the table stays.
	later := eventually(t, "refreshed three times more", func() string {
		s, m := r.frame()
		if m < n+3 {
			return ""
		}
		return s
	}, func(s string) bool { return s != "" })
	if later != end {
		t.Errorf("the last screen changed after the end:\n%s\nthen\n%s", end, later)
	}
	r.press(t, 'q')
	<-r.done
	if r.err != nil {
		t.Errorf("the view ended with %v", r.err)
	}
}

// TestTopKeepsTheLastRowsWhenNoFlowOutlivesTheCapture: flows that all ended before
// the capture's end leave the rows last shown on the screen, marked as ended, not
// an empty table.
func TestTopKeepsTheLastRowsWhenNoFlowOutlivesTheCapture(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idle.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriterNanos(f)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	write := func(at time.Duration, frame []byte) {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(at), CaptureLength: len(frame), Length: len(frame)}, frame); err != nil {
			t.Fatal(err)
		}
	}
	src, dst := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("203.0.113.1")
	for ms := 0; ms <= 600; ms += 20 {
		write(time.Duration(ms)*time.Millisecond, pb.Ethernet(pb.EtherIPv4, nil, pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoUDP}.Build(pb.UDP(40007, 53, make([]byte, 64)))))
	}
	// Long after the flow's idle timeout: not IP, so no flow, but the capture's end.
	write(4*time.Second, pb.Ethernet(pb.EtherARP, nil, make([]byte, 28)))
	f.Close()

	r := startTop(t, "-r", path, "--speed", "2", "--flow-timeout", "1s", "--interval", "100ms")
	r.waitFrame(t, "showed the flow", func(s string) bool { return strings.Contains(s, "198.51.100.7:40007") })
	end := r.replayed(t)
	rs := rows(t, end)
	if len(rs) != 1 || rs[0].proto != "udp*" || rs[0].src != "198.51.100.7:40007" {
		t.Fatalf("the last screen lost the flow it showed, or did not mark it:\n%s", end)
	}
}

// TestTopClockIsTheCapturesWhileReplaying: during a replay at 4 times the capture's
// pace the header's clock is the capture's, between its first and last packet (the
// wall clock is days later, or at least seconds), and the rates are per second of
// the capture: a flow of one datagram each way every 100 ms shows 20 pps, not 80.
func TestTopClockIsTheCapturesWhileReplaying(t *testing.T) {
	golden := goldenFlows(t, watchCapture)
	first, last := captureSpan(golden)
	r := startTop(t, "-r", watchCapture, "--speed", "4", "--interval", "250ms")
	const stream = "192.0.2.1:46131" // the UDP stream of one datagram every 100 ms
	s := r.waitFrame(t, "showed the stream's own rate", func(s string) bool {
		if strings.Contains(s, "[capture replayed") {
			return true // too late: the checks below say what was missed
		}
		for _, l := range strings.Split(s, "\n") {
			if m := rowPattern.FindStringSubmatch(l); m != nil && m[2] == stream {
				pps, err := strconv.ParseFloat(m[6], 64)
				return err == nil && pps >= 14 && pps <= 26
			}
		}
		return false
	})
	if strings.Contains(s, "[capture replayed") {
		t.Fatalf("the replay ended and %s never showed about 20 pps:\n%s", stream, s)
	}
	clock := headerClock(t, s)
	if clock.Before(first.Truncate(time.Second)) || clock.After(last) {
		t.Errorf("the clock %v is not the capture's (%v to %v):\n%s", clock, first, last, s)
	}
	if now := time.Now(); clock.After(now.Add(-2 * time.Second)) {
		t.Errorf("the clock %v is the wall clock's (%v):\n%s", clock, now, s)
	}
	end := r.replayed(t)
	if got := headerClock(t, end); !got.Equal(last.Truncate(time.Second)) {
		t.Errorf("at the end the clock says %v, want the last packet's %v:\n%s", got, last, end)
	}
}

// TestTopBytesReadLikeTheHeader: byte counts and rates take SI units, as the
// header's rates do, and no column overflows into the next.
func TestTopBytesReadLikeTheHeader(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0 ", 540: "540 ", 999.4: "999 ", 999.96: "1.0 k", 53706: "53.7 k",
		999_960: "1.0 M", 12_345_678: "12.3 M", 2.5e9: "2.5 G", 4e12: "4.0 T",
	} {
		if got := topSI(v); got != want {
			t.Errorf("topSI(%v) = %q, want %q", v, got, want)
		}
	}

	r := startTop(t, "-r", watchCapture, "--speed", "8", "--interval", "200ms")
	// A screen during the replay, with rates, and the last one.
	during := r.waitFrame(t, "showed rates", func(s string) bool {
		return strings.Contains(s, "kB/s") && !strings.Contains(s, "[capture replayed")
	})
	end := r.replayed(t)
	bytesCell := regexp.MustCompile(`^\d+(\.\d)? [kMGTP]?B$`)
	rateCell := regexp.MustCompile(`^\d+(\.\d)? [kMGTP]?B/s$`)
	header := regexp.MustCompile(`  \d+(\.\d)? [kMGTP]?pkt/s  \d+(\.\d)? [kMGTP]?B/s$`)
	for _, s := range []string{during, end} {
		if !header.MatchString(strings.Split(s, "\n")[1]) {
			t.Errorf("the header's rates:\n%s", s)
		}
		for _, row := range rows(t, s) {
			if !bytesCell.MatchString(row.bytes) || !rateCell.MatchString(row.bps) {
				t.Errorf("%s -> %s: bytes %q, rate %q: want SI units as the header's", row.src, row.dst, row.bytes, row.bps)
			}
		}
	}
	// The largest download: 53706 bytes in all.
	if !regexp.MustCompile(`192\.0\.2\.2:8081\s+107\s+53\.7 kB `).MatchString(end) {
		t.Errorf("the 48 kB download does not read 53.7 kB:\n%s", end)
	}
}

// TestTopReplayShowsNoKernelCounters: a replay has no ring buffer and no kernel
// flow map, so the view leaves their counters out; a live view shows them.
func TestTopReplayShowsNoKernelCounters(t *testing.T) {
	r := startTop(t, "-r", watchCapture, "--fast", "--interval", "100ms")
	end := r.replayed(t)
	counters := strings.Split(end, "\n")[2]
	if strings.Contains(counters, "lost") || strings.Contains(counters, "evicted") || !strings.HasPrefix(counters, "packets 535  filtered 0  malformed 0  non-IP 0") {
		t.Errorf("a replay's counters: %q", counters)
	}
	live := topView{source: "eth0", live: true, at: time.Date(2026, 12, 5, 9, 30, 15, 0, time.Local), info: fparser.Info{PacketsSeen: 10, EventsLost: 3, Evictions: 4}}
	screen := live.render(80, 24)
	if !strings.Contains(screen, "packets 10  filtered 0  malformed 0  non-IP 0  lost events 3  evicted 4") || !strings.Contains(screen, "\r\n09:30:15  flows") {
		t.Errorf("a live view's counters or clock:\n%q", screen)
	}
}

// TestTopShowsProcesses: a live view 102 columns wide or more names each flow's
// local process, its id and its cgroup, after the numbers; a narrower one keeps the
// endpoints' room, and a replay has no processes and no such column.
func TestTopShowsProcesses(t *testing.T) {
	row := func(p fparser.Process) topRow {
		return topRow{f: fparser.Flow{Protocol: fparser.TCP, Src: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:80"), Process: p}, packets: 3}
	}
	v := topView{source: "eth0", live: true, rows: []topRow{
		row(fparser.Process{PID: 4242, Name: "curl", Cgroup: "/user.slice/session-1.scope"}),
		row(fparser.Process{Cgroup: "/system.slice/old.service"}), // a socket older than the parser
		row(fparser.Process{}), // forwarded
	}}
	lines := strings.Split(strings.TrimSuffix(v.render(200, 24), "\033[J"), "\r\n")
	if !strings.HasSuffix(strings.TrimSuffix(lines[4], "\033[K"), "BPS PROCESS") {
		t.Errorf("header %q does not end with PROCESS", lines[4])
	}
	for i, want := range []string{" curl[4242] /user.slice/session-1.scope\033[K", "B/s /system.slice/old.service\033[K", "B/s\033[K"} {
		if !strings.HasSuffix(lines[5+i], want) {
			t.Errorf("row %d: %q, want it to end %q", i, lines[5+i], want)
		}
	}
	if s := v.render(101, 24); strings.Contains(s, "PROCESS") || strings.Contains(s, "curl") {
		t.Errorf("101 columns, too few for the endpoints and the processes, show processes:\n%s", s)
	}
	v.live = false
	if s := v.render(160, 24); strings.Contains(s, "PROCESS") || strings.Contains(s, "curl") {
		t.Errorf("a replay's view shows processes:\n%s", s)
	}
}

// TestTopPauseFreezesTheView: space stops the refreshes (the screen is still drawn,
// the same, every interval) and space again resumes them.
func TestTopPauseFreezesTheView(t *testing.T) {
	r := startTop(t, "-r", watchCapture, "--speed", "4", "--interval", "100ms")
	r.waitFrame(t, "showed flows", func(s string) bool { return strings.Contains(s, "192.0.2.1:46131") })
	r.press(t, ' ')
	frozen := r.waitFrame(t, "showed the pause", func(s string) bool { return strings.Contains(s, "[paused]") })
	_, n := r.frame()
	later := eventually(t, "drew three more screens", func() string {
		s, m := r.frame()
		if m < n+3 {
			return ""
		}
		return s
	}, func(s string) bool { return s != "" })
	if later != frozen {
		t.Errorf("the paused view changed:\n%s\nthen\n%s", frozen, later)
	}
	r.press(t, ' ')
	r.waitFrame(t, "moved on after the pause", func(s string) bool {
		return !strings.Contains(s, "[paused]") && strings.Split(s, "\n")[1] != strings.Split(frozen, "\n")[1]
	})
}

// TestTopInTmux uses fparser top as a person would, in an 80-column tmux pane: it
// replays a capture at twice its pace, shows the flows sorted, changes the sort with
// a key, pauses, shows the flows the end of the capture ended, and quits with q.
func TestTopInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("needs tmux")
	}
	bin := buildCommand(t)
	capture := writeSlowCapture(t)
	// Not on a terminal: refused, saying why.
	if out, err := exec.Command(bin, "top", "-r", capture).CombinedOutput(); err == nil || !strings.Contains(string(out), "not a terminal") {
		t.Errorf("top with standard output in a pipe: %v, %q", err, out)
	}
	pane, keys, alive := tmuxSession(t, bin+" top --speed 2 --interval 250ms -r "+capture)

	// A refresh after the first, with rates: flow 6 sends about 17 packets a second.
	s := eventually(t, "showed the flows with their rates", pane, func(s string) bool {
		return regexp.MustCompile(`198\.51\.100\.6:40006 .* 1[4-9] +\S+ kB/s`).MatchString(s)
	})
	t.Logf("the view, sorted by bytes:\n%s", s)
	for i, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if len([]rune(l)) > 80 {
			t.Errorf("line %d is %d columns: %q", i, len([]rune(l)), l)
		}
	}
	if !strings.Contains(s, "sort: bytes") || !strings.Contains(s, "PROTO") || !strings.Contains(s, "flows 6 (tcp 0, udp 6)") ||
		!strings.Contains(s, "2026-11-28 12:00:0") {
		t.Fatalf("the view lacks its header, its flows or the capture's clock:\n%s", s)
	}
	// By bytes, flow 1 (every 10 ms, 128 bytes) leads flow 6 (every 60 ms, 628).
	if i1, i6 := strings.Index(s, "198.51.100.1:40001"), strings.Index(s, "198.51.100.6:40006"); i1 < 0 || i6 < 0 || i1 > i6 {
		t.Errorf("by bytes, flow 1 should come before flow 6:\n%s", s)
	}

	keys("n")
	waitPane(t, pane, "sort: packets")
	keys(" ")
	frozen := waitPane(t, pane, "[paused]")
	// Nothing to wait for: the test is that nothing happens over a few refreshes.
	time.Sleep(time.Second)
	if s = pane(); s != frozen {
		t.Errorf("the paused view changed:\n%s\nthen\n%s", frozen, s)
	}
	keys(" ")
	eventually(t, "resumed", pane, func(s string) bool { return strings.Contains(s, "sort: packets  ") && !strings.Contains(s, "[paused]") })

	s = waitPane(t, pane, "[capture replayed")
	t.Logf("the view at the end of the capture:\n%s", s)
	if !strings.Contains(s, "2026-11-28 12:00:07 UTC  flows 6 (tcp 0, udp 6)") || strings.Count(s, "udp*") != 6 {
		t.Errorf("the last screen lacks the capture's last second or its flows, marked:\n%s", s)
	}
	keys("q")
	waitGone(t, alive)
}

// TestTopLiveInTmux watches an interface of a network namespace of its own, as a
// person would: the wall clock, the kernel's counters, and the flow that ping and
// a UDP sender make.
func TestTopLiveInTmux(t *testing.T) {
	kerneltest.RequireRoot(t, "live tests (network namespaces, BPF)", "ip", "tmux")
	bin := buildCommand(t)
	ns := fmt.Sprintf("fpt-top-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "-n", ns, "link", "add", "fpt0", "type", "veth", "peer", "name", "fpt1")
	run("ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", "fpt0")
	for _, l := range []string{"lo", "fpt0", "fpt1"} {
		run("ip", "-n", ns, "link", "set", l, "up")
	}
	pane, keys, alive := tmuxSession(t, "ip netns exec "+ns+" "+bin+" top --interval 250ms -i fpt1 udp")
	s := waitPane(t, pane, "lost events 0  evicted 0")
	if !regexp.MustCompile(`\n\d\d:\d\d:\d\d  flows`).MatchString(s) {
		t.Errorf("a live view's clock is the wall clock's, HH:MM:SS:\n%s", s)
	}
	// Datagrams out of fpt0 arrive on fpt1, where the view watches.
	sender := exec.Command("ip", "netns", "exec", ns, "bash", "-c",
		`exec 3<>/dev/udp/192.0.2.2/9; for i in $(seq 1 200); do echo fparser >&3; sleep 0.05; done`)
	run("ip", "-n", ns, "neigh", "add", "192.0.2.2", "lladdr", "02:00:00:00:00:02", "dev", "fpt0", "nud", "permanent")
	if err := sender.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sender.Process.Kill(); sender.Wait() })
	s = waitPane(t, pane, "192.0.2.2:9")
	t.Logf("the live view:\n%s", s)
	keys("q")
	waitGone(t, alive)
}
