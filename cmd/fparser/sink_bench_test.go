package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/clickhouse"
	"github.com/fparser/fparser/internal/chtest"
	"github.com/fparser/fparser/internal/testpackets"
	"github.com/fparser/fparser/ipfix"
	"github.com/fparser/fparser/kafka"
	"github.com/fparser/fparser/sink"
)

// sinkCase is one way of running the command in BenchmarkSinks: the flags that add
// the sink, and a check of its summary line, both made by setup, which runs before
// each replay, untimed; done runs after it.
type sinkCase struct {
	name  string
	setup func(b *testing.B) (args []string, want string, done func())
}

// BenchmarkSinks replays the flow-heavy capture (BenchmarkFlowHeavy's) through the
// command with -o csv, then with every flow also given to each sink, on loopback:
// IPFIX over UDP and TCP to a socket that reads and drops, Kafka to franz-go's
// in-process broker in each format, and ClickHouse (Debian's server, when
// installed). A sink's cost is the ratio of its time to csv-only's, and flows/s
// what it sustained. Every flow must be sent: the replay waits for a slow sink
// (--on-full block) rather than drop.
//
//	go test -run XXX -bench Sinks -benchtime 1x -count 5 ./cmd/fparser
func BenchmarkSinks(b *testing.B) {
	path, sum := flowHeavyCapture(b)
	all := func(sink, where string) string {
		return fmt.Sprintf("fparser: %s: %d flows to %s: %[2]d sent, 0 dropped, 0 failed", sink, sum.Flows, where)
	}
	cases := []sinkCase{
		{"csv-only", func(*testing.B) ([]string, string, func()) { return nil, "", func() {} }},
		{"ipfix-udp", func(b *testing.B) ([]string, string, func()) {
			pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() {
				buf := make([]byte, 65536)
				for {
					if _, _, err := pc.ReadFrom(buf); err != nil {
						return
					}
				}
			}()
			addr := pc.LocalAddr().String()
			return []string{"--ipfix", addr}, all("ipfix", addr+" over udp"), func() { pc.Close() }
		}},
		{"ipfix-tcp", func(b *testing.B) ([]string, string, func()) {
			ln := drainingListener(b)
			addr := ln.Addr().String()
			return []string{"--ipfix", addr, "--ipfix-proto", "tcp"}, all("ipfix", addr+" over tcp"), func() { ln.Close() }
		}},
	}
	for _, format := range []string{"json", "protobuf"} {
		cases = append(cases, sinkCase{"kafka-" + format, func(b *testing.B) ([]string, string, func()) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "flows"))
			if err != nil {
				b.Fatal(err)
			}
			addr := cluster.ListenAddrs()[0]
			return []string{"--kafka", addr, "--kafka-topic", "flows", "--kafka-format", format}, all("kafka", "topic flows on "+addr), cluster.Close
		}})
	}
	var srv *chtest.Server
	parent := b // the server outlives each case's runs
	cases = append(cases, sinkCase{"clickhouse", func(b *testing.B) ([]string, string, func()) {
		if srv == nil {
			srv = clickhouseServer(parent)
		}
		if _, err := srv.Query(context.Background(), "TRUNCATE TABLE fparser_flows"); err != nil {
			b.Fatal(err)
		}
		return []string{"--clickhouse", srv.Native}, all("clickhouse", "table default.fparser_flows on "+srv.Native), func() {}
	}})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var took time.Duration
			for range b.N {
				b.StopTimer()
				extra, want, done := c.setup(b)
				b.StartTimer()
				var stderr bytes.Buffer
				began := time.Now()
				code := run(append([]string{"-r", path, "-o", "csv"}, extra...), io.Discard, &stderr)
				took += time.Since(began)
				b.StopTimer()
				done()
				if code != 0 {
					b.Fatalf("exit %d: %s", code, stderr.String())
				}
				if !strings.Contains(stderr.String(), want) {
					b.Fatalf("not every flow sent: %s", stderr.String())
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(sum.Flows)*float64(b.N)/took.Seconds(), "flows/s")
		})
	}
}

// BenchmarkSinksCorpus is BenchmarkSinks on real captures: every capture of
// testdata and of the shared corpus (7,382 flows of 439 captures, most of them
// short), replayed through the library, each flow given to one sink's queue on
// loopback, against the same replays with no sink. The queue waits for the sink
// (Block), so every flow must be sent.
//
//	go test -run XXX -bench SinksCorpus -benchtime 1x -count 5 ./cmd/fparser
func BenchmarkSinksCorpus(b *testing.B) {
	files := testpackets.Files(b)
	var srv *chtest.Server
	parent := b
	type exporterCase struct {
		name string
		make func(b *testing.B) (sink.Exporter, func())
	}
	cases := []exporterCase{
		{"none", nil},
		{"ipfix-tcp", func(b *testing.B) (sink.Exporter, func()) {
			ln := drainingListener(b)
			e, err := ipfix.Dial(ipfix.Config{Network: "tcp", Address: ln.Addr().String()})
			if err != nil {
				b.Fatal(err)
			}
			return e, func() { ln.Close() }
		}},
		{"kafka-json", func(b *testing.B) (sink.Exporter, func()) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "flows"))
			if err != nil {
				b.Fatal(err)
			}
			p, err := kafka.New(kafka.Config{Brokers: cluster.ListenAddrs(), Topic: "flows", Block: true})
			if err != nil {
				b.Fatal(err)
			}
			return p, cluster.Close
		}},
		{"clickhouse", func(b *testing.B) (sink.Exporter, func()) {
			if srv == nil {
				srv = clickhouseServer(parent)
			}
			w, err := clickhouse.New(clickhouse.Config{Addr: []string{srv.Native}})
			if err != nil {
				b.Fatal(err)
			}
			return w, func() {}
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var took time.Duration
			var flows uint64
			for range b.N {
				b.StopTimer()
				var q *sink.Queue
				done := func() {}
				if c.make != nil {
					var exp sink.Exporter
					exp, done = c.make(b)
					q = sink.New(c.name, exp, sink.Config{Block: true, Timeout: time.Minute})
				}
				b.StartTimer()
				began := time.Now()
				n := uint64(0)
				put := func(f fparser.Flow) {
					n++
					if q != nil {
						q.Put(&f)
					}
				}
				for _, path := range files {
					p, err := fparser.Open(path, &fparser.Options{OnTCP: put, OnUDP: put})
					if err != nil {
						continue // not a capture fparser reads: the corpus has a few on purpose
					}
					p.Wait()
					p.Close()
				}
				if q != nil {
					if err := q.Close(); err != nil {
						b.Fatal(err)
					}
				}
				took += time.Since(began)
				b.StopTimer()
				done()
				if q != nil {
					if st := q.Stats(); st.Sent != n {
						b.Fatalf("%+v: want all %d flows sent", st, n)
					}
				}
				flows += n
				b.StartTimer()
			}
			b.ReportMetric(float64(flows)/took.Seconds(), "flows/s")
		})
	}
}

// drainingListener is a TCP collector on loopback that reads everything and keeps
// nothing.
func drainingListener(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, conn)
		}
	}()
	return ln
}
