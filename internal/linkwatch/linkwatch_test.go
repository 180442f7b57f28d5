package linkwatch

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fparser/fparser/internal/testharness"
)

// TestMain runs the tests, or, in a process a test started with
// testharness.Command, the role that process is for: the roles watch inside a
// network namespace of their own, where the test may make and delete links.
func TestMain(m *testing.M) { testharness.Main(m) }

// within bounds every wait for the kernel or a child: generous, for a machine
// busy with the race detector, and only reached when something is wrong.
const within = 30 * time.Second

// message is one rtnetlink link message, as the kernel lays it out.
func message(typ uint16, family uint8, index int32, flags uint32, name string) []byte {
	attr := func(typ uint16, value []byte) []byte {
		a := binary.NativeEndian.AppendUint16(nil, uint16(unix.SizeofRtAttr+len(value)))
		a = binary.NativeEndian.AppendUint16(a, typ)
		a = append(a, value...)
		for len(a)%unix.NLMSG_ALIGNTO != 0 {
			a = append(a, 0)
		}
		return a
	}
	var body []byte
	if typ == unix.RTM_NEWLINK || typ == unix.RTM_DELLINK {
		body = append(body, family, 0)
		body = binary.NativeEndian.AppendUint16(body, 1) // ARPHRD_ETHER
		body = binary.NativeEndian.AppendUint32(body, uint32(index))
		body = binary.NativeEndian.AppendUint32(body, flags)
		body = binary.NativeEndian.AppendUint32(body, 0xffffffff)
		body = append(body, attr(unix.IFLA_MTU, binary.NativeEndian.AppendUint32(nil, 1500))...)
		if name != "" {
			body = append(body, attr(unix.IFLA_IFNAME, append([]byte(name), 0))...)
		}
	}
	m := binary.NativeEndian.AppendUint32(nil, uint32(unix.NLMSG_HDRLEN+len(body)))
	m = binary.NativeEndian.AppendUint16(m, typ)
	m = binary.NativeEndian.AppendUint16(m, 0)
	m = binary.NativeEndian.AppendUint32(m, 0) // sequence: 0 for a notification
	m = binary.NativeEndian.AppendUint32(m, 0) // port: the kernel's
	return append(m, body...)
}

