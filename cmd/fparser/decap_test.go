package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"

	"github.com/fparser/fparser/kafka/flowpb"
)

// decapFlow is a flow of a tunnel capture as tshark shows it (tshark -r
// testdata/X.pcap -V): the inner headers' endpoints, packets and IP lengths by
// direction, the tunnel's kind, ID and outer addresses on src's side first, and
// the Community ID that tshark's communityid gives the inner headers.
type decapFlow struct {
	proto, src, sport, dst, dport  string
	fwdPackets, fwdBytes           int
	revPackets, revBytes           int
	tunnel, id, outerSrc, outerDst string
	communityID                    string
}

// decapFlows are the flows of the tunnel captures, as tshark decodes them.
var decapFlows = map[string][]decapFlow{
	// VXLAN, VNI 42, between the underlay's 192.0.2.1 and 192.0.2.2: an HTTP
	// connection (frames 1-12) and two UDP exchanges with port 5353 (13-16), each
	// from 10.42.0.1, whose outer header goes from 192.0.2.1.
	"vxlan.pcap": {
		{"tcp", "10.42.0.1", "56732", "10.42.0.2", "8080", 7, 60 + 52 + 140 + 52 + 52 + 52 + 52, 5, 60 + 52 + 237 + 86 + 52, "vxlan", "42", "192.0.2.1", "192.0.2.2", "1:QpF0yDc1REAv+2TjMoXtyJcNMpc="},
		{"udp", "10.42.0.1", "37466", "10.42.0.2", "5353", 1, 61, 1, 77, "vxlan", "42", "192.0.2.1", "192.0.2.2", "1:eTUENdjabcd8OxaDG5/HO5zrBto="},
		{"udp", "10.42.0.1", "51050", "10.42.0.2", "5353", 1, 61, 1, 77, "vxlan", "42", "192.0.2.1", "192.0.2.2", "1:4w9GcZFN5xc4X8Rs0kojdr+meMc="},
	},
	// GRE between 192.0.2.1 and 192.0.2.2: a connection with key 7 (frames 1-8),
	// one without a key (9-16), and a DNS exchange mirrored by ERSPAN type II,
	// session (SpanID) 5 (17-18), both of whose frames go from 192.0.2.1.
	"gre.pcap": {
		{"tcp", "10.47.1.1", "43000", "10.47.1.2", "80", 5, 40 + 40 + 100 + 40 + 40, 3, 40 + 240 + 40, "gre", "7", "192.0.2.1", "192.0.2.2", "1:ZMFt7iamqGK7rfLvw9zkwN05wKQ="},
		{"tcp", "10.47.2.1", "43001", "10.47.2.2", "80", 5, 40 + 40 + 100 + 40 + 40, 3, 40 + 240 + 40, "gre", "0", "192.0.2.1", "192.0.2.2", "1:udKDGEiXhwMoGWHTnp/r64ow7zg="},
		{"udp", "192.0.2.3", "5000", "192.0.2.4", "53", 1, 68, 1, 68, "erspan", "5", "192.0.2.1", "192.0.2.2", "1:npnT56zabKNWx/YP39bnx3K6oew="},
	},
}

// values are the flow's fields by name, as CSV writes them.
func (f decapFlow) values() map[string]string {
	return map[string]string{
		"protocol": f.proto, "src_ip": f.src, "src_port": f.sport, "dst_ip": f.dst, "dst_port": f.dport,
		"src2dst_packets": strconv.Itoa(f.fwdPackets), "src2dst_bytes": strconv.Itoa(f.fwdBytes),
		"dst2src_packets": strconv.Itoa(f.revPackets), "dst2src_bytes": strconv.Itoa(f.revBytes),
		"tunnel": f.tunnel, "tunnel_id": f.id, "outer_src_ip": f.outerSrc, "outer_dst_ip": f.outerDst,
		"community_id": f.communityID,
	}
}

