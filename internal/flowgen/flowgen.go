// Package flowgen writes a synthetic capture shaped like the traffic between two busy
// networks: many short HTTP-like TCP connections (some ending with a RST, some
// followed by a new connection from the same port), DNS-like UDP exchanges (a few
// retried, a few with answers too big for one frame, sent as IPv4 or IPv6
// fragments), and a few long TCP and UDP bulk flows, a quarter of them over IPv6.
//
// It is the yardstick of the offline benchmarks that compare fparser with other flow
// exporters (cmd/fparser's BenchmarkFlowHeavy). Unlike the offline package's
// benchmark, whose flows never end, its flows start at a steady rate and end as they
// do on a real capture, so that what a flow costs when it starts and when it ends
// (expiry, port reuse, handing out ended flows) weighs as it does in real use. The
// same Config always writes the same bytes: a fixed seed drives one PCG generator.
//
// Packets are written in timestamp order as they are generated: the connections in
// progress wait in a priority queue ordered by the time of their next packet, so
// memory stays bounded by the connections open at once, not by the capture's size.
package flowgen

import (
	"bufio"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	pb "github.com/fparser/fparser/internal/pktbuild"
)

// Config describes a capture. Shares are fractions from 0 to 1.
type Config struct {
	Seed     uint64
	Start    time.Time     // the capture's clock at its start
	Duration time.Duration // connections start during this span; the capture stops at its end

	Web         int // HTTP-like TCP connections, not counting those that reuse a port
	DNS         int // DNS-like UDP exchanges
	BulkTCP     int // long TCP transfers
	BulkUDP     int // long two-way UDP streams (RTP-like)
	BulkPackets int // packets of a bulk flow that lasts the whole capture

	Clients   int // hosts of the client network, IPv4 and IPv6 together
	Servers   int // web servers of the server network
	Resolvers int // DNS resolvers of the server network

	IPv6Share      float64 // of clients, servers and resolvers, hence of flows
	KeepAliveShare float64 // of web connections that carry 2 to 4 requests
	RSTShare       float64 // of web connections that end with a RST
	ReuseShare     float64 // of web connections after which the client opens another from the same port to the same server
	RetryShare     float64 // of DNS queries sent again for lack of an answer
	FragmentShare  float64 // of DNS answers too big for one frame

	// Snaplen, when positive, cuts each frame to this many bytes, as a capture
	// with a snaplen does; the lengths on the wire and in the IP headers stay.
	Snaplen int
}

// Default is the capture of the offline benchmarks: 3.5 million packets in 418,000
// flows over 150 seconds (1.6 GB), as a real capture of a busy link had 3.1 million
// packets in 431,000 flows over 154 s.
var Default = Config{
	Seed:           1,
	Start:          time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
	Duration:       150 * time.Second,
	Web:            200_000,
	DNS:            210_000,
	BulkTCP:        6,
	BulkUDP:        4,
	BulkPackets:    20_000,
	Clients:        6000,
	Servers:        800,
	Resolvers:      6,
	IPv6Share:      0.25,
	KeepAliveShare: 0.2,
	RSTShare:       0.08,
	ReuseShare:     0.04,
	RetryShare:     0.03,
	FragmentShare:  0.01,
}

// Small is a capture of a few seconds for tests: 10 s, 3,000 short flows and 6 bulk
// ones, with more of the rare kinds (RSTs, reused ports, retries, fragments) than
// Default has, so that each shows up.
var Small = Config{
	Seed:           7,
	Start:          Default.Start,
	Duration:       10 * time.Second,
	Web:            1500,
	DNS:            1500,
	BulkTCP:        2,
	BulkUDP:        4,
	BulkPackets:    1000,
	Clients:        200,
	Servers:        40,
	Resolvers:      4,
	IPv6Share:      0.25,
	KeepAliveShare: 0.2,
	RSTShare:       0.1,
	ReuseShare:     0.2,
	RetryShare:     0.05,
	FragmentShare:  0.05,
}

