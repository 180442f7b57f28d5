package fparser_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testnet"
)

// The overlay of TestLiveDecap's VXLAN tunnel, over the live tests' veth.
const (
	overlayHostAddr = "10.42.0.1"
	overlayPeerAddr = "10.42.0.2"
	overlayVNI      = 42
)

var (
	roleDecapServer = testharness.Role("live-decap-server", decapServer)
	roleDecapClient = testharness.Role("live-decap-client", decapClient)
)

// TestLiveDecap runs the kernel datapath with Options.Decap on the underlay veth of
// a VXLAN tunnel between the live tests' namespaces: it counts the tunnel's traffic
// by its inner headers, each flow with the tunnel's VNI and outer addresses, exactly
// as the replay of tcpdump's capture of the same veth does.
func TestLiveDecap(t *testing.T) {
	liveSkip(t)
	host, peer := liveNamespaces(t)
	for _, e := range []struct{ ns, local, remote, dev, addr string }{
		{host, liveHostAddr, livePeerAddr, liveIface, overlayHostAddr + "/24"},
		{peer, livePeerAddr, liveHostAddr, "fpt1", overlayPeerAddr + "/24"},
	} {
		testharness.Sh(t, "ip", "-n", e.ns, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", e.local, "remote", e.remote, "dstport", "4789", "dev", e.dev)
		testharness.Sh(t, "ip", "-n", e.ns, "addr", "add", e.addr, "dev", "vx0")
		// No IPv6 neighbour discovery through the tunnel, and every packet one
		// frame on the veth, as the live tests' own traffic.
		testharness.Sh(t, "ip", "netns", "exec", e.ns, "sysctl", "-qw", "net.ipv6.conf.vx0.disable_ipv6=1")
		exec.Command("ip", "netns", "exec", e.ns, "ethtool", "-K", "vx0", "tso", "off", "gso", "off", "gro", "off").Run()
		testharness.Sh(t, "ip", "-n", e.ns, "link", "set", "vx0", "up")
	}
	out := testharness.Start(t, testharness.Command(peer, roleDecapServer), "server ready")
	go func() {
		for out.Scan() {
		}
	}()
	b, err := testharness.Command(host, roleDecapClient).CombinedOutput()
	t.Logf("client in %s:\n%s", host, b)
	if err != nil {
		t.Fatalf("client failed: %v", err)
	}
}

// decapServer, a role of TestLiveDecap, serves UDP echo and HTTP on the overlay in
// the peer namespace until it is killed.
func decapServer(t testing.TB) {
	echoUDP(t, net.JoinHostPort(overlayPeerAddr, "9000"))
	web, err := net.Listen("tcp4", net.JoinHostPort(overlayPeerAddr, "8080"))
	if err != nil {
		t.Fatal(err)
	}
	page := strings.Repeat("fparser ", 1250) // 10000 bytes
	go http.Serve(web, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, page) }))
	fmt.Println("server ready")
	select {}
}

// decapClient, a role of TestLiveDecap, attaches with Options.Decap to the underlay
// veth, sends UDP and HTTP through the tunnel, and compares the flows with the
// replay of tcpdump's capture of the veth.
func decapClient(t testing.TB) {
	pcap := filepath.Join(t.TempDir(), "underlay.pcap")
	dump := exec.Command("tcpdump", "-i", liveIface, "-n", "-U", "-s", "256", "-w", pcap, "ip or ip6")
	dumpErr := &testnet.Buffer{}
	dump.Stderr = dumpErr
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 5*time.Second, "tcpdump to listen", func() bool { return strings.Contains(dumpErr.String(), "listening on") })

	var log flowLog
	p, err := fparser.Open(liveIface, &fparser.Options{
		Decap:       true,
		FinTimeout:  300 * time.Millisecond,
		FlowTimeout: 1500 * time.Millisecond,
		OnTCP:       log.add,
		OnUDP:       log.add,
		Logger:      discard(),
	})
	if err != nil {
		t.Fatal(err)
	}

	// UDP through the tunnel: five 100-byte datagrams, each echoed.
	udpEchoBetween(t, overlayHostAddr, 41000, overlayPeerAddr, 9000, 5, 100)
	// HTTP through the tunnel: one connection, closed after the response.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + net.JoinHostPort(overlayPeerAddr, "8080") + "/")
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); len(body) != 10000 {
		t.Fatalf("HTTP body %d bytes", len(body))
	}
	resp.Body.Close()

	// Until both flows have ended on their own timeouts and been delivered.
	waitAllDelivered(t, p, &log)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	info := p.Info()
	dump.Process.Signal(syscall.SIGINT)
	dump.Wait()
	flows := log.snapshot()
	for _, f := range flows {
		t.Logf("live %v %v -> %v fwd %d/%d rev %d/%d %+v", f.Protocol, f.Src, f.Dst, f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes, f.Tunnel)
	}
	t.Logf("info %+v", info)

	offline, got := matchReplay(t, flows, info, pcap, &fparser.Options{Decap: true})

	// What the test sent, by its inner headers, each flow through the tunnel from
	// the host's end of the veth.
	udpKey := rowKey{"udp", overlayHostAddr, "41000", overlayPeerAddr, "9000", "0"}
	if w := (flowRow{5, 5 * 128, 5, 5 * 128}); got[udpKey] != w {
		t.Errorf("UDP flow through the tunnel %v, want %v", got[udpKey], w)
	}
	tunnel := fparser.Tunnel{Kind: fparser.TunnelVXLAN, ID: overlayVNI, OuterSrc: netip.MustParseAddr(liveHostAddr), OuterDst: netip.MustParseAddr(livePeerAddr)}
	var tcp int
	for _, f := range append(flows, offline...) {
		if f.Src.Addr().String() != overlayHostAddr {
			t.Errorf("a flow not from the overlay's host end: %v -> %v", f.Src, f.Dst)
		}
		if f.Tunnel != tunnel {
			t.Errorf("%v %v -> %v: tunnel %+v, want %+v", f.Protocol, f.Src, f.Dst, f.Tunnel, tunnel)
		}
		if f.Protocol == fparser.TCP && f.Dst.Port() == 8080 {
			tcp++
		}
	}
	if tcp != 2 {
		t.Errorf("the HTTP connection is in %d flows live and replayed, want 1 each", tcp)
	}
}
