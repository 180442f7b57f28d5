package fparser_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fparser/fparser"
)

// tsharkPacket is a row of NAME.packets.csv (testdata/capture/packets_tshark.sh).
type tsharkPacket struct {
	src, dst netip.AddrPort
	tcp      bool
	row      string // the fields fparser keeps, formatted as packetRow does
}

func packetRow(ns int64, src, dst netip.AddrPort, ipid uint16, ttl uint8, length uint32, flags uint8, seq, ack uint32, win uint16) string {
	return fmt.Sprintf("%d %v>%v id=%d ttl=%d len=%d flags=%#02x seq=%d ack=%d win=%d", ns, src, dst, ipid, ttl, length, flags, seq, ack, win)
}

func readTsharkPackets(t *testing.T, path string) []tsharkPacket {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	num := func(s string) uint64 {
		if s == "" {
			return 0
		}
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", path, s, err)
		}
		return v
	}
	var out []tsharkPacket
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), ",")
		if len(c) != 18 {
			t.Fatalf("%s: %d columns in %q", path, len(c), sc.Text())
		}
		sec, ok := new(big.Rat).SetString(c[0])
		if !ok {
			t.Fatalf("%s: time %q", path, c[0])
		}
		ns := new(big.Int).Quo(new(big.Int).Mul(sec.Num(), big.NewInt(1e9)), sec.Denom()).Int64()
		src, dst := c[1]+c[2], c[5]+c[6]
		sp, dp := c[3]+c[4], c[7]+c[8]
		if sp == "" || dp == "" {
			continue // a fragment after the first: tshark sees no ports
		}
		p := tsharkPacket{
			src: netip.AddrPortFrom(netip.MustParseAddr(src), uint16(num(sp))),
			dst: netip.AddrPortFrom(netip.MustParseAddr(dst), uint16(num(dp))),
			tcp: c[3] != "",
		}
		length := num(c[12])
		if c[13] != "" {
			length = num(c[13]) + 40
		}
		p.row = packetRow(ns, p.src, p.dst, uint16(num(c[9])), uint8(num(c[10])+num(c[11])), uint32(length),
			uint8(num(c[14])), uint32(num(c[15])), uint32(num(c[16])), uint16(num(c[17])))
		out = append(out, p)
	}
	return out
}