// Summary counts what Write wrote. Flows are flows as fparser and the other exporters
// count them: one per TCP connection, a connection that reuses the ports of a
// finished one included, and one per UDP exchange or stream.
type Summary struct {
	Packets    uint64 // frames, all of them IPv4 or IPv6 carrying TCP or UDP
	TCPPackets uint64
	UDPPackets uint64
	Bytes      uint64 // IP bytes (IPv4 total length, IPv6 payload length + 40)
	FileBytes  int64  // the pcap file's size

	Flows        int // all of the below but the subsets marked as such
	Web          int // HTTP-like connections, Reused included
	Reused       int // subset of Web: opened from the port of a finished connection to the same server
	RSTEnded     int // subset of Web: a RST was written
	BulkTCP      int
	DNS          int
	Retried      int // subset of DNS: a query was written again
	Fragmented   int // subset of DNS: an answer was written as fragments
	BulkUDP      int
	IPv6Flows    int // subset of Flows
	Fragments    uint64
	IPv6Fragment uint64 // subset of Fragments

	First, Last time.Time // timestamps of the first and last packets
}

// Duration is the span of the capture's timestamps.
func (s Summary) Duration() time.Duration { return s.Last.Sub(s.First) }

// ErrConfig reports a Config that cannot be generated.
var ErrConfig = errors.New("flowgen: bad config")

func (c Config) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
	}
	switch {
	case c.Duration <= 0:
		return bad("Duration %v", c.Duration)
	case c.Web < 0 || c.DNS < 0 || c.BulkTCP < 0 || c.BulkUDP < 0:
		return bad("negative flow count")
	case (c.BulkTCP > 0 || c.BulkUDP > 0) && c.BulkPackets < 100:
		return bad("BulkPackets %d: want 100 or more", c.BulkPackets)
	case c.Clients < 4 || c.Servers < 4 || c.Resolvers < 4:
		return bad("want 4 or more Clients, Servers and Resolvers (IPv4 and IPv6 take at least one each)")
	case c.BulkUDP > 8000:
		return bad("BulkUDP %d: at most 8000 (one even port each)", c.BulkUDP)
	case c.Snaplen < 0:
		return bad("Snaplen %d", c.Snaplen)
	}
	for _, s := range []float64{c.IPv6Share, c.KeepAliveShare, c.RSTShare, c.ReuseShare, c.RetryShare, c.FragmentShare} {
		if !(s >= 0 && s <= 1) {
			return bad("share %v not within 0 and 1", s)
		}
	}
	return nil
}

// Timing, in ns. The capture point is near the clients: a SYN+ACK follows its SYN
// by one round trip, and a client's answer to a server's packet follows it by the
// client's own turnaround.
const (
	us = int64(time.Microsecond)
	ms = int64(time.Millisecond)
	s  = int64(time.Second)

	serialize = 12 * us // one full frame at 1 Gbit/s: back-to-back segments
	window    = 10      // segments a server sends before waiting a round trip

	mss4     = 1448  // TCP payload of a full segment, timestamps option included
	frag4    = 1480  // IPv4 payload of a fragment in a 1500-byte MTU
	frag6    = 1448  // IPv6 payload after the fragment header, a multiple of 8
	portLow  = 32768 // Linux's ephemeral port range
	portHigh = 60999
)

type kind uint8

const (
	kindWeb kind = iota
	kindDNS
	kindBulkTCP
	kindBulkUDP
)

// pkt is one packet a connection will send.
type pkt struct {
	at      int64 // ns from the capture's start
	size    int32 // TCP payload, or UDP payload of the whole datagram
	flags   uint8 // TCP
	fromCli bool
	frag    uint8 // 0: whole datagram; k: its k-th fragment
}

type conn struct {
	id         uint64 // ties between equal times break by it, so the order is fixed
	kind       kind
	cli, srv   netip.Addr
	cport      uint16
	sport      uint16
	client     *client
	pkts       []pkt // sorted by time; bulk flows refill it as it runs out
	i          int
	cseq, sseq uint32
	fragID     uint32
	reuseAt    int64 // web: when the same ports open the next connection; 0: never
	// Bulk flows: the next burst's time, the time they stop, whether they close then.
	next, end int64
	fin       bool
	started   bool
	noted     uint8 // kinds of packets already counted in the Summary
}

const (
	notedRST = 1 << iota
	notedRetry
	notedFrag
)

type client struct {
	addr netip.Addr
	port uint16 // the next ephemeral port it hands out
	used int
}

type connHeap []*conn