func TestParse(t *testing.T) {
	up := uint32(unix.IFF_UP | unix.IFF_BROADCAST)
	tests := []struct {
		name    string
		b       []byte
		want    []Event
		wantErr bool
	}{
		{"new", message(unix.RTM_NEWLINK, unix.AF_UNSPEC, 7, up, "eth7"), []Event{{Index: 7, Name: "eth7", Up: true}}, false},
		{"new down", message(unix.RTM_NEWLINK, unix.AF_UNSPEC, 7, unix.IFF_BROADCAST, "eth7"), []Event{{Index: 7, Name: "eth7"}}, false},
		{"deleted", message(unix.RTM_DELLINK, unix.AF_UNSPEC, 7, 0, "eth7"), []Event{{Index: 7, Name: "eth7", Gone: true}}, false},
		// A port leaving a bridge is no deletion.
		{"bridge port", message(unix.RTM_DELLINK, unix.AF_BRIDGE, 7, up, "eth7"), nil, false},
		{"done", message(unix.NLMSG_DONE, 0, 0, 0, ""), nil, false},
		{"noop", message(unix.NLMSG_NOOP, 0, 0, 0, ""), nil, false},
		{"address", message(unix.RTM_NEWADDR, 0, 0, 0, ""), nil, false},
		{"in order", slices.Concat(
			message(unix.RTM_NEWLINK, unix.AF_UNSPEC, 3, up, "a"),
			message(unix.NLMSG_NOOP, 0, 0, 0, ""),
			message(unix.RTM_DELLINK, unix.AF_UNSPEC, 4, 0, "b"),
		), []Event{{Index: 3, Name: "a", Up: true}, {Index: 4, Name: "b", Gone: true}}, false},
		{"cut header", message(unix.RTM_NEWLINK, unix.AF_UNSPEC, 7, up, "eth7")[:unix.NLMSG_HDRLEN+2], nil, true},
		{"no ifinfomsg", func() []byte {
			m := message(unix.RTM_NEWLINK, unix.AF_UNSPEC, 7, up, "eth7")[:unix.NLMSG_HDRLEN+8]
			binary.NativeEndian.PutUint32(m, uint32(len(m)))
			return m
		}(), nil, true},
		// What precedes the malformed message is still reported.
		{"then malformed", slices.Concat(
			message(unix.RTM_NEWLINK, unix.AF_UNSPEC, 3, up, "a"),
			func() []byte {
				m := message(unix.RTM_NEWLINK, unix.AF_UNSPEC, 7, up, "")[:unix.NLMSG_HDRLEN+8]
				binary.NativeEndian.PutUint32(m, uint32(len(m)))
				return m
			}(),
		), []Event{{Index: 3, Name: "a", Up: true}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parse(tc.b)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want one: %t", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestClose needs no link to change, nor root: it watches this process's own
// namespace, which it leaves alone.
func TestClose(t *testing.T) {
	w, err := Watch()
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() {
		for range w.Events() {
		}
		close(ended)
	}()
	timeout := closeWithin(t, w, time.Second, "")
	defer timeout.Stop()
	select {
	case <-ended:
	case <-timeout.C:
		t.Fatal("Events was not closed within a second of Close")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.Err(); err != nil {
		t.Fatalf("Err after Close: %v", err)
	}
}

// TestCloseConcurrently closes from several goroutines at once, with no one
// reading Events; the race detector watches.
func TestCloseConcurrently(t *testing.T) {
	w, err := Watch()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := w.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if _, open := <-w.Events(); open {
		t.Fatal("Events is open after Close")
	}
	if err := w.Err(); err != nil {
		t.Fatalf("Err after Close: %v", err)
	}
}

// The lines a role prints and the test reads.
const (
	lineReady  = "watching"
	lineClosed = "closed"
)

func formatEvent(ev Event) string {
	return fmt.Sprintf("event index=%d name=%s up=%t gone=%t resync=%t", ev.Index, ev.Name, ev.Up, ev.Gone, ev.Resync)
}

// parseEvent reads a line of formatEvent; ok is false for another line.
func parseEvent(line string) (ev Event, ok bool) {
	rest, ok := strings.CutPrefix(line, "event ")
	if !ok {
		return Event{}, false
	}
	for field := range strings.FieldsSeq(rest) {
		k, v, _ := strings.Cut(field, "=")
		switch k {
		case "index":
			ev.Index, _ = strconv.Atoi(v)
		case "name":
			ev.Name = v
		case "up":
			ev.Up = v == "true"
		case "gone":
			ev.Gone = v == "true"
		case "resync":
			ev.Resync = v == "true"
		}
	}
	return ev, true
}

// lineReader hands out a child's lines as they come, so that the test waits for
// each with a deadline.
type lineReader struct {
	t     *testing.T
	lines chan string
}

func readLines(t *testing.T, s *bufio.Scanner) *lineReader {
	r := &lineReader{t: t, lines: make(chan string)}
	// Ends the reader when the test does, maybe before the child (which Start
	// kills in a cleanup that runs after this one).
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		defer close(r.lines)
		for s.Scan() {
			select {
			case r.lines <- s.Text():
			case <-done:
				return
			}
		}
	}()
	return r
}

// next returns the child's next line; the child ending or saying nothing within
// the time fails the test.
func (r *lineReader) next() string {
	r.t.Helper()
	timeout := time.NewTimer(within)
	defer timeout.Stop()
	select {
	case line, ok := <-r.lines:
		if !ok {
			r.t.Fatal("the watcher ended early")
		}
		r.t.Log(line)
		return line
	case <-timeout.C:
		r.t.Fatalf("the watcher said nothing for %v", within)
		return ""
	}
}

// nextEvent returns the next event the child reports for the link name, skipping
// other lines; a Resync fails the test: in a quiet namespace, nothing can be lost.
func (r *lineReader) nextEvent(name string) Event {
	r.t.Helper()
	for {
		ev, ok := parseEvent(r.next())
		if ev.Resync {
			r.t.Fatal("notifications were lost in a quiet namespace")
		}
		if ok && ev.Name == name {
			return ev
		}
	}
}

// upTo returns the first line that starts with prefix.
func (r *lineReader) upTo(prefix string) string {
	r.t.Helper()
	for {
		if line := r.next(); strings.HasPrefix(line, prefix) {
			return line
		}
	}
}

var roleReport = testharness.Role("linkwatch-report", reportEvents)

// reportEvents prints each event of its namespace, until its standard input ends;
// then it closes the watcher, and prints lineClosed once Events has ended.
func reportEvents(t testing.TB) {
	w, err := Watch()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		w.Close()
	}()
	fmt.Println(lineReady)
	for ev := range w.Events() {
		fmt.Println(formatEvent(ev))
	}
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	fmt.Println(lineClosed)
}

// linkKind returns a kind of link that ip can make in ns and that is one device,
// with no peer: dummy, or ifb on a kernel built without the dummy driver.
func linkKind(t *testing.T, ns string) string {
	t.Helper()
	for _, kind := range []string{"dummy", "ifb"} {
		if exec.Command("ip", "-n", ns, "link", "add", "lwprobe", "type", kind).Run() == nil {
			testharness.Sh(t, "ip", "-n", ns, "link", "del", "lwprobe")
			return kind
		}
	}
	testharness.Skip(t, "linkwatch tests need dummy or ifb links: skipped")
	return ""
}

// TestLinkLifecycle makes a link in a namespace, sets it up and deletes it, and
// checks that a watcher in the namespace reports the three, in order.
func TestLinkLifecycle(t *testing.T) {
	testharness.RequireRoot(t, "linkwatch tests (network namespaces)", "ip")
	pid := strconv.Itoa(os.Getpid())
	ns := testharness.Netns(t, "lwl-"+pid)
	kind := linkKind(t, ns)
	child := testharness.Command(ns, roleReport)
	in, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, testharness.Start(t, child, lineReady))
	name := "lw" + pid

	testharness.Sh(t, "ip", "-n", ns, "link", "add", name, "type", kind)
	ev := lines.nextEvent(name)
	if ev.Gone || ev.Up || ev.Index <= 0 {
		t.Fatalf("a new link: %+v, want a positive index, down and not gone", ev)
	}
	index := ev.Index

	testharness.Sh(t, "ip", "-n", ns, "link", "set", name, "up")
	for !ev.Up {
		// Repeats of the link down may come first.
		if ev = lines.nextEvent(name); ev.Gone || ev.Index != index {
			t.Fatalf("waiting for the link up: %+v", ev)
		}
	}

	testharness.Sh(t, "ip", "-n", ns, "link", "del", name)
	for !ev.Gone {
		// The link is set down before it goes.
		if ev = lines.nextEvent(name); ev.Index != index {
			t.Fatalf("waiting for the link gone: %+v, want index %d", ev, index)
		}
	}

	in.Close()
	lines.upTo(lineClosed)
	if err := child.Wait(); err != nil {
		t.Fatalf("watcher: %v", err)
	}
}

// TestBridgePortIsNotGone makes a link a bridge's port and takes it out again:
// the bridge's RTM_DELLINK of family AF_BRIDGE that says so must not be reported as
// the link gone, which only its deletion is.
func TestBridgePortIsNotGone(t *testing.T) {
	testharness.RequireRoot(t, "linkwatch tests (network namespaces)", "ip")
	pid := strconv.Itoa(os.Getpid())
	ns := testharness.Netns(t, "lwp-"+pid)
	kind := linkKind(t, ns)
	bridge, port := "lwbr"+pid, "lwp"+pid
	err := exec.Command("ip", "-n", ns, "link", "add", bridge, "type", "bridge").Run()
	testharness.Require(t, err == nil, "TestBridgePortIsNotGone needs bridges: skipped")
	testharness.Sh(t, "ip", "-n", ns, "link", "add", port, "type", kind)
	child := testharness.Command(ns, roleReport)
	in, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, testharness.Start(t, child, lineReady))

	testharness.Sh(t, "ip", "-n", ns, "link", "set", port, "master", bridge)
	testharness.Sh(t, "ip", "-n", ns, "link", "set", port, "nomaster")
	// A mark after the two: every event of theirs comes before it.
	testharness.Sh(t, "ip", "-n", ns, "link", "set", port, "up")
	for ev := (Event{}); !ev.Up; {
		if ev = lines.nextEvent(port); ev.Gone {
			t.Fatalf("the port was reported gone when it left the bridge: %+v", ev)
		}
	}
	testharness.Sh(t, "ip", "-n", ns, "link", "del", port)
	for ev := (Event{}); !ev.Gone; {
		ev = lines.nextEvent(port)
	}

	in.Close()
	lines.upTo(lineClosed)
	if err := child.Wait(); err != nil {
		t.Fatalf("watcher: %v", err)
	}
}

// The burst role's parameters.
const (
	envRecvBuffer = "LINKWATCH_TEST_RCVBUF"
	envPrefix     = "LINKWATCH_TEST_PREFIX"
	envCount      = "LINKWATCH_TEST_COUNT"
)

var roleBurst = testharness.Role("linkwatch-burst", burst)

// burst watches, and reads nothing until told ("count") that the links exist, so
// that their notifications pile up. Then it counts the links named with the prefix,
// from their events or, after a Resync, by listing the interfaces, and reports. Told
// to close, it closes the watcher, with the deleted links' notifications waiting
// unread, and checks that it ends promptly.
func burst(t testing.TB) {
	if v := os.Getenv(envRecvBuffer); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		recvBuffer = n
	}
	prefix := os.Getenv(envPrefix)
	count, err := strconv.Atoi(os.Getenv(envCount))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i := range count {
		want[prefix+strconv.Itoa(i)] = true
	}
	w, err := Watch()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fmt.Println(lineReady)
	stdin := bufio.NewScanner(os.Stdin)
	if !stdin.Scan() || stdin.Text() != "count" {
		t.Fatal("told not to count")
	}

	seen := map[string]bool{}
	note := func(name string) {
		if strings.HasPrefix(name, prefix) {
			if !want[name] {
				t.Fatalf("a link %s was reported, which the test did not make", name)
			}
			seen[name] = true
		}
	}
	var events, resyncs int
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for len(seen) < count {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("Events ended: %v", w.Err())
			}
			events++
			switch {
			case ev.Resync:
				resyncs++
				ifs, err := net.Interfaces()
				if err != nil {
					t.Fatal(err)
				}
				for _, ifc := range ifs {
					note(ifc.Name)
				}
			case ev.Index <= 0 || ev.Gone:
				t.Fatalf("%+v: want a positive index, and no link gone", ev)
			default:
				note(ev.Name)
			}
		case <-deadline.C:
			var missing []string
			for name := range want {
				if !seen[name] {
					missing = append(missing, name)
				}
			}
			slices.Sort(missing)
			t.Fatalf("after %d events and %d resyncs, %d links were not reported: %v", events, resyncs, len(missing), missing)
		}
	}
	fmt.Printf("reported all %d links: events=%d resyncs=%d\n", count, events, resyncs)

	if !stdin.Scan() || stdin.Text() != "close" {
		t.Fatal("told not to close")
	}
	timeout := closeWithin(t, w, time.Second, ", with notifications unread")
	defer timeout.Stop()
	// What was sent before Close is still there to read; then Events ends.
