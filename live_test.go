package fparser_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testnet"
)

// The live tests run the kernel datapath on real traffic. Everything happens inside
// two network namespaces this test makes, joined by a veth pair: "host" (the parser,
// the clients, tcpdump) and "peer" (the servers). No address or route is added
// outside them. The test binary re-executes itself inside each namespace.
const (
	liveHostAddr = "198.18.77.1"
	livePeerAddr = "198.18.77.2"
	liveIface    = "fpt0"
	liveUDPPort  = 9000
	liveHTTPPort = 8080
	liveTCPPort  = 8081 // answers and closes: for port reuse
)

const envMode = "FPARSER_LIVE_MODE" // the client's attach mode

// The roles of the live tests' child processes, run in a namespace by
// testharness.Command.
var (
	roleLiveServer = testharness.Role("live-server", liveServer)
	roleLiveClient = testharness.Role("live-client", liveClient)
	roleLiveCLI    = testharness.Role("live-cli", liveCLI)
)

// liveSkip skips the test (fails it under CI) where the live tests cannot run.
func liveSkip(t testing.TB) {
	t.Helper()
	testharness.RequireRoot(t, "live tests (network namespaces, BPF)", "ip", "tcpdump")
}

// liveNamespaces makes the two namespaces and the veth pair, and removes them at the
// end of the test.
func liveNamespaces(t testing.TB) (host, peer string) {
	t.Helper()
	id := strconv.Itoa(os.Getpid())
	host = testharness.Netns(t, "fpt-host-"+id)
	peer = testharness.Netns(t, "fpt-peer-"+id)
	testharness.Veth(t, testharness.End{NS: host, Dev: liveIface, Addr: liveHostAddr + "/24"},
		testharness.End{NS: peer, Dev: "fpt1", Addr: livePeerAddr + "/24"}, true)
	return host, peer
}

// liveNamespacesAndServer makes the namespaces, starts the server role in the
// peer's, waits until it serves, and returns the host namespace.
func liveNamespacesAndServer(t testing.TB) string {
	t.Helper()
	host, peer := liveNamespaces(t)
	out := testharness.Start(t, testharness.Command(peer, roleLiveServer), "server ready")
	go func() {
		for out.Scan() {
		}
	}()
	return host
}

// TestLive attaches in each mode and checks the flows of real traffic.
func TestLive(t *testing.T) {
	liveSkip(t)
	for _, mode := range []string{"auto", "auto-coarse", "tc", "tc-legacy", "xdp"} {
		t.Run(mode, func(t *testing.T) {
			host := liveNamespacesAndServer(t)

			client := testharness.Command(host, roleLiveClient, envMode+"="+mode)
			b, err := client.CombinedOutput()
			t.Logf("client in %s:\n%s", host, b)
			if err != nil {
				t.Fatalf("client failed: %v", err)
			}
			if mode != "auto" {
				return
			}
			cli := testharness.Command(host, roleLiveCLI)
			b, err = cli.CombinedOutput()
			t.Logf("CLI in %s:\n%s", host, b)
			if err != nil {
				t.Fatalf("CLI test failed: %v", err)
			}
		})
	}
}

// liveCLI, a role of TestLive, runs fparser -i in the host namespace, with its output
// a pipe: it says when it counts, writes a flow that ends while it runs at once
// rather than at exit (as tcpdump -l), and at SIGINT the flow that the stop ended,
// then the summary.
func liveCLI(t testing.TB) {
	bin := buildCLI(t, t.TempDir())
	cmd := exec.Command(bin, "-i", liveIface, "-o", "csv", "--flow-timeout", "1s")
	stdout, stderr := &testnet.Buffer{}, &testnet.Buffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Loading the programs can take seconds on a busy machine.
	testharness.WaitFor(t, 30*time.Second, "fparser's readiness line", func() bool {
		return strings.Contains(stderr.String(), "fparser: counting on "+liveIface+";")
	})
	udpEcho(t, 41001, 3, 50)
	idle := "udp,198.18.77.1,41001,198.18.77.2,9000,0,3,234,3,234,,,"
	testharness.WaitFor(t, 5*time.Second, "the idle flow's line", func() bool { return strings.Contains(stdout.String(), ",idle,") })
	if !strings.HasPrefix(strings.SplitN(stdout.String(), "\n", 3)[1], idle) {
		t.Errorf("written while running:\n%s\nwant a line starting %q", stdout, idle)
	}
	// Each echo came back: the kernel counted every packet before SIGINT.
	udpEcho(t, 41002, 2, 50)
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fparser exited %v; stderr:\n%s", err, stderr)
	}
	stopped := "udp,198.18.77.1,41002,198.18.77.2,9000,0,2,156,2,156,,,"
	if lines := strings.Split(stdout.String(), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[2], stopped) || !strings.Contains(lines[2], ",stopped,"+liveIface+","+liveIface+",0,") {
		t.Errorf("output:\n%s\nwant a header, the idle flow, and a line starting %q and ending stopped, counted at %s both ways, no duplicate", stdout, stopped, liveIface)
	}
	if !strings.Contains(stderr.String(), "10 in flows (tcp 0, udp 10)") || !strings.Contains(stderr.String(), "; 2 flows;") {
		t.Errorf("no summary of 10 packets in 2 flows on stderr: %q", stderr)
	}
}

