package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testnet"
)

// TestPipeline runs the fleet's pipeline on loopback: fparser publishes every flow
// of a replay to Kafka (franz-go's kfake), ClickHouse's Kafka engine reads the
// topic and the materialized view of deploy/clickhouse-kafka.sql turns each
// message into a row of deploy/clickhouse.sql's table. The same run exports the
// flows as IPFIX to nfdump's nfcapd. Each flow's totals in ClickHouse (protocol,
// endpoints, packets and bytes each way) equal nfdump's, flow for flow.
func TestPipeline(t *testing.T) {
	testharness.Require(t, testharness.HasTool("nfcapd") && testharness.HasTool("nfdump"), "the pipeline test compares with nfdump's nfcapd (apt-get install nfdump): skipped")
	testharness.Require(t, testharness.HasTool("clickhouse-client"), "the pipeline test runs clickhouse-client (apt-get install clickhouse-client): skipped")
	srv := clickhouseServer(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "fparser-flows"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	broker := cluster.ListenAddrs()[0]
	ctx := context.Background()
	// docs/clickhouse.md's commands, but for the server's port (and the table
	// that clickhouseServer made already).
	_, port, _ := net.SplitHostPort(srv.Native)
	for _, cmd := range []string{
		"clickhouse-client --port " + port + " --multiquery < ../../deploy/clickhouse.sql",
		"sed 's/kafka1:9092/" + broker + "/' ../../deploy/clickhouse-kafka.sql | clickhouse-client --port " + port + " --multiquery",
	} {
		if out, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
	}

	nfcapd := testnet.StartNfcapd(t)

	// Flows of ten minutes ago from 20 talkers, for the query of the last hour,
	// and older ones of testdata.
	recent := writeFlowsAt(t, 300, time.Now().Add(-10*time.Minute).Truncate(time.Second), 20)
	flows := 0
	var ids []string                  // each flow's endpoints and community_id, as the CSV says them
	talkers := map[string][2]uint64{} // bytes, flows
	for _, capture := range []string{recent, filepath.Join("..", "..", "testdata", "http.pcap"), filepath.Join("..", "..", "testdata", "dns.pcap")} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"-r", capture, "-o", "csv", "--kafka", broker, "--ipfix", nfcapd.Addr()}, &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d: %s", capture, code, stderr.String())
		}
		flows += csvRows(stdout.String())
		for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n")[1:] {
			f := strings.Split(line, ",")
			ids = append(ids, strings.Join([]string{f[1], f[2], f[3], f[4], f[22]}, ","))
		}
		if capture == recent {
			for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n")[1:] {
				f := strings.Split(line, ",")
				fwd, _ := strconv.ParseUint(f[7], 10, 64)
				rev, _ := strconv.ParseUint(f[9], 10, 64)
				tk := talkers[f[1]]
				talkers[f[1]] = [2]uint64{tk[0] + fwd + rev, tk[1] + 1}
			}
		}
	}
	nflog := nfcapd.Stop()
	want := nfcapd.Rows(t)
	slices.Sort(want)
	if len(want) != flows {
		t.Fatalf("nfdump read %d flows, fparser printed %d\n%s", len(want), flows, nflog)
	}

	// The Kafka engine consumes in the background: wait for every flow.
	var got []string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		out, err := srv.Query(ctx, `SELECT protocol, replaceOne(IPv6NumToString(src_ip), '::ffff:', ''), src_port, replaceOne(IPv6NumToString(dst_ip), '::ffff:', ''), dst_port,
			src2dst_packets, src2dst_bytes, dst2src_packets, dst2src_bytes FROM fparser_flows`)
		if err != nil {
			t.Fatal(err)
		}
		got = nil
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line != "" {
				got = append(got, strings.ReplaceAll(line, "\t", ","))
			}
		}
		if len(got) >= flows || time.Now().After(deadline) {
			break
		}
	}
	slices.Sort(got)
	if len(got) == 0 {
		log, _ := os.ReadFile(filepath.Join(srv.Dir, "server.err.log"))
		t.Logf("ClickHouse's error log:\n%s", log[max(0, len(log)-4000):])
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ClickHouse holds %d flows, nfdump %d: they differ\nClickHouse: %q\nnfdump: %q", len(got), len(want), got[:min(5, len(got))], want[:min(5, len(want))])
	}
	t.Logf("%d flows through Kafka into ClickHouse equal the %d nfdump read from IPFIX, flow for flow", len(got), len(want))

	// The community_id of each message reached the table.
	out2, err := srv.Query(ctx, `SELECT replaceOne(IPv6NumToString(src_ip), '::ffff:', ''), src_port, replaceOne(IPv6NumToString(dst_ip), '::ffff:', ''), dst_port, community_id FROM fparser_flows`)
	if err != nil {
		t.Fatal(err)
	}
	gotIDs := strings.Split(strings.ReplaceAll(strings.TrimSpace(out2), "\t", ","), "\n")
	slices.Sort(gotIDs)
	slices.Sort(ids)
	if !slices.Equal(gotIDs, ids) {
		t.Errorf("community IDs in ClickHouse differ from the CSV's: %q, want %q", gotIDs[:min(3, len(gotIDs))], ids[:min(3, len(ids))])
	}

	// docs/clickhouse.md's top talkers of the last hour.
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "clickhouse.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(doc), "Top talkers in the last hour")
	_, query, _ := strings.Cut(after, "```sql\n")
	query, _, _ = strings.Cut(query, "```")
	answer, err := srv.Query(ctx, query)
	if err != nil {
		t.Fatalf("the top talkers query: %v", err)
	}
	type talker struct {
		addr         string
		bytes, flows uint64
	}
	var top []talker
	for addr, tk := range talkers {
		top = append(top, talker{addr, tk[0], tk[1]})
	}
	slices.SortFunc(top, func(a, b talker) int {
		if a.bytes != b.bytes {
			return cmp.Compare(b.bytes, a.bytes)
		}
		return strings.Compare(a.addr, b.addr)
	})
	var wantTop strings.Builder
	for _, tk := range top[:10] {
		fmt.Fprintf(&wantTop, "%s\t%d\t%d\n", tk.addr, tk.bytes, tk.flows)
	}
	if answer != wantTop.String() {
		t.Errorf("top talkers:\n%s\nwant\n%s", answer, wantTop.String())
	}
}
