// Package flowfmt writes a flow as one line of CSV or JSON, field for field as the
// command's -o csv and -o json print it: the one encoding that the command's output
// and the sinks that send JSON share, so that what a collector receives equals what
// the command writes. It formats without fmt and time.Time.Format, which showed in
// profiles of large captures, and allocates nothing per flow.
package flowfmt

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fparser/fparser"
)

// Encoder appends flows as CSV or JSON lines. Its zero value writes the base fields;
// it keeps the date of the last time it wrote, so one is for one goroutine.
type Encoder struct {
	Features bool // add FeatureFields, NFStream's statistics and the moving rates
	Quality  bool // add QualityFields, the TCP quality, after them
	Tunnel   bool // add TunnelFields, the flow's tunnel, after them
	Packets  bool // JSON: embed each flow's packets
	stamps   stamps
}

// AppendCSVHeader appends the CSV header line.
func (e *Encoder) AppendCSVHeader(b []byte) []byte {
	b = append(b, strings.Join(Fields, ",")...)
	if e.Features {
		b = append(b, ',')
		b = append(b, strings.Join(FeatureFields, ",")...)
	}
	if e.Quality {
		b = append(b, ',')
		b = append(b, strings.Join(QualityFields, ",")...)
	}
	if e.Tunnel {
		b = append(b, ',')
		b = append(b, strings.Join(TunnelFields, ",")...)
	}
	return append(b, '\n')
}

// AppendTime appends t in TimeLayout.
func (e *Encoder) AppendTime(b []byte, t time.Time) []byte { return e.stamps.append(b, t) }

// AppendTextPacket appends a packet's fields after its time and direction, as the
// command's text format shows them (" id=... ttl=... len=...", and for TCP the flags,
// sequence numbers and window).
func AppendTextPacket(b []byte, pk *fparser.Packet, tcp bool) []byte {
	return appendPacketFields(b, pk, tcp, &textPacket)
}

// FlagName is flags as TCPFlags.String writes them, "none" for no flag at all.
func FlagName(flags fparser.TCPFlags) string { return flagNames[flags] }

// Fields are the JSON and CSV field names, in order. src is the initiator.
var Fields = []string{
	"protocol", "src_ip", "src_port", "dst_ip", "dst_port", "vlan_id",
	"src2dst_packets", "src2dst_bytes", "dst2src_packets", "dst2src_bytes",
	"src2dst_tcp_flags", "dst2src_tcp_flags",
	"first_seen", "last_seen", "bidirectional_duration_ms", "end_reason",
	"src2dst_interface", "dst2src_interface", "duplicate_packets",
	"pid", "process", "cgroup", "community_id",
}

// dirFeatures are NFStream's names for its post-mortem statistics of one direction.
var dirFeatures = [...]string{
	"min_ps", "mean_ps", "stddev_ps", "max_ps",
	"min_piat_ms", "mean_piat_ms", "stddev_piat_ms", "max_piat_ms",
	"syn_packets", "cwr_packets", "ece_packets", "urg_packets", "ack_packets", "psh_packets", "rst_packets", "fin_packets",
}

// FeatureFields are the fields that Encoder.Features adds, after Fields: dirFeatures per
// direction, then the flow's moving rates.
var FeatureFields = func() []string {
	var f []string
	for _, d := range []string{"src2dst", "dst2src"} {
		for _, n := range dirFeatures {
			f = append(f, d+"_"+n)
		}
	}
	return append(f, "packet_rate", "byte_rate")
}()

// appendFeatures appends the values of featureFields, each after a comma and, when
// named (JSON), its quoted name and a colon.
func appendFeatures(b []byte, f *fparser.Flow, named bool) []byte {
	i := 0
	for _, c := range [...]*fparser.Counters{&f.Fwd, &f.Rev} {
		fc := &c.FlagPackets
		// In the order of dirFeatures. Arrays, not slices: nothing to allocate.
		for _, v := range [len(dirFeatures)]float64{
			float64(c.Size.Min), c.Size.Mean, c.Size.Stddev, float64(c.Size.Max),
			millis(c.Gap.Min), millis(c.Gap.Mean), millis(c.Gap.Stddev), millis(c.Gap.Max),
			float64(fc.SYN), float64(fc.CWR), float64(fc.ECE), float64(fc.URG),
			float64(fc.ACK), float64(fc.PSH), float64(fc.RST), float64(fc.FIN),
		} {
			b = appendFeature(b, i, v, named)
			i++
		}
	}
	b = appendFeature(b, i, f.PacketRate, named)
	return appendFeature(b, i+1, f.ByteRate, named)
}