// liveServer, a role, serves UDP echo, HTTP and a TCP answer-and-close in the peer
// namespace until it is killed.
func liveServer(t testing.TB) {
	echoUDP(t, net.JoinHostPort(livePeerAddr, strconv.Itoa(liveUDPPort)))
	web, err := net.Listen("tcp4", net.JoinHostPort(livePeerAddr, strconv.Itoa(liveHTTPPort)))
	if err != nil {
		t.Fatal(err)
	}
	page := strings.Repeat("fparser ", 1250) // 10000 bytes
	go http.Serve(web, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, page) }))
	closer, err := net.Listen("tcp4", net.JoinHostPort(livePeerAddr, strconv.Itoa(liveTCPPort)))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := closer.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("bye\n"))
			c.Close()
		}
	}()
	fmt.Println("server ready")
	select {}
}

// echoUDP sends every datagram that comes to addr back to its sender, until the
// process ends.
func echoUDP(t testing.TB, addr string) {
	udp, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			udp.WriteTo(buf[:n], from)
		}
	}()
}

type flowLog struct {
	mu    sync.Mutex
	flows []fparser.Flow
}

func (l *flowLog) add(f fparser.Flow) {
	l.mu.Lock()
	l.flows = append(l.flows, f)
	l.mu.Unlock()
}

