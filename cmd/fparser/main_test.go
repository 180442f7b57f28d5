package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/fparser/fparser"
)

var update = flag.Bool("update", false, "rewrite testdata/*.flows.csv from the current output")

func captures(t *testing.T) []string {
	var out []string
	for _, pat := range []string{"*.pcap", "*.pcapng", "*.pcap.gz"} {
		m, err := filepath.Glob(filepath.Join("..", "..", "testdata", pat))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if len(out) < 12 {
		t.Fatalf("found only %d captures in testdata", len(out))
	}
	return out
}

// TestGolden pins the CSV output for every capture in testdata: flows, counters,
// times and end reasons, in order.
func TestGolden(t *testing.T) {
	for _, c := range captures(t) {
		t.Run(filepath.Base(c), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"-r", c, "-o", "csv", "-q"}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			golden := c + ".flows.csv"
			if *update {
				if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got := stdout.String(); got != string(want) {
				t.Errorf("output differs from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestFormats(t *testing.T) {
	c := filepath.Join("..", "..", "testdata", "reuse.pcap")
	for _, tc := range []struct {
		format string
		want   []string
	}{
		{"text", []string{
			"PROTO SRC                     DST                     VLAN    PKTS>     BYTES>    <PKTS     <BYTES FLAGS>  <FLAGS  FIRST SEEN                         DURATION END",
			"tcp   192.0.2.1:45000         192.0.2.2:8080             0        6        408        6        539 SPF.    SPF.    2026-11-28T13:36:43.052620000Z      1.002ms reused",
		}},
		{"json", []string{
			`{"protocol":"tcp","src_ip":"192.0.2.1","src_port":45000,"dst_ip":"192.0.2.2","dst_port":8080,"vlan_id":0,"src2dst_packets":6,"src2dst_bytes":408,"dst2src_packets":6,"dst2src_bytes":539,"src2dst_tcp_flags":"SPF.","dst2src_tcp_flags":"SPF.","first_seen":"2026-11-28T13:36:43.052620000Z","last_seen":"2026-11-28T13:36:43.053622000Z","bidirectional_duration_ms":1.002,"end_reason":"reused","src2dst_interface":"","dst2src_interface":"","duplicate_packets":0,"pid":0,"process":"","cgroup":"","community_id":"1:k/fMP7TAXYMVgKxK9jgFc/+2s7g="}`,
		}},
		{"csv", []string{
			"protocol,src_ip,src_port,dst_ip,dst_port,vlan_id,src2dst_packets,src2dst_bytes,dst2src_packets,dst2src_bytes,src2dst_tcp_flags,dst2src_tcp_flags,first_seen,last_seen,bidirectional_duration_ms,end_reason,src2dst_interface,dst2src_interface,duplicate_packets,pid,process,cgroup,community_id",
			"tcp,192.0.2.1,45000,192.0.2.2,8080,0,6,408,6,539,SPF.,SPF.,2026-11-28T13:36:43.052620000Z,2026-11-28T13:36:43.053622000Z,1.002,reused,,,0,,,,1:k/fMP7TAXYMVgKxK9jgFc/+2s7g=",
		}},
	} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"-r", c, "-o", tc.format}, &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.format, code, stderr.String())
		}
		lines := strings.Split(stdout.String(), "\n")
		for i, w := range tc.want {
			if i >= len(lines) || lines[i] != w {
				t.Errorf("%s line %d:\n got %q\nwant %q", tc.format, i, lines[min(i, len(lines)-1)], w)
			}
		}
		want := "fparser: 24 packets, 24 in flows (tcp 24, udp 0), 0 non-IP, 0 other L4, 0 malformed, 0 fragments (0 not in a flow); 2 flows;"
		if !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%s: summary %q, want one line starting %q", tc.format, stderr.String(), want)
		}
	}
}

