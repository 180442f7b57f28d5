package fparser_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/net/ipv4"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/loader/benchref"
	"github.com/fparser/fparser/internal/testharness"
)

// The end-to-end benchmark: a generator sends UDP as fast as it can from one network
// namespace over a veth pair to another, where fparser's XDP program runs natively on
// the receiving veth. It measures the packets per second that arrive, without fparser
// and with it, and checks that fparser counted every frame that arrived.
const (
	vethGenAddr  = "198.18.88.1"
	vethRecvAddr = "198.18.88.2"
	vethRecv     = "fpb1"
	vethDuration = 3 * time.Second
)

func BenchmarkLiveVeth(b *testing.B) {
	testharness.RequireRoot(b, "the veth benchmark (network namespaces, BPF)", "ip")
	id := strconv.Itoa(os.Getpid())
	gen := testharness.Netns(b, "fpb-gen-"+id)
	recv := testharness.Netns(b, "fpb-recv-"+id)
	testharness.Veth(b, testharness.End{NS: gen, Dev: "fpb0", Addr: vethGenAddr + "/24"},
		testharness.End{NS: recv, Dev: vethRecv, Addr: vethRecvAddr + "/24"}, false)
	// Static neighbours: the generator needs no ARP.
	mac := func(ns, dev string) string {
		out, _ := exec.Command("ip", "-n", ns, "-o", "link", "show", dev).Output()
		f := strings.Fields(string(out))
		for i := range f {
			if f[i] == "link/ether" && i+1 < len(f) {
				return f[i+1]
			}
		}
		b.Fatalf("no MAC for %s", dev)
		return ""
	}
	testharness.Sh(b, "ip", "-n", gen, "neigh", "add", vethRecvAddr, "lladdr", mac(recv, vethRecv), "dev", "fpb0", "nud", "permanent")

	// attach: "none", "empty" (an XDP program that only passes packets: the veth's
	// own XDP receive path), "reference" (the featureless counter of
	// BenchmarkKernelPacket, native XDP), "fparser" (native XDP) or "fparser-tc"
	// (--attach tc).
	// counted is what fparser saw; udp, the UDP packets it counted, all received
	// (with tc it also sees the receiver's own replies, ICMP).
	measure := func(attach string) (pps float64, arrived, counted, udp, sent uint64) {
		receiver := testharness.Command(recv, roleVethReceiver, envVethAttach+"="+attach)
		in, err := receiver.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		receiver.Stderr = os.Stderr
		lines := testharness.Start(b, receiver, "ready")
		defer receiver.Wait()
		expect := func(prefix string) string {
			for lines.Scan() {
				if v, ok := strings.CutPrefix(lines.Text(), prefix); ok {
					return v
				}
			}
			b.Fatalf("receiver said no %q", prefix)
			return ""
		}
		generator := testharness.Command(gen, roleVethGenerator)
		gout, err := generator.Output()
		if err != nil {
			b.Fatalf("generator: %v\n%s", err, gout)
		}
		var dropped uint64
		var secs float64
		for _, line := range strings.Split(string(gout), "\n") {
			fmt.Sscanf(line, "sent %d dropped %d in %f", &sent, &dropped, &secs)
		}
		// The receiver reports once the frames the veth did not drop have all
		// arrived: its softirq may still be at them.
		fmt.Fprintf(in, "stop %d\n", sent-dropped)
		fmt.Sscanf(expect("result "), "%d %d %d", &arrived, &counted, &udp)
		in.Close()
		b.Logf("%s: sent %d (%d dropped by the veth), arrived %d (%.2f Mpps), fparser saw %d, %d of them UDP", attach, sent, dropped, arrived, float64(arrived)/secs/1e6, counted, udp)
		return float64(arrived) / secs, arrived, counted, udp, sent - dropped
	}
	without, _, _, _, _ := measure("none")
	empty, _, _, _, _ := measure("empty")
	reference, _, _, _, _ := measure("reference")
	with, arrived, counted, _, _ := measure("fparser")
	withTC, _, _, udpTC, sentTC := measure("fparser-tc")
	b.ReportMetric(without/1e6, "Mpps-without")
	b.ReportMetric(empty/1e6, "Mpps-empty-xdp")
	b.ReportMetric(reference/1e6, "Mpps-reference")
	b.ReportMetric(with/1e6, "Mpps-with")
	b.ReportMetric(withTC/1e6, "Mpps-with-tc")
	b.ReportMetric(with/empty, "xdp-x-empty-xdp")
	b.ReportMetric(reference/empty, "reference-x-empty-xdp")
	b.ReportMetric(with/reference, "xdp-x-reference")
	b.ReportMetric(withTC/without, "tc-x-without")
	if counted != arrived {
		b.Errorf("XDP: fparser counted %d frames, %d arrived", counted, arrived)
	}
	if udpTC != sentTC {
		b.Errorf("tc: fparser counted %d UDP packets, %d were sent and not dropped by the veth", udpTC, sentTC)
	}
}

