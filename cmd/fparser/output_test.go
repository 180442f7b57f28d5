package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/flowfmt"
	pb "github.com/fparser/fparser/internal/pktbuild"
)

// The reference writer: flowWriter as it was with fmt and time.Time.Format, kept
// verbatim but for its names, as the oracle for the output of the one that replaced
// it.

// refFeatureValues appends the values of featureFields, each preceded by sep(i).
func refFeatureValues(b []byte, f *fparser.Flow, sep func(b []byte, i int) []byte) []byte {
	i := 0
	num := func(v float64) {
		b = sep(b, i)
		b = strconv.AppendFloat(b, v, 'f', -1, 64)
		i++
	}
	ms := func(d time.Duration) { num(float64(d) / 1e6) }
	for _, c := range []*fparser.Counters{&f.Fwd, &f.Rev} {
		num(float64(c.Size.Min))
		num(c.Size.Mean)
		num(c.Size.Stddev)
		num(float64(c.Size.Max))
		ms(c.Gap.Min)
		ms(c.Gap.Mean)
		ms(c.Gap.Stddev)
		ms(c.Gap.Max)
		fc := &c.FlagPackets
		for _, n := range []uint32{fc.SYN, fc.CWR, fc.ECE, fc.URG, fc.ACK, fc.PSH, fc.RST, fc.FIN} {
			num(float64(n))
		}
	}
	num(f.PacketRate)
	num(f.ByteRate)
	return b
}

// refFlowWriter writes ended flows in one format. Write errors stick: the first one is
// returned by every later call, so the caller can stop at once.
type refFlowWriter struct {
	w        *bufio.Writer
	format   string
	flush    bool // flush after every flow: the output is a terminal
	buf      []byte
	err      error
	header   bool
	packets  bool // JSON: embed each flow's packets
	features bool // CSV and JSON: add featureFields
	quality  bool // CSV and JSON: add qualityFields
	tunnel   bool // CSV and JSON: add tunnelFields; text: the tunnel after END
}

func newRefFlowWriter(w io.Writer, format string, flushEach, packets, features, quality, tunnel bool) (*refFlowWriter, error) {
	switch format {
	case "text", "json", "csv":
	default:
		return nil, fmt.Errorf("unknown output format %q (want text, json or csv)", format)
	}
	return &refFlowWriter{w: bufio.NewWriterSize(w, 64<<10), format: format, flush: flushEach, packets: packets, features: features, quality: quality, tunnel: tunnel}, nil
}