func (h connHeap) Len() int { return len(h) }
func (h connHeap) Less(i, j int) bool {
	a, b := h[i].pkts[h[i].i].at, h[j].pkts[h[j].i].at
	return a < b || a == b && h[i].id < h[j].id
}
func (h connHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *connHeap) Push(x any)   { *h = append(*h, x.(*conn)) }
func (h *connHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

type gen struct {
	c         Config
	r         *rand.Rand
	end       int64 // the capture stops here
	snap      int
	clients   [2][]client // [0] IPv4, [1] IPv6
	servers   [2][]netip.Addr
	resolvers [2][]netip.Addr
	popular   [2]*rand.Zipf // which server a connection goes to: a few take most
	h         connHeap
	free      []*conn
	ids       uint64
	ipid      uint32
	zero      []byte
	pw        *pcapgo.Writer
	sum       Summary
}

// Write writes c's capture to w as a pcap file with nanosecond timestamps and
// Ethernet frames.
func Write(w io.Writer, c Config) (Summary, error) {
	if err := c.check(); err != nil {
		return Summary{}, err
	}
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 1<<20)
	g := newGen(c)
	g.pw = pcapgo.NewWriterNanos(bw)
	if err := g.pw.WriteFileHeader(uint32(g.snap), layers.LinkTypeEthernet); err != nil {
		return Summary{}, fmt.Errorf("flowgen: write file header: %w", err)
	}
	if err := g.run(); err != nil {
		return g.sum, err
	}
	if err := bw.Flush(); err != nil {
		return g.sum, fmt.Errorf("flowgen: %w", err)
	}
	g.sum.FileBytes = cw.n
	return g.sum, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	w.n += int64(n)
	return n, err
}

func newGen(c Config) *gen {
	g := &gen{c: c, r: rand.New(rand.NewPCG(c.Seed, 0x666c6f7767656e)), end: int64(c.Duration), zero: make([]byte, 1<<16)}
	g.snap = c.Snaplen
	if g.snap == 0 {
		g.snap = 65535
	}
	split := func(n int) [2]int {
		v6 := max(1, min(n-1, int(math.Round(float64(n)*c.IPv6Share))))
		return [2]int{n - v6, v6}
	}
	// The client network is 10.1.0.0/16 and 2001:db8:1::/64, its hosts numbered from
	// 1 (0 is the network's own address); the server network is 198.18.0.0/15 (set
	// aside for benchmarks) and 2001:db8:2::/64.
	for fam, n := range split(c.Clients) {
		for i := range n {
			g.clients[fam] = append(g.clients[fam], client{addr: hostAddr(fam, [4]byte{10, 1}, 1, i+1), port: uint16(portLow + g.r.IntN(portHigh-portLow+1))})
		}
	}
	for fam, n := range split(c.Servers) {
		for i := range n {
			g.servers[fam] = append(g.servers[fam], hostAddr(fam, [4]byte{198, 18}, 2, i+256))
		}
		g.popular[fam] = rand.NewZipf(g.r, 1.2, 4, uint64(n-1))
	}
	for fam, n := range split(c.Resolvers) {
		for i := range n {
			g.resolvers[fam] = append(g.resolvers[fam], hostAddr(fam, [4]byte{198, 19}, 2, i+53))
		}
	}
	return g
}

// hostAddr returns the i-th host of a network: IPv4 net.x.y, or IPv6 2001:db8:net6::i.
func hostAddr(fam int, net [4]byte, net6 byte, i int) netip.Addr {
	if fam == 0 {
		net[2], net[3] = byte(i>>8), byte(i)
		return netip.AddrFrom4(net)
	}
	var a [16]byte
	a[0], a[1], a[2], a[3], a[5] = 0x20, 0x01, 0x0d, 0xb8, net6
	a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return netip.AddrFrom16(a)
}