// QualityFields are the fields that Encoder.Quality adds, after FeatureFields when
// both are on: the TCP quality (Options.TCPQuality). A UDP flow has none of them
// (empty in CSV, null in JSON), nor a TCP flow without a whole handshake the RTTs.
var QualityFields = []string{
	"handshake_rtt_ms", "src2dst_rtt_ms", "dst2src_rtt_ms",
	"src2dst_retransmissions", "dst2src_retransmissions",
	"src2dst_out_of_order", "dst2src_out_of_order",
	"src2dst_zero_windows", "dst2src_zero_windows",
}

// appendQuality appends the values of QualityFields, as appendFeatures does.
func appendQuality(b []byte, f *fparser.Flow, named bool) []byte {
	tcp := f.Protocol == fparser.TCP
	rtt := tcp && f.HandshakeRTT != 0
	for i, d := range [...]time.Duration{f.HandshakeRTT, f.Fwd.RTT, f.Rev.RTT} {
		b = appendSeparator(b, QualityFields[i], named)
		switch {
		case rtt:
			b = appendMillis(b, d)
		case named:
			b = append(b, "null"...)
		}
	}
	for i, n := range [...]uint32{f.Fwd.Retransmissions, f.Rev.Retransmissions, f.Fwd.OutOfOrder, f.Rev.OutOfOrder, f.Fwd.ZeroWindows, f.Rev.ZeroWindows} {
		b = appendSeparator(b, QualityFields[3+i], named)
		switch {
		case tcp:
			b = strconv.AppendUint(b, uint64(n), 10)
		case named:
			b = append(b, "null"...)
		}
	}
	return b
}

// TunnelFields are the fields that Encoder.Tunnel adds, after QualityFields when
// both are on: the tunnel the flow came through (Options.Decap), its kind's name
// (TunnelKind.String), its ID, and the outermost IP header's addresses, src's side
// first. A flow that came through no tunnel has none of them (empty in CSV, null in
// JSON), nor a tunnel without an outer IP header (MPLS, PPPoE) the addresses.
var TunnelFields = []string{"tunnel", "tunnel_id", "outer_src_ip", "outer_dst_ip"}

// appendTunnel appends the values of TunnelFields, as appendFeatures does.
func appendTunnel(b []byte, f *fparser.Flow, named bool) []byte {
	t := &f.Tunnel
	in := t.Kind != fparser.TunnelNone
	// Each value is a name or an address, quoted in JSON, or the ID, a number.
	values := [...]struct {
		text   []byte
		quoted bool
	}{
		{append(make([]byte, 0, 16), t.Kind.String()...), true},
		{strconv.AppendUint(make([]byte, 0, 16), uint64(t.ID), 10), false},
		{appendAddr(make([]byte, 0, 40), t.OuterSrc), true},
		{appendAddr(make([]byte, 0, 40), t.OuterDst), true},
	}
	for i, v := range values {
		b = appendSeparator(b, TunnelFields[i], named)
		switch {
		case in && len(v.text) > 0 && named && v.quoted:
			b = append(append(append(b, '"'), v.text...), '"')
		case in && len(v.text) > 0:
			b = append(b, v.text...)
		case named:
			b = append(b, "null"...)
		}
	}
	return b
}

// appendAddr appends a, nothing when it is not valid.
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return b
	}
	return a.AppendTo(b)
}