func (fw *refFlowWriter) write(f *fparser.Flow) error {
	if fw.err != nil {
		return fw.err
	}
	b := fw.buf[:0]
	if !fw.header {
		fw.header = true
		switch fw.format {
		case "csv":
			b = append(b, strings.Join(fields, ",")...)
			if fw.features {
				b = append(b, ',')
				b = append(b, strings.Join(featureFields, ",")...)
			}
			if fw.quality {
				b = append(b, ',')
				b = append(b, strings.Join(qualityFields, ",")...)
			}
			if fw.tunnel {
				b = append(b, ',')
				b = append(b, strings.Join(tunnelFields, ",")...)
			}
			b = append(b, '\n')
		case "text":
			b = fmt.Appendf(b, "%-5s %-23s %-23s %4s %8s %10s %8s %10s %-7s %-7s %-30s %12s %s\n",
				"PROTO", "SRC", "DST", "VLAN", "PKTS>", "BYTES>", "<PKTS", "<BYTES", "FLAGS>", "<FLAGS", "FIRST SEEN", "DURATION", "END")
		}
	}
	switch fw.format {
	case "text":
		b = fmt.Appendf(b, "%-5s %-23s %-23s %4d %8d %10d %8d %10d %-7s %-7s %-30s %12s %s",
			f.Protocol, f.Src, f.Dst, f.VLAN,
			f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes,
			refFlagsText(f, f.Fwd.Flags), refFlagsText(f, f.Rev.Flags),
			f.FirstSeen.Format(timeLayout), f.Duration().Round(time.Microsecond), f.EndReason)
		if t := f.Tunnel; fw.tunnel && t.Kind != fparser.TunnelNone {
			b = fmt.Appendf(b, " tunnel=%s:%d", t.Kind, t.ID)
			if t.OuterSrc.IsValid() {
				b = fmt.Appendf(b, " outer=%s>%s", t.OuterSrc, t.OuterDst)
			}
		}
		b = append(b, '\n')
		for pk := range f.History() {
			dir := ">"
			if pk.Reverse {
				dir = "<"
			}
			b = fmt.Appendf(b, "      %s %s id=%d ttl=%d len=%d", pk.Time.Format(timeLayout), dir, pk.IPID, pk.TTL, pk.Length)
			if f.Protocol == fparser.TCP {
				b = fmt.Appendf(b, " flags=%s seq=%d ack=%d win=%d", refFlagsText(f, pk.Flags), pk.Seq, pk.Ack, pk.Window)
			}
			b = append(b, '\n')
		}
		if f.HistoryIncomplete() {
			b = append(b, "      (packets missing: the history reached its memory cap, or live, the ring buffer was full)\n"...)
		}
	case "json":
		b = append(b, `{"protocol":"`...)
		b = append(b, f.Protocol.String()...)
		b = append(b, `","src_ip":"`...)
		b = f.Src.Addr().AppendTo(b)
		b = append(b, `","src_port":`...)
		b = strconv.AppendUint(b, uint64(f.Src.Port()), 10)
		b = append(b, `,"dst_ip":"`...)
		b = f.Dst.Addr().AppendTo(b)
		b = append(b, `","dst_port":`...)
		b = strconv.AppendUint(b, uint64(f.Dst.Port()), 10)
		b = append(b, `,"vlan_id":`...)
		b = strconv.AppendUint(b, uint64(f.VLAN), 10)
		b = append(b, `,"src2dst_packets":`...)
		b = strconv.AppendUint(b, f.Fwd.Packets, 10)
		b = append(b, `,"src2dst_bytes":`...)
		b = strconv.AppendUint(b, f.Fwd.Bytes, 10)
		b = append(b, `,"dst2src_packets":`...)
		b = strconv.AppendUint(b, f.Rev.Packets, 10)
		b = append(b, `,"dst2src_bytes":`...)
		b = strconv.AppendUint(b, f.Rev.Bytes, 10)
		b = fmt.Appendf(b, `,"src2dst_tcp_flags":"%s","dst2src_tcp_flags":"%s"`, refFlags(f, f.Fwd.Flags), refFlags(f, f.Rev.Flags))
		b = append(b, `,"first_seen":"`...)
		b = f.FirstSeen.AppendFormat(b, timeLayout)
		b = append(b, `","last_seen":"`...)
		b = f.LastSeen.AppendFormat(b, timeLayout)
		b = fmt.Appendf(b, `","bidirectional_duration_ms":%s`, refMillis(f))
		b = append(b, `,"end_reason":"`...)
		b = append(b, f.EndReason.String()...)
		b = fmt.Appendf(b, `","src2dst_interface":%q,"dst2src_interface":%q,"duplicate_packets":%d`, f.Fwd.Interface, f.Rev.Interface, f.DuplicatePackets)
		b = fmt.Appendf(b, `,"pid":%d,"process":%q,"cgroup":%q,"community_id":%q`, f.Process.PID, f.Process.Name, f.Process.Cgroup, f.CommunityID())
		if fw.features {
			b = refFeatureValues(b, f, func(b []byte, i int) []byte {
				b = append(b, `,"`...)
				b = append(b, featureFields[i]...)
				return append(b, `":`...)
			})
		}
		if fw.quality {
			for i, v := range refQualityValues(f) {
				if v == "" {
					v = "null"
				}
				b = fmt.Appendf(b, `,%q:%s`, qualityFields[i], v)
			}
		}
		if fw.tunnel {
			for i, v := range refTunnelValues(f) {
				switch {
				case v == "":
					v = "null"
				case i != 1: // the ID is a number
					v = strconv.Quote(v)
				}
				b = fmt.Appendf(b, `,%q:%s`, tunnelFields[i], v)
			}
		}
		if fw.packets {
			b = refAppendPacketsJSON(b, f)
		}
		b = append(b, "}\n"...)
	case "csv":
		b = append(b, f.Protocol.String()...)
		b = append(b, ',')
		b = f.Src.Addr().AppendTo(b)
		b = append(b, ',')
		b = strconv.AppendUint(b, uint64(f.Src.Port()), 10)
		b = append(b, ',')
		b = f.Dst.Addr().AppendTo(b)
		b = append(b, ',')
		b = strconv.AppendUint(b, uint64(f.Dst.Port()), 10)
		for _, n := range []uint64{uint64(f.VLAN), f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes} {
			b = append(b, ',')
			b = strconv.AppendUint(b, n, 10)
		}
		b = fmt.Appendf(b, ",%s,%s,", refFlags(f, f.Fwd.Flags), refFlags(f, f.Rev.Flags))
		b = f.FirstSeen.AppendFormat(b, timeLayout)
		b = append(b, ',')
		b = f.LastSeen.AppendFormat(b, timeLayout)
		b = fmt.Appendf(b, ",%s,", refMillis(f))
		b = append(b, f.EndReason.String()...)
		b = fmt.Appendf(b, ",%s,%s,%d", f.Fwd.Interface, f.Rev.Interface, f.DuplicatePackets)
		pid := ""
		if f.Process.PID != 0 {
			pid = strconv.Itoa(f.Process.PID)
		}
		b = fmt.Appendf(b, ",%s,%s,%s,%s", pid, f.Process.Name, f.Process.Cgroup, f.CommunityID())
		if fw.features {
			b = refFeatureValues(b, f, func(b []byte, _ int) []byte { return append(b, ',') })
		}
		if fw.quality {
			for _, v := range refQualityValues(f) {
				b = append(b, ',')
				b = append(b, v...)
			}
		}
		if fw.tunnel {
			for _, v := range refTunnelValues(f) {
				b = append(b, ',')
				b = append(b, v...)
			}
		}
		b = append(b, '\n')
	}
	fw.buf = b
	if _, err := fw.w.Write(b); err != nil {
		fw.err = err
		return err
	}
	if fw.flush {
		return fw.Flush()
	}
	return nil
}

