package flowgen

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func write(t *testing.T, c Config) ([]byte, Summary) {
	t.Helper()
	var buf bytes.Buffer
	s, err := Write(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), s
}

func TestSameConfigSameBytes(t *testing.T) {
	sum := func(c Config) [sha256.Size]byte {
		h := sha256.New()
		if _, err := Write(h, c); err != nil {
			t.Fatal(err)
		}
		return [sha256.Size]byte(h.Sum(nil))
	}
	a := sum(Small)
	if sum(Small) != a {
		t.Fatal("two captures of one Config differ")
	}
	c := Small
	c.Seed++
	if sum(c) == a {
		t.Fatal("another seed wrote the same capture")
	}
}

type key struct {
	proto layers.IPProtocol
	a, b  netip.AddrPort
}

func canonical(proto layers.IPProtocol, src, dst netip.AddrPort) key {
	if c := src.Compare(dst); c > 0 {
		return key{proto: proto, a: dst, b: src}
	}
	return key{proto: proto, a: src, b: dst}
}

// TestSummaryMatchesCapture reads the capture back, decoded by gopacket, and counts
// on its own what the Summary says: packets, bytes, fragments, and flows as a SYN
// starts one on TCP and a new 5-tuple on UDP. It checks too that no two UDP
// exchanges share a 5-tuple and that a SYN comes again on a 5-tuple only after
// the connection before it ended, so that the flows are the ones meant.
func TestSummaryMatchesCapture(t *testing.T) {
	raw, s := write(t, Small)
	if s.FileBytes != int64(len(raw)) {
		t.Errorf("FileBytes %d, file has %d", s.FileBytes, len(raw))
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet || r.Resolution().ToDuration() != time.Nanosecond {
		t.Errorf("link type %v, resolution %v", r.LinkType(), r.Resolution())
	}
	var got Summary
	syns := map[key]int{}
	ended := map[key]bool{} // a FIN or RST was seen since the last SYN
	udp := map[key]bool{}
	var last time.Time
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ci.Timestamp.Before(last) {
			t.Fatalf("packet %d: time goes back from %v to %v", got.Packets+1, last, ci.Timestamp)
		}
		last = ci.Timestamp
		if got.Packets == 0 {
			got.First = ci.Timestamp
		}
		got.Last = ci.Timestamp
		got.Packets++
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
		// gopacket decodes no transport layer in a fragment, the first included: the
		// ports are read from the IP payload.
		var src, dst netip.Addr
		var proto layers.IPProtocol
		var payload []byte
		later := false
		switch ip := p.NetworkLayer().(type) {
		case *layers.IPv4:
			src, dst = netip.AddrFrom4([4]byte(ip.SrcIP.To4())), netip.AddrFrom4([4]byte(ip.DstIP.To4()))
			proto, payload = ip.Protocol, ip.Payload
			got.Bytes += uint64(ip.Length)
			if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset > 0 {
				got.Fragments++
				later = ip.FragOffset > 0
			}
		case *layers.IPv6:
			src, dst = netip.AddrFrom16([16]byte(ip.SrcIP)), netip.AddrFrom16([16]byte(ip.DstIP))
			proto, payload = ip.NextHeader, ip.Payload
			got.Bytes += uint64(ip.Length) + 40
			if f, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment); ok {
				got.Fragments++
				got.IPv6Fragment++
				proto, payload, later = f.NextHeader, f.Payload, f.FragmentOffset > 0
			}
		default:
			t.Fatalf("packet %d: no IP layer: %v", got.Packets, p)
		}
		switch proto {
		case layers.IPProtocolTCP:
			got.TCPPackets++
			var tcp layers.TCP
			if err := tcp.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
				t.Fatalf("packet %d: %v", got.Packets, err)
			}
			k := canonical(proto, netip.AddrPortFrom(src, uint16(tcp.SrcPort)), netip.AddrPortFrom(dst, uint16(tcp.DstPort)))
			switch {
			case tcp.SYN && !tcp.ACK:
				if syns[k] > 0 && !ended[k] {
					t.Fatalf("packet %d: a SYN on %v, whose connection has not ended", got.Packets, k)
				}
				syns[k]++
				ended[k] = false
				got.Flows++
			case tcp.FIN || tcp.RST:
				ended[k] = true
			}
		case layers.IPProtocolUDP:
			got.UDPPackets++
			if later {
				continue
			}
			k := canonical(proto, netip.AddrPortFrom(src, binary.BigEndian.Uint16(payload)), netip.AddrPortFrom(dst, binary.BigEndian.Uint16(payload[2:])))
			if !udp[k] {
				udp[k] = true
				got.Flows++
			}
		default:
			t.Fatalf("packet %d: protocol %v", got.Packets, proto)
		}
	}
	reused := 0
	for _, n := range syns {
		reused += n - 1
	}
	if reused != s.Reused {
		t.Errorf("%d SYNs reuse a 5-tuple, Summary says %d", reused, s.Reused)
	}
	if len(udp) != s.DNS+s.BulkUDP {
		t.Errorf("%d UDP 5-tuples, Summary has %d DNS exchanges and %d streams", len(udp), s.DNS, s.BulkUDP)
	}
	if s.Flows != s.Web+s.BulkTCP+s.DNS+s.BulkUDP {
		t.Errorf("Flows %d is not the sum of its kinds in %+v", s.Flows, s)
	}
	want := s
	want.FileBytes, want.Web, want.Reused, want.RSTEnded, want.BulkTCP, want.DNS, want.Retried, want.Fragmented, want.BulkUDP, want.IPv6Flows = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
	if got != want {
		t.Errorf("read back %+v\nSummary   %+v", got, want)
	}
	if s.Duration() > Small.Duration || s.Duration() < Small.Duration*9/10 {
		t.Errorf("capture lasts %v, Duration is %v", s.Duration(), Small.Duration)
	}
	for name, n := range map[string]int{"Reused": s.Reused, "RSTEnded": s.RSTEnded, "Retried": s.Retried, "Fragmented": s.Fragmented, "IPv6Flows": s.IPv6Flows} {
		if n == 0 {
			t.Errorf("no %s flows in %+v", name, s)
		}
	}
	if s.IPv6Fragment == 0 || s.IPv6Fragment == s.Fragments {
		t.Errorf("%d of %d fragments are IPv6: want some of each", s.IPv6Fragment, s.Fragments)
	}
}

