package ipfix_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/ipfix"
)

// capture runs a collector of its own on loopback, exports flows through an exporter
// dialled with cfg (Address filled in), closes it, and returns the messages received.
func capture(t *testing.T, cfg ipfix.Config, flows []fparser.Flow) [][]byte {
	t.Helper()
	got := make(chan [][]byte, 1)
	switch cfg.Network {
	case "tcp":
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cfg.Address = ln.Addr().String()
		go func() {
			var msgs [][]byte
			defer func() { got <- msgs }()
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			for {
				h := make([]byte, 16)
				if _, err := io.ReadFull(c, h); err != nil {
					return
				}
				m := make([]byte, binary.BigEndian.Uint16(h[2:]))
				copy(m, h)
				if _, err := io.ReadFull(c, m[16:]); err != nil {
					return
				}
				msgs = append(msgs, m)
			}
		}()
	default:
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		cfg.Address = pc.LocalAddr().String()
		go func() {
			var msgs [][]byte
			defer func() { got <- msgs }()
			buf := make([]byte, 65536)
			for {
				pc.SetReadDeadline(time.Now().Add(time.Second))
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				msgs = append(msgs, bytes.Clone(buf[:n]))
				if isOptionsOnly(buf[:n]) {
					return // Close's message comes last
				}
			}
		}()
	}
	e, err := ipfix.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range flows {
		if err := e.Export(&flows[i]); err != nil {
			t.Fatal(err)
		}
		if i%16 == 15 {
			time.Sleep(time.Millisecond) // loopback UDP: let the reader keep up
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return <-got
}

// isOptionsOnly reports whether a message carries the options data set.
func isOptionsOnly(m []byte) bool {
	for b := m[16:]; len(b) >= 4; {
		id, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if id == 260 {
			return true
		}
		if n < 4 || n > len(b) {
			return false
		}
		b = b[n:]
	}
	return false
}

// otherPEN is a site's own Private Enterprise Number (ipfix.Config.EnterpriseNumber).
const otherPEN = 4242

type decoded struct {
	packets  []netflow.IPFIXPacket
	records  []map[uint32][]byte // data records: IE id | enterprise bit << 16 -> value
	options  []netflow.OptionsDataRecord
	withTmpl []bool   // which messages carried templates
	pens     []uint32 // the PENs of fparser's elements met
}

func decodeAll(t *testing.T, msgs [][]byte) decoded {
	t.Helper()
	ts := netflow.CreateTemplateSystem()
	var d decoded
	for i, m := range msgs {
		var p netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(m), ts, nil, &p); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if int(p.Length) != len(m) {
			t.Fatalf("message %d: header says %d bytes, %d received", i, p.Length, len(m))
		}
		tmpl := false
		for _, fs := range p.FlowSets {
			switch s := fs.(type) {
			case netflow.TemplateFlowSet:
				tmpl = true
			case netflow.DataFlowSet:
				for _, r := range s.Records {
					rec := map[uint32][]byte{}
					for _, v := range r.Values {
						key := uint32(v.Type)
						if v.PenProvided {
							switch v.Pen {
							case 29305: // RFC 5103's reverse elements
								key |= 1 << 16
							case ipfix.DefaultEnterpriseNumber, otherPEN: // fparser's
								key |= 2 << 16
								if !slices.Contains(d.pens, v.Pen) {
									d.pens = append(d.pens, v.Pen)
								}
							default:
								t.Fatalf("PEN %d", v.Pen)
							}
						}
						rec[key] = v.Value.([]byte)
					}
					d.records = append(d.records, rec)
				}
			case netflow.OptionsDataFlowSet:
				d.options = append(d.options, s.Records...)
			case netflow.RawFlowSet:
				t.Fatalf("message %d: a set without its template (id %d)", i, s.Id)
			}
		}
		d.packets = append(d.packets, p)
		d.withTmpl = append(d.withTmpl, tmpl)
	}
	return d
}

func u64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func addrOf(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestMessagesDecodeWithGoflow2: what the exporter sends, decoded with goflow2's IPFIX
// decoder, says what the flows say, field for field; messages fit MaxMessage, the
// sequence numbers count the data records before each message, templates are sent
// first and again every TemplateRefreshMessages messages over UDP, once over TCP,
// and the options record carries the exporter's counters.
func TestMessagesDecodeWithGoflow2(t *testing.T) {
	// Four times over, so that the messages refresh their templates a few times.
	// A few testdata captures: TCP and UDP, IPv4 and IPv6, VLANs, several end
	// reasons.
	var paths []string
	for _, c := range []string{"http.pcap", "reuse.pcap", "vlan.pcap", "dns.pcap", "reset.pcap", "fragments.pcap", "ipv6ext.pcap", "tcp-quality.pcap"} {
		paths = append(paths, "../testdata/"+c)
	}
	one := replay(t, paths, 10)
	var flows []fparser.Flow
	for range 4 {
		flows = append(flows, one...)
	}
	for _, tc := range []struct {
		name    string
		network string
		uniflow bool
		quality bool
	}{
		{"udp-biflow", "udp", false, false}, {"udp-uniflow", "udp", true, false}, {"tcp-biflow", "tcp", false, false},
		{"udp-biflow-quality", "udp", false, true}, {"udp-uniflow-quality", "udp", true, true},
		{"tcp-biflow-quality-own-pen", "tcp", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const refresh = 4
			maxMessage := 600
			if tc.quality {
				maxMessage = 1100 // at least 966: the templates alone take 800 bytes
			}
			var pen uint32
			if strings.HasSuffix(tc.name, "own-pen") {
				pen = otherPEN
			}
			msgs := capture(t, ipfix.Config{Network: tc.network, Uniflow: tc.uniflow, MaxMessage: maxMessage, TemplateRefreshMessages: refresh, ObservationDomain: 7, TCPQuality: tc.quality, EnterpriseNumber: pen}, flows)
			d := decodeAll(t, msgs)
			if want := uint32(ipfix.DefaultEnterpriseNumber); tc.quality && pen == 0 && !slices.Contains(d.pens, want) || pen != 0 && !slices.Contains(d.pens, pen) {
				t.Fatalf("PENs %v in the records", d.pens)
			}
			var seq uint32
			for i, p := range d.packets {
				if len(msgs[i]) > maxMessage || p.ObservationDomainId != 7 || p.SequenceNumber != seq {
					t.Fatalf("message %d: %d bytes (max %d), domain %d, sequence %d (want %d)", i, len(msgs[i]), maxMessage, p.ObservationDomainId, p.SequenceNumber, seq)
				}
				for _, fs := range p.FlowSets {
					switch s := fs.(type) {
					case netflow.DataFlowSet:
						seq += uint32(len(s.Records))
					case netflow.OptionsDataFlowSet:
						seq += uint32(len(s.Records))
					}
				}
				wantTmpl := i == 0 || tc.network == "udp" && (i%refresh == 0 || i == len(d.packets)-1)
				if d.withTmpl[i] != wantTmpl {
					t.Errorf("message %d of %d: templates %v, want %v", i, len(d.packets), d.withTmpl[i], wantTmpl)
				}
			}

			// The records, in the order the flows were exported.
			r, quality := 0, 0
			for _, f := range flows {
				dirs := []bool{false}
				if tc.uniflow {
					dirs = nil
					if f.Fwd.Packets > 0 {
						dirs = append(dirs, false)
					}
					if f.Rev.Packets > 0 {
						dirs = append(dirs, true)
					}
				}
				for _, rev := range dirs {
					rec := d.records[r]
					r++
					src, dst, c, flags, first, last := f.Src, f.Dst, f.Fwd, f.Fwd.Flags|f.Rev.Flags, f.FirstSeen, f.LastSeen
					if tc.uniflow {
						flags, first, last = f.Fwd.Flags, f.Fwd.First, f.Fwd.Last
						if rev {
							src, dst, c, flags, first, last = f.Dst, f.Src, f.Rev, f.Rev.Flags, f.Rev.First, f.Rev.Last
						}
					}
					sa, da := addrOf(rec[8]), addrOf(rec[12])
					if src.Addr().Is6() {
						sa, da = addrOf(rec[27]), addrOf(rec[28])
					}
					ok := sa == src.Addr() && da == dst.Addr() &&
						u64(rec[7]) == uint64(src.Port()) && u64(rec[11]) == uint64(dst.Port()) &&
						u64(rec[4]) == uint64(f.Protocol) && u64(rec[58]) == uint64(f.VLAN) &&
						u64(rec[152]) == uint64(first.UnixMilli()) && u64(rec[153]) == uint64(last.UnixMilli()) &&
						u64(rec[6]) == uint64(flags) && u64(rec[136]) == uint64(ipfix.EndReason(f.EndReason)) &&
						u64(rec[1]) == c.Bytes && u64(rec[2]) == c.Packets &&
						// A capture file: every direction counted arriving at its
						// only interface, numbered 1; no egress.
						u64(rec[10]) == 1 && u64(rec[14]) == 0
					if !tc.uniflow {
						ok = ok && u64(rec[1|1<<16]) == f.Rev.Bytes && u64(rec[2|1<<16]) == f.Rev.Packets
					} else if _, has := rec[1|1<<16]; has {
						ok = false
					}
					// fparser's elements (ids | 2<<16): on TCP flows with the
					// quality on, nowhere else.
					if tc.quality && f.Protocol == fparser.TCP {
						want := map[uint32]uint64{1: uint64(f.HandshakeRTT), 2: uint64(f.Fwd.RTT), 3: uint64(f.Rev.RTT),
							4: uint64(f.Fwd.Retransmissions), 5: uint64(f.Rev.Retransmissions), 6: uint64(f.Fwd.OutOfOrder),
							7: uint64(f.Rev.OutOfOrder), 8: uint64(f.Fwd.ZeroWindows), 9: uint64(f.Rev.ZeroWindows)}
						if tc.uniflow {
							want = map[uint32]uint64{1: uint64(f.HandshakeRTT), 2: uint64(c.RTT), 4: uint64(c.Retransmissions), 6: uint64(c.OutOfOrder), 8: uint64(c.ZeroWindows)}
						}
						for id := uint32(1); id <= 9; id++ {
							v, has := rec[id|2<<16]
							w, wanted := want[id]
							ok = ok && has == wanted && u64(v) == w
						}
						quality++
					} else if _, has := rec[1|2<<16]; has {
						ok = false
					}
					if !ok {
						t.Fatalf("record %d (flow %v -> %v, reverse %v) decodes as %v", r-1, f.Src, f.Dst, rev, rec)
					}
				}
			}
			if r != len(d.records) {
				t.Fatalf("%d data records, %d expected", len(d.records), r)
			}
			if len(d.options) != 1 {
				t.Fatalf("%d options records, want 1", len(d.options))
			}
			o := d.options[0]
			if u64(o.ScopesValues[0].Value.([]byte)) != 7 || u64(o.OptionsValues[0].Value.([]byte)) != uint64(len(msgs)) ||
				u64(o.OptionsValues[1].Value.([]byte)) != uint64(r) || u64(o.OptionsValues[2].Value.([]byte)) != 0 {
				t.Errorf("options record %v: want domain 7, %d messages, %d records, 0 not sent", o, len(msgs), r)
			}
			if tc.quality && quality == 0 {
				t.Fatal("no record with the TCP quality")
			}
			t.Logf("%d flows, %d records in %d messages, %d with the TCP quality", len(flows), r, len(msgs), quality)
		})
	}
}

// TestDialErrors: a bad configuration and a collector that is not there are refused
// with errors that name them.
func TestDialErrors(t *testing.T) {
	if _, err := ipfix.Dial(ipfix.Config{Network: "sctp", Address: "127.0.0.1:4739"}); !errors.Is(err, ipfix.ErrConfig) {
		t.Errorf("sctp: %v", err)
	}
	if _, err := ipfix.Dial(ipfix.Config{Address: "nowhere"}); !errors.Is(err, ipfix.ErrConfig) || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("address without a port: %v", err)
	}
	// The TCP quality's templates do not fit in the smallest messages.
	_, err := ipfix.Dial(ipfix.Config{Address: "127.0.0.1:4739", MaxMessage: 600, TCPQuality: true})
	var ce *ipfix.ConfigError
	if !errors.As(err, &ce) || ce.Field != "MaxMessage" || !strings.Contains(err.Error(), "at least") {
		t.Errorf("MaxMessage 600 with TCPQuality: %v", err)
	} else {
		t.Log(err)
	}
	if _, err := ipfix.Dial(ipfix.Config{Address: "127.0.0.1:4739", MaxMessage: 512}); err != nil {
		t.Errorf("MaxMessage 512 without TCPQuality: %v", err)
	}
	if _, err := ipfix.Dial(ipfix.Config{Address: "127.0.0.1:4739", MaxMessage: 965, TCPQuality: true}); !errors.Is(err, ipfix.ErrConfig) {
		t.Errorf("MaxMessage 965 with TCPQuality: %v", err)
	}
	if _, err := ipfix.Dial(ipfix.Config{Address: "127.0.0.1:4739", MaxMessage: 966, TCPQuality: true}); err != nil {
		t.Errorf("MaxMessage 966 with TCPQuality: %v", err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	if _, err := ipfix.Dial(ipfix.Config{Network: "tcp", Address: addr}); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("TCP to a closed port: %v", err)
	}
}

// TestQualityElementsDocumented: docs/ipfix.md's table names every one of
// fparser's elements, with its id.
func TestQualityElementsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/ipfix.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(ipfix.QualityElements) != 9 {
		t.Errorf("%d elements, the table has 9", len(ipfix.QualityElements))
	}
	for id, name := range ipfix.QualityElements {
		if row := fmt.Sprintf("| %d | `%s` |", id, name); !strings.Contains(string(doc), row) {
			t.Errorf("docs/ipfix.md lacks the row %q", row)
		}
	}
}