// run writes the capture: connections are opened at steady rates, each at a random
// time within its own slot of the Duration, and their packets come out of the queue
// in time order until the capture stops.
func (g *gen) run() error {
	for i := range g.c.BulkTCP {
		g.push(g.bulk(kindBulkTCP, i))
	}
	for i := range g.c.BulkUDP {
		g.push(g.bulk(kindBulkUDP, i))
	}
	webStep := float64(g.end) / float64(max(g.c.Web, 1))
	dnsStep := float64(g.end) / float64(max(g.c.DNS, 1))
	nextWeb, nextDNS := int64(g.r.Float64()*webStep), int64(g.r.Float64()*dnsStep)
	web, dns := 0, 0
	for {
		t, which := g.end, -1
		if web < g.c.Web && nextWeb < t {
			t, which = nextWeb, 0
		}
		if dns < g.c.DNS && nextDNS < t {
			t, which = nextDNS, 1
		}
		if len(g.h) > 0 {
			if c := g.h[0]; c.pkts[c.i].at < t {
				if err := g.step(c); err != nil {
					return err
				}
				continue
			}
		}
		switch which {
		case -1:
			return nil // nothing opens and nothing is sent before the capture stops
		case 0:
			web++
			nextWeb = int64((float64(web) + g.r.Float64()) * webStep)
			fam := g.family()
			cl, err := g.client(fam)
			if err != nil {
				return err
			}
			srv := g.servers[fam][g.popular[fam].Uint64()]
			port := uint16(443)
			if g.r.Float64() < 0.3 {
				port = 80
			}
			g.push(g.web(t, cl, srv, cl.take(), port, false))
		case 1:
			dns++
			nextDNS = int64((float64(dns) + g.r.Float64()) * dnsStep)
			fam := g.family()
			cl, err := g.client(fam)
			if err != nil {
				return err
			}
			g.push(g.dns(t, cl, g.resolvers[fam][g.r.IntN(len(g.resolvers[fam]))]))
		}
	}
}

func (g *gen) family() int {
	if g.r.Float64() < g.c.IPv6Share {
		return 1
	}
	return 0
}

// client picks a client of the family, which must have a port left: a client hands
// out each of its ephemeral ports once (take), and ports come back only through the
// deliberate reuse of ReuseShare, so that the capture's flows are exactly those it
// means to write.
func (g *gen) client(fam int) (*client, error) {
	cl := &g.clients[fam][g.r.IntN(len(g.clients[fam]))]
	if cl.used > portHigh-portLow {
		return nil, fmt.Errorf("%w: client %v ran out of ports: give more Clients", ErrConfig, cl.addr)
	}
	return cl, nil
}

func (cl *client) take() uint16 {
	cl.used++
	p := cl.port
	cl.port++
	if cl.port > portHigh {
		cl.port = portLow
	}
	return p
}

// step writes the next packet of c, the connection whose next packet comes first.
func (g *gen) step(c *conn) error {
	if err := g.write(c, &c.pkts[c.i]); err != nil {
		return err
	}
	c.i++
	if c.i == len(c.pkts) && (c.kind == kindBulkTCP || c.kind == kindBulkUDP) {
		g.refill(c)
	}
	if c.i < len(c.pkts) {
		heap.Fix(&g.h, 0)
		return nil
	}
	heap.Pop(&g.h)
	if c.reuseAt > 0 && c.reuseAt < g.end {
		g.push(g.web(c.reuseAt, c.client, c.srv, c.cport, c.sport, true))
	}
	g.free = append(g.free, c)
	return nil
}

func (g *gen) push(c *conn) {
	if len(c.pkts) > 0 {
		heap.Push(&g.h, c)
	}
}

// newConn returns a connection with its flow counted in the Summary: every connection
// made writes at least its first packet, which comes before the capture stops.
func (g *gen) newConn(k kind, cl *client, cli, srv netip.Addr, cport, sport uint16) *conn {
	var c *conn
	if n := len(g.free); n > 0 {
		c, g.free = g.free[n-1], g.free[:n-1]
		*c = conn{pkts: c.pkts[:0]}
	} else {
		c = &conn{}
	}
	g.ids++
	c.id, c.kind, c.client, c.cli, c.srv, c.cport, c.sport = g.ids, k, cl, cli, srv, cport, sport
	c.cseq, c.sseq = g.r.Uint32(), g.r.Uint32()
	g.sum.Flows++
	if cli.Is6() {
		g.sum.IPv6Flows++
	}
	return c
}

func (c *conn) add(at int64, fromCli bool, flags uint8, size int) {
	c.pkts = append(c.pkts, pkt{at: at, fromCli: fromCli, flags: flags, size: int32(size)})
}

