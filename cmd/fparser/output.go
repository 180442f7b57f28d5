package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/fparser/fparser"
)

// fields are the JSON and CSV field names, in order. src is the initiator.
var fields = []string{
	"protocol", "src_ip", "src_port", "dst_ip", "dst_port", "vlan_id",
	"src2dst_packets", "src2dst_bytes", "dst2src_packets", "dst2src_bytes",
	"first_seen", "last_seen", "end_reason",
}

// featureFields are the fields --features adds, after fields: NFStream's names for
// its post-mortem statistics, per direction, then the flow's moving rates.
var featureFields = func() []string {
	var f []string
	for _, d := range []string{"src2dst", "dst2src"} {
		for _, n := range []string{
			"min_ps", "mean_ps", "stddev_ps", "max_ps",
			"min_piat_ms", "mean_piat_ms", "stddev_piat_ms", "max_piat_ms",
			"syn_packets", "cwr_packets", "ece_packets", "urg_packets", "ack_packets", "psh_packets", "rst_packets", "fin_packets",
		} {
			f = append(f, d+"_"+n)
		}
	}
	return append(f, "packet_rate", "byte_rate")
}()

// featureValues appends the values of featureFields, each preceded by sep(i).
func featureValues(b []byte, f *fparser.Flow, sep func(b []byte, i int) []byte) []byte {
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

// timeLayout is RFC 3339 with all nine digits of nanoseconds, so columns line up and
// every reader parses it.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// flowWriter writes ended flows in one format. Write errors stick: the first one is
// returned by every later call, so the caller can stop at once.
type flowWriter struct {
	w        *bufio.Writer
	format   string
	flush    bool // flush after every flow: the output is a terminal
	buf      []byte
	err      error
	header   bool
	packets  bool // JSON: embed each flow's packets
	features bool // CSV and JSON: add featureFields
}

func newFlowWriter(w io.Writer, format string, flushEach, packets, features bool) (*flowWriter, error) {
	switch format {
	case "text", "json", "csv":
	default:
		return nil, fmt.Errorf("unknown output format %q (want text, json or csv)", format)
	}
	return &flowWriter{w: bufio.NewWriterSize(w, 64<<10), format: format, flush: flushEach, packets: packets, features: features}, nil
}

func (fw *flowWriter) write(f *fparser.Flow) error {
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
			b = append(b, '\n')
		case "text":
			b = fmt.Appendf(b, "%-5s %-23s %-23s %4s %8s %10s %8s %10s %-7s %-7s %-30s %12s %s\n",
				"PROTO", "SRC", "DST", "VLAN", "PKTS>", "BYTES>", "<PKTS", "<BYTES", "FLAGS>", "<FLAGS", "FIRST SEEN", "DURATION", "END")
		}
	}
	switch fw.format {
	case "text":
		b = fmt.Appendf(b, "%-5s %-23s %-23s %4d %8d %10d %8d %10d %-7s %-7s %-30s %12s %s\n",
			f.Protocol, f.Src, f.Dst, f.VLAN,
			f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes,
			flagsText(f, f.Fwd.Flags), flagsText(f, f.Rev.Flags),
			f.FirstSeen.Format(timeLayout), f.Duration().Round(time.Microsecond), f.EndReason)
		for pk := range f.Packets() {
			dir := ">"
			if pk.Reverse {
				dir = "<"
			}
			b = fmt.Appendf(b, "      %s %s id=%d ttl=%d len=%d", pk.Time.Format(timeLayout), dir, pk.IPID, pk.TTL, pk.Length)
			if f.Protocol == fparser.TCP {
				b = fmt.Appendf(b, " flags=%s seq=%d ack=%d win=%d", flagsText(f, pk.Flags), pk.Seq, pk.Ack, pk.Window)
			}
			b = append(b, '\n')
		}
		if f.PacketsIncomplete() {
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
		b = append(b, `,"first_seen":"`...)
		b = f.FirstSeen.AppendFormat(b, timeLayout)
		b = append(b, `","last_seen":"`...)
		b = f.LastSeen.AppendFormat(b, timeLayout)
		b = append(b, `","end_reason":"`...)
		b = append(b, f.EndReason.String()...)
		b = append(b, '"')
		if fw.features {
			b = featureValues(b, f, func(b []byte, i int) []byte {
				b = append(b, `,"`...)
				b = append(b, featureFields[i]...)
				return append(b, `":`...)
			})
		}
		if fw.packets {
			b = appendPacketsJSON(b, f)
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
		b = append(b, ',')
		b = f.FirstSeen.AppendFormat(b, timeLayout)
		b = append(b, ',')
		b = f.LastSeen.AppendFormat(b, timeLayout)
		b = append(b, ',')
		b = append(b, f.EndReason.String()...)
		if fw.features {
			b = featureValues(b, f, func(b []byte, _ int) []byte { return append(b, ',') })
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

// appendPacketsJSON appends the flow's packets as a "packets" array: time, dir
// ("src2dst" or "dst2src"), ip_id, ttl, ip_len, and for TCP flags, seq, ack, window.
func appendPacketsJSON(b []byte, f *fparser.Flow) []byte {
	b = append(b, `,"packets":[`...)
	first := true
	for pk := range f.Packets() {
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
			b = fmt.Appendf(b, `,"flags":"%s","seq":%d,"ack":%d,"window":%d`, flagsText(f, pk.Flags), pk.Seq, pk.Ack, pk.Window)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if f.PacketsIncomplete() {
		b = append(b, `,"packets_incomplete":true`...)
	}
	return b
}

func flagsText(f *fparser.Flow, flags fparser.TCPFlags) string {
	if f.Protocol != fparser.TCP {
		return "-"
	}
	if flags == 0 {
		return "none"
	}
	return flags.String()
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