// liveClient, a role of TestLive, runs in the host namespace: it attaches, sends real
// traffic, stops, and checks the flows against what it sent and against tcpdump's
// capture of the same interface replayed offline.
func liveClient(t testing.TB) {
	mode := os.Getenv(envMode)
	dir := t.TempDir()
	pcap := filepath.Join(dir, "veth.pcap")
	// tcpdump sees what the parser sees: both directions, or with XDP alone, ingress.
	args := []string{"-i", liveIface, "-n", "-U", "-s", "256", "-w", pcap, "ip or ip6"}
	if mode == "xdp" {
		args = append([]string{"-Q", "in"}, args...)
	}
	dump := exec.Command("tcpdump", args...)
	dumpErr := &testnet.Buffer{}
	dump.Stderr = dumpErr
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 5*time.Second, "tcpdump to listen", func() bool { return strings.Contains(dumpErr.String(), "listening on") })

	var log flowLog
	attach, coarse := strings.CutSuffix(mode, "-coarse")
	mode = attach
	p, err := fparser.Open(liveIface, &fparser.Options{
		Attach:      attach,
		CoarseClock: coarse,
		FinTimeout:  300 * time.Millisecond,
		FlowTimeout: 1500 * time.Millisecond,
		Packets:     fparser.AllPackets,
		Statistics:  true,
		TCPQuality:  true,
		OnTCP:       log.add,
		OnUDP:       log.add,
		Logger:      discard(),
	})
	if err != nil {
		t.Fatal(err)
	}

	// UDP: five 100-byte datagrams from one socket, each echoed.
	udpEcho(t, 41000, 5, 100)
	// Served from the kernel's map while the flow is active, from either direction.
	hostEnd := netip.MustParseAddrPort(net.JoinHostPort(liveHostAddr, "41000"))
	peerEnd := netip.MustParseAddrPort(net.JoinHostPort(livePeerAddr, strconv.Itoa(liveUDPPort)))
	for _, ends := range [][2]netip.AddrPort{{hostEnd, peerEnd}, {peerEnd, hostEnd}} {
		f, ok := p.FindUDPFlow(ends[0], ends[1])
		if want := uint64(10); mode == "xdp" {
			want = 5
			if !ok || f.PacketCount() != want {
				t.Errorf("FindUDPFlow(%v, %v) = %v packets, %v; want %d", ends[0], ends[1], f.PacketCount(), ok, want)
			}
		} else if !ok || f.PacketCount() != want || f.Src != hostEnd {
			t.Errorf("FindUDPFlow(%v, %v) = %+v, %v; want %d packets from %v", ends[0], ends[1], f, ok, want, hostEnd)
		}
	}
	active := 0
	for f := range p.Flows() {
		if f.Protocol == fparser.UDP && (f.Src == hostEnd || f.Dst == hostEnd) {
			active++
		}
	}
	if active != 1 {
		t.Errorf("Flows() shows the UDP flow %d times", active)
	}

	// HTTP over TCP with net/http: one connection, closed after the response.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + net.JoinHostPort(livePeerAddr, strconv.Itoa(liveHTTPPort)) + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(body) != 10000 {
		t.Fatalf("HTTP body %d bytes", len(body))
	}
	client.CloseIdleConnections()

	// A connection refused with a RST.
	if c, err := net.DialTimeout("tcp4", livePeerAddr+":9", time.Second); err == nil {
		c.Close()
		t.Fatal("port 9 answered")
	}

	// The same client port twice: the second SYN reuses a finished 5-tuple. The
	// second connection waits for what it needs, no longer: the client's socket of
	// the first gone (until the server's last ACK it is in LAST-ACK, and connect
	// fails with EADDRNOTAVAIL, sending nothing), and the clock of TCP timestamps
	// (milliseconds of CLOCK_MONOTONIC) past the first's FIN: the server's socket, in
	// TIME-WAIT, takes a SYN of the same 4-tuple only with a newer timestamp.
	var finAt int64 // ms, CLOCK_MONOTONIC
	for i := range 2 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(liveHostAddr), Port: 42000}, Control: reuseAddr}
		var c net.Conn
		var err error
		testharness.WaitFor(t, 5*time.Second, "client port 42000 to be free", func() bool {
			if i > 0 && monotonicMillis() <= finAt {
				return false
			}
			c, err = d.Dial("tcp4", net.JoinHostPort(livePeerAddr, strconv.Itoa(liveTCPPort)))
			return !errors.Is(err, syscall.EADDRNOTAVAIL)
		})
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(c)
		c.Close()
		finAt = monotonicMillis()
	}

	// Ping: three ICMP echoes and their replies count as other L4, in no flow.
	icmpBefore := p.Info().OtherL4
	ping(t, 3)

	// Until every flow has ended while the parser runs, on its own timeout (the
	// FIN'd and RST ones after FinTimeout, the UDP one after FlowTimeout), and been
	// delivered: the check below that Close had none left to stop says which did not.
	waitAllDelivered(t, p, &log)
	running := log.snapshot()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	info := p.Info()
	if mode == "tc-legacy" {
		// clsact filters are not bpf_links: Close must remove them.
		for _, dir := range []string{"ingress", "egress"} {
			out, err := exec.Command("tc", "filter", "show", "dev", liveIface, dir).CombinedOutput()
			if err != nil || strings.Contains(string(out), "fparser") {
				t.Errorf("after Close, tc filter show %s: %v\n%s", dir, err, out)
			}
		}
	}
	dump.Process.Signal(syscall.SIGINT)
	dump.Wait()
	flows := log.snapshot()
	for _, f := range flows {
		t.Logf("live %v %v -> %v fwd %d/%d %v rev %d/%d %v %v", f.Protocol, f.Src, f.Dst, f.Fwd.Packets, f.Fwd.Bytes, f.Fwd.Flags, f.Rev.Packets, f.Rev.Bytes, f.Rev.Flags, f.EndReason)
	}
	t.Logf("info %+v", info)

	wantICMP := uint64(6) // requests out, replies in
	if mode == "xdp" {
		wantICMP = 3 // replies only
	}
	if got := info.OtherL4 - icmpBefore; got < wantICMP {
		t.Errorf("other L4 grew by %d during the pings, want at least %d", got, wantICMP)
	}

	// The map had room, and every flow was reported, the reused ports' too: none
	// was evicted, at any of the Info calls above (it never decreases).
	if info.Evictions != 0 {
		t.Errorf("Info.Evictions %d with room in the map: %+v", info.Evictions, info)
	}

	// Every flow ended on its own timeout before Close: nothing was left to stop.
	if len(running) != len(flows) {
		t.Errorf("%d flows ended while running, %d in all: timeouts did not end them", len(running), len(flows))
	}
	// The same packets as tcpdump saw, flow by flow.
	offline, got := matchReplay(t, flows, info, pcap, &fparser.Options{Packets: fparser.AllPackets, Statistics: true, TCPQuality: true})
	var sum uint64
	for _, f := range flows {
		sum += f.PacketCount()
	}
	comparePacketRecords(t, flows, offline, !coarse)
	if stored := info.StoredTCPPackets + info.StoredUDPPackets; stored != sum || info.PacketsNotStored != 0 {
		t.Errorf("Info: %d packets stored and %d not, want all %d stored", stored, info.PacketsNotStored, sum)
	}

	// What the test itself sent.
	udpKey := rowKey{"udp", liveHostAddr, "41000", livePeerAddr, strconv.Itoa(liveUDPPort), "0"}
	wantUDP := flowRow{5, 5 * 128, 5, 5 * 128}
	if mode == "xdp" {
		wantUDP = flowRow{0, 0, 5, 5 * 128} // ingress only
	}
	if got[udpKey] != wantUDP {
		t.Errorf("UDP flow %v, want %v", got[udpKey], wantUDP)
	}
	reasons := map[string][]fparser.EndReason{}
	for _, f := range flows {
		port := f.Dst.Port()
		if f.Src.Addr().String() == livePeerAddr {
			port = f.Src.Port()
		}
		key := fmt.Sprintf("%v%d", f.Protocol, port)
		reasons[key] = append(reasons[key], f.EndReason)
	}
	check := func(what string, want ...fparser.EndReason) {
		if g := reasons[what]; fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("%s ended %v, want %v", what, g, want)
		}
	}
	check("udp9000", fparser.EndIdle)
	check("tcp9", fparser.EndRST)
	if mode != "xdp" { // with ingress alone, the client's second SYN is not seen
		check(fmt.Sprintf("tcp%d", liveHTTPPort), fparser.EndFIN)
		check(fmt.Sprintf("tcp%d", liveTCPPort), fparser.EndReused, fparser.EndFIN)
	}
}