// appendSeparator appends what comes before a field's value: a comma and, when
// named (JSON), its quoted name and a colon.
func appendSeparator(b []byte, name string, named bool) []byte {
	if !named {
		return append(b, ',')
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	return append(b, `":`...)
}

func appendFeature(b []byte, i int, v float64, named bool) []byte {
	return strconv.AppendFloat(appendSeparator(b, FeatureFields[i], named), v, 'f', -1, 64)
}

func millis(d time.Duration) float64 { return float64(d) / 1e6 }

// TimeLayout is RFC 3339 with all nine digits of nanoseconds, so columns line up and
// every reader parses it.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func (e *Encoder) AppendJSON(b []byte, f *fparser.Flow) []byte {
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
	b = append(b, `,"src2dst_tcp_flags":"`...)
	b = append(b, exportedFlags(f, f.Fwd.Flags)...)
	b = append(b, `","dst2src_tcp_flags":"`...)
	b = append(b, exportedFlags(f, f.Rev.Flags)...)
	b = append(b, `","first_seen":"`...)
	b = e.stamps.append(b, f.FirstSeen)
	b = append(b, `","last_seen":"`...)
	b = e.stamps.append(b, f.LastSeen)
	b = append(b, `","bidirectional_duration_ms":`...)
	b = appendMillis(b, f.Duration())
	b = append(b, `,"end_reason":"`...)
	b = append(b, f.EndReason.String()...)
	b = append(b, `","src2dst_interface":`...)
	b = appendJSONString(b, f.Fwd.Interface)
	b = append(b, `,"dst2src_interface":`...)
	b = appendJSONString(b, f.Rev.Interface)
	b = append(b, `,"duplicate_packets":`...)
	b = strconv.AppendUint(b, f.DuplicatePackets, 10)
	b = append(b, `,"pid":`...)
	b = strconv.AppendInt(b, int64(f.Process.PID), 10)
	b = append(b, `,"process":`...)
	b = appendJSONString(b, f.Process.Name)
	b = append(b, `,"cgroup":`...)
	b = appendJSONString(b, f.Process.Cgroup)
	b = append(b, `,"community_id":"`...)
	b = fparser.AppendCommunityID(b, 0, f.Protocol, f.Src, f.Dst)
	b = append(b, '"')
	if e.Features {
		b = appendFeatures(b, f, true)
	}
	if e.Quality {
		b = appendQuality(b, f, true)
	}
	if e.Tunnel {
		b = appendTunnel(b, f, true)
	}
	if e.Packets {
		b = e.appendPacketsJSON(b, f)
	}
	return append(b, "}\n"...)
}

// appendPacketsJSON appends the flow's packets as a "packets" array: time, dir
// ("src2dst" or "dst2src"), ip_id, ttl, ip_len, and for TCP flags, seq, ack, window.
func (e *Encoder) appendPacketsJSON(b []byte, f *fparser.Flow) []byte {
	b = append(b, `,"packets":[`...)
	first := true
	for pk := range f.History() {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"time":"`...)
		b = e.stamps.append(b, pk.Time)
		if pk.Reverse {
			b = append(b, `","dir":"dst2src"`...)
		} else {
			b = append(b, `","dir":"src2dst"`...)
		}
		b = appendPacketFields(b, &pk, f.Protocol == fparser.TCP, &jsonPacket)
		b = append(b, '}')
	}
	b = append(b, ']')
	if f.HistoryIncomplete() {
		b = append(b, `,"packets_incomplete":true`...)
	}
	return b
}

func (e *Encoder) AppendCSV(b []byte, f *fparser.Flow) []byte {
	b = append(b, f.Protocol.String()...)
	b = append(b, ',')
	b = f.Src.Addr().AppendTo(b)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(f.Src.Port()), 10)
	b = append(b, ',')
	b = f.Dst.Addr().AppendTo(b)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(f.Dst.Port()), 10)
	for _, n := range [...]uint64{uint64(f.VLAN), f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes} {
		b = append(b, ',')
		b = strconv.AppendUint(b, n, 10)
	}
	b = append(b, ',')
	b = append(b, exportedFlags(f, f.Fwd.Flags)...)
	b = append(b, ',')
	b = append(b, exportedFlags(f, f.Rev.Flags)...)
	b = append(b, ',')
	b = e.stamps.append(b, f.FirstSeen)
	b = append(b, ',')
	b = e.stamps.append(b, f.LastSeen)
	b = append(b, ',')
	b = appendMillis(b, f.Duration())
	b = append(b, ',')
	b = append(b, f.EndReason.String()...)
	b = append(b, ',')
	b = appendCSVField(b, f.Fwd.Interface)
	b = append(b, ',')
	b = appendCSVField(b, f.Rev.Interface)
	b = append(b, ',')
	b = strconv.AppendUint(b, f.DuplicatePackets, 10)
	b = append(b, ',')
	if f.Process.PID != 0 {
		b = strconv.AppendInt(b, int64(f.Process.PID), 10)
	}
	b = append(b, ',')
	b = appendCSVField(b, f.Process.Name)
	b = append(b, ',')
	b = appendCSVField(b, f.Process.Cgroup)
	b = append(b, ',')
	b = fparser.AppendCommunityID(b, 0, f.Protocol, f.Src, f.Dst)
	if e.Features {
		b = appendFeatures(b, f, false)
	}
	if e.Quality {
		b = appendQuality(b, f, false)
	}
	if e.Tunnel {
		b = appendTunnel(b, f, false)
	}
	return append(b, '\n')
}

// appendJSONString appends s as a JSON string. Interface names are short and
// plain, but Linux allows quotes, backslashes and any byte but '/', ':' and
// whitespace in them.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = utf8.AppendRune(b, r) // an invalid byte becomes U+FFFD
		}
	}
	return append(b, '"')
}