// TestUsageAndErrors: -h goes to standard output with status 0; every usage error
// is one line that names the flag as typed and says what is wanted, with status 2;
// every failure at run time is one line with status 1.
func TestUsageAndErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pcap")
	os.WriteFile(garbage, []byte("this is not a capture file at all"), 0o644)
	http := filepath.Join("..", "..", "testdata", "http.pcap")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "fparser: nothing to read: give -r FILE or -i IFACE"},
		{[]string{"-r", "x", "-i", "y"}, 2, "fparser: -r and -i exclude each other"},
		{[]string{"-r", garbage, "-o", "xml"}, 2, "fparser: -o xml: want text, json or csv"},
		{[]string{"-r", filepath.Join(dir, "missing.pcap")}, 1, "fparser: -r " + filepath.Join(dir, "missing.pcap") + ": no such file"},
		{[]string{"-r", dir}, 1, "fparser: -r " + dir + ": is a directory, not a capture file"},
		{[]string{"-i", "fpt-nosuch0"}, 1, "fparser: -i fpt-nosuch0: no such network interface"},
		{[]string{"-i", "lo", "-i", "fpt-nosuch0"}, 1, "fparser: -i fpt-nosuch0: no such network interface"},
		{[]string{"-r", http, "--log-format", "xml"}, 2, "fparser: --log-format xml: want text or json"},
		{[]string{"-i", "veth["}, 2, "fparser: -i veth[: not a valid pattern (syntax error in pattern); want a name, a shell pattern such as 'veth*', or all"},
		{[]string{"-i", "any"}, 1, `fparser: -i any: no such network interface: fparser attaches to interfaces by name, and libpcap's "any" is not one`},
		{[]string{"-r", garbage}, 1, "fparser: " + garbage + ": at byte 0: not a pcap or pcapng file"},
		{[]string{"-r", garbage, "tcp", "prot", "80"}, 2, `fparser: filter "tcp prot 80": column 5 ("prot"): unknown word "prot"`},
		{[]string{"-r", garbage, "host", "example.com"}, 2, `fparser: filter "host example.com": column 6 ("example.com"): host names are not resolved`},
		{[]string{"-r", garbage, "-f", "tcp", "udp"}, 2, "fparser: give the filter once"},
		{[]string{"-F", filepath.Join(dir, "missing.filter"), "-r", garbage}, 2, "fparser: -F: open"},
		{[]string{"-r", http, "--flow-timeout", "ten"}, 2, "fparser: --flow-timeout ten: want a duration with a unit, such as 5s, 2m or 500ms"},
		{[]string{"-r", http, "--fin-timeout", "5"}, 2, "fparser: --fin-timeout 5: want a duration with a unit"},
		{[]string{"-r", http, "--flow-timeout", "-5s"}, 2, "fparser: --flow-timeout -5s: is negative"},
		{[]string{"-r", http, "-s", "abc"}, 2, "fparser: -s abc: want a whole number"},
		{[]string{"-r", http, "-s", "0"}, 2, "fparser: -s 0: want a positive length"},
		{[]string{"-r", http, "-q=maybe"}, 2, "fparser: -q maybe: want true or false"},
		{[]string{"-r", http, "--bogus"}, 2, "fparser: unknown option --bogus (see -h)"},
		{[]string{"-r"}, 2, "fparser: -r needs a value"},
		{[]string{"-r", http, "--sink-queue", "5"}, 2, "fparser: --sink-queue needs --ipfix, --kafka or --clickhouse"},
		{[]string{"-r", http, "--on-full", "drop"}, 2, "fparser: --on-full needs --ipfix, --kafka or --clickhouse"},
		{[]string{"-r", http, "--ipfix", "127.0.0.1:9", "--on-full", "wait"}, 2, "fparser: --on-full wait: want block or drop"},
		{[]string{"-r", http, "--ipfix", "127.0.0.1:9", "--sink-queue", "0"}, 2, "fparser: --sink-queue 0: want a positive number of flows"},
		{[]string{"-r", http, "--ipfix", "127.0.0.1:9", "--sink-queue-bytes", "12X"}, 2, "fparser: --sink-queue-bytes 12X: want a positive size in bytes, or with K, M or G, such as 64M"},
		{[]string{"-r", http, "--ipfix", "127.0.0.1:9", "--sink-timeout", "0s"}, 2, "fparser: --sink-timeout 0s: want a positive duration"},
		{[]string{"-r", http, "--max-flows", "5"}, 2, "fparser: --max-flows is for -i, not -r"},
		{[]string{"-r", http, "--attach", "xdp"}, 2, "fparser: --attach is for -i, not -r"},
		{[]string{"-r", http, "--pin", "/x"}, 2, "fparser: --pin is for -i, not -r"},
		{[]string{"-r", http, "--coarse-clock"}, 2, "fparser: --coarse-clock is for -i, not -r"},
		{[]string{"-i", "lo", "-s", "96"}, 2, "fparser: -s is for -r"},
		{[]string{"-i", "lo", "--attach", "foo"}, 2, "fparser: --attach foo: want auto, xdp, xdp-native, xdp-generic, tc or tc-legacy"},
		{[]string{"-i", "lo", "--attach", "tc-legacy", "--pin", dir}, 2, "fparser: --attach tc-legacy: clsact filters are not BPF links and cannot be pinned"},
		{[]string{"-r", http, "--ipfix-proto", "sctp"}, 2, "fparser: --ipfix-proto needs --ipfix"},
		{[]string{"-r", http, "--ipfix-uniflow"}, 2, "fparser: --ipfix-uniflow needs --ipfix"},
		{[]string{"-r", http, "--ipfix", "127.0.0.1:4739", "--ipfix-proto", "sctp"}, 2, "fparser: --ipfix-proto sctp: want udp or tcp"},
		{[]string{"-r", http, "--ipfix", "nowhere"}, 2, "fparser: --ipfix nowhere: want HOST:PORT: missing port in address"},
		{[]string{"-r", http, "--metrics", "junk:x:y"}, 2, "fparser: --metrics junk:x:y: want HOST:PORT, :PORT or PORT"},
		{[]string{"-r", http, "--sort", "size"}, 2, "fparser: --sort size: want packets, bytes, pps or bps"},
		{[]string{"-r", http, "-o", "csv", "--packets", "3"}, 2, "fparser: --packets needs -o text or -o json"},
		{[]string{"-r", http, "--features"}, 2, "fparser: --features needs -o csv or -o json"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.HasPrefix(stderr.String(), tc.want) {
			t.Errorf("fparser %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
		if strings.Count(stderr.String(), "\n") != 1 || stdout.Len() != 0 {
			t.Errorf("fparser %v: want a one-line error and no output, got %q and %q", tc.args, stderr.String(), stdout.String())
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"top", "-h"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "Usage:") || stderr.Len() != 0 {
			t.Errorf("fparser %v: exit %d, stdout %q, stderr %q; want the usage on standard output and exit 0", args, code, stdout.String(), stderr.String())
		}
	}
}

// TestVersion: --version names the module's version (a development build says so),
// the Go version and the kernel object's hash, on standard output.
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	v := fparser.Version()
	want := fmt.Sprintf("fparser %s, built with %s, kernel object %s\n", v.Module, runtime.Version(), v.KernelObject)
	if stdout.String() != want || len(v.KernelObject) != 12 || v.Module == "" {
		t.Errorf("--version printed %q, want %q", stdout.String(), want)
	}
}