// waitAllDelivered waits, up to 10 s, until every flow p created has ended and
// been delivered to log.
func waitAllDelivered(t testing.TB, p *fparser.Parser, log *flowLog) {
	t.Helper()
	var in fparser.Info
	if !testharness.Poll(10*time.Second, func() bool {
		in = p.Info()
		var ended uint64
		for _, n := range in.FlowsEnded {
			ended += n
		}
		return in.TCPFlows+in.UDPFlows == 0 && ended == in.FlowsCreated && uint64(len(log.snapshot())) == ended
	}) {
		t.Errorf("10 s on, flows still active or undelivered: %+v, %d delivered", in, len(log.snapshot()))
	}
}

// matchReplay replays tcpdump's capture of the live traffic, with opts and timeouts
// that end no flow, and checks that the flows counted live have the same packets and
// bytes, flow by flow, and add up to Info's accepted packets. It returns the
// replayed flows, and the live ones by key.
func matchReplay(t testing.TB, flows []fparser.Flow, info fparser.Info, pcap string, opts *fparser.Options) (offline []fparser.Flow, got map[rowKey]flowRow) {
	t.Helper()
	o := *opts
	o.FinTimeout, o.FlowTimeout = time.Hour, time.Hour
	offline, _, err := replay(t, pcap, &o)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range offline {
		t.Logf("dump %v %v -> %v fwd %d/%d %v rev %d/%d %v %v", f.Protocol, f.Src, f.Dst, f.Fwd.Packets, f.Fwd.Bytes, f.Fwd.Flags, f.Rev.Packets, f.Rev.Bytes, f.Rev.Flags, f.EndReason)
	}
	got, want := aggregate(flows), aggregate(offline)
	if len(got) != len(want) {
		t.Errorf("%d flows live, %d in tcpdump's capture:\n live %v\n dump %v", len(got), len(want), got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%v: live %v, tcpdump %v", k, got[k], w)
		}
	}
	var sum uint64
	for _, f := range flows {
		sum += f.PacketCount()
	}
	if sum != info.PacketsAccepted {
		t.Errorf("reported %d packets, accepted %d", sum, info.PacketsAccepted)
	}
	return offline, got
}

