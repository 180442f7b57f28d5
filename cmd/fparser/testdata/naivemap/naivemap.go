// Package naivemap is the yardstick of cmd/fparser's BenchmarkFlowHeavy: flows
// counted the way a competent Go programmer would write it in an afternoon, with
// pcapgo's zero-copy reader, a minimal parse and a Go map from a bidirectional
// 5-tuple to per-direction counters. It has no timeouts (a flow is a 5-tuple for the
// whole capture), no TCP state, no fragments after the first and no IPv6 extension
// headers: what fparser does beyond it is what fparser's extra cost buys.
package naivemap

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// key is both directions of a flow: the endpoint with the lower address (then port)
// is a. IPv4 addresses are stored v4-mapped.
type key struct {
	a, b   [16]byte
	pa, pb uint16
	proto  uint8
}

// counters are per direction: [0] from a to b, [1] from b to a. Bytes are IP lengths.
type counters struct {
	packets, bytes [2]uint64
}

// Stats are what a Run saw.
type Stats struct {
	Packets uint64 // frames read
	Counted uint64 // in a flow
	Flows   int
}

// Run counts the TCP and UDP flows of the Ethernet pcap file at path and writes them
// to out as CSV, one line per flow in no particular order.
func Run(path string, out io.Writer) (Stats, error) {
	var st Stats
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		return st, fmt.Errorf("%s: link type %v, want Ethernet", path, r.LinkType())
	}
	flows := make(map[key]*counters)
	for {
		data, _, err := r.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("%s: packet %d: %w", path, st.Packets+1, err)
		}
		st.Packets++
		k, dir, n, ok := parse(data)
		if !ok {
			continue
		}
		st.Counted++
		c := flows[k]
		if c == nil {
			c = new(counters)
			flows[k] = c
		}
		c.packets[dir]++
		c.bytes[dir] += uint64(n)
	}
	st.Flows = len(flows)
	return st, writeCSV(out, flows)
}

// parse returns the flow of an Ethernet frame, the direction of the packet in it and
// its IP length.
func parse(data []byte) (k key, dir, n int, ok bool) {
	if len(data) < 14 {
		return
	}
	etype, off := binary.BigEndian.Uint16(data[12:]), 14
	for (etype == 0x8100 || etype == 0x88a8) && len(data) >= off+4 {
		etype, off = binary.BigEndian.Uint16(data[off+2:]), off+4
	}
	ip := data[off:]
	var l4 []byte
	switch {
	case etype == 0x0800 && len(ip) >= 20:
		hl := int(ip[0]&0x0f) * 4
		if hl < 20 || len(ip) < hl || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
			return // a later fragment has no ports
		}
		k.proto, n, l4 = ip[9], int(binary.BigEndian.Uint16(ip[2:])), ip[hl:]
		k.a[10], k.a[11], k.b[10], k.b[11] = 0xff, 0xff, 0xff, 0xff
		copy(k.a[12:], ip[12:16])
		copy(k.b[12:], ip[16:20])
	case etype == 0x86dd && len(ip) >= 40:
		k.proto, n, l4 = ip[6], 40+int(binary.BigEndian.Uint16(ip[4:])), ip[40:]
		copy(k.a[:], ip[8:24])
		copy(k.b[:], ip[24:40])
	default:
		return
	}
	if (k.proto != 6 && k.proto != 17) || len(l4) < 4 {
		return
	}
	k.pa, k.pb = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	if c := bytes.Compare(k.a[:], k.b[:]); c > 0 || (c == 0 && k.pa > k.pb) {
		k.a, k.b, k.pa, k.pb, dir = k.b, k.a, k.pb, k.pa, 1
	}
	return k, dir, n, true
}

func writeCSV(out io.Writer, flows map[key]*counters) error {
	w := bufio.NewWriterSize(out, 1<<16)
	w.WriteString("proto,ip_a,port_a,ip_b,port_b,pkts_a2b,bytes_a2b,pkts_b2a,bytes_b2a\n")
	var line []byte
	for k, c := range flows {
		line = line[:0]
		if k.proto == 6 {
			line = append(line, "tcp,"...)
		} else {
			line = append(line, "udp,"...)
		}
		line = netip.AddrFrom16(k.a).Unmap().AppendTo(line)
		line = strconv.AppendUint(append(line, ','), uint64(k.pa), 10)
		line = netip.AddrFrom16(k.b).Unmap().AppendTo(append(line, ','))
		line = strconv.AppendUint(append(line, ','), uint64(k.pb), 10)
		for d := range 2 {
			line = strconv.AppendUint(append(line, ','), c.packets[d], 10)
			line = strconv.AppendUint(append(line, ','), c.bytes[d], 10)
		}
		w.Write(append(line, '\n'))
	}
	return w.Flush()
}
