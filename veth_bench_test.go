package fparser_test

import (
	"bufio"
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
	if os.Getenv(envRole) != "" {
		b.Skip("inside a namespace")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, BPF)")
	}
	id := strconv.Itoa(os.Getpid())
	gen, recv := "fpb-gen-"+id, "fpb-recv-"+id
	run := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			b.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	run("netns", "add", gen)
	defer exec.Command("ip", "netns", "del", gen).Run()
	run("netns", "add", recv)
	defer exec.Command("ip", "netns", "del", recv).Run()
	run("link", "add", "fpb0", "netns", gen, "type", "veth", "peer", "name", vethRecv, "netns", recv)
	run("-n", gen, "addr", "add", vethGenAddr+"/24", "dev", "fpb0")
	run("-n", recv, "addr", "add", vethRecvAddr+"/24", "dev", vethRecv)
	run("-n", gen, "link", "set", "fpb0", "up")
	run("-n", recv, "link", "set", vethRecv, "up")
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
	run("-n", gen, "neigh", "add", vethRecvAddr, "lladdr", mac(recv, vethRecv), "dev", "fpb0", "nud", "permanent")

	// attach: "none", "empty" (an XDP program that only passes packets: the veth's
	// own XDP receive path) or "fparser".
	measure := func(attach string) (pps float64, arrived, counted uint64) {
		receiver := exec.Command("ip", "netns", "exec", recv, os.Args[0], "-test.run", "^TestVethReceiver$", "-test.v")
		receiver.Env = append(os.Environ(), envRole+"=receiver", "FPARSER_ATTACH="+attach)
		in, _ := receiver.StdinPipe()
		out, _ := receiver.StdoutPipe()
		receiver.Stderr = os.Stderr
		if err := receiver.Start(); err != nil {
			b.Fatal(err)
		}
		defer receiver.Wait()
		lines := bufio.NewScanner(out)
		expect := func(prefix string) string {
			for lines.Scan() {
				if v, ok := strings.CutPrefix(lines.Text(), prefix); ok {
					return v
				}
			}
			b.Fatalf("receiver said no %q", prefix)
			return ""
		}
		expect("ready")
		generator := exec.Command("ip", "netns", "exec", gen, os.Args[0], "-test.run", "^TestVethGenerator$", "-test.v")
		generator.Env = append(os.Environ(), envRole+"=generator")
		gout, err := generator.Output()
		if err != nil {
			b.Fatalf("generator: %v\n%s", err, gout)
		}
		var sent uint64
		var secs float64
		for _, line := range strings.Split(string(gout), "\n") {
			fmt.Sscanf(line, "sent %d in %f", &sent, &secs)
		}
		time.Sleep(200 * time.Millisecond) // the receiver's softirq catches up
		fmt.Fprintln(in, "stop")
		fmt.Sscanf(expect("result "), "%d %d", &arrived, &counted)
		in.Close()
		b.Logf("%s: sent %d, arrived %d (%.2f Mpps), fparser counted %d", attach, sent, arrived, float64(arrived)/secs/1e6, counted)
		return float64(arrived) / secs, arrived, counted
	}
	without, _, _ := measure("none")
	empty, _, _ := measure("empty")
	with, arrived, counted := measure("fparser")
	b.ReportMetric(without/1e6, "Mpps-without")
	b.ReportMetric(empty/1e6, "Mpps-empty-xdp")
	b.ReportMetric(with/1e6, "Mpps-with")
	b.ReportMetric(100*with/without, "%-of-without")
	b.ReportMetric(100*with/empty, "%-of-empty-xdp")
	if counted != arrived {
		b.Errorf("fparser counted %d frames, %d arrived", counted, arrived)
	}
}

// TestVethGenerator sends UDP from one socket as fast as sendmmsg allows, for
// vethDuration, and prints how many it sent.
func TestVethGenerator(t *testing.T) {
	if os.Getenv(envRole) != "generator" {
		t.Skip("run by BenchmarkLiveVeth")
	}
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
	var sent uint64
	began := time.Now()
	for time.Since(began) < vethDuration {
		n, err := pc.WriteBatch(msgs, 0)
		if err != nil {
			continue // the veth's queue is full: try again
		}
		sent += uint64(n)
	}
	fmt.Printf("sent %d in %f\n", sent, time.Since(began).Seconds())
}

// TestVethReceiver attaches fparser (or not) to the receiving veth, then reports the
// frames that arrived there and the frames fparser saw.
func TestVethReceiver(t *testing.T) {
	if os.Getenv(envRole) != "receiver" {
		t.Skip("run by BenchmarkLiveVeth")
	}
	var p *fparser.Parser
	switch os.Getenv("FPARSER_ATTACH") {
	case "fparser":
		var err error
		p, err = fparser.Open(vethRecv, &fparser.Options{Attach: "xdp-native", Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
	case "empty":
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.XDP, License: "MIT",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
		})
		if err != nil {
			t.Fatal(err)
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
	bufio.NewScanner(os.Stdin).Scan()
	arrived := rx() - before
	var counted uint64
	if p != nil {
		p.Close()
		counted = p.Info().PacketsSeen
	}
	fmt.Printf("result %d %d\n", arrived, counted)
}