// TestDecapFields: with --decap, testdata/vxlan.pcap and gre.pcap give their
// tunnels' inner flows, each with its tunnel after the other fields, in CSV and in
// JSON (pinned in testdata/decap, rewritten by -update), equal to what tshark reads
// in the captures; the text format adds the tunnel after END. A flow that came
// through no tunnel has the fields empty in CSV, null in JSON, and nothing more in
// text; without --decap there are neither tunnel fields nor inner flows.
func TestDecapFields(t *testing.T) {
	for _, name := range []string{"vxlan.pcap", "gre.pcap"} {
		capture := filepath.Join("..", "..", "testdata", name)
		want := decapFlows[name]
		for _, format := range []string{"csv", "json"} {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"-r", capture, "--decap", "-o", format, "-q"}, &stdout, &stderr); code != 0 {
				t.Fatalf("%s -o %s: exit %d: %s", name, format, code, stderr.String())
			}
			golden := filepath.Join("testdata", "decap", name+"."+format)
			if *update {
				if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if pinned, err := os.ReadFile(golden); err != nil || stdout.String() != string(pinned) {
				t.Errorf("%s -o %s differs from %s (%v):\n got:\n%s\nwant:\n%s", name, format, golden, err, stdout.String(), pinned)
			}
			got := decapRows(t, format, stdout.Bytes())
			if len(got) != len(want) {
				t.Fatalf("%s -o %s: %d flows, want %d:\n%s", name, format, len(got), len(want), stdout.String())
			}
			for i, w := range want {
				for k, v := range w.values() {
					if got[i][k] != v {
						t.Errorf("%s -o %s, flow %d: %s is %q, want %q", name, format, i+1, k, got[i][k], v)
					}
				}
			}
		}

		var text, stderr bytes.Buffer
		if code := run([]string{"-r", capture, "--decap", "-q"}, &text, &stderr); code != 0 {
			t.Fatalf("%s -o text: exit %d: %s", name, code, stderr.String())
		}
		lines := strings.Split(strings.TrimSuffix(text.String(), "\n"), "\n")
		if len(lines) != 1+len(want) || lines[0] != strings.TrimSuffix(textHeader, "\n") {
			t.Fatalf("%s -o text:\n%s", name, text.String())
		}
		for i, w := range want {
			suffix := " end-of-capture tunnel=" + w.tunnel + ":" + w.id + " outer=" + w.outerSrc + ">" + w.outerDst
			if !strings.HasPrefix(lines[1+i], w.proto+" ") || !strings.HasSuffix(lines[1+i], suffix) {
				t.Errorf("%s -o text, flow %d: %q, want it to end %q", name, i+1, lines[1+i], suffix)
			}
		}

		var plain bytes.Buffer
		if code := run([]string{"-r", capture, "-o", "csv", "-q"}, &plain, &stderr); code != 0 {
			t.Fatalf("%s without --decap: exit %d: %s", name, code, stderr.String())
		}
		// The outer flows, or for GRE none: it is no TCP or UDP.
		if header, _, _ := strings.Cut(plain.String(), "\n"); plain.Len() > 0 && header != strings.Join(fields, ",") || strings.Contains(plain.String(), want[0].src+",") {
			t.Errorf("%s without --decap:\n%s", name, plain.String())
		}
	}

	http := filepath.Join("..", "..", "testdata", "http.pcap")
	for format, tail := range map[string]string{
		"csv":  ",,,,",
		"json": `,"tunnel":null,"tunnel_id":null,"outer_src_ip":null,"outer_dst_ip":null}`,
	} {
		var with, without, stderr bytes.Buffer
		if run([]string{"-r", http, "--decap", "-o", format, "-q"}, &with, &stderr) != 0 || run([]string{"-r", http, "-o", format, "-q"}, &without, &stderr) != 0 {
			t.Fatal(stderr.String())
		}
		w, wo := strings.Split(strings.TrimSuffix(with.String(), "\n"), "\n"), strings.Split(strings.TrimSuffix(without.String(), "\n"), "\n")
		if len(w) != len(wo) || len(w) < 2 {
			t.Fatalf("-o %s: %d lines with --decap, %d without", format, len(w), len(wo))
		}
		for i := range w {
			want := wo[i] + tail
			switch {
			case format == "csv" && i == 0:
				want = wo[i] + "," + strings.Join(tunnelFields, ",")
			case format == "json":
				want = strings.TrimSuffix(wo[i], "}") + tail
			}
			if w[i] != want {
				t.Errorf("http.pcap -o %s --decap, line %d:\n got %s\nwant %s", format, i+1, w[i], want)
			}
		}
	}
	var with, without, stderr bytes.Buffer
	if run([]string{"-r", http, "--decap", "-q"}, &with, &stderr) != 0 || run([]string{"-r", http, "-q"}, &without, &stderr) != 0 || with.String() != without.String() {
		t.Errorf("http.pcap -o text: with --decap\n%s\nwithout\n%s", with.String(), without.String())
	}
}

