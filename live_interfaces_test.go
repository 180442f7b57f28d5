package fparser_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testnet"
)

// The many-interface tests: namespaces "near" (the parser) and "far", joined by many
// veth pairs, pair i with the subnet 198.19.i.0/24 (near .1, far .2).
const (
	envPairs   = "FPARSER_PAIRS"
	manyPrefix = "fpm" // near ends: fpm0, fpm1, ...; far ends fpn0, ...
	manyPort   = 9
)

func pairAddr(i int, far bool) netip.Addr {
	last := byte(1)
	if far {
		last = 2
	}
	return netip.AddrFrom4([4]byte{198, 19, byte(i), last})
}

// nearAndFar makes the namespaces "near" and "far" of a test, named with prefix
// and this process's id, deleted at the end of the test.
func nearAndFar(t testing.TB, prefix string) (near, far string) {
	id := strconv.Itoa(os.Getpid())
	return testharness.Netns(t, prefix+"-near-"+id), testharness.Netns(t, prefix+"-far-"+id)
}

// vethPairs makes n veth pairs between near and far with ip's batch mode, which
// takes a second for a hundred where one ip per command takes many.
func vethPairs(t testing.TB, near, far, nearPrefix, farPrefix string, from, n int) {
	t.Helper()
	var links, nearCmds, farCmds strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&links, "link add %s%d netns %s type veth peer name %s%d netns %s\n", nearPrefix, i, near, farPrefix, i, far)
		fmt.Fprintf(&nearCmds, "addr add %s/24 dev %s%d\nlink set %s%d up\n", pairAddr(i, false), nearPrefix, i, nearPrefix, i)
		fmt.Fprintf(&farCmds, "addr add %s/24 dev %s%d\nlink set %s%d up\n", pairAddr(i, true), farPrefix, i, farPrefix, i)
	}
	batch(t, "", links.String())
	batch(t, near, nearCmds.String())
	batch(t, far, farCmds.String())
}