// refAppendPacketsJSON appends the flow's packets as a "packets" array: time, dir
// ("src2dst" or "dst2src"), ip_id, ttl, ip_len, and for TCP flags, seq, ack, window.
func refAppendPacketsJSON(b []byte, f *fparser.Flow) []byte {
	b = append(b, `,"packets":[`...)
	first := true
	for pk := range f.History() {
		if !first {
			b = append(b, ',')
		}
		first = false
		dir := "src2dst"
		if pk.Reverse {
			dir = "dst2src"
		}
		b = fmt.Appendf(b, `{"time":"%s","dir":"%s","ip_id":%d,"ttl":%d,"ip_len":%d`, pk.Time.Format(timeLayout), dir, pk.IPID, pk.TTL, pk.Length)
		if f.Protocol == fparser.TCP {
			b = fmt.Appendf(b, `,"flags":"%s","seq":%d,"ack":%d,"window":%d`, refFlagsText(f, pk.Flags), pk.Seq, pk.Ack, pk.Window)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if f.HistoryIncomplete() {
		b = append(b, `,"packets_incomplete":true`...)
	}
	return b
}

func refFlagsText(f *fparser.Flow, flags fparser.TCPFlags) string {
	if f.Protocol != fparser.TCP {
		return "-"
	}
	if flags == 0 {
		return "none"
	}
	return flags.String()
}

// Flush writes out what is buffered.
func (fw *refFlowWriter) Flush() error {
	if fw.err != nil {
		return fw.err
	}
	if err := fw.w.Flush(); err != nil {
		fw.err = err
	}
	return fw.err
}

// TestWriterMatchesReference: for every format and option, the writer writes the same
// bytes as the reference for flows of every kind: made up at random and at the edges
// (addresses, zones, VLANs, counters, protocols, end reasons, times and durations),
// and parsed with all their packets from the captures in testdata and from one made
// here whose packets cross midnights, leap days and years.
func TestWriterMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	flows := edgeFlows()
	for range 10000 {
		flows = append(flows, randomFlow(r))
	}
	flows = append(flows, captureFlows(t, fparser.AllPackets)...)
	edge := writeEdgeCapture(t, r)
	flows = append(flows, parseFlows(t, edge, &fparser.Options{Packets: fparser.AllPackets, Statistics: true, TCPQuality: true})...)
	for _, c := range []string{"vxlan.pcap", "gre.pcap"} {
		flows = append(flows, parseFlows(t, filepath.Join("..", "..", "testdata", c), &fparser.Options{Packets: fparser.AllPackets, Decap: true})...)
	}
	capped := parseFlows(t, edge, &fparser.Options{Packets: fparser.AllPackets, MaxPacketMemory: 256, Logger: slog.New(slog.DiscardHandler)})
	if !slices.ContainsFunc(capped, func(f fparser.Flow) bool { return f.HistoryIncomplete() }) {
		t.Fatal("no flow of the capped history misses packets")
	}
	flows = append(flows, capped...)
	// Again in another order, so the writer moves between days all the time.
	shuffled := slices.Clone(flows)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	flows = append(flows, shuffled...)

	for _, format := range []string{"text", "csv", "json"} {
		for _, opts := range [][5]bool{ // flush, packets, features, quality, tunnel
			{false, false, false, false, false}, {false, true, false, false, false}, {false, false, true, false, false}, {false, true, true, false, false},
			{true, false, false, false, false}, {true, true, true, true, true}, {false, false, false, true, false}, {false, false, true, true, false},
			{false, false, false, false, true}, {false, true, false, false, true}, {false, false, true, true, true},
		} {
			name := fmt.Sprintf("%s flush=%v packets=%v features=%v quality=%v tunnel=%v", format, opts[0], opts[1], opts[2], opts[3], opts[4])
			var got, want bytes.Buffer
			fw, err := newFlowWriter(&got, format, opts[0], opts[1], opts[2], opts[3], opts[4])
			if err != nil {
				t.Fatal(err)
			}
			ref, err := newRefFlowWriter(&want, format, opts[0], opts[1], opts[2], opts[3], opts[4])
			if err != nil {
				t.Fatal(err)
			}
			for i := range flows {
				if err := fw.write(&flows[i]); err != nil {
					t.Fatal(err)
				}
				if err := ref.write(&flows[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := fw.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := ref.Flush(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				g, w := strings.Split(got.String(), "\n"), strings.Split(want.String(), "\n")
				i := 0
				for i < min(len(g), len(w)) && g[i] == w[i] {
					i++
				}
				t.Errorf("%s: line %d differs:\n got %q\nwant %q", name, i+1, g[min(i, len(g)-1)], w[min(i, len(w)-1)])
			}
		}
	}
}

// TestAppendDuration: appendDuration writes what time.Duration.String does.
func TestAppendDuration(t *testing.T) {
	ds := []time.Duration{math.MinInt64, math.MinInt64 + 1, math.MaxInt64, math.MaxInt64 - 1}
	for d := time.Duration(-3000); d <= 3000; d++ {
		ds = append(ds, d)
	}
	for p := time.Duration(1); p <= time.Duration(1e18); p *= 10 {
		for _, u := range []time.Duration{time.Nanosecond, time.Microsecond, time.Millisecond, time.Second, time.Minute, time.Hour} {
			if p <= math.MaxInt64/u {
				ds = append(ds, p*u-1, p*u, p*u+1, -p*u, -p*u-1)
			}
		}
	}
	r := rand.New(rand.NewPCG(3, 5))
	for range 200000 {
		ds = append(ds, time.Duration(int64(r.Uint64())>>r.IntN(64)))
	}
	var b []byte
	for _, d := range ds {
		b = appendDuration(b[:0], d)
		if string(b) != d.String() {
			t.Fatalf("%d: got %q, want %q", int64(d), b, d.String())
		}
	}
}

// TestStamps: the encoder's times are what time.Time.AppendFormat writes, on every
// path: the day kept or changed, and times it leaves to AppendFormat.
func TestStamps(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 17))
	var s flowfmt.Encoder
	var b []byte
	for i := range 500000 {
		tm := randomTime(r)
		if i%2 == 1 {
			tm = tm.Add(time.Duration(r.Int64N(int64(2 * time.Second)))) // often the same day
		}
		b = s.AppendTime(b[:0], tm)
		if want := tm.Format(timeLayout); string(b) != want {
			t.Fatalf("%v: got %q, want %q", tm, b, want)
		}
	}
}

// edgeFlows are flows at the edges of every field, each time of a list with each
// duration of another.
func edgeFlows() []fparser.Flow {
	ap := netip.AddrPortFrom
	addrs := [][2]netip.AddrPort{
		{ap(netip.MustParseAddr("192.0.2.1"), 45000), ap(netip.MustParseAddr("198.51.100.255"), 443)},
		{ap(netip.MustParseAddr("255.255.255.255"), 65535), ap(netip.MustParseAddr("0.0.0.0"), 0)},
		{ap(netip.MustParseAddr("2001:db8::1"), 53), ap(netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), 65535)},
		{ap(netip.MustParseAddr("::"), 0), ap(netip.MustParseAddr("::1"), 1)},
		{ap(netip.MustParseAddr("::ffff:192.0.2.1"), 80), ap(netip.MustParseAddr("fe80::1").WithZone("eth0"), 80)},
		{ap(netip.MustParseAddr("fe80::2").WithZone("ü0"), 8), ap(netip.MustParseAddr("::ffff:1.2.3.4").WithZone("x"), 9)},
		{{}, {}}, // invalid
	}
	times := []time.Time{
		{},
		time.Unix(0, 0).UTC(),
		time.Unix(-1, 999999999).UTC(),
		time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC),
		time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 12, 0, 0, 1, time.UTC),
		time.Date(1900, 2, 28, 23, 59, 59, 500000000, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2262, 4, 11, 23, 47, 16, 854775807, time.UTC),
		time.Date(1677, 9, 21, 0, 12, 43, 145224192, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 28, 13, 36, 43, 52620000, time.FixedZone("CET", 3600)),
		time.Date(2026, 11, 28, 13, 36, 43, 52620000, time.FixedZone("UTC", 0)),
		time.Date(2026, 11, 28, 13, 36, 43, 52620000, time.FixedZone("", -9*3600-30*60)),
	}
	durations := []time.Duration{
		0, 1, 499, 500, 999, 1000, 1001, 999499, 999500, 1000000, 1002000, 999999499, 999999500,
		time.Second, time.Second + 1000, time.Minute - 500, time.Minute, time.Hour, time.Hour + time.Microsecond,
		100*time.Hour + 59*time.Minute + 59*time.Second + 999999*time.Microsecond,
		-1, -500, -501, -1500, -time.Millisecond, -time.Hour - time.Second, -10 * time.Hour,
	}
	var flows []fparser.Flow
	i := 0
	for _, t0 := range times {
		for _, d := range durations {
			a := addrs[i%len(addrs)]
			f := fparser.Flow{
				Protocol:  []fparser.Protocol{fparser.TCP, fparser.UDP, 0, 1, 255}[i%5],
				Src:       a[0],
				Dst:       a[1],
				VLAN:      []uint16{0, 1, 4095, 65535}[i%4],
				FirstSeen: t0,
				LastSeen:  t0.Add(d),
				EndReason: fparser.EndReason(i % 10),
			}
			switch i % 3 {
			case 1: // one direction
				f.Fwd = fparser.Counters{Packets: 1, Bytes: 40, Flags: fparser.TCPFlags(i)}
			case 2:
				f.Fwd = fparser.Counters{Packets: math.MaxUint64, Bytes: math.MaxUint64, Flags: fparser.TCPFlags(i)}
				f.Rev = fparser.Counters{Packets: 12345678, Bytes: 1234567890, Flags: fparser.TCPFlags(i * 7)}
			}
			flows = append(flows, f)
			i++
		}
	}
	// A zero start and a late end: the duration saturates.
	flows = append(flows, fparser.Flow{Protocol: fparser.TCP, LastSeen: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	flows = append(flows, fparser.Flow{Protocol: fparser.UDP, FirstSeen: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	for i := range 256 {
		flows = append(flows, fparser.Flow{Protocol: fparser.TCP, Fwd: fparser.Counters{Flags: fparser.TCPFlags(i)}, Rev: fparser.Counters{Flags: fparser.TCPFlags(255 - i)}})
	}
	return flows
}

// randomFlow makes a flow with every field at random, statistics included.
func randomFlow(r *rand.Rand) fparser.Flow {
	f := fparser.Flow{
		Protocol:  []fparser.Protocol{fparser.TCP, fparser.TCP, fparser.UDP, fparser.Protocol(r.Uint32())}[r.IntN(4)],
		Src:       netip.AddrPortFrom(randomAddr(r), uint16(r.Uint32())),
		Dst:       netip.AddrPortFrom(randomAddr(r), uint16(r.Uint32())),
		FirstSeen: randomTime(r),
		EndReason: fparser.EndReason(r.IntN(10)),
	}
	if r.IntN(3) == 0 {
		f.VLAN = uint16(r.Uint32())
	}
	// Durations of every order of magnitude, either sign, sometimes none.
	d := time.Duration(r.Int64N(10) * int64(math.Pow10(r.IntN(18))))
	if r.IntN(4) == 0 {
		d = -d
	}
	f.LastSeen = f.FirstSeen.Add(d)
	for _, c := range []*fparser.Counters{&f.Fwd, &f.Rev} {
		if r.IntN(4) == 0 {
			continue // no packets this way
		}
		c.Packets = r.Uint64() >> r.IntN(64)
		c.Bytes = r.Uint64() >> r.IntN(64)
		c.Flags = fparser.TCPFlags(r.Uint32())
		c.Size = fparser.SizeStats{Min: r.Uint32() >> r.IntN(32), Max: r.Uint32() >> r.IntN(32), Mean: randomFloat(r), Stddev: randomFloat(r)}
		c.Gap = fparser.GapStats{
			Min: randomDuration(r), Max: randomDuration(r), Mean: randomDuration(r), Stddev: randomDuration(r),
		}
		c.FlagPackets = fparser.FlagCounts{
			FIN: r.Uint32() >> r.IntN(32), SYN: r.Uint32() >> r.IntN(32), RST: r.Uint32() >> r.IntN(32), PSH: r.Uint32() >> r.IntN(32),
			ACK: r.Uint32() >> r.IntN(32), URG: r.Uint32() >> r.IntN(32), ECE: r.Uint32() >> r.IntN(32), CWR: r.Uint32() >> r.IntN(32),
		}
	}
	if r.IntN(2) == 0 {
		f.Process = fparser.Process{PID: 1 + r.IntN(1<<22), Name: "nginx", Cgroup: "/system.slice/nginx.service"}
	}
	f.PacketRate, f.ByteRate = randomFloat(r), randomFloat(r)
	if r.IntN(2) == 0 {
		f.Fwd.RTT, f.Rev.RTT = time.Duration(r.Int64N(1<<40)), time.Duration(r.Int64N(1<<40))
		f.HandshakeRTT = f.Fwd.RTT + f.Rev.RTT
	}
	f.Fwd.Retransmissions, f.Rev.Retransmissions = r.Uint32()>>r.IntN(32), r.Uint32()>>r.IntN(32)
	f.Fwd.OutOfOrder, f.Rev.OutOfOrder = r.Uint32()>>r.IntN(32), r.Uint32()>>r.IntN(32)
	f.Fwd.ZeroWindows, f.Rev.ZeroWindows = r.Uint32()>>r.IntN(32), r.Uint32()>>r.IntN(32)
	if r.IntN(2) == 0 {
		kind := fparser.TunnelKind(1 + r.IntN(int(fparser.TunnelPPPoE)))
		f.Tunnel = fparser.Tunnel{Kind: kind, ID: r.Uint32() >> r.IntN(32)}
		if kind != fparser.TunnelMPLS && kind != fparser.TunnelPPPoE {
			f.Tunnel.OuterSrc, f.Tunnel.OuterDst = randomAddr(r).WithZone(""), randomAddr(r).WithZone("")
		}
	}
	return f
}

func randomAddr(r *rand.Rand) netip.Addr {
	var b [16]byte
	for i := range b {
		if r.IntN(3) > 0 { // runs of zeros, for "::"
			b[i] = byte(r.Uint32())
		}
	}
	switch r.IntN(8) {
	case 0:
		return netip.AddrFrom16(b)
	case 1:
		return netip.AddrFrom16(b).WithZone("eth" + strconv.Itoa(r.IntN(10)))
	case 2:
		return netip.AddrFrom4([4]byte(b[:4])).Unmap() // IPv4-mapped
	}
	return netip.AddrFrom4([4]byte(b[:4]))
}

// randomTime makes a UTC time near a midnight, a new year or a leap day, anywhere in
// years 0 to 9999, in Unix nanoseconds, or zero; now and then in another zone.
func randomTime(r *rand.Rand) time.Time {
	var t time.Time
	ns := r.Int64N(1e9)
	switch r.IntN(7) {
	case 0:
		day := r.Int64N(3652425) - 719528 // year 0 to 9999, from 1970
		t = time.Unix(day*24*60*60+r.Int64N(5)-2, ns)
	case 1:
		t = time.Date(r.IntN(10001), 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(6e9) - 3e9))
	case 2:
		t = time.Date(r.IntN(10000), 2, 28+r.IntN(2), 23, 59, 59, int(ns), time.UTC)
	case 3:
		t = time.Unix(r.Int64N(253402300800+62167219200)-62167219200, ns)
	case 4:
		t = time.Unix(0, int64(r.Uint64()))
	case 5:
		return time.Time{}
	default:
		t = time.Date(2024+r.IntN(3), time.Month(1+r.IntN(12)), 1+r.IntN(31), r.IntN(24), r.IntN(60), r.IntN(60), int(ns), time.UTC)
	}
	if r.IntN(20) == 0 {
		return t.In(time.FixedZone("Z"+strconv.Itoa(r.IntN(9)), 60*(r.IntN(1681)-840)))
	}
	return t.UTC()
}

func randomDuration(r *rand.Rand) time.Duration {
	return time.Duration(r.Int64N(10) * int64(math.Pow10(r.IntN(16))))
}

func randomFloat(r *rand.Rand) float64 {
	switch r.IntN(8) {
	case 0:
		return 0
	case 1:
		return float64(r.Uint64() >> r.IntN(64))
	case 2:
		return []float64{math.Copysign(0, -1), math.Inf(1), math.NaN(), math.MaxFloat64, math.SmallestNonzeroFloat64, 1e21, 1e-7}[r.IntN(7)]
	}
	return r.Float64() * math.Pow10(r.IntN(12))
}

// writeEdgeCapture writes a capture of TCP and UDP flows, over IPv4 and IPv6, some
// tagged, whose packets, of random headers, cross midnights, leap days and the ends
// of years.
func writeEdgeCapture(t *testing.T, r *rand.Rand) string {
	path := filepath.Join(t.TempDir(), "edge.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	type packet struct {
		at    time.Time
		frame []byte
	}
	for _, mid := range []time.Time{
		time.Date(1970, 1, 1, 0, 0, 3, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC),
	} {
		var pkts []packet
		for i := range 12 {
			v6, tcp := i%2 == 1, i%4 < 2
			var vlans []uint16
			if i%3 == 0 {
				vlans = []uint16{uint16(1 + r.IntN(4094))}
			}
			a, b := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
			if v6 {
				a, b = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 15: byte(i)})
			}
			at := mid.Add(-time.Duration(r.Int64N(int64(3 * time.Second))))
			for range 1 + r.IntN(12) {
				at = at.Add(time.Duration(r.Int64N(int64(time.Second)) >> r.IntN(30)))
				src, dst, sport, dport := a, b, uint16(40000+i), uint16(443)
				if r.IntN(2) == 0 {
					src, dst, sport, dport = b, a, dport, sport
				}
				payload := make([]byte, r.IntN(1400))
				var l4 []byte
				proto := uint8(pb.ProtoUDP)
				if tcp {
					proto = pb.ProtoTCP
					l4 = pb.TCP(sport, dport, uint8(r.Uint32()), r.Uint32(), r.Uint32(), payload)
					l4[14], l4[15] = byte(r.Uint32()), byte(r.Uint32()) // the window
				} else {
					l4 = pb.UDP(sport, dport, payload)
				}
				ttl := uint8(1 + r.IntN(255))
				var frame []byte
				if v6 {
					frame = pb.Ethernet(pb.EtherIPv6, vlans, pb.IPv6{Src: src, Dst: dst, Next: proto, HopLimit: ttl, PayloadLen: -1}.Build(l4))
				} else {
					frame = pb.Ethernet(pb.EtherIPv4, vlans, pb.IPv4{Src: src, Dst: dst, Proto: proto, ID: uint16(r.Uint32()), TTL: ttl}.Build(l4))
				}
				pkts = append(pkts, packet{at, frame})
			}
		}
		slices.SortStableFunc(pkts, func(x, y packet) int { return x.at.Compare(y.at) })
		for _, p := range pkts {
			ci := gopacket.CaptureInfo{Timestamp: p.at, CaptureLength: len(p.frame), Length: len(p.frame)}
			if err := w.WritePacket(ci, p.frame); err != nil {
				t.Fatal(err)
			}
		}
	}
	return path
}

