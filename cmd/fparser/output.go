package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fparser/fparser"
)

// fields are the JSON and CSV field names, in order. src is the initiator.
var fields = []string{
	"protocol", "src_ip", "src_port", "dst_ip", "dst_port", "vlan_id",
	"src2dst_packets", "src2dst_bytes", "dst2src_packets", "dst2src_bytes",
	"src2dst_tcp_flags", "dst2src_tcp_flags",
	"first_seen", "last_seen", "bidirectional_duration_ms", "end_reason",
	"src2dst_interface", "dst2src_interface", "duplicate_packets",
	"pid", "process", "cgroup",
}

// dirFeatures are NFStream's names for its post-mortem statistics of one direction.
var dirFeatures = [...]string{
	"min_ps", "mean_ps", "stddev_ps", "max_ps",
	"min_piat_ms", "mean_piat_ms", "stddev_piat_ms", "max_piat_ms",
	"syn_packets", "cwr_packets", "ece_packets", "urg_packets", "ack_packets", "psh_packets", "rst_packets", "fin_packets",
}

// featureFields are the fields --features adds, after fields: dirFeatures per
// direction, then the flow's moving rates.
var featureFields = func() []string {
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

func appendFeature(b []byte, i int, v float64, named bool) []byte {
	if named {
		b = append(b, `,"`...)
		b = append(b, featureFields[i]...)
		b = append(b, `":`...)
	} else {
		b = append(b, ',')
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

func millis(d time.Duration) float64 { return float64(d) / 1e6 }

// timeLayout is RFC 3339 with all nine digits of nanoseconds, so columns line up and
// every reader parses it.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// textHeader names the columns of the text format.
var textHeader = fmt.Sprintf("%-5s %-23s %-23s %4s %8s %10s %8s %10s %-7s %-7s %-30s %12s %s\n",
	"PROTO", "SRC", "DST", "VLAN", "PKTS>", "BYTES>", "<PKTS", "<BYTES", "FLAGS>", "<FLAGS", "FIRST SEEN", "DURATION", "END")

// The output formats.
const (
	formatText = iota
	formatCSV
	formatJSON
)

// formats are the output formats by the name -o takes.
var formats = map[string]int{"text": formatText, "csv": formatCSV, "json": formatJSON}

// flowWriter writes ended flows in one format. Write errors stick: the first one is
// returned by every later call, so the caller can stop at once.
//
// It formats without fmt and time.Time.Format, which showed in profiles of large
// captures: a writer appends to one reused buffer and allocates nothing per flow.
type flowWriter struct {
	w        *bufio.Writer
	format   int
	flush    bool // flush after every flow: the output is a terminal
	buf      []byte
	err      error
	header   bool
	packets  bool // JSON: embed each flow's packets
	features bool // CSV and JSON: add featureFields
	stamps   stamps
}

func newFlowWriter(w io.Writer, format string, flushEach, packets, features bool) (*flowWriter, error) {
	f, ok := formats[format]
	if !ok {
		return nil, fmt.Errorf("-o %s: want text, json or csv", format)
	}
	return &flowWriter{w: bufio.NewWriterSize(w, 64<<10), format: f, flush: flushEach, packets: packets, features: features}, nil
}

func (fw *flowWriter) write(f *fparser.Flow) error {
	if fw.err != nil {
		return fw.err
	}
	b := fw.buf[:0]
	if !fw.header {
		fw.header = true
		switch fw.format {
		case formatCSV:
			b = append(b, strings.Join(fields, ",")...)
			if fw.features {
				b = append(b, ',')
				b = append(b, strings.Join(featureFields, ",")...)
			}
			b = append(b, '\n')
		case formatText:
			b = append(b, textHeader...)
		}
	}
	switch fw.format {
	case formatText:
		b = fw.appendText(b, f)
	case formatJSON:
		b = fw.appendJSON(b, f)
	case formatCSV:
		b = fw.appendCSV(b, f)
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

// appendText appends the flow in the text format's columns, and its packets below it.
func (fw *flowWriter) appendText(b []byte, f *fparser.Flow) []byte {
	b = append(appendLeft(b, f.Protocol.String(), 5), ' ')
	start := len(b)
	b = append(alignLeft(appendAddrPort(b, f.Src), start, 23), ' ')
	start = len(b)
	b = append(alignLeft(appendAddrPort(b, f.Dst), start, 23), ' ')
	b = append(appendUintRight(b, uint64(f.VLAN), 4), ' ')
	b = append(appendUintRight(b, f.Fwd.Packets, 8), ' ')
	b = append(appendUintRight(b, f.Fwd.Bytes, 10), ' ')
	b = append(appendUintRight(b, f.Rev.Packets, 8), ' ')
	b = append(appendUintRight(b, f.Rev.Bytes, 10), ' ')
	b = append(appendLeft(b, flagsText(f, f.Fwd.Flags), 7), ' ')
	b = append(appendLeft(b, flagsText(f, f.Rev.Flags), 7), ' ')
	start = len(b)
	b = append(alignLeft(fw.stamps.append(b, f.FirstSeen), start, 30), ' ')
	start = len(b)
	b = append(alignRight(appendDuration(b, f.Duration().Round(time.Microsecond)), start, 12), ' ')
	b = append(b, f.EndReason.String()...)
	b = append(b, '\n')
	for pk := range f.History() {
		b = append(b, "      "...)
		b = fw.stamps.append(b, pk.Time)
		if pk.Reverse {
			b = append(b, " <"...)
		} else {
			b = append(b, " >"...)
		}
		b = appendPacketFields(b, &pk, f.Protocol == fparser.TCP, &textPacket)
		b = append(b, '\n')
	}
	if f.HistoryIncomplete() {
		b = append(b, "      (packets missing: the history reached its memory cap, or live, the ring buffer was full)\n"...)
	}
	return b
}

func (fw *flowWriter) appendJSON(b []byte, f *fparser.Flow) []byte {
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
	b = fw.stamps.append(b, f.FirstSeen)
	b = append(b, `","last_seen":"`...)
	b = fw.stamps.append(b, f.LastSeen)
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
	if fw.features {
		b = appendFeatures(b, f, true)
	}
	if fw.packets {
		b = fw.appendPacketsJSON(b, f)
	}
	return append(b, "}\n"...)
}

// appendPacketsJSON appends the flow's packets as a "packets" array: time, dir
// ("src2dst" or "dst2src"), ip_id, ttl, ip_len, and for TCP flags, seq, ack, window.
func (fw *flowWriter) appendPacketsJSON(b []byte, f *fparser.Flow) []byte {
	b = append(b, `,"packets":[`...)
	first := true
	for pk := range f.History() {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"time":"`...)
		b = fw.stamps.append(b, pk.Time)
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

func (fw *flowWriter) appendCSV(b []byte, f *fparser.Flow) []byte {
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
	b = fw.stamps.append(b, f.FirstSeen)
	b = append(b, ',')
	b = fw.stamps.append(b, f.LastSeen)
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
	if fw.features {
		b = appendFeatures(b, f, false)
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
	b = append(b, strings.ReplaceAll(s, `"`, `""`)...)
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

func flagsText(f *fparser.Flow, flags fparser.TCPFlags) string {
	if f.Protocol != fparser.TCP {
		return "-"
	}
	return flagNames[flags]
}

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

// appendAddrPort appends p as p.String() writes it, which the text format has always
// printed: AppendTo writes nothing at all for an invalid one.
func appendAddrPort(b []byte, p netip.AddrPort) []byte {
	if !p.IsValid() {
		return append(b, "invalid AddrPort"...)
	}
	return p.AppendTo(b)
}

// spaces pad the text format's columns, the widest one included.
const spaces = "                              "

// alignLeft pads what b holds from start with spaces to width runes, as fmt's %-*s
// does.
func alignLeft(b []byte, start, width int) []byte {
	if n := width - utf8.RuneCount(b[start:]); n > 0 {
		b = append(b, spaces[:n]...)
	}
	return b
}

// alignRight moves what b holds from start right, behind spaces, to width runes, as
// fmt's %*s does.
func alignRight(b []byte, start, width int) []byte {
	n := width - utf8.RuneCount(b[start:])
	if n <= 0 {
		return b
	}
	end := len(b)
	b = append(b, spaces[:n]...)
	copy(b[start+n:], b[start:end])
	copy(b[start:start+n], spaces)
	return b
}

// appendLeft appends s left-aligned in width runes, as fmt's %-*s does.
func appendLeft(b []byte, s string, width int) []byte {
	start := len(b)
	return alignLeft(append(b, s...), start, width)
}

// appendUintRight appends v right-aligned in width columns, as fmt's %*d does.
func appendUintRight(b []byte, v uint64, width int) []byte {
	start := len(b)
	return alignRight(strconv.AppendUint(b, v, 10), start, width)
}

// appendDuration appends d as time.Duration.String writes it: "0s", "850ns", "1.5µs",
// "2.25ms", "1h2m3.5s", "-4m0.001s".
func appendDuration(b []byte, d time.Duration) []byte {
	u := uint64(d)
	if d < 0 {
		b = append(b, '-')
		u = -u // the magnitude, of the least Duration too
	}
	switch {
	case u == 0:
		return append(b, "0s"...)
	case u < uint64(time.Microsecond):
		return append(strconv.AppendUint(b, u, 10), "ns"...)
	case u < uint64(time.Millisecond):
		return append(appendDecimal(b, u, uint64(time.Microsecond)), "µs"...)
	case u < uint64(time.Second):
		return append(appendDecimal(b, u, uint64(time.Millisecond)), "ms"...)
	}
	s := u / uint64(time.Second)
	if s >= 3600 {
		b = append(strconv.AppendUint(b, s/3600, 10), 'h')
	}
	if s >= 60 {
		b = append(strconv.AppendUint(b, s/60%60, 10), 'm')
	}
	return append(appendDecimal(b, u%uint64(time.Minute), uint64(time.Second)), 's')
}

// appendDecimal appends v/unit, unit a power of ten, with the digits of its fraction
// up to the last that is not zero: no point for a whole number.
func appendDecimal(b []byte, v, unit uint64) []byte {
	b = strconv.AppendUint(b, v/unit, 10)
	frac := v % unit
	if frac == 0 {
		return b
	}
	b = append(b, '.')
	for unit /= 10; frac > 0; unit /= 10 {
		b = append(b, byte('0'+frac/unit))
		frac %= unit
	}
	return b
}

// stamps appends times in timeLayout. The flows of a capture, and their packets,
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
		return t.AppendFormat(b, timeLayout)
	}
	sec := t.Unix()
	day, tod := sec/secondsPerDay, sec%secondsPerDay
	if tod < 0 {
		day, tod = day-1, tod+secondsPerDay
	}
	if !s.ok || day != s.day {
		y, m, d := t.Date()
		if y < 0 || y > 9999 {
			return t.AppendFormat(b, timeLayout) // a year of other than four digits
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

// Flush writes out what is buffered.
func (fw *flowWriter) Flush() error {
	if fw.err != nil {
		return fw.err
	}
	if err := fw.w.Flush(); err != nil {
		fw.err = err
	}
	return fw.err
}