// sort orders the packets by time; packets of one side keep their order.
func (c *conn) sort() {
	slices.SortStableFunc(c.pkts, func(a, b pkt) int {
		switch {
		case a.at < b.at:
			return -1
		case a.at > b.at:
			return 1
		}
		return 0
	})
}

// logUniform returns a value from lo to hi whose logarithm is uniform: as many
// values from 1 to 10 as from 10 to 100, as latencies and sizes tend to be.
func (g *gen) logUniform(lo, hi int64) int64 {
	return int64(float64(lo) * math.Exp(g.r.Float64()*math.Log(float64(hi)/float64(lo))))
}

// web opens an HTTP-like connection at t: handshake, one request (2 to 4 on a
// kept-alive connection, with pauses between them), each answered with one to
// dozens of segments acknowledged every second one, then a FIN exchange started by
// either side, or a RST. reuse says that its ports are those of a finished connection.
func (g *gen) web(t int64, cl *client, srv netip.Addr, cport, sport uint16, reuse bool) *conn {
	c := g.newConn(kindWeb, cl, cl.addr, srv, cport, sport)
	g.sum.Web++
	if reuse {
		g.sum.Reused++
	}
	rtt := g.logUniform(80*us, 3*ms)
	turn := g.logUniform(5*us, 60*us)
	c.add(t, true, pb.SYN, 0)
	t += rtt
	c.add(t, false, pb.SYN|pb.ACK, 0)
	t += turn
	c.add(t, true, pb.ACK, 0)
	requests := 1
	if g.r.Float64() < g.c.KeepAliveShare {
		requests = 2 + g.r.IntN(3)
	}
	for r := range requests {
		if r > 0 {
			t += g.logUniform(5*ms, 3*s)
		} else {
			t += turn / 2
		}
		c.add(t, true, pb.PSH|pb.ACK, 150+g.r.IntN(750))
		t += rtt + g.logUniform(50*us, 30*ms)
		t = g.response(c, t, rtt, turn, g.responseSize())
	}
	u := g.r.Float64()
	switch {
	case u < g.c.RSTShare/2:
		c.add(t+g.logUniform(turn, 50*ms), true, pb.RST|pb.ACK, 0)
	case u < g.c.RSTShare:
		c.add(t+g.logUniform(serialize, 20*ms), false, pb.RST|pb.ACK, 0)
	case u < g.c.RSTShare+(1-g.c.RSTShare)*0.3:
		t += serialize
		c.add(t, false, pb.FIN|pb.ACK, 0)
		c.add(t+turn, true, pb.FIN|pb.ACK, 0)
		c.add(t+turn+rtt, false, pb.ACK, 0)
	default:
		t += g.logUniform(50*us, 15*s) // kept open for a next request that never comes
		c.add(t, true, pb.FIN|pb.ACK, 0)
		c.add(t+rtt, false, pb.FIN|pb.ACK, 0)
		c.add(t+rtt+turn, true, pb.ACK, 0)
	}
	c.sort()
	if g.r.Float64() < g.c.ReuseShare {
		c.reuseAt = c.pkts[len(c.pkts)-1].at + g.logUniform(ms, 10*s)
	}
	return c
}

// responseSize is the size of an answer: most fit one segment, some take a few,
// a few take dozens.
func (g *gen) responseSize() int {
	switch u := g.r.Float64(); {
	case u < 0.55:
		return int(g.logUniform(100, 1400))
	case u < 0.97:
		return int(g.logUniform(1400, 12_000))
	default:
		return int(g.logUniform(12_000, 80_000))
	}
}

// response sends size bytes from the server from t on, a window at a time, with
// the client's acknowledgements; it returns the time of the last segment.
func (g *gen) response(c *conn, t, rtt, turn int64, size int) int64 {
	for seg := 0; size > 0; seg++ {
		if seg > 0 {
			t += serialize
			if seg%window == 0 {
				t += rtt
			}
		}
		n := min(size, mss4)
		size -= n
		flags := uint8(pb.ACK)
		if size == 0 {
			flags |= pb.PSH
		}
		c.add(t, false, flags, n)
		if seg%2 == 1 || size == 0 {
			c.add(t+turn, true, pb.ACK, 0)
		}
	}
	return t
}