// comparePacketRecords compares the packet records, statistics and TCP quality of
// flows counted live with those of the same flows replayed from tcpdump's capture:
// every field but the times, which come from different clocks. A handshake's round
// trip is measured live where the replay measures one, unless the clock is coarse
// (ticks apart, the SYN and the SYN+ACK may share a time, which is no round trip),
// and its two parts add up to it.
func comparePacketRecords(t testing.TB, live, dump []fparser.Flow, fineClock bool) {
	t.Helper()
	type tuple struct {
		proto    fparser.Protocol
		src, dst netip.AddrPort
	}
	byTuple := func(flows []fparser.Flow) map[tuple][]fparser.Flow {
		m := map[tuple][]fparser.Flow{}
		for _, f := range flows {
			k := tuple{f.Protocol, f.Src, f.Dst}
			m[k] = append(m[k], f)
		}
		for _, fs := range m {
			slices.SortFunc(fs, func(a, b fparser.Flow) int { return a.FirstSeen.Compare(b.FirstSeen) })
		}
		return m
	}
	records := func(f *fparser.Flow) []string {
		var out []string
		for p := range f.History() {
			p.Time = time.Time{}
			out = append(out, fmt.Sprintf("%+v", p))
		}
		return out
	}
	dumped := byTuple(dump)
	compared, handshakes := 0, 0
	for k, fs := range byTuple(live) {
		ds := dumped[k]
		if len(ds) != len(fs) {
			t.Errorf("%v: %d flows live, %d replayed", k, len(fs), len(ds))
			continue
		}
		for i := range fs {
			f, d := &fs[i], &ds[i]
			if f.HistoryIncomplete() || f.HistoryLen() != int(f.PacketCount()) {
				t.Errorf("%v: live history has %d of %d packets, incomplete %v", k, f.HistoryLen(), f.PacketCount(), f.HistoryIncomplete())
			}
			if g, w := records(f), records(d); !slices.Equal(g, w) {
				t.Errorf("%v: live packet records differ from the replay's:\n live %q\n dump %q", k, g, w)
			}
			for dir, c := range [][2]fparser.Counters{{f.Fwd, d.Fwd}, {f.Rev, d.Rev}} {
				if c[0].Size != c[1].Size || c[0].FlagPackets != c[1].FlagPackets {
					t.Errorf("%v dir %d: live sizes %+v flags %+v, replay %+v %+v", k, dir, c[0].Size, c[0].FlagPackets, c[1].Size, c[1].FlagPackets)
				}
				type quality struct{ retransmissions, outOfOrder, zeroWindows uint32 }
				if g, w := (quality{c[0].Retransmissions, c[0].OutOfOrder, c[0].ZeroWindows}), (quality{c[1].Retransmissions, c[1].OutOfOrder, c[1].ZeroWindows}); g != w {
					t.Errorf("%v dir %d: live TCP quality %+v, replay %+v", k, dir, g, w)
				}
			}
			if fineClock && (f.HandshakeRTT > 0) != (d.HandshakeRTT > 0) {
				t.Errorf("%v: live handshake RTT %v, replay %v", k, f.HandshakeRTT, d.HandshakeRTT)
			}
			if f.HandshakeRTT > 0 {
				handshakes++
				if f.Fwd.RTT+f.Rev.RTT != f.HandshakeRTT || f.Fwd.RTT <= 0 || f.Rev.RTT < 0 {
					t.Errorf("%v: live handshake RTT %v, its parts %v and %v", k, f.HandshakeRTT, f.Fwd.RTT, f.Rev.RTT)
				}
			}
			compared++
		}
	}
	t.Logf("packet records, statistics and TCP quality of %d flows equal the replay's; %d live handshakes measured", compared, handshakes)
}

// udpEcho sends n datagrams of size bytes from the host's port to the peer's echo
// server, one socket for all, and waits for each echo.
func udpEcho(t testing.TB, port, n, size int) {
	t.Helper()
	udpEchoBetween(t, liveHostAddr, port, livePeerAddr, liveUDPPort, n, size)
}

// udpEchoBetween is udpEcho between any two addresses.
func udpEchoBetween(t testing.TB, from string, fromPort int, to string, toPort, n, size int) {
	t.Helper()
	udp, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(from), Port: fromPort}, &net.UDPAddr{IP: net.ParseIP(to), Port: toPort})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for range n {
		udp.Write(make([]byte, size))
		udp.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := udp.Read(make([]byte, 2*size)); err != nil {
			t.Fatalf("udp echo: %v", err)
		}
	}
}

// ping sends n ICMP echo requests to the peer and waits for each reply.
func ping(t testing.TB, n int) {
	t.Helper()
	c, err := icmp.ListenPacket("ip4:icmp", liveHostAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for seq := range n {
		msg, _ := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: seq, Data: []byte("fparser")}}).Marshal(nil)
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: net.ParseIP(livePeerAddr)}); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		for {
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("ping %d: %v", seq, err)
			}
			if m, err := icmp.ParseMessage(1, buf[:k]); err == nil && m.Type == ipv4.ICMPTypeEchoReply {
				break
			}
		}
	}
}

func (l *flowLog) snapshot() []fparser.Flow {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]fparser.Flow(nil), l.flows...)
}

func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	return errors.Join(err, serr)
}

// monotonicMillis reads CLOCK_MONOTONIC in milliseconds: the clock of Linux's TCP
// timestamps, up to the offset each pair of addresses adds.
func monotonicMillis() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1e6
}