// appendCSVField appends s as a CSV field, quoted (RFC 4180) when it holds a
// comma, a quote or a line break.
func appendCSVField(b []byte, s string) []byte {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := range len(s) {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// packetSeparators are what comes before each field of a packet: IP ID, TTL, IP
// length, then for TCP flags, seq, ack and window.
type packetSeparators [7]string

var (
	textPacket = packetSeparators{" id=", " ttl=", " len=", " flags=", " seq=", " ack=", " win="}
	jsonPacket = packetSeparators{`,"ip_id":`, `,"ttl":`, `,"ip_len":`, `,"flags":"`, `","seq":`, `,"ack":`, `,"window":`}
)

// appendPacketFields appends the fields of pk after its time and direction.
func appendPacketFields(b []byte, pk *fparser.Packet, tcp bool, sep *packetSeparators) []byte {
	b = append(b, sep[0]...)
	b = strconv.AppendUint(b, uint64(pk.IPID), 10)
	b = append(b, sep[1]...)
	b = strconv.AppendUint(b, uint64(pk.TTL), 10)
	b = append(b, sep[2]...)
	b = strconv.AppendUint(b, uint64(pk.Length), 10)
	if !tcp {
		return b
	}
	b = append(b, sep[3]...)
	b = append(b, flagNames[pk.Flags]...)
	b = append(b, sep[4]...)
	b = strconv.AppendUint(b, uint64(pk.Seq), 10)
	b = append(b, sep[5]...)
	b = strconv.AppendUint(b, uint64(pk.Ack), 10)
	b = append(b, sep[6]...)
	return strconv.AppendUint(b, uint64(pk.Window), 10)
}

// flagNames are the flags as TCPFlags.String writes them, looked up rather than built
// for every flow and packet; no flag at all is "none".
var flagNames = func() (names [256]string) {
	for i := range names {
		names[i] = fparser.TCPFlags(i).String()
	}
	names[0] = "none"
	return names
}()

// exportedFlags are a direction's TCP flags as CSV and JSON carry them: tcpdump's
// letters as the text format shows them ("SPF." for SYN, PSH, FIN and ACK, "none"
// for a TCP direction without flags), and "" for UDP, which has none.
func exportedFlags(f *fparser.Flow, flags fparser.TCPFlags) string {
	if f.Protocol != fparser.TCP {
		return ""
	}
	return flagNames[flags]
}

// appendMillis appends d in milliseconds, with as many digits as it needs.
func appendMillis(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, millis(d), 'f', -1, 64)
}

// stamps appends times in TimeLayout. The flows of a capture, and their packets,
// mostly fall on one day: it keeps that day's date, "2006-01-02T", and computes the
// time of day from the seconds, much faster than time.Time.AppendFormat.
type stamps struct {
	day  int64 // of date, in days since 1970-01-01
	date [len("2006-01-02T")]byte
	ok   bool // date holds day
}

const secondsPerDay = 24 * 60 * 60

func (s *stamps) append(b []byte, t time.Time) []byte {
	if t.Location() != time.UTC {
		// A zone's offset: a Flow's times are UTC, so this is for other callers.
		return t.AppendFormat(b, TimeLayout)
	}
	sec := t.Unix()
	day, tod := sec/secondsPerDay, sec%secondsPerDay
	if tod < 0 {
		day, tod = day-1, tod+secondsPerDay
	}
	if !s.ok || day != s.day {
		y, m, d := t.Date()
		if y < 0 || y > 9999 {
			return t.AppendFormat(b, TimeLayout) // a year of other than four digits
		}
		s.day, s.ok = day, true
		put4(s.date[0:], y)
		s.date[4] = '-'
		put2(s.date[5:], int(m))
		s.date[7] = '-'
		put2(s.date[8:], d)
		s.date[10] = 'T'
	}
	var c [len("15:04:05.000000000Z")]byte
	put2(c[0:], int(tod/3600))
	c[2] = ':'
	put2(c[3:], int(tod/60%60))
	c[5] = ':'
	put2(c[6:], int(tod%60))
	c[8] = '.'
	ns := t.Nanosecond()
	for i := 17; i > 8; i-- {
		c[i] = byte('0' + ns%10)
		ns /= 10
	}
	c[18] = 'Z'
	b = append(b, s.date[:]...)
	return append(b, c[:]...)
}

// put2 writes v, below 100, as two digits.
func put2(b []byte, v int) {
	b[0], b[1] = byte('0'+v/10), byte('0'+v%10)
}

// put4 writes v, below 10000, as four digits.
func put4(b []byte, v int) {
	put2(b[0:], v/100)
	put2(b[2:], v%100)
}
