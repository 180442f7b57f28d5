package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser/internal/chtest"
	"github.com/fparser/fparser/internal/testnet"
)

// clickhouseServer starts a server with the table of deploy/clickhouse.sql.
func clickhouseServer(t testing.TB) *chtest.Server {
	srv := chtest.Start(t)
	schema, err := os.ReadFile(filepath.Join("..", "..", "deploy", "clickhouse.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(context.Background(), string(schema)); err != nil {
		t.Fatal(err)
	}
	return srv
}

// csvConversations are the CSV rows' endpoints and counts, as
// "src_ip src_port dst_ip dst_port packets bytes packets bytes".
func csvConversations(stdout string) []string {
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
		f := strings.Split(line, ",")
		rows = append(rows, strings.Join([]string{f[1], f[2], f[3], f[4], f[6], f[7], f[8], f[9]}, " "))
	}
	slices.Sort(rows)
	return rows
}

// tableConversations selects the same from the table.
func tableConversations(t *testing.T, srv *chtest.Server) []string {
	out, err := srv.Query(context.Background(), `SELECT replaceOne(IPv6NumToString(src_ip), '::ffff:', ''), src_port,
		replaceOne(IPv6NumToString(dst_ip), '::ffff:', ''), dst_port, src2dst_packets, src2dst_bytes, dst2src_packets, dst2src_bytes FROM fparser_flows`)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line != "" {
			rows = append(rows, strings.ReplaceAll(line, "\t", " "))
		}
	}
	slices.Sort(rows)
	return rows
}

// TestClickHouseSink: fparser -r --clickhouse inserts every flow it prints, and
// the table holds them, endpoints and counts each way.
func TestClickHouseSink(t *testing.T) {
	srv := clickhouseServer(t)
	capture := filepath.Join("..", "..", "testdata", "http.pcap")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-r", capture, "-o", "csv", "--clickhouse", srv.Native}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := csvConversations(stdout.String())
	if line := fmt.Sprintf("fparser: clickhouse: %d flows to table default.fparser_flows on %s: %[1]d sent, 0 dropped, 0 failed; 1 insert\n", len(want), srv.Native); !strings.Contains(stderr.String(), line) {
		t.Errorf("stderr %s, want %s", stderr.String(), line)
	}
	if got := tableConversations(t, srv); !slices.Equal(got, want) {
		t.Errorf("the table holds\n%q\nwant\n%q", got, want)
	}

	stderr.Reset()
	if code := run([]string{"-r", capture, "--clickhouse", srv.Native, "--clickhouse-table", "no.such-table"}, &stdout, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), `"such-table": want a name of letters, digits and _`) {
		t.Errorf("a bad table name: exit %d, %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"-r", capture, "--clickhouse-table", "t"}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "needs --clickhouse") {
		t.Errorf("--clickhouse-table alone: exit %d, %s", code, stderr.String())
	}
}

// TestSinkClickHouseStalledServer: a "server" that accepts connections and never
// reads them. The replay ends; at --sink-timeout every flow fails.
func TestSinkClickHouseStalledServer(t *testing.T) {
	col := testnet.NewStalledCollector(t)
	capture := writeManyFlows(t, 500)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run([]string{"-r", capture, "-o", "csv", "--clickhouse", col.Addr(), "--sink-timeout", "1s"}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "clickhouse: insert 500 flows into table default.fparser_flows on "+col.Addr()) {
		t.Errorf("exit %d, %s", code, stderr.String())
	}
	c := sinkSummary(t, stderr.String(), "clickhouse", csvRows(stdout.String()))
	if c.sent != 0 || c.failed != c.flows {
		t.Errorf("%+v: want all failed", c)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("took %v with --sink-timeout 1s", took)
	}
}

// TestSinkClickHouseServerComesBack: the server stops after the first phase's
// flows are inserted, and starts again, on the same port and data, while the
// second phase's wait: those are inserted when it is back. The table then holds
// every flow once.
func TestSinkClickHouseServerComesBack(t *testing.T) {
	srv := clickhouseServer(t)
	pc := newPhasedCapture(t)
	stdout, stderr, done := startPhased([]string{"--clickhouse", srv.Native, "--sink-timeout", "1m"})
	pc.next(t, 100)
	url := metricsURL(t, stderr)
	sent := `fparser_sink_flows_total{result="sent",sink="clickhouse"}`
	waitMetric(t, url, sent, 100)
	srv.Stop()

	pc.next(t, 100)
	waitMetric(t, url, `fparser_flows_ended_total{reason="idle"}`, 201)
	if got := metric(t, url, sent); got != 100 {
		t.Errorf("%d flows sent to a server that was stopped", got)
	}
	srv.Resume(t)

	pc.next(t, 100)
	pc.end()
	if code := runWithin(t, done); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	c := sinkSummary(t, stderr.String(), "clickhouse", csvRows(stdout.String()))
	if c.sent != c.flows {
		t.Errorf("%+v: want every flow sent", c)
	}
	if got, want := tableConversations(t, srv), csvConversations(stdout.String()); !slices.Equal(got, want) {
		t.Errorf("the table holds %d flows, stdout %d: they differ", len(got), len(want))
	}
}