// batch runs ip -batch in the namespace ns ("" for this one).
func batch(t testing.TB, ns, cmds string) {
	t.Helper()
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdin = strings.NewReader(cmds)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestManyInterfaces counts on 100 veths at once, chosen by a pattern, in one flow
// table: a UDP datagram each way on every pair, sent from both namespaces, is one
// flow per pair with exact counts in both directions (egress by TC, ingress by
// XDP).
func TestManyInterfaces(t *testing.T) {
	liveSkip(t)
	const pairs = 100
	near, far := nearAndFar(t, "fpm")
	vethPairs(t, near, far, manyPrefix, "fpn", 0, pairs)

	parser := testharness.Command(near, roleManyParser, envPairs+"="+strconv.Itoa(pairs))
	in, err := parser.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := testharness.Start(t, parser, "counting")
	// The far side answers each datagram the near side sent with one of its own,
	// from the port it was sent to.
	far1 := testharness.Command(far, roleManySender, envPairs+"="+strconv.Itoa(pairs))
	if out, err := far1.CombinedOutput(); err != nil {
		t.Fatalf("far sender: %v\n%s", err, out)
	}
	fmt.Fprintln(in, "stop")
	var result string
	for lines.Scan() {
		t.Log(lines.Text())
		if r, ok := strings.CutPrefix(lines.Text(), "result "); ok {
			result = r
		}
	}
	if err := parser.Wait(); err != nil {
		t.Fatalf("parser: %v", err)
	}
	if result != "ok" {
		t.Fatalf("parser: %s", result)
	}
}

var (
	roleManyParser = testharness.Role("many-parser", manyParser)
	roleManySender = testharness.Role("many-sender", manySender)
)

// manyParser counts on fpm*, sends a datagram to the far end of each pair, waits for
// the far side's, and checks every flow.
func manyParser(t testing.TB) {
	pairs, _ := strconv.Atoi(os.Getenv(envPairs))
	var ended []fparser.Flow
	began := time.Now()
	p, err := fparser.Open("", &fparser.Options{
		Interfaces: []string{manyPrefix + "*"},
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		OnUDP:      func(f fparser.Flow) { ended = append(ended, f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	for i := range pairs {
		send(t, pairAddr(i, false), 40000, pairAddr(i, true), manyPort, 100)
	}
	fmt.Println("counting")
	fmt.Printf("opened on %d interfaces in %v (%v each)\n", len(p.Info().Interfaces), took.Round(time.Millisecond), (took / time.Duration(pairs)).Round(time.Microsecond))
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	// Both sides' datagrams were sent: wait until the kernel has counted them all.
	if !testharness.Poll(10*time.Second, func() bool { return p.Info().AcceptedUDP >= uint64(2*pairs) }) {
		t.Errorf("the kernel counted %d UDP packets, want %d", p.Info().AcceptedUDP, 2*pairs)
	}
	p.Close()
	fails := checkPairs(ended, pairs)
	if fails == "" {
		fmt.Println("result ok")
	} else {
		fmt.Println("result " + fails)
	}
}

// checkPairs says what is wrong with the flows of the pairs: one each, one packet
// of 128 bytes (100 of payload) from near to far and one of 78 back.
func checkPairs(flows []fparser.Flow, pairs int) string {
	if len(flows) != pairs {
		return fmt.Sprintf("%d flows, want %d", len(flows), pairs)
	}
	seen := map[netip.Addr]bool{}
	for _, f := range flows {
		near := f.Src.Addr()
		i := int(near.As4()[2])
		want := fparser.Flow{Src: netip.AddrPortFrom(pairAddr(i, false), 40000), Dst: netip.AddrPortFrom(pairAddr(i, true), manyPort)}
		if f.Src != want.Src || f.Dst != want.Dst || seen[near] {
			return fmt.Sprintf("flow %v -> %v: not one of the pairs' (or twice)", f.Src, f.Dst)
		}
		seen[near] = true
		if f.Fwd.Packets != 1 || f.Fwd.Bytes != 128 || f.Rev.Packets != 1 || f.Rev.Bytes != 78 {
			return fmt.Sprintf("flow %v -> %v: %d packets, %d bytes forward and %d, %d back; want 1, 128 and 1, 78", f.Src, f.Dst, f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes)
		}
	}
	return ""
}

// manySender answers from each far end: a datagram of 50 bytes of payload to the
// near end's port 40000, from manyPort.
func manySender(t testing.TB) {
	pairs, _ := strconv.Atoi(os.Getenv(envPairs))
	for i := range pairs {
		send(t, pairAddr(i, true), manyPort, pairAddr(i, false), 40000, 50)
	}
}

// send sends one UDP datagram of size bytes of payload from from:fport to to:tport.
func send(t testing.TB, from netip.Addr, fport uint16, to netip.Addr, tport uint16, size int) {
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, fport)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(to, tport)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
}

// TestInterfacesComeAndGo runs a parser on the pattern fpd* in a namespace with no
// such interface yet: a veth made while it runs is counted from its first packet,
// and when it is deleted mid-flow the parser goes on, and the flow ends by its idle
// timeout with its packets.
func TestInterfacesComeAndGo(t *testing.T) {
	liveSkip(t)
	near, far := nearAndFar(t, "fpd")

	parser := testharness.Command(near, roleComeAndGo)
	in, err := parser.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := testharness.Start(t, parser, "counting")
	waitLine := func(parts ...string) {
		t.Helper()
		for lines.Scan() {
			t.Log(lines.Text())
			found := true
			for _, p := range parts {
				found = found && strings.Contains(lines.Text(), p)
			}
			if found {
				return
			}
		}
		t.Fatalf("the parser ended without saying %q", parts)
	}
	vethPairs(t, near, far, "fpd", "fpe", 0, 1)
	waitLine("msg=attached", "interface=fpd0")
	fmt.Fprintln(in, "send")
	waitLine("sent")
	testharness.Sh(t, "ip", "-n", near, "link", "del", "fpd0")
	waitLine("interface was deleted", "interface=fpd0")
	fmt.Fprintln(in, "end")
	waitLine("result ")
	for lines.Scan() {
		t.Log(lines.Text())
	}
	if err := parser.Wait(); err != nil {
		t.Fatalf("parser: %v", err)
	}
}

var roleComeAndGo = testharness.Role("come-and-go", comeAndGo)

// comeAndGo is TestInterfacesComeAndGo's parser: it logs to standard output, sends
// three datagrams over fpd0 when told, and reports the flow that ends.
func comeAndGo(t testing.TB) {
	ended := make(chan fparser.Flow, 4)
	p, err := fparser.Open("fpd*", &fparser.Options{
		FlowTimeout: 2 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo})),
		OnUDP:       func(f fparser.Flow) { ended <- f },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fmt.Println("counting")
	stdin := bufio.NewScanner(os.Stdin)
	stdin.Scan() // send
	for range 3 {
		send(t, pairAddr(0, false), 40001, pairAddr(0, true), manyPort, 10)
	}
	if !testharness.Poll(10*time.Second, func() bool { return p.Info().AcceptedUDP >= 3 }) {
		t.Fatalf("the kernel counted %d UDP packets, want 3", p.Info().AcceptedUDP)
	}
	fmt.Println("sent")
	stdin.Scan() // end: fpd0 is gone
	select {
	case f := <-ended:
		if f.Fwd.Packets != 3 || f.Fwd.Bytes != 3*38 || f.EndReason != fparser.EndIdle {
			t.Fatalf("flow %v -> %v: %d packets, %d bytes, ended %v; want 3, 114, idle", f.Src, f.Dst, f.Fwd.Packets, f.Fwd.Bytes, f.EndReason)
		}
	case <-p.Done():
		t.Fatalf("the parser stopped when its interface went: %v", p.Wait())
	case <-time.After(20 * time.Second):
		t.Fatal("no flow ended by its idle timeout within 20 s")
	}
	fmt.Println("result ok")
}

// TestInterfacesOption: Options.Interfaces is for interfaces only, takes valid
// patterns, and every interface named must be there.
func TestInterfacesOption(t *testing.T) {
	var oe *fparser.OptionError
	if _, err := fparser.New(filepath.Join("testdata", "http.pcap"), &fparser.Options{Interfaces: []string{"lo"}}); !errors.As(err, &oe) || oe.Option != "Interfaces" {
		t.Errorf("a capture file with Interfaces: %v, want an *OptionError for Interfaces", err)
	}
	if _, err := fparser.New("", &fparser.Options{Interfaces: []string{"veth["}}); !errors.As(err, &oe) || oe.Option != "Interfaces" || !strings.Contains(err.Error(), "veth[") {
		t.Errorf("a bad pattern: %v, want an *OptionError for Interfaces naming it", err)
	}
	if _, err := fparser.New("", nil); !errors.Is(err, fparser.ErrNoSource) {
		t.Errorf("no source and no interface: %v, want ErrNoSource", err)
	}
	liveSkip(t)
	if p, err := fparser.New("", &fparser.Options{Interfaces: []string{"lo", "fpt-nosuch0"}}); !errors.Is(err, fparser.ErrNoSource) || !strings.Contains(err.Error(), `"fpt-nosuch0"`) {
		if p != nil {
			p.Close()
		}
		t.Errorf("a missing interface among others: %v, want ErrNoSource naming it", err)
	}
}

// The router test: client and server namespaces joined through a router namespace
// that forwards between its two veths, fpr1 (the client's side) and fpr2 (the
// server's).
const (
	routerClientAddr = "198.19.1.2"
	routerServerAddr = "198.19.2.2"
	routerPort       = 9100
	envCapture       = "FPARSER_CAPTURE"
)

var (
	roleRouterServer = testharness.Role("router-server", routerServer)
	roleRouterClient = testharness.Role("router-client", routerClient)
	roleRouterParser = testharness.Role("router-parser", routerParser)
)

// TestRouterCountsOnce runs fparser with AllInterfaces in a namespace that routes
// UDP and TCP between two others: every packet crosses two of its interfaces, and
// each flow counts each direction once, at the interface it arrived by, with the
// packets and bytes of tcpdump's capture on the client's side, and the copy that
// leaves by the other interface in DuplicatePackets.
func TestRouterCountsOnce(t *testing.T) {
	liveSkip(t)
	id := strconv.Itoa(os.Getpid())
	client := testharness.Netns(t, "fpr-client-"+id)
	router := testharness.Netns(t, "fpr-router-"+id)
	server := testharness.Netns(t, "fpr-server-"+id)
	testharness.Veth(t, testharness.End{NS: client, Dev: "fpc0", Addr: routerClientAddr + "/24"},
		testharness.End{NS: router, Dev: "fpr1", Addr: "198.19.1.1/24"}, true)
	testharness.Veth(t, testharness.End{NS: router, Dev: "fpr2", Addr: "198.19.2.1/24"},
		testharness.End{NS: server, Dev: "fps0", Addr: routerServerAddr + "/24"}, true)
	testharness.Sh(t, "ip", "-n", client, "route", "add", "198.19.2.0/24", "via", "198.19.1.1")
	testharness.Sh(t, "ip", "-n", server, "route", "add", "198.19.1.0/24", "via", "198.19.2.1")
	testharness.Sh(t, "ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	srv := testharness.Start(t, testharness.Command(server, roleRouterServer), "server ready")
	go func() {
		for srv.Scan() {
		}
	}()
	capture := filepath.Join(t.TempDir(), "client.pcap")
	tcpdump := exec.Command("ip", "netns", "exec", client, "tcpdump", "-Z", "root", "--immediate-mode", "-i", "fpc0", "-U", "-n", "-w", capture, "ip")
	tcpdumpErr := &testnet.Buffer{}
	tcpdump.Stderr = tcpdumpErr
	if err := tcpdump.Start(); err != nil {
		t.Fatal(err)
	}
	defer tcpdump.Process.Kill()
	testharness.WaitFor(t, 30*time.Second, "tcpdump's listening line", func() bool { return strings.Contains(tcpdumpErr.String(), "listening on") })

	parser := testharness.Command(router, roleRouterParser, envCapture+"="+capture)
	in, err := parser.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := testharness.Start(t, parser, "counting")
	if out, err := testharness.Command(client, roleRouterClient).CombinedOutput(); err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	// The client's last datagram, to the discard port, is the marker: once it is
	// in the capture, so is everything before it.
	testharness.WaitFor(t, 10*time.Second, "the marker in tcpdump's capture", func() bool {
		found := false
		p, err := fparser.Open(capture, &fparser.Options{OnUDP: func(f fparser.Flow) { found = found || f.Dst.Port() == 9 }})
		if err == nil {
			p.Wait()
		}
		return found
	})
	tcpdump.Process.Signal(os.Interrupt)
	tcpdump.Wait()
	fmt.Fprintln(in, "stop")
	result := ""
	for lines.Scan() {
		t.Log(lines.Text())
		if r, ok := strings.CutPrefix(lines.Text(), "result "); ok {
			result = r
		}
	}
	if err := parser.Wait(); err != nil || result != "ok" {
		t.Fatalf("parser: %v: %s", err, result)
	}
}

// routerServer echoes UDP datagrams, and answers a TCP connection with what it
// read, then closes.
func routerServer(t testing.TB) {
	addr := net.JoinHostPort(routerServerAddr, strconv.Itoa(routerPort))
	echoUDP(t, addr)
	tcp, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(c)
			c.Write(b)
			c.Close()
		}
	}()
	fmt.Println("server ready")
	select {}
}

// routerClient sends five datagrams and waits for their echoes, then sends 3000
// bytes over TCP, half-closes, and reads them back; last, a marker datagram to the
// discard port.
func routerClient(t testing.TB) {
	server := net.JoinHostPort(routerServerAddr, strconv.Itoa(routerPort))
	u, err := net.Dial("udp4", server)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for i := range 5 {
		u.Write(make([]byte, 100+i))
		u.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := u.Read(buf); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
	}
	u.Close()
	c, err := net.Dial("tcp4", server)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(make([]byte, 3000))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 3000 {
		t.Fatalf("read back %d bytes: %v", len(got), err)
	}
	c.Close()
	marker, err := net.Dial("udp4", net.JoinHostPort(routerServerAddr, "9"))
	if err != nil {
		t.Fatal(err)
	}
	marker.Write([]byte("marker"))
	marker.Close()
}

// routerParser counts on every interface of the router; told to stop, it compares
// its flows with the client's capture, replayed.
func routerParser(t testing.TB) {
	var live []fparser.Flow
	p, err := fparser.Open(fparser.AllInterfaces, &fparser.Options{
		FinTimeout: time.Hour,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
		OnTCP:      func(f fparser.Flow) { live = append(live, f) },
		OnUDP:      func(f fparser.Flow) { live = append(live, f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("counting on", strings.Join(p.Info().Interfaces, ", "))
	bufio.NewScanner(os.Stdin).Scan()

	var want []fparser.Flow
	replay, err := fparser.Open(os.Getenv(envCapture), &fparser.Options{
		OnTCP: func(f fparser.Flow) { want = append(want, f) },
		OnUDP: func(f fparser.Flow) { want = append(want, f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	replay.Wait()
	var packets uint64
	for _, f := range want {
		packets += f.PacketCount()
	}
	// Every packet the client's side saw crossed the router: counted once, and
	// once more as a duplicate.
	if !testharness.Poll(10*time.Second, func() bool { return p.Info().PacketsAccepted >= 2*packets }) {
		t.Errorf("the router accepted %d packets; the capture has %d, each seen twice", p.Info().PacketsAccepted, packets)
	}
	p.Close()
	if len(live) != len(want) || len(want) != 3 {
		fmt.Printf("result %d flows live, %d in the capture; want 3\n", len(live), len(want))
		return
	}
	for _, w := range want {
		i := slices.IndexFunc(live, func(f fparser.Flow) bool { return f.Src == w.Src && f.Dst == w.Dst && f.Protocol == w.Protocol })
		if i < 0 {
			fmt.Printf("result flow %v %v -> %v of the capture not counted\n", w.Protocol, w.Src, w.Dst)
			return
		}
		f := live[i]
		fmt.Printf("%v %v -> %v: %d/%d packets, %d/%d bytes, %d duplicates, counted at %s (%d) and %s (%d)\n", f.Protocol, f.Src, f.Dst,
			f.Fwd.Packets, f.Rev.Packets, f.Fwd.Bytes, f.Rev.Bytes, f.DuplicatePackets, f.Fwd.Interface, f.Fwd.InterfaceIndex, f.Rev.Interface, f.Rev.InterfaceIndex)
		switch {
		case f.Fwd.Packets != w.Fwd.Packets || f.Rev.Packets != w.Rev.Packets || f.Fwd.Bytes != w.Fwd.Bytes || f.Rev.Bytes != w.Rev.Bytes:
			fmt.Printf("result %v %v -> %v: %d/%d packets and %d/%d bytes; the capture has %d/%d and %d/%d\n", f.Protocol, f.Src, f.Dst,
				f.Fwd.Packets, f.Rev.Packets, f.Fwd.Bytes, f.Rev.Bytes, w.Fwd.Packets, w.Rev.Packets, w.Fwd.Bytes, w.Rev.Bytes)
			return
		case f.DuplicatePackets != w.PacketCount():
			fmt.Printf("result %v %v -> %v: %d duplicates, want %d\n", f.Protocol, f.Src, f.Dst, f.DuplicatePackets, w.PacketCount())
			return
		case f.Fwd.Interface != "fpr1" || f.Fwd.Egress || f.Rev.Egress || f.Rev.Interface != map[bool]string{true: "fpr2"}[f.Rev.Packets > 0]:
			fmt.Printf("result %v %v -> %v: counted at %q (egress %v) and %q (egress %v); want fpr1 and fpr2 (none without packets), arriving\n", f.Protocol, f.Src, f.Dst, f.Fwd.Interface, f.Fwd.Egress, f.Rev.Interface, f.Rev.Egress)
			return
		}
	}
	if in := p.Info(); in.DuplicatePackets != packets {
		fmt.Printf("result Info.DuplicatePackets %d, want %d\n", in.DuplicatePackets, packets)
		return
	}
	fmt.Println("result ok")
}

// TestRefusedInterfaceLoggedOnce: an interface a pattern chooses that refuses the
// programs (an ifb device has no native XDP) is said once, not at each notification
// of a change to it; the parser goes on, and attaches the next one that takes them.
func TestRefusedInterfaceLoggedOnce(t *testing.T) {
	liveSkip(t)
	near, far := nearAndFar(t, "fpz")
	parser := testharness.Command(near, roleRefused)
	in, err := parser.StdinPipe() // open until the test ends: the parser runs until then
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	lines := testharness.Start(t, parser, "counting")
	if out, err := exec.Command("ip", "-n", near, "link", "add", "fpz0", "type", "ifb").CombinedOutput(); err != nil {
		testharness.Skip(t, "no ifb device here (%v: %s)", err, out)
	}
	for _, mtu := range []string{"1400", "1300", "1200"} {
		testharness.Sh(t, "ip", "-n", near, "link", "set", "fpz0", "mtu", mtu)
	}
	vethPairs(t, near, far, "fpz", "fpy", 9, 1) // fpz9, which takes them
	refused := 0
	for lines.Scan() {
		t.Log(lines.Text())
		if strings.Contains(lines.Text(), "not counting on this interface") && strings.Contains(lines.Text(), "interface=fpz0") {
			refused++
		}
		if strings.Contains(lines.Text(), "msg=attached") && strings.Contains(lines.Text(), "interface=fpz9") {
			break
		}
	}
	if refused != 1 {
		t.Errorf("the refusal of fpz0 said %d times, want once", refused)
	}
}

var roleRefused = testharness.Role("refused", func(t testing.TB) {
	p, err := fparser.Open("fpz*", &fparser.Options{
		Attach: "xdp-native",
		Logger: slog.New(slog.NewTextHandler(os.Stdout, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fmt.Println("counting")
	io.Copy(io.Discard, os.Stdin) // until the test ends
})
