// Package testnet holds what the tests of the network sinks and of the command share:
// an IPFIX collector over TCP that accepts connections and reads none of them until a
// test asks, nfdump's collector nfcapd, a buffer that one goroutine or child process
// writes while a test reads it, and a self-signed certificate for TLS on loopback.
package testnet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StalledCollector is a TCP collector on loopback that accepts every connection and
// reads none of them until a test does, with a receive buffer so small that a few
// kilobytes fill it. The test's end closes the listener and every connection.
type StalledCollector struct {
	ln      net.Listener
	arrived chan struct{} // a connection was accepted
	mu      sync.Mutex
	conns   []net.Conn
	taken   int // how many of conns Next has returned
}

// NewStalledCollector listens on a loopback port of its own.
func NewStalledCollector(t testing.TB) *StalledCollector {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			// Accepted connections inherit it.
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	ln, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &StalledCollector{ln: ln, arrived: make(chan struct{}, 1)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			select {
			case c.arrived <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for _, conn := range c.Conns() {
			conn.Close()
		}
	})
	return c
}

// Addr is the collector's address, host:port.
func (c *StalledCollector) Addr() string { return c.ln.Addr().String() }

// Conns returns the connections accepted so far, in the order they came.
func (c *StalledCollector) Conns() []net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]net.Conn(nil), c.conns...)
}

// Next returns the first connection that Next has not returned yet, waiting for it
// up to timeout.
func (c *StalledCollector) Next(t testing.TB, timeout time.Duration) net.Conn {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		if c.taken < len(c.conns) {
			conn := c.conns[c.taken]
			c.taken++
			c.mu.Unlock()
			return conn
		}
		c.mu.Unlock()
		select {
		case <-c.arrived:
		case <-deadline:
			t.Fatal("no connection to the collector")
		}
	}
}

// Messages reads what conn holds until the exporter has closed or reset it, and
// returns the complete IPFIX messages in it: what a collector could decode. A
// connection still open after timeout fails the test.
func Messages(t testing.TB, conn net.Conn, timeout time.Duration) [][]byte {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the exporter left its connection open")
	}
	var msgs [][]byte
	for len(b) >= 16 {
		n := int(binary.BigEndian.Uint16(b[2:])) // the message's length
		if n < 16 || n > len(b) {
			break // the message the exporter gave up on
		}
		msgs = append(msgs, b[:n])
		b = b[n:]
	}
	return msgs
}

// Buffer collects output that another goroutine or a child process writes while the
// test reads it.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// SelfSigned makes a self-signed certificate for 127.0.0.1, valid for an hour
// either side of now: the certificate a test server presents, and its PEM, which a
// client trusts as its CA.
func SelfSigned(t testing.TB) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// Nfcapd is nfdump's IPFIX collector, listening on a loopback UDP port of its own
// and writing into a temporary folder. The test's end kills it if Stop did not.
type Nfcapd struct {
	Port int
	Dir  string
	cmd  *exec.Cmd
	log  *Buffer
}

// NfdumpRows is the nfdump output format of Nfcapd.Rows: protocol, endpoints, and
// packets and bytes each way.
const NfdumpRows = "fmt:%pr,%sa,%sp,%da,%dp,%ipkt,%ibyt,%opkt,%obyt"

// StartNfcapd starts nfcapd and waits until it listens.
func StartNfcapd(t testing.TB) *Nfcapd {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	n := &Nfcapd{Port: port, Dir: t.TempDir(), log: &Buffer{}}
	n.cmd = exec.Command("nfcapd", "-w", n.Dir, "-p", strconv.Itoa(port), "-b", "127.0.0.1", "-t", "3600")
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n.cmd.ProcessState == nil {
			n.cmd.Process.Kill()
			n.cmd.Wait()
		}
	})
	for i := 0; ; i++ {
		if b, _ := os.ReadFile("/proc/net/udp"); strings.Contains(string(b), fmt.Sprintf("0100007F:%04X", port)) {
			return n
		}
		if i == 100 {
			t.Fatal("nfcapd did not start listening")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addr is where to export to.
func (n *Nfcapd) Addr() string { return fmt.Sprintf("127.0.0.1:%d", n.Port) }

// Stop ends nfcapd, which then writes its file, and returns its log. It first waits
// (5 s at most) for nfcapd to read what waits in its socket: a datagram still there
// at the signal is lost, which a busy machine makes likely.
func (n *Nfcapd) Stop() string {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && n.unread(); {
		time.Sleep(20 * time.Millisecond)
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	n.cmd.Wait()
	return n.log.String()
}

// unread says nfcapd's socket holds datagrams it has not read: its receive queue
// in /proc/net/udp (the fifth column, tx_queue:rx_queue in hex) is not empty.
func (n *Nfcapd) unread() bool {
	b, _ := os.ReadFile("/proc/net/udp")
	local := fmt.Sprintf("0100007F:%04X", n.Port)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[1] == local {
			_, rx, _ := strings.Cut(f[4], ":")
			return strings.Trim(rx, "0") != ""
		}
	}
	return false
}

// Rows reads what nfcapd wrote with nfdump, one NfdumpRows row per record, the
// fields trimmed of nfdump's padding.
func (n *Nfcapd) Rows(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("nfdump", "-R", n.Dir, "-q", "-N", "-6", "-o", NfdumpRows).Output()
	if err != nil {
		t.Fatalf("nfdump: %v\n%s", err, n.log.String())
	}
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Split(line, ",")
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		rows = append(rows, strings.Join(fields, ","))
	}
	return rows
}