// TestFeaturesAndSort: --features adds NFStream's statistics by name, in CSV and in
// JSON, with the same values; --sort prints the flows largest first.
func TestFeaturesAndSort(t *testing.T) {
	c := filepath.Join("..", "..", "testdata", "http.pcap")
	var csvOut, jsonOut, stderr bytes.Buffer
	if code := run([]string{"-r", c, "-o", "csv", "-q", "--features", "--sort", "bytes"}, &csvOut, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if code := run([]string{"-r", c, "-o", "json", "-q", "--features", "--sort", "bytes"}, &jsonOut, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(csvOut.String()), "\n")
	header := strings.Split(lines[0], ",")
	if want := len(fields) + 34; len(header) != want || header[len(fields)] != "src2dst_min_ps" || header[len(header)-1] != "byte_rate" {
		t.Fatalf("header has %d fields, want %d: %v", len(header), want, header)
	}
	var prevBytes int
	for i, line := range lines[1:] {
		row := strings.Split(line, ",")
		col := func(name string) string { return row[slices.Index(header, name)] }
		bytes := atoi(t, col("src2dst_bytes")) + atoi(t, col("dst2src_bytes"))
		if i > 0 && bytes > prevBytes {
			t.Errorf("row %d has %d bytes, more than the row before (%d): not sorted", i, bytes, prevBytes)
		}
		prevBytes = bytes
		var obj map[string]any
		if err := json.Unmarshal([]byte(strings.Split(strings.TrimSpace(jsonOut.String()), "\n")[i]), &obj); err != nil {
			t.Fatal(err)
		}
		n := len(fields)
		for j, name := range header[n:] {
			if got := fmt.Sprint(obj[name]); got != row[n+j] && strconv.Quote(row[n+j]) != got {
				if v, err := strconv.ParseFloat(row[n+j], 64); err != nil || v != obj[name] {
					t.Errorf("row %d: %s is %s in CSV, %v in JSON", i, name, row[n+j], obj[name])
				}
			}
		}
	}
	// The first flow of http.pcap by bytes: the IPv4 download, 9 packets out and 8 in.
	first := strings.Split(lines[1], ",")
	col := func(name string) string { return first[slices.Index(header, name)] }
	if first[1] != "192.0.2.1" || col("src2dst_min_ps") != "52" || col("src2dst_max_ps") != "138" ||
		col("src2dst_syn_packets") != "1" || col("src2dst_ack_packets") != "8" ||
		col("src2dst_tcp_flags") != "SPF." || col("dst2src_tcp_flags") != "SPF." || col("bidirectional_duration_ms") != "0.988" {
		t.Errorf("first row %v", first)
	}

	for _, args := range [][]string{{"--features"}, {"--sort", "size"}} {
		var out, errOut bytes.Buffer
		if code := run(append([]string{"-r", c}, args...), &out, &errOut); code != 2 || errOut.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a reason", args, code, errOut.String())
		}
	}
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIPFIXOption: --ipfix exports every flow the CLI prints to a collector, here a
// UDP socket of the test decoded with goflow2; a bad --ipfix-proto is a usage error.
func TestIPFIXOption(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := filepath.Join("..", "..", "testdata", "http.pcap")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-r", c, "-o", "csv", "--ipfix", pc.LocalAddr().String()}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	flows := strings.Count(stdout.String(), "\n") - 1
	ts := netflow.CreateTemplateSystem()
	records := 0
	buf := make([]byte, 65536)
	for {
		pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		var p netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(buf[:n]), ts, nil, &p); err != nil {
			t.Fatal(err)
		}
		for _, fs := range p.FlowSets {
			if d, ok := fs.(netflow.DataFlowSet); ok {
				records += len(d.Records)
			}
		}
	}
	if flows < 2 || records != flows || !strings.Contains(stderr.String(), fmt.Sprintf("ipfix: %d flows to %s over udp: %d sent, 0 dropped, 0 failed;", flows, pc.LocalAddr(), flows)) {
		t.Errorf("%d flows printed, %d IPFIX records received; stderr %q", flows, records, stderr.String())
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"-r", c, "--ipfix", pc.LocalAddr().String(), "--ipfix-proto", "sctp"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "sctp") {
		t.Errorf("--ipfix-proto sctp: exit %d, %q", code, errOut.String())
	}
}

