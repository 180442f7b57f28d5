package clickhouse_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/clickhouse"
	"github.com/fparser/fparser/internal/chtest"
	"github.com/fparser/fparser/internal/testflows"
	"github.com/fparser/fparser/internal/testpackets"
)

// schema is deploy/clickhouse.sql.
func schema(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(testpackets.ModuleRoot(t), "deploy", "clickhouse.sql"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// row is a flow as the test selects it back: the fields the issue names.
func row(f *fparser.Flow) string {
	return fmt.Sprintf("%d\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s",
		f.Protocol, ipString(f.Src.Addr()), f.Src.Port(), ipString(f.Dst.Addr()), f.Dst.Port(),
		f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes, f.FirstSeen.UnixNano(), f.LastSeen.UnixNano(), f.EndReason, f.CommunityID())
}

// ipString is an address as IPv6NumToString prints the 16 bytes the table holds.
func ipString(a netip.Addr) string {
	if a.Is4() {
		return "::ffff:" + a.String()
	}
	return a.String()
}

// selectRows is the query that reads row's fields back.
const selectRows = `SELECT protocol, IPv6NumToString(src_ip), src_port, IPv6NumToString(dst_ip), dst_port,
	src2dst_packets, src2dst_bytes, dst2src_packets, dst2src_bytes, first_seen_ns, last_seen_ns, end_reason, community_id FROM fparser_flows`

// TestRoundTrip inserts every flow of testdata and of the corpus into the table of
// deploy/clickhouse.sql on a real server, and selects them back, field for field.
func TestRoundTrip(t *testing.T) {
	srv := chtest.Start(t)
	ctx := context.Background()
	if err := srv.Exec(ctx, schema(t)); err != nil {
		t.Fatal(err)
	}
	flows, files := testflows.All(t)
	w, err := clickhouse.New(clickhouse.Config{Addr: []string{srv.Native}, BatchSize: 1000, Host: "testhost"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range flows {
		if err := w.Export(&flows[i]); err != nil {
			t.Fatal(err)
		}
		want = append(want, row(&flows[i]))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if sent, failed := w.Delivered(); sent != uint64(len(flows)) || failed != 0 {
		t.Fatalf("%d sent, %d failed; want %d sent", sent, failed, len(flows))
	}
	out, err := srv.Query(ctx, selectRows)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("%d rows, want %d; first difference:\n got %s\nwant %s", len(got), len(want), got[i], want[i])
			}
		}
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	t.Logf("%d flows of %d captures inserted (%d inserts) and selected back, equal field for field", len(want), files, w.Inserts())

	if out, err := srv.Query(ctx, "SELECT DISTINCT host FROM fparser_flows"); err != nil || out != "testhost\n" {
		t.Errorf("hosts: %q, %v", out, err)
	}

	// IPv4 and IPv6 sort in one order, the bytes' (IPv4 as ::ffff:a.b.c.d), and
	// filter alike, as deploy/clickhouse.sql says.
	var sources []netip.Addr
	count := map[netip.Addr]int{}
	for i := range flows {
		a := flows[i].Src.Addr()
		if count[a] == 0 {
			sources = append(sources, a)
		}
		count[a]++
	}
	slices.SortFunc(sources, func(a, b netip.Addr) int { return netip.AddrFrom16(a.As16()).Compare(netip.AddrFrom16(b.As16())) })
	var wantOrder strings.Builder
	for _, a := range sources {
		wantOrder.WriteString(ipString(a) + "\n")
	}
	if out, err := srv.Query(ctx, "SELECT IPv6NumToString(src_ip) AS a FROM fparser_flows GROUP BY src_ip ORDER BY src_ip"); err != nil || out != wantOrder.String() {
		t.Errorf("sources in the table's order: %v\n%.300s\nwant\n%.300s", err, out, wantOrder.String())
	}
	var v4, v6 netip.Addr
	for _, a := range sources {
		if a.Is4() && !v4.IsValid() {
			v4 = a
		}
		if a.Is6() && !v6.IsValid() {
			v6 = a
		}
	}
	for _, filter := range []struct {
		addr  netip.Addr
		where string
	}{
		{v4, "src_ip = IPv4ToIPv6(IPv4StringToNum('" + v4.String() + "'))"},
		{v6, "src_ip = IPv6StringToNum('" + v6.String() + "')"},
	} {
		out, err := srv.Query(ctx, "SELECT count() FROM fparser_flows WHERE "+filter.where)
		if want := fmt.Sprintf("%d\n", count[filter.addr]); err != nil || out != want {
			t.Errorf("WHERE %s: %q, %v; want %q", filter.where, out, err, want)
		}
	}
}

// TestServerDown: with no server, an insert is tried again until RetryFor, then
// its flows count as failed, and the error names the table and the server.
func TestServerDown(t *testing.T) {
	w, err := clickhouse.New(clickhouse.Config{Addr: []string{"127.0.0.1:1"}, RetryFor: 300 * time.Millisecond, DialTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f := fparser.Flow{Protocol: fparser.UDP}
	for range 5 {
		w.Export(&f)
	}
	start := time.Now()
	err = w.Close()
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Close took %v with RetryFor 300ms", took)
	}
	if sent, failed := w.Delivered(); sent != 0 || failed != 5 || err == nil || !strings.Contains(err.Error(), "table default.fparser_flows on 127.0.0.1:1") {
		t.Errorf("%d sent, %d failed, %v", sent, failed, err)
	}
}

// TestServerComesBack: an insert to a server that stopped is tried again, and goes
// in once the server is back.
func TestServerComesBack(t *testing.T) {
	srv := chtest.Start(t)
	ctx := context.Background()
	if err := srv.Exec(ctx, schema(t)); err != nil {
		t.Fatal(err)
	}
	w, err := clickhouse.New(clickhouse.Config{Addr: []string{srv.Native}})
	if err != nil {
		t.Fatal(err)
	}
	f := fparser.Flow{Protocol: fparser.UDP, FirstSeen: time.Unix(1_800_000_000, 0), LastSeen: time.Unix(1_800_000_001, 0)}
	w.Export(&f)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	w.Export(&f)
	flushed := make(chan error, 1)
	go func() { flushed <- w.Flush() }()
	for w.Retries() == 0 {
		time.Sleep(time.Millisecond)
	}
	srv.Resume(t)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	w.Close()
	if sent, failed := w.Delivered(); sent != 2 || failed != 0 {
		t.Errorf("%d sent, %d failed; want 2 sent", sent, failed)
	}
	if out, err := srv.Query(ctx, "SELECT count() FROM fparser_flows"); err != nil || out != "2\n" {
		t.Errorf("count %q, %v; want 2", out, err)
	}
}