// TestPacketHistoryMatchesTshark: the packets of each flow, with Options.Packets =
// AllPackets, are tshark's packets of that flow, field for field. A flow whose
// packet count differs from tshark's (the deviations TestTestdataMatchesOracle
// lists) is compared no further; the test requires most flows to be compared.
func TestPacketHistoryMatchesTshark(t *testing.T) {
	captures, _ := filepath.Glob("testdata/*.packets.csv")
	compared, skipped, packets := 0, 0, 0
	for _, oracle := range captures {
		capture := strings.TrimSuffix(oracle, ".packets.csv")
		var flows []fparser.Flow
		add := func(f fparser.Flow) { flows = append(flows, f) }
		p, err := fparser.New(capture, &fparser.Options{Packets: fparser.AllPackets, OnTCP: add, OnUDP: add, Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
		p.Run(t.Context()) // a truncated capture's error is tested elsewhere
		slices.SortStableFunc(flows, func(a, b fparser.Flow) int { return a.FirstSeen.Compare(b.FirstSeen) })

		type tuple struct {
			tcp  bool
			a, b netip.AddrPort
		}
		key := func(tcp bool, x, y netip.AddrPort) tuple {
			if x.Addr().Less(y.Addr()) || x.Addr() == y.Addr() && x.Port() < y.Port() {
				return tuple{tcp, x, y}
			}
			return tuple{tcp, y, x}
		}
		rows := map[tuple][]string{}
		for _, tp := range readTsharkPackets(t, oracle) {
			k := key(tp.tcp, tp.src, tp.dst)
			rows[k] = append(rows[k], tp.row)
		}
		// A 5-tuple is compared when fparser's flows of it hold as many packets as
		// tshark's rows, in one VLAN (tshark's rows do not say which).
		total := map[tuple]int{}
		vlans := map[tuple]map[uint16]bool{}
		for _, f := range flows {
			k := key(f.Protocol == fparser.TCP, f.Src, f.Dst)
			total[k] += int(f.PacketCount())
			if vlans[k] == nil {
				vlans[k] = map[uint16]bool{}
			}
			vlans[k][f.VLAN] = true
		}
		consumed := map[tuple]int{}
		for _, f := range flows {
			var got []string
			for pk := range f.History() {
				src, dst := f.Src, f.Dst
				if pk.Reverse {
					src, dst = dst, src
				}
				got = append(got, packetRow(pk.Time.UnixNano(), src, dst, pk.IPID, pk.TTL, pk.Length, uint8(pk.Flags), pk.Seq, pk.Ack, pk.Window))
			}
			if len(got) != int(f.PacketCount()) || f.HistoryIncomplete() {
				t.Errorf("%s: flow %v-%v: %d packets in the history, %d counted", capture, f.Src, f.Dst, len(got), f.PacketCount())
			}
			k := key(f.Protocol == fparser.TCP, f.Src, f.Dst)
			if total[k] != len(rows[k])+consumed[k] || len(vlans[k]) != 1 {
				skipped++
				continue
			}
			want := rows[k]
			consumed[k] += len(got)
			// Flows that reuse a 5-tuple take tshark's rows in turn.
			rows[k] = want[len(got):]
			want = want[:len(got)]
			if !slices.Equal(got, want) {
				for i := range got {
					if got[i] != want[i] {
						t.Errorf("%s: flow %v-%v packet %d:\n got %s\nwant %s", capture, f.Src, f.Dst, i, got[i], want[i])
						break
					}
				}
				continue
			}
			compared++
			packets += len(got)
		}
	}
	if compared < 20 {
		t.Errorf("only %d flows compared", compared)
	}
	t.Logf("%d flows (%d packets) equal to tshark's packets, %d flows not comparable", compared, packets, skipped)
}

// TestPacketHistoryOptions: the first N packets per flow; the memory cap marks the
// flows, counts the packets not kept and logs once.
func TestPacketHistoryOptions(t *testing.T) {
	var flows []fparser.Flow
	add := func(f fparser.Flow) { flows = append(flows, f) }
	p, err := fparser.New("testdata/http.pcap", &fparser.Options{Packets: 3, OnTCP: add, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	p.Run(t.Context())
	info := p.Info()
	var stored uint64
	for _, f := range flows {
		if n := f.HistoryLen(); n != 3 || f.HistoryIncomplete() {
			t.Errorf("flow %v: %d packets stored, incomplete %v; want the first 3", f.Src, n, f.HistoryIncomplete())
		}
		stored += uint64(f.HistoryLen())
	}
	if info.StoredTCPPackets != stored || info.PacketMemory != 0 {
		t.Errorf("Info: %d TCP packets stored, %d bytes held; want %d and 0 after the end", info.StoredTCPPackets, info.PacketMemory, stored)
	}

	var logged strings.Builder
	flows = nil
	p, err = fparser.New("testdata/http.pcap", &fparser.Options{Packets: fparser.AllPackets, MaxPacketMemory: 64, OnTCP: add,
		Logger: slogTo(&logged)})
	if err != nil {
		t.Fatal(err)
	}
	p.Run(t.Context())
	info = p.Info()
	incomplete := 0
	for _, f := range flows {
		if f.HistoryIncomplete() {
			incomplete++
		}
	}
	if incomplete == 0 || info.PacketsNotStored == 0 || strings.Count(logged.String(), "MaxPacketMemory") != 1 {
		t.Errorf("cap: %d flows incomplete, %d packets not stored, log %q", incomplete, info.PacketsNotStored, logged.String())
	}

}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