// TestProgressOnlyOnATerminal: with standard error on a terminal (a pty from
// script(1)), -r draws a progress line and erases it at the end; with standard error
// in a pipe, nothing of it appears.
func TestProgressOnlyOnATerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("needs script(1), from util-linux")
	}
	bin := buildCommand(t)
	c := filepath.Join("..", "..", "testdata", "http.pcap")
	tty, err := exec.Command("script", "-qfec", bin+" -r "+c+" -o csv > /dev/null", "/dev/null").Output()
	if err != nil {
		t.Fatalf("under script: %v", err)
	}
	if s := string(tty); !strings.Contains(s, "\rfparser: 100.0% (") || !strings.Contains(s, "packets/s") || !strings.Contains(s, "\r\033[K") {
		t.Errorf("on a terminal, stderr was %q", s)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-r", c, "-o", "csv")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(stderr.String(), "\r\033") || strings.Contains(stderr.String(), "%") {
		t.Errorf("in a pipe, stderr was %q", stderr.String())
	}
}

// TestOutputFieldsArePinned: the CSV header and the JSON keys are these, in this
// order, and the field tables of docs/fields.md name every one. Changing them breaks
// users' scripts: this test makes it a deliberate act.
func TestOutputFieldsArePinned(t *testing.T) {
	const header = "protocol,src_ip,src_port,dst_ip,dst_port,vlan_id,src2dst_packets,src2dst_bytes,dst2src_packets,dst2src_bytes,src2dst_tcp_flags,dst2src_tcp_flags,first_seen,last_seen,bidirectional_duration_ms,end_reason,src2dst_interface,dst2src_interface,duplicate_packets,pid,process,cgroup,community_id"
	c := filepath.Join("..", "..", "testdata", "http.pcap")
	var csvOut, jsonOut, stderr bytes.Buffer
	if run([]string{"-r", c, "-o", "csv", "-q"}, &csvOut, &stderr) != 0 || run([]string{"-r", c, "-o", "json", "-q", "--features", "--tcp-quality", "--decap"}, &jsonOut, &stderr) != 0 {
		t.Fatal(stderr.String())
	}
	if got, _, _ := strings.Cut(csvOut.String(), "\n"); got != header {
		t.Errorf("CSV header\n got %s\nwant %s", got, header)
	}
	first, _, _ := strings.Cut(jsonOut.String(), "\n")
	dec := json.NewDecoder(strings.NewReader(first))
	dec.Token() // {
	var keys []string
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	want := slices.Concat(strings.Split(header, ","), featureFields, qualityFields, tunnelFields)
	if !slices.Equal(keys, want) {
		t.Errorf("JSON keys\n got %v\nwant %v", keys, want)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "docs", "fields.md")) // the field tables
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Split(header, ",") {
		if !strings.Contains(string(readme), "`"+f+"`") {
			t.Errorf("docs/fields.md's field table lacks %s", f)
		}
	}
	for _, f := range featureFields {
		f = strings.TrimPrefix(strings.TrimPrefix(f, "src2dst"), "dst2src")
		if !strings.Contains(string(readme), f+"`") {
			t.Errorf("docs/fields.md's feature table lacks %s", f)
		}
	}
	top, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range slices.Concat(qualityFields, tunnelFields) {
		if !strings.Contains(string(readme), "`"+f+"`") {
			t.Errorf("docs/fields.md's TCP quality or tunnel table lacks %s", f)
		}
		if !strings.Contains(string(top), "`"+f+"`") {
			t.Errorf("README.md's options table lacks %s", f)
		}
	}
}