func TestSnaplenCutsFramesOnly(t *testing.T) {
	c := Small
	c.Web, c.DNS, c.BulkTCP, c.BulkUDP = 300, 300, 0, 0
	_, whole := write(t, c)
	c.Snaplen = 96
	raw, cut := write(t, c)
	if cut.Bytes != whole.Bytes || cut.Packets != whole.Packets || cut.FileBytes >= whole.FileBytes {
		t.Errorf("snaplen 96: %+v, whole: %+v", cut, whole)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		if len(data) > 96 || ci.Length < ci.CaptureLength {
			t.Fatalf("frame of %d bytes, %d on the wire", len(data), ci.Length)
		}
	}
}

func TestBadConfig(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.Duration = 0 },
		func(c *Config) { c.Web = -1 },
		func(c *Config) { c.Clients = 1 },
		func(c *Config) { c.RSTShare = 1.5 },
		func(c *Config) { c.BulkPackets = 10 },
	} {
		c := Small
		mod(&c)
		if _, err := Write(io.Discard, c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
	c := Small
	c.Clients, c.DNS = 4, 200_000
	if _, err := Write(io.Discard, c); !errors.Is(err, ErrConfig) {
		t.Errorf("200,000 exchanges from 4 clients: %v, want ErrConfig (out of ports)", err)
	}
}

func TestFileIsWrittenOnce(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	c := Small
	c.Web, c.DNS = 200, 200
	path, s, err := File(c)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != s.FileBytes {
		t.Fatalf("%v: %v, %d bytes, Summary says %d", path, err, fi.Size(), s.FileBytes)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	path2, s2, err := File(c)
	if err != nil || path2 != path || s2 != s {
		t.Fatalf("second call: %v %v %+v", err, path2, s2)
	}
	if fi, _ := os.Stat(path); !fi.ModTime().Equal(old) {
		t.Error("a whole capture was written again")
	}
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	if _, s3, err := File(c); err != nil || s3 != s {
		t.Fatalf("after truncation: %v %+v", err, s3)
	}
	if fi, _ := os.Stat(path); fi.Size() != s.FileBytes {
		t.Errorf("a truncated capture was not written again: %d bytes", fi.Size())
	}
	c.Seed++
	if other, _, err := File(c); err != nil || other == path {
		t.Errorf("another Config: %v, path %v", err, other)
	}
}
