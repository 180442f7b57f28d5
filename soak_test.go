package fparser_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fparser/fparser"
	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/testharness"
)

// The soak test runs only when FPARSER_SOAK says how long to send (for example 60s):
// it is kept out of the default go test, and .ci/run runs it for a bounded time.
const (
	envSoak         = "FPARSER_SOAK"
	envSoakMaxFlows = "FPARSER_SOAK_MAX_FLOWS"
	envSoakRecords  = "FPARSER_SOAK_RECORDS" // keep the first 2 packets of each flow, through a ring of one page
	soakSources     = 16                     // source addresses
	soakPorts       = 62500                  // source ports per address: 16 × 62,500 = 1,000,000 flows
)

// soakResult is what the parser's side reports.
type soakResult struct {
	Seen, Accepted, Created, Evictions, EventsLost uint64
	Stored, NotStored, Incomplete, Recorded        uint64
	Reported, ReportedPackets                      uint64
	Ended                                          map[string]uint64
	PeakRSSKiB                                     int
	Stop                                           time.Duration // Close, which ends every flow
}

// TestSoak sends UDP at full rate through a million distinct flows (a source port
// sweep across 16 source addresses) from one namespace into another, where fparser
// counts with XDP, for FPARSER_SOAK. With a map that has room, every packet that
// arrived is counted and every flow is reported once; with a map far too small, the
// evictions are counted and Info stays consistent. It reports the Go process's peak
// RSS.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(testharness.OptIn(t, envSoak, "60s", "the soak test"))
	if err != nil || d <= 0 {
		t.Fatalf("%s=%s: want a duration such as 60s", envSoak, os.Getenv(envSoak))
	}
	liveSkip(t)
	for _, tc := range []struct {
		name     string
		maxFlows int
		records  bool
	}{{"room", 1 << 22, false}, {"evicting", 1 << 16, false}, {"records-through-a-page", 1 << 22, true}} {
		t.Run(tc.name, func(t *testing.T) {
			host, peer := liveNamespaces(t)
			parser := testharness.Command(host, roleSoakParser, envSoakMaxFlows+"="+strconv.Itoa(tc.maxFlows), envSoakRecords+"="+strconv.FormatBool(tc.records))
			parser.Stderr = os.Stderr
			stdin, err := parser.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			lines := testharness.Start(t, parser, "soak parser ready")

			gen := testharness.Command(peer, roleSoakGenerator, envSoak+"="+d.String())
			b, err := gen.CombinedOutput()
			if err != nil {
				t.Fatalf("generator: %v\n%s", err, b)
			}
			var sent, dropped uint64
			for _, l := range strings.Split(string(b), "\n") {
				fmt.Sscanf(strings.TrimSpace(l), "soak sent %d dropped %d", &sent, &dropped)
			}
			// The parser stops once it has counted what arrived.
			fmt.Fprintf(stdin, "sent %d dropped %d\n", sent, dropped)
			stdin.Close()
			var res soakResult
			for lines.Scan() {
				if j, ok := strings.CutPrefix(strings.TrimSpace(lines.Text()), "soak result "); ok {
					if err := json.Unmarshal([]byte(j), &res); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := parser.Wait(); err != nil {
				t.Errorf("the parser's side: %v", err)
			}
			arrived := sent - dropped
			t.Logf("%v: sent %d frames (%.0f k/s), %d dropped by the veth, %d certainly arrived; fparser saw %d, accepted %d, created %d flows, reported %d with %d packets, %d evicted, %d events lost; peak RSS %d KiB; the stop took %v",
				d, sent, float64(sent)/d.Seconds()/1e3, dropped, arrived, res.Seen, res.Accepted, res.Created, res.Reported, res.ReportedPackets, res.Evictions, res.EventsLost, res.PeakRSSKiB, res.Stop.Round(time.Millisecond))
			// Every frame sent reaches the XDP hook but those the veth dropped on
			// the way; its drop counter also counts frames the receiving stack
			// dropped after the hook, so the count lies between the two. The
			// namespace's own few frames (IPv6 neighbour discovery) are seen too,
			// and counted as what they are.
			if res.Accepted < arrived || res.Accepted > sent || res.Seen < res.Accepted || res.Seen > res.Accepted+100 {
				t.Errorf("fparser saw %d and accepted %d; %d frames sent, %d of them dropped by the veth", res.Seen, res.Accepted, sent, dropped)
			}
			if res.Reported+res.Evictions != res.Created {
				t.Errorf("created %d flows, reported %d, evicted %d", res.Created, res.Reported, res.Evictions)
			}
			if tc.maxFlows > soakSources*soakPorts {
				if res.Evictions != 0 || res.ReportedPackets != res.Accepted || res.Created < min(arrived, soakSources*soakPorts) {
					t.Errorf("with room for every flow: %d evicted, %d packets reported of %d, %d flows created", res.Evictions, res.ReportedPackets, res.Accepted, res.Created)
				}
			} else if res.Evictions == 0 || res.ReportedPackets > res.Accepted {
				t.Errorf("with a map of %d: %d evicted, %d packets reported of %d accepted", tc.maxFlows, res.Evictions, res.ReportedPackets, res.Accepted)
			}
			if tc.records {
				// The ring of one page overflows: every record is stored or counted
				// as not stored, and the flows that miss some say so.
				t.Logf("records: %d stored, %d lost, %d flows incomplete", res.Stored, res.NotStored, res.Incomplete)
				if res.Stored+res.NotStored != res.Recorded || res.NotStored == 0 || res.Incomplete == 0 {
					t.Errorf("records: %d stored + %d not stored, %d recorded by the kernel; %d flows incomplete", res.Stored, res.NotStored, res.Recorded, res.Incomplete)
				}
			}
			if res.PeakRSSKiB > 512<<10 {
				t.Errorf("peak RSS %d KiB", res.PeakRSSKiB)
			}
		})
	}
}

// The roles of TestSoak.
var (
	roleSoakParser    = testharness.Role("soak-parser", soakParser)
	roleSoakGenerator = testharness.Role("soak-gen", soakGenerator)
)

// soakParser counts on the host side until the test says what was sent and the
// kernel has counted what arrived, then reports.
func soakParser(t testing.TB) {
	maxFlows, _ := strconv.Atoi(os.Getenv(envSoakMaxFlows))
	records := os.Getenv(envSoakRecords) == "true"
	var reported, packets, incomplete, recorded atomic.Uint64
	count := func(f fparser.Flow) {
		reported.Add(1)
		packets.Add(f.PacketCount())
		recorded.Add(min(f.PacketCount(), 2))
		if f.HistoryIncomplete() {
			incomplete.Add(1)
		}
	}
	o := &fparser.Options{Attach: "xdp", MaxFlows: maxFlows, FlowTimeout: time.Hour, OnUDP: count, OnTCP: count, Logger: discard()}
	if records {
		o.Packets, o.RingBufferSize = 2, 4096
	}
	p, err := fparser.Open(liveIface, o)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("soak parser ready")
	var sent, dropped uint64
	if _, err := fmt.Fscanf(os.Stdin, "sent %d dropped %d\n", &sent, &dropped); err != nil {
		t.Fatalf("reading what was sent: %v", err)
	}
	// Frames may still be on their way through the veth: until the kernel has
	// counted every frame that certainly arrived, or 10 s. A frame missing after
	// that is the test's to report.
	testharness.Poll(10*time.Second, func() bool { return p.Info().PacketsAccepted+dropped >= sent })
	stopping := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	stop := time.Since(stopping)
	in := p.Info()
	res := soakResult{Seen: in.PacketsSeen, Accepted: in.PacketsAccepted, Created: in.FlowsCreated, Evictions: in.Evictions,
		EventsLost: in.EventsLost, Reported: reported.Load(), ReportedPackets: packets.Load(), Ended: map[string]uint64{}, PeakRSSKiB: peakRSS(), Stop: stop,
		Stored: in.StoredTCPPackets + in.StoredUDPPackets, NotStored: in.PacketsNotStored, Incomplete: incomplete.Load(), Recorded: recorded.Load()}
	for r, n := range in.FlowsEnded {
		res.Ended[r.String()] = n
	}
	j, _ := json.Marshal(res)
	fmt.Printf("soak result %s\n", j)
}

// peakRSS is the process's peak resident set, in KiB.
func peakRSS() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// soakGenerator sends the soak's frames from the peer side for FPARSER_SOAK, through
// an AF_PACKET socket on the veth: UDP from 16 addresses and 62,500 source ports
// each, to an address nobody has, so that the host's stack drops them cheaply after
// fparser's XDP program has counted them.
func soakGenerator(t testing.TB) {
	d, _ := time.ParseDuration(os.Getenv(envSoak))
	s := newPeerSender(t)
	dropped0 := txDropped(t)
	var sent, failed uint64
	end := time.Now().Add(d)
	for n := 0; ; n++ {
		if n%4096 == 0 && time.Now().After(end) {
			break
		}
		if err := s.send(n % (soakSources * soakPorts)); err != nil {
			failed++
			continue
		}
		sent++
	}
	fmt.Printf("soak sent %d dropped %d\n", sent, txDropped(t)-dropped0)
	t.Logf("%d sends failed", failed)
}

// peerDst is where the peer's generated frames go: an address nobody has, so that
// the host's stack drops them cheaply after fparser's XDP program has counted them.
var peerDst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 78, 1}), 9)