// dns opens a DNS-like exchange at t: a query, sometimes sent again after a second or
// more without an answer, and one answer; a few answers are too big for one frame and
// come as fragments.
func (g *gen) dns(t int64, cl *client, resolver netip.Addr) *conn {
	c := g.newConn(kindDNS, cl, cl.addr, resolver, cl.take(), 53)
	g.sum.DNS++
	query := 28 + g.r.IntN(40)
	c.add(t, true, 0, query)
	if g.r.Float64() < g.c.RetryShare {
		for range 1 + g.r.IntN(2) {
			t += g.logUniform(s, 5*s)
			c.add(t, true, 0, query)
		}
	}
	t += g.logUniform(100*us, 2*ms) // the round trip
	if g.r.Float64() < 0.3 {
		t += g.logUniform(5*ms, 150*ms) // a recursive lookup
	} else {
		t += g.logUniform(20*us, 500*us) // the resolver's cache
	}
	if g.r.Float64() >= g.c.FragmentShare {
		c.add(t, false, 0, int(g.logUniform(60, 1400)))
		return c
	}
	size, per := int(g.logUniform(1600, 4000)), frag4
	if c.cli.Is6() {
		per = frag6
	}
	for k := 1; (k-1)*per < 8+size; k++ {
		c.pkts = append(c.pkts, pkt{at: t, size: int32(size), frag: uint8(k)})
		t += serialize
	}
	return c
}

// bulk opens the i-th long flow within the first tenth of the capture. Half of them
// stop with a FIN after 50 to 85% of the capture; the others go on past its end. A TCP
// transfer sends bursts of full segments (the download or the upload of a large file);
// a UDP stream sends one datagram each way per tick, as a call does.
func (g *gen) bulk(k kind, i int) *conn {
	fam := 0
	if i%4 == 3 {
		fam = 1
	}
	cl := &g.clients[fam][g.r.IntN(len(g.clients[fam]))]
	start := g.r.Int64N(g.end / 10)
	var c *conn
	if k == kindBulkTCP {
		c = g.newConn(k, cl, cl.addr, g.servers[fam][g.r.IntN(len(g.servers[fam]))], cl.take(), 443)
		g.sum.BulkTCP++
	} else {
		// RTP's even ports, away from the ephemeral range the other flows take ports from
		port := uint16(16384 + 2*i)
		c = g.newConn(k, cl, cl.addr, g.servers[fam][g.r.IntN(len(g.servers[fam]))], port, port)
		g.sum.BulkUDP++
	}
	c.fin = i%2 == 0
	c.end = g.end + s // past the end: cut by the capture's stop
	if c.fin {
		c.end = start + int64(float64(g.end)*(0.5+0.35*g.r.Float64()))
	}
	c.next = start
	g.refill(c)
	return c
}

// refill plans the next burst of a bulk flow, or its close. The bursts are spaced
// so that a flow lasting the whole capture sends about BulkPackets packets.
func (g *gen) refill(c *conn) {
	c.pkts, c.i = c.pkts[:0], 0
	t := c.next
	if t == math.MaxInt64 {
		return // closed
	}
	if c.kind == kindBulkUDP {
		if t >= c.end {
			return
		}
		tick := 2 * g.end / int64(g.c.BulkPackets)
		c.add(t+g.r.Int64N(tick/4), true, 0, 160+g.r.IntN(1040))
		c.add(t+g.r.Int64N(tick/4), false, 0, 160+g.r.IntN(1040))
		c.sort()
		c.next = t + tick
		return
	}
	const burst = 16 // segments, each second one acknowledged: 24 packets
	turn := 20 * us
	if !c.started {
		c.started = true
		c.add(t, true, pb.SYN, 0)
		c.add(t+ms, false, pb.SYN|pb.ACK, 0)
		c.add(t+ms+turn, true, pb.ACK, 0)
		c.add(t+ms+2*turn, true, pb.PSH|pb.ACK, 300)
		c.next = t + 3*ms
		return
	}
	upload := c.id%2 == 0
	if t >= c.end {
		if c.fin {
			c.add(t, !upload, pb.FIN|pb.ACK, 0)
			c.add(t+ms, upload, pb.FIN|pb.ACK, 0)
			c.add(t+ms+turn, !upload, pb.ACK, 0)
		}
		c.next = math.MaxInt64
		return
	}
	for seg := range burst {
		at := t + int64(seg)*serialize
		c.add(at, upload, pb.ACK, mss4)
		if seg%2 == 1 {
			c.add(at+turn, !upload, pb.ACK, 0)
		}
	}
	c.sort()
	gap := g.end * 24 / int64(g.c.BulkPackets)
	c.next = t + gap/2 + g.r.Int64N(gap)
}