// The roles of BenchmarkLiveVeth.
var (
	roleVethGenerator = testharness.Role("veth-generator", vethGenerator)
	roleVethReceiver  = testharness.Role("veth-receiver", vethReceiver)
)

// envVethAttach tells the receiver what to attach: one of measure's names.
const envVethAttach = "FPARSER_ATTACH"

// vethGenerator sends UDP from one socket as fast as sendmmsg allows, for
// vethDuration, and prints how many it sent and how many of them the veth dropped.
func vethGenerator(t testing.TB) {
	conn, err := net.ListenPacket("udp4", net.JoinHostPort(vethGenAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	pc := ipv4.NewPacketConn(conn)
	dst := &net.UDPAddr{IP: net.ParseIP(vethRecvAddr), Port: 9}
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i] = ipv4.Message{Buffers: [][]byte{make([]byte, 18)}, Addr: dst}
	}
	txDropped := func() uint64 {
		b, err := os.ReadFile("/sys/class/net/fpb0/statistics/tx_dropped")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	dropped0 := txDropped()
	var sent uint64
	began := time.Now()
	for time.Since(began) < vethDuration {
		n, err := pc.WriteBatch(msgs, 0)
		if err != nil {
			continue // the veth's queue is full: try again
		}
		sent += uint64(n)
	}
	secs := time.Since(began).Seconds()
	fmt.Printf("sent %d dropped %d in %f\n", sent, txDropped()-dropped0, secs)
}

// vethReceiver attaches fparser (or not) to the receiving veth, then, told how many
// frames to expect, reports the frames that arrived there and the frames fparser
// saw.
func vethReceiver(t testing.TB) {
	var p *fparser.Parser
	switch os.Getenv(envVethAttach) {
	case "fparser", "fparser-tc":
		attach := "xdp-native"
		if os.Getenv(envVethAttach) == "fparser-tc" {
			attach = "tc"
		}
		var err error
		p, err = fparser.Open(vethRecv, &fparser.Options{Attach: attach, Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
	case "empty", "reference":
		var prog *ebpf.Program
		if os.Getenv(envVethAttach) == "empty" {
			var err error
			prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
				Type: ebpf.XDP, License: "MIT",
				Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
			})
			if err != nil {
				t.Fatal(err)
			}
		} else {
			ref, err := benchref.Load(1 << 20)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			prog = ref.Program()
		}
		iface, err := net.InterfaceByName(vethRecv)
		if err != nil {
			t.Fatal(err)
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Index, Flags: link.XDPDriverMode})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
	}
	rx := func() uint64 {
		b, err := os.ReadFile("/sys/class/net/" + vethRecv + "/statistics/rx_packets")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	before := rx()
	fmt.Println("ready")
	var expected uint64
	if _, err := fmt.Fscanf(os.Stdin, "stop %d\n", &expected); err != nil {
		t.Fatalf("reading how many frames to expect: %v", err)
	}
	// Until they have all arrived, or 2 s: the result says how many did.
	testharness.Poll(2*time.Second, func() bool { return rx()-before >= expected })
	arrived := rx() - before
	var counted, udp uint64
	if p != nil {
		p.Close()
		in := p.Info()
		counted, udp = in.PacketsSeen, in.AcceptedUDP
	}
	fmt.Printf("result %d %d %d\n", arrived, counted, udp)
}