// peerSender sends UDP frames to peerDst from the peer side, through an AF_PACKET
// socket on the veth: no socket, route or neighbour of the stack in the way, so the
// sender sets the rate and the flows.
type peerSender struct {
	fd    int
	to    *syscall.SockaddrLinklayer
	frame []byte
}

func newPeerSender(t testing.TB) *peerSender {
	t.Helper()
	ifc, err := net.InterfaceByName("fpt1")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	ip := pb.IPv4{Src: peerSource(0).Addr(), Dst: peerDst.Addr(), Proto: pb.ProtoUDP, TTL: 64}
	frame := pb.Ethernet(pb.EtherIPv4, nil, ip.Build(pb.UDP(1024, peerDst.Port(), make([]byte, 18))))
	return &peerSender{fd: fd, to: &syscall.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6}, frame: frame}
}

// send sends a frame of flow n, one of soakSources × soakPorts: its source address
// and port are the only bytes that change, and the IP checksum is left stale: fparser
// does not check it, and the host's stack drops the frame either way.
func (s *peerSender) send(n int) error {
	const srcAt, sportAt = 14 + 12, 14 + 20
	src := peerSource(n)
	a := src.Addr().As4()
	copy(s.frame[srcAt:], a[:])
	binary.BigEndian.PutUint16(s.frame[sportAt:], src.Port())
	return syscall.Sendto(s.fd, s.frame, 0, s.to)
}

// peerSource is the source of flow n of the peer's frames.
func peerSource(n int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 77, 0, byte(n % soakSources)}), uint16(1024+n/soakSources))
}

// txDropped reads the veth's transmit drops: frames the receiving side had no room
// for.
func txDropped(t testing.TB) uint64 {
	t.Helper()
	b, err := os.ReadFile("/sys/class/net/fpt1/statistics/tx_dropped")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}