// write writes one packet of c.
func (g *gen) write(c *conn, p *pkt) error {
	src, dst, sp, dp, ttl := c.cli, c.srv, c.cport, c.sport, uint8(64)
	if !p.fromCli {
		src, dst, sp, dp, ttl = dst, src, dp, sp, 55 // a few hops away
	}
	var l4 []byte
	proto := uint8(pb.ProtoUDP)
	if c.kind == kindWeb || c.kind == kindBulkTCP {
		proto = pb.ProtoTCP
		seq, ack := &c.cseq, c.sseq
		if !p.fromCli {
			seq, ack = &c.sseq, c.cseq
		}
		if p.flags&pb.ACK == 0 {
			ack = 0
		}
		l4 = pb.TCP(sp, dp, p.flags, *seq, ack, g.zero[:p.size])
		*seq += uint32(p.size)
		if p.flags&(pb.SYN|pb.FIN) != 0 {
			*seq++
		}
		g.sum.TCPPackets++
		if p.flags&pb.RST != 0 && c.noted&notedRST == 0 {
			c.noted |= notedRST
			g.sum.RSTEnded++
		}
	} else {
		l4 = pb.UDP(sp, dp, g.zero[:p.size])
		g.sum.UDPPackets++
		if c.kind == kindDNS && p.fromCli && c.i > 0 && c.noted&notedRetry == 0 {
			c.noted |= notedRetry
			g.sum.Retried++
		}
	}
	var ip []byte
	etype := uint16(pb.EtherIPv4)
	switch {
	case p.frag > 0:
		ip, etype = g.fragment(c, p, src, dst, ttl, l4)
	case src.Is4():
		ip = pb.IPv4{Src: src, Dst: dst, Proto: proto, TTL: ttl}.Build(l4)
	default:
		ip, etype = pb.IPv6{Src: src, Dst: dst, Next: proto, HopLimit: ttl, PayloadLen: -1}.Build(l4), pb.EtherIPv6
	}
	frame := pb.Ethernet(etype, nil, ip)
	g.sum.Bytes += uint64(len(ip)) // the IP header's length: no header lies here
	g.sum.Packets++
	ts := g.c.Start.Add(time.Duration(p.at))
	if g.sum.Packets == 1 {
		g.sum.First = ts
	}
	g.sum.Last = ts
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: min(len(frame), g.snap), Length: len(frame)}
	if err := g.pw.WritePacket(ci, frame[:ci.CaptureLength]); err != nil {
		return fmt.Errorf("flowgen: write packet %d: %w", g.sum.Packets, err)
	}
	return nil
}

// fragment returns the p.frag-th fragment of the UDP datagram l4.
func (g *gen) fragment(c *conn, p *pkt, src, dst netip.Addr, ttl uint8, l4 []byte) ([]byte, uint16) {
	if p.frag == 1 {
		g.ipid++
		c.fragID = g.ipid
		g.sum.Fragmented++
	}
	g.sum.Fragments++
	per := frag4
	if src.Is6() {
		per = frag6
		g.sum.IPv6Fragment++
	}
	off := (int(p.frag) - 1) * per
	chunk := l4[off:min(off+per, len(l4))]
	more := off+per < len(l4)
	if src.Is4() {
		return pb.IPv4{Src: src, Dst: dst, Proto: pb.ProtoUDP, TTL: ttl, ID: uint16(c.fragID), FragOffset: uint16(off / 8), MoreFrags: more}.Build(chunk), pb.EtherIPv4
	}
	ext := []pb.Ext{{Type: pb.ExtFragment, FragOffset: uint16(off / 8), MoreFrags: more, ID: c.fragID}}
	return pb.IPv6{Src: src, Dst: dst, Next: pb.ProtoUDP, HopLimit: ttl, Exts: ext, PayloadLen: -1}.Build(chunk), pb.EtherIPv6
}
