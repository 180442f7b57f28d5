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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
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
	id := strconv.Itoa(os.Getpid())
	near := testharness.Netns(t, "fpm-near-"+id)
	far := testharness.Netns(t, "fpm-far-"+id)
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
	p, err := fparser.Open(manyPrefix+"*", &fparser.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		OnUDP:  func(f fparser.Flow) { ended = append(ended, f) },
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
	id := strconv.Itoa(os.Getpid())
	near := testharness.Netns(t, "fpd-near-"+id)
	far := testharness.Netns(t, "fpd-far-"+id)

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