// TestTCPQualityFields: --tcp-quality measures, on testdata/tcp-quality.pcap, the
// handshake (12 ms: 10 ms to the server and back, 2 ms to the client and back), the
// client's retransmission, fast retransmission, spurious retransmission and
// out-of-order segment, and the server's two zero windows, as tshark flags them,
// then the second connection's fast retransmission after an uncaptured segment;
// a UDP flow has none of the fields, and without the option there are none.
func TestTCPQualityFields(t *testing.T) {
	var out, stderr bytes.Buffer
	if run([]string{"-r", filepath.Join("..", "..", "testdata", "tcp-quality.pcap"), "-o", "csv", "-q", "--tcp-quality"}, &out, &stderr) != 0 {
		t.Fatal(stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and two flows, got\n%s", out.String())
	}
	for i, want := range []string{"12,10,2,3,0,1,0,0,2", "20,10,10,1,0,0,0,0,0"} {
		if got := strings.Join(strings.Split(lines[1+i], ",")[len(fields):], ","); got != want {
			t.Errorf("flow %d: quality fields %s, want %s", i+1, got, want)
		}
	}
	out.Reset()
	if run([]string{"-r", filepath.Join("..", "..", "testdata", "dns.pcap"), "-o", "json", "-q", "--tcp-quality"}, &out, &stderr) != 0 {
		t.Fatal(stderr.String())
	}
	first, _, _ := strings.Cut(out.String(), "\n")
	if !strings.Contains(first, `"udp"`) || !strings.HasSuffix(first, `"handshake_rtt_ms":null,"src2dst_rtt_ms":null,"dst2src_rtt_ms":null,"src2dst_retransmissions":null,"dst2src_retransmissions":null,"src2dst_out_of_order":null,"dst2src_out_of_order":null,"src2dst_zero_windows":null,"dst2src_zero_windows":null}`) {
		t.Errorf("a UDP flow with --tcp-quality: %s", first)
	}
	if code := run([]string{"-r", filepath.Join("..", "..", "testdata", "dns.pcap"), "--tcp-quality"}, &out, &stderr); code != 2 || !strings.Contains(stderr.String(), "--tcp-quality") {
		t.Errorf("--tcp-quality with -o text: exit %d, %s", code, stderr.String())
	}

	// With -o text and --ipfix, the quality goes to the collector: the TCP flows
	// in data sets of the quality's templates (261 for IPv4 biflows).
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	stderr.Reset()
	if code := run([]string{"-r", filepath.Join("..", "..", "testdata", "tcp-quality.pcap"), "-q", "--tcp-quality", "--ipfix", pc.LocalAddr().String()}, io.Discard, &stderr); code != 0 {
		t.Fatalf("--tcp-quality with --ipfix: exit %d, %s", code, stderr.String())
	}
	sets := map[uint16]int{}
	buf := make([]byte, 65535)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for sets[261] < 2 {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("the collector got data sets %v, want two records of template 261: %v", sets, err)
		}
		for m := buf[16:n]; len(m) >= 4; {
			id, size := uint16(m[0])<<8|uint16(m[1]), int(m[2])<<8|int(m[3])
			if size < 4 || size > len(m) {
				t.Fatalf("a set of %d bytes in a message of %d", size, n)
			}
			if id == 261 {
				sets[id] += (size - 4) / (4 + 4 + 2 + 2 + 1 + 2 + 8 + 8 + 2 + 1 + 4 + 4 + 8*4 + 3*8 + 6*4)
			}
			m = m[size:]
		}
	}
}

