package fparser_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/cgroups"
	"github.com/fparser/fparser/internal/testharness"
)

var (
	roleProcEcho   = testharness.Role("proc-echo", procEcho)
	roleProcClient = testharness.Role("proc-client", procClient)
)

// The roles' settings: the address to serve or to reach, and the client's source
// ports (TCP, then UDP).
const (
	envProcAddr  = "FPARSER_PROC_ADDR"
	envProcPorts = "FPARSER_PROC_PORTS"
)

// procEcho, a role, echoes TCP connections and UDP datagrams on its address.
func procEcho(t testing.TB) {
	addr := os.Getenv(envProcAddr)
	echoUDP(t, addr)
	// Plain TCP: Go's listeners are MPTCP by default, whose accepted connections
	// come from a listener the kernel makes, which no process created.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Write([]byte(line))
			}()
		}
	}()
	fmt.Println("echo ready")
	select {}
}

// procClient, a role, sends a line over TCP and a datagram over UDP to its address,
// from the ports it is given, and waits for each to come back.
func procClient(t testing.TB) {
	to := netip.MustParseAddrPort(os.Getenv(envProcAddr))
	var tport, uport uint16
	fmt.Sscanf(os.Getenv(envProcPorts), "%d,%d", &tport, &uport)
	d := net.Dialer{LocalAddr: &net.TCPAddr{Port: int(tport)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", to.String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintln(c, "hello")
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("TCP echo: %q, %v", line, err)
	}
	c.Close()
	u, err := net.DialUDP("udp4", &net.UDPAddr{Port: int(uport)}, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	u.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if _, err := u.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := u.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("UDP echo: %q, %v", buf[:n], err)
	}
	fmt.Println("client done")
}

// TestProcessAttribution: live, a flow names the local processes that sent its
// packets and their cgroup v2 paths, from the kernel, at the socket, with the
// default attach mode: for connections the host opens (TCP and UDP, client in one
// cgroup) and ones it accepts (server in another), and for the processes at their
// other ends, in a network namespace of their own as a container's are (each in a
// cgroup too), seen as they arrive by the host's end of the veth. The processes are
// started after the parser, so their sockets are made under the socket program,
// each under a name of its own.
func TestProcessAttribution(t *testing.T) {
	testharness.RequireRoot(t, "the attribution test (network namespaces, cgroups, BPF)", "ip")
	root, err := cgroups.Mount()
	if err != nil {
		testharness.Skip(t, "no cgroup v2 mounted: %v", err)
	}
	id := strconv.Itoa(os.Getpid())
	far := testharness.Netns(t, "fpproc-far-"+id)
	near := "fpp" + id
	testharness.Sh(t, "ip", "link", "add", near, "type", "veth", "peer", "name", "fpq"+id, "netns", far)
	t.Cleanup(func() { testharness.Sh(t, "ip", "link", "del", near) })
	testharness.Sh(t, "ip", "addr", "add", "198.19.81.1/24", "dev", near)
	testharness.Sh(t, "ip", "link", "set", near, "up")
	testharness.Sh(t, "ip", "-n", far, "addr", "add", "198.19.81.2/24", "dev", "fpq"+id)
	testharness.Sh(t, "ip", "-n", far, "link", "set", "fpq"+id, "up")
	testharness.Sh(t, "ip", "-n", far, "link", "set", "lo", "up")

	var mu sync.Mutex
	var flows []fparser.Flow
	collect := func(f fparser.Flow) { mu.Lock(); flows = append(flows, f); mu.Unlock() }
	p, err := fparser.Open(near, &fparser.Options{OnTCP: collect, OnUDP: collect, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// Each local process runs the test binary under its own name, in a cgroup of
	// its own.
	dir := t.TempDir()
	server, serverCgroup := localProcess(t, root, dir, id, "", "fp-server", roleProcEcho, envProcAddr+"=198.19.81.1:7001")
	testharness.Start(t, server, "echo ready")
	farEcho, farEchoCgroup := localProcess(t, root, dir, id, far, "fp-far-echo", roleProcEcho, envProcAddr+"=198.19.81.2:7002")
	testharness.Start(t, farEcho, "echo ready")
	// The host client's ports change from run to run: an earlier run's
	// connection may still be in TIME_WAIT.
	port := 20000 + os.Getpid()%20000
	client, clientCgroup := localProcess(t, root, dir, id, "", "fp-client", roleProcClient, envProcAddr+"=198.19.81.2:7002", fmt.Sprintf("%s=%d,%d", envProcPorts, port, port+1))
	testharness.Start(t, client, "client done")
	farClient, farClientCgroup := localProcess(t, root, dir, id, far, "fp-far-client", roleProcClient, envProcAddr+"=198.19.81.1:7001", envProcPorts+"=42001,42002")
	testharness.Start(t, farClient, "client done")
	p.Close()

	proc := func(cmd *exec.Cmd, name, cgroup string) fparser.Process {
		return fparser.Process{PID: cmd.Process.Pid, Name: name, Cgroup: cgroup}
	}
	serverProc, clientProc := proc(server, "fp-server", serverCgroup), proc(client, "fp-client", clientCgroup)
	farEchoProc, farClientProc := proc(farEcho, "fp-far-echo", farEchoCgroup), proc(farClient, "fp-far-client", farClientCgroup)
	want := map[string]struct{ fwd, rev fparser.Process }{
		// Opened by the host, answered from the namespace.
		fmt.Sprint("tcp 198.19.81.1:", port):   {clientProc, farEchoProc},
		fmt.Sprint("udp 198.19.81.1:", port+1): {clientProc, farEchoProc},
		// Opened from the namespace, accepted by the host.
		"tcp 198.19.81.2:42001": {farClientProc, serverProc},
		"udp 198.19.81.2:42002": {farClientProc, serverProc},
	}
	mu.Lock()
	defer mu.Unlock()
	for _, f := range flows {
		name := f.Protocol.String() + " " + f.Src.String()
		w, ok := want[name]
		if !ok {
			continue
		}
		delete(want, name)
		if f.Fwd.Process != w.fwd || f.Rev.Process != w.rev || f.Process != w.fwd {
			t.Errorf("%s -> %s: process %+v, sent by %+v and %+v; want %+v, %+v and %+v", name, f.Dst, f.Process, f.Fwd.Process, f.Rev.Process, w.fwd, w.fwd, w.rev)
		}
	}
	for name := range want {
		t.Errorf("no flow %s", name)
	}
}

// localProcess returns the command that runs role in the network namespace ns ("":
// this one) as a process called name, in a cgroup made for it below root, and that
// cgroup's path.
func localProcess(t *testing.T, root, dir, id, ns, name, role string, env ...string) (*exec.Cmd, string) {
	t.Helper()
	cg := filepath.Join(root, "fparser-test-"+id+"-"+name)
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	// After the process is gone: Start's cleanup kills it first.
	t.Cleanup(func() { os.Remove(cg) })
	fd, err := syscall.Open(cg, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, name)
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	cmd := testharness.Command(ns, role, env...)
	if ns == "" {
		cmd.Path, cmd.Args[0] = link, link
	} else {
		cmd.Args[len(cmd.Args)-1] = link // ip netns exec ns link, which execs it in place
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	return cmd, "/" + filepath.Base(cg)
}