drain:
	for {
		select {
		case _, open := <-w.Events():
			if !open {
				break drain
			}
		case <-timeout.C:
			t.Fatal("Events did not end within a second of Close")
		}
	}
	fmt.Println(lineClosed)
}

// TestManyLinksAtOnce makes 200 links in one batch while the watcher's
// reader is not read, and checks that each is reported, as its event or in a list
// made after a Resync. With the default buffer the notifications may or may not
// overflow it; with a tiny one they must, and the Resync is what saves them.
func TestManyLinksAtOnce(t *testing.T) {
	testharness.RequireRoot(t, "linkwatch tests (network namespaces)", "ip")
	const count = 200
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name       string
		recvBuffer int // 0: the default
		mustResync bool
	}{
		{"default-buffer", 0, false},
		{"small-buffer", 4096, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testharness.Netns(t, "lwb-"+pid+"-"+tc.name)
			kind := linkKind(t, ns)
			prefix := "lb" + pid + "x"
			env := []string{envPrefix + "=" + prefix, envCount + "=" + strconv.Itoa(count)}
			if tc.recvBuffer != 0 {
				env = append(env, envRecvBuffer+"="+strconv.Itoa(tc.recvBuffer))
			}
			child := testharness.Command(ns, roleBurst, env...)
			in, err := child.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			lines := readLines(t, testharness.Start(t, child, lineReady))

			batch := func(format string) {
				t.Helper()
				var b strings.Builder
				for i := range count {
					fmt.Fprintf(&b, format+"\n", prefix+strconv.Itoa(i))
				}
				cmd := exec.Command("ip", "-n", ns, "-batch", "-")
				cmd.Stdin = strings.NewReader(b.String())
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", cmd, err, out)
				}
			}
			batch("link add %s type " + kind)
			fmt.Fprintln(in, "count")
			report := lines.upTo("reported all")
			var events, resyncs int
			if _, err := fmt.Sscanf(report, "reported all %d links: events=%d resyncs=%d", new(int), &events, &resyncs); err != nil {
				t.Fatalf("%q: %v", report, err)
			}
			if tc.mustResync && resyncs == 0 {
				t.Fatalf("no Resync with a receive buffer of %d bytes and %d links", tc.recvBuffer, count)
			}

			batch("link del %s")
			fmt.Fprintln(in, "close")
			lines.upTo(lineClosed)
			if err := child.Wait(); err != nil {
				t.Fatalf("watcher: %v", err)
			}
		})
	}
}

// closeWithin closes w and fails the test unless Close returns within d. It
// returns the timer, still running, for what the caller waits on next.
func closeWithin(t testing.TB, w *Watcher, d time.Duration, context string) *time.Timer {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	timeout := time.NewTimer(d)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-timeout.C:
		t.Fatalf("Close did not return within %v%s", d, context)
	}
	return timeout
}