// parseFlows returns the flows of capture, parsed with o but for its callbacks.
func parseFlows(t *testing.T, capture string, o *fparser.Options) []fparser.Flow {
	var flows []fparser.Flow
	keep := func(f fparser.Flow) { flows = append(flows, f) }
	o.OnTCP, o.OnUDP = keep, keep
	p, err := fparser.New(capture, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	return flows
}

// refFlags is a direction's flags as the reference writes them in CSV and JSON.
func refFlags(f *fparser.Flow, flags fparser.TCPFlags) string {
	switch {
	case f.Protocol != fparser.TCP:
		return ""
	case flags == 0:
		return "none"
	}
	return flags.String()
}

// refQualityValues are the values of qualityFields, "" where there is none.
func refQualityValues(f *fparser.Flow) []string {
	v := make([]string, len(qualityFields))
	if f.Protocol != fparser.TCP {
		return v
	}
	if f.HandshakeRTT != 0 {
		for i, d := range []time.Duration{f.HandshakeRTT, f.Fwd.RTT, f.Rev.RTT} {
			v[i] = strconv.FormatFloat(float64(d)/1e6, 'f', -1, 64)
		}
	}
	for i, n := range []uint32{f.Fwd.Retransmissions, f.Rev.Retransmissions, f.Fwd.OutOfOrder, f.Rev.OutOfOrder, f.Fwd.ZeroWindows, f.Rev.ZeroWindows} {
		v[3+i] = strconv.FormatUint(uint64(n), 10)
	}
	return v
}

// refTunnelValues are the values of tunnelFields, "" where there is none.
func refTunnelValues(f *fparser.Flow) []string {
	t := f.Tunnel
	if t.Kind == fparser.TunnelNone {
		return make([]string, len(tunnelFields))
	}
	v := []string{t.Kind.String(), strconv.FormatUint(uint64(t.ID), 10), "", ""}
	if t.OuterSrc.IsValid() {
		v[2], v[3] = t.OuterSrc.String(), t.OuterDst.String()
	}
	return v
}

// refMillis is the flow's duration in milliseconds, as the reference writes it.
func refMillis(f *fparser.Flow) string {
	return strconv.FormatFloat(float64(f.LastSeen.Sub(f.FirstSeen))/1e6, 'f', -1, 64)
}