// decapRows reads CSV or JSON lines into their fields by name, as CSV writes them.
func decapRows(t *testing.T, format string, out []byte) []map[string]string {
	t.Helper()
	var rows []map[string]string
	if format == "csv" {
		records, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
		if err != nil || len(records) == 0 {
			t.Fatalf("CSV: %v", err)
		}
		for _, r := range records[1:] {
			row := map[string]string{}
			for i, name := range records[0] {
				row[name] = r[i]
			}
			rows = append(rows, row)
		}
		return rows
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("JSON %s: %v", line, err)
		}
		row := map[string]string{}
		for k, v := range m {
			switch v := v.(type) {
			case string:
				row[k] = v
			case float64:
				row[k] = strconv.FormatFloat(v, 'f', -1, 64)
			case nil:
				row[k] = ""
			default:
				t.Fatalf("JSON %s: %s is %T", line, k, v)
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// TestDecapSinks: --decap changes the flows the sinks get too. Kafka's JSON
// messages are the -o json lines, tunnel fields included; its protobuf messages
// carry the tunnel; the IPFIX collector gets the inner flows' addresses.
func TestDecapSinks(t *testing.T) {
	capture := filepath.Join("..", "..", "testdata", "gre.pcap")
	want := decapFlows["gre.pcap"]
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "json", "protobuf"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]

	var stdout, stderr bytes.Buffer
	if code := run([]string{"-r", capture, "--decap", "-o", "json", "-q", "--kafka", addr, "--kafka-topic", "json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	var got []string
	for _, v := range consumeValues(t, addr, "json", len(lines)) {
		got = append(got, string(v))
	}
	slices.Sort(got)
	slices.Sort(lines)
	if !slices.Equal(got, lines) || !strings.Contains(lines[0], `"tunnel":"`) {
		t.Errorf("Kafka JSON: read back\n%q\n-o json wrote\n%q", got, lines)
	}

	if code := run([]string{"-r", capture, "--decap", "-q", "--kafka", addr, "--kafka-topic", "protobuf", "--kafka-format", "protobuf"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var tunnels []string
	for _, v := range consumeValues(t, addr, "protobuf", len(want)) {
		var m flowpb.Flow
		if err := proto.Unmarshal(v, &m); err != nil {
			t.Fatal(err)
		}
		src, _ := netip.AddrFromSlice(m.SrcIp)
		tun := m.GetTunnel()
		outerSrc, _ := netip.AddrFromSlice(tun.GetOuterSrcIp())
		outerDst, _ := netip.AddrFromSlice(tun.GetOuterDstIp())
		tunnels = append(tunnels, strings.Join([]string{src.String(), tun.GetKind(), strconv.FormatUint(uint64(tun.GetId()), 10), outerSrc.String(), outerDst.String()}, " "))
	}
	var wantTunnels []string
	for _, w := range want {
		wantTunnels = append(wantTunnels, strings.Join([]string{w.src, w.tunnel, w.id, w.outerSrc, w.outerDst}, " "))
	}
	slices.Sort(tunnels)
	slices.Sort(wantTunnels)
	if !slices.Equal(tunnels, wantTunnels) {
		t.Errorf("Kafka protobuf: tunnels %q, want %q", tunnels, wantTunnels)
	}

	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if code := run([]string{"-r", capture, "--decap", "-q", "--ipfix", pc.LocalAddr().String()}, &stdout, &stderr); code != 0 {
		t.Fatalf("--ipfix: exit %d: %s", code, stderr.String())
	}
	ts := netflow.CreateTemplateSystem()
	var sources []string
	buf := make([]byte, 65536)
	for len(sources) < len(want) {
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("IPFIX: sources %q so far: %v", sources, err)
		}
		var p netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(buf[:n]), ts, nil, &p); err != nil {
			t.Fatal(err)
		}
		for _, set := range p.FlowSets {
			if d, ok := set.(netflow.DataFlowSet); ok {
				for _, r := range d.Records {
					for _, v := range r.Values {
						if b, ok := v.Value.([]byte); ok && v.Type == netflow.IPFIX_FIELD_sourceIPv4Address {
							a, _ := netip.AddrFromSlice(b)
							sources = append(sources, a.String())
						}
					}
				}
			}
		}
	}
	var wantSources []string
	for _, w := range want {
		wantSources = append(wantSources, w.src)
	}
	slices.Sort(sources)
	slices.Sort(wantSources)
	if !slices.Equal(sources, wantSources) {
		t.Errorf("IPFIX: sourceIPv4Address %q, want the inner flows' %q", sources, wantSources)
	}
}

// TestDecapClickHouseSink: with --decap, the ClickHouse table holds the inner
// flows, as CSV prints them; it has no columns for the tunnel.
func TestDecapClickHouseSink(t *testing.T) {
	srv := clickhouseServer(t)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-r", filepath.Join("..", "..", "testdata", "vxlan.pcap"), "--decap", "-o", "csv", "-q", "--clickhouse", srv.Native}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var want []string
	for _, w := range decapFlows["vxlan.pcap"] {
		want = append(want, strings.Join([]string{w.src, w.sport, w.dst, w.dport, strconv.Itoa(w.fwdPackets), strconv.Itoa(w.fwdBytes), strconv.Itoa(w.revPackets), strconv.Itoa(w.revBytes)}, " "))
	}
	slices.Sort(want)
	if got := tableConversations(t, srv); !slices.Equal(got, want) || !slices.Equal(csvConversations(stdout.String()), want) {
		t.Errorf("the table holds\n%q\nCSV\n%q\nwant\n%q", got, csvConversations(stdout.String()), want)
	}
}

// TestDecapFilter: with --decap the filter still reads the outer frame: VXLAN's
// UDP port takes the inner flows, and the inner TCP port takes nothing.
func TestDecapFilter(t *testing.T) {
	capture := filepath.Join("..", "..", "testdata", "vxlan.pcap")
	for filter, want := range map[string]int{"udp port 4789": len(decapFlows["vxlan.pcap"]), "tcp port 8080": 0} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"-r", capture, "--decap", "-o", "csv", "-q", filter}, &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d: %s", filter, code, stderr.String())
		}
		if got := max(strings.Count(stdout.String(), "\n")-1, 0); got != want || want > 0 && !strings.Contains(stdout.String(), ",vxlan,42,") {
			t.Errorf("--decap %s: %d flows, want %d:\n%s", filter, got, want, stdout.String())
		}
	}
}