// buildCommand builds the command into a temporary directory, for the tests that run
// it on a terminal.
func buildCommand(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fparser")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestOutputFaults: a full disk (/dev/full) or a standard output whose reader has
// gone ends the command at once with a clear error and exit status 1, after the
// summary; it does not hang or die by a signal.
func TestOutputFaults(t *testing.T) {
	bin := buildCommand(t)
	c := filepath.Join("..", "..", "testdata", "http.pcap")
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full")
	}
	defer full.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	for _, tc := range []struct {
		name string
		out  *os.File
		want string
	}{{"full disk", full, "no space left on device"}, {"closed pipe", w, "broken pipe"}} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "-r", c, "-o", "json")
		cmd.Stdout, cmd.Stderr = tc.out, &stderr
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "writing flows: ") || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("%s: %v, stderr %q", tc.name, err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("%s: hung", tc.name)
		}
	}
}

// TestReadStandardInput: -r - reads the capture from standard input, as tcpdump
// does, gzip included, with the same flows as the file gives.
func TestReadStandardInput(t *testing.T) {
	for _, name := range []string{"http.pcap", "nanoseconds.pcap.gz", "sections.pcapng"} {
		path := filepath.Join("..", "..", "testdata", name)
		var want, got, stderr bytes.Buffer
		if code := run([]string{"-r", path, "-o", "csv", "-q"}, &want, &stderr); code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, stderr.String())
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		stdin := os.Stdin
		os.Stdin = f
		code := run([]string{"-r", "-", "-o", "csv", "-q"}, &got, &stderr)
		os.Stdin = stdin
		f.Close()
		if code != 0 || got.String() != want.String() || want.Len() == 0 {
			t.Errorf("%s from standard input: exit %d, %s\n got %q\nwant %q", name, code, stderr.String(), got.String(), want.String())
		}
	}
}

// TestLogFormatJSON: --log-format json writes each log message as one JSON object
// on standard error, which journald and log collectors take as it is.
func TestLogFormatJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-r", filepath.Join("..", "..", "testdata", "http.pcap"), "-q", "-v", "--metrics", "127.0.0.1:0", "--log-format", "json"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var logged int
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec struct{ Time, Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Msg == "" || rec.Level == "" || rec.Time == "" {
			t.Errorf("not a JSON log record: %q (%v)", line, err)
			continue
		}
		logged++
	}
	if logged == 0 || !strings.Contains(stderr.String(), `"msg":"serving metrics"`) {
		t.Errorf("no JSON record of the metrics server on standard error: %q", stderr.String())
	}
}

// TestByteSize: --sink-queue-bytes takes bytes, or K, M and G as powers of 1024,
// and says its default back as it is typed.
func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1000": 1000, "512K": 512 << 10, "64M": 64 << 20, "1G": 1 << 30} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want || b.String() != in {
			t.Errorf("%s: %d %q %v, want %d", in, int64(b), b.String(), err, want)
		}
	}
	for _, in := range []string{"", "M", "-1M", "0", "1.5G", "1T", "9999999999G"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("%q: taken as %d", in, int64(b))
		}
	}
}
