package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/flowfmt"
)

// The field names and the time layout of CSV and JSON.
var (
	fields        = flowfmt.Fields
	featureFields = flowfmt.FeatureFields
	qualityFields = flowfmt.QualityFields
	tunnelFields  = flowfmt.TunnelFields
)

const timeLayout = flowfmt.TimeLayout

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
	w      *bufio.Writer
	format int
	flush  bool // flush after every flow: the output is a terminal
	buf    []byte
	err    error
	header bool
	enc    flowfmt.Encoder // CSV and JSON, and the text format's times
}

func newFlowWriter(w io.Writer, format string, flushEach, packets, features, quality, tunnel bool) (*flowWriter, error) {
	f, ok := formats[format]
	if !ok {
		return nil, fmt.Errorf("-o %s: want text, json or csv", format)
	}
	return &flowWriter{w: bufio.NewWriterSize(w, 64<<10), format: f, flush: flushEach, enc: flowfmt.Encoder{Packets: packets, Features: features, Quality: quality, Tunnel: tunnel}}, nil
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
			b = fw.enc.AppendCSVHeader(b)
		case formatText:
			b = append(b, textHeader...)
		}
	}
	switch fw.format {
	case formatText:
		b = fw.appendText(b, f)
	case formatJSON:
		b = fw.enc.AppendJSON(b, f)
	case formatCSV:
		b = fw.enc.AppendCSV(b, f)
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
	b = append(alignLeft(fw.enc.AppendTime(b, f.FirstSeen), start, 30), ' ')
	start = len(b)
	b = append(alignRight(appendDuration(b, f.Duration().Round(time.Microsecond)), start, 12), ' ')
	b = append(b, f.EndReason.String()...)
	if fw.enc.Tunnel && f.Tunnel.Kind != fparser.TunnelNone {
		b = appendTunnelText(b, &f.Tunnel)
	}
	b = append(b, '\n')
	for pk := range f.History() {
		b = append(b, "      "...)
		b = fw.enc.AppendTime(b, pk.Time)
		if pk.Reverse {
			b = append(b, " <"...)
		} else {
			b = append(b, " >"...)
		}
		b = flowfmt.AppendTextPacket(b, &pk, f.Protocol == fparser.TCP)
		b = append(b, '\n')
	}
	if f.HistoryIncomplete() {
		b = append(b, "      (packets missing: the history reached its memory cap, or live, the ring buffer was full)\n"...)
	}
	return b
}

// appendTunnelText appends the flow's tunnel after the last column, where it
// moves no column and a line without it stays as it was: " tunnel=vxlan:42
// outer=192.0.2.1>192.0.2.2", src's side of the outer header first; without an
// outer IP header (MPLS, PPPoE), the kind and ID alone.
func appendTunnelText(b []byte, t *fparser.Tunnel) []byte {
	b = append(b, " tunnel="...)
	b = append(b, t.Kind.String()...)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(t.ID), 10)
	if !t.OuterSrc.IsValid() {
		return b
	}
	b = append(b, " outer="...)
	b = t.OuterSrc.AppendTo(b)
	b = append(b, '>')
	return t.OuterDst.AppendTo(b)
}

// flagsText is a direction's TCP flags as the text format shows them, "-" for UDP.
func flagsText(f *fparser.Flow, flags fparser.TCPFlags) string {
	if f.Protocol != fparser.TCP {
		return "-"
	}
	return flowfmt.FlagName(flags)
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
