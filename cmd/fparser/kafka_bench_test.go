package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// BenchmarkKafkaSink replays the flow-heavy capture (BenchmarkFlowHeavy's) through
// the command with -o csv, then with every flow also published to franz-go's
// in-process broker on loopback, in each format: the sink's cost is the ratio of
// the times, and flows/s what it sustained. Every flow must be sent: a replay waits
// for room in the producer's buffer rather than drop.
//
//	go test -run XXX -bench KafkaSink -benchtime 1x -count 5 ./cmd/fparser
func BenchmarkKafkaSink(b *testing.B) {
	path, sum := flowHeavyCapture(b)
	for _, format := range []string{"", "json", "protobuf"} {
		name := "csv-only"
		if format != "" {
			name = "kafka-" + format
		}
		b.Run(name, func(b *testing.B) {
			var took time.Duration
			for range b.N {
				args := []string{"-r", path, "-o", "csv"}
				var cluster *kfake.Cluster
				var addr string
				if format != "" {
					var err error
					if cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "flows")); err != nil {
						b.Fatal(err)
					}
					addr = cluster.ListenAddrs()[0]
					args = append(args, "--kafka", addr, "--kafka-topic", "flows", "--kafka-format", format)
				}
				var stderr bytes.Buffer
				began := time.Now()
				code := run(args, io.Discard, &stderr)
				took += time.Since(began)
				if cluster != nil {
					cluster.Close()
				}
				if code != 0 {
					b.Fatalf("exit %d: %s", code, stderr.String())
				}
				if want := fmt.Sprintf("fparser: kafka: %d flows to topic flows on %s: %[1]d sent, 0 dropped, 0 failed", sum.Flows, addr); format != "" && !strings.Contains(stderr.String(), want) {
					b.Fatalf("not every flow sent: %s", stderr.String())
				}
			}
			b.ReportMetric(float64(sum.Flows)*float64(b.N)/took.Seconds(), "flows/s")
		})
	}
}
