package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fparser/fparser/internal/testnet"
)

// TestKafkaSink: fparser -r --kafka publishes every flow, and the messages read back
// are its -o json lines, one for one; the summary says how many went, and where.
func TestKafkaSink(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "flows"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]
	capture := filepath.Join("..", "..", "testdata", "http.pcap")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-r", capture, "-o", "json", "--features", "--kafka", addr, "--kafka-topic", "flows"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if !strings.Contains(stderr.String(), fmt.Sprintf("fparser: kafka: %d flows to topic flows on %s: %[1]d sent, 0 dropped, 0 failed\n", len(want), addr)) {
		t.Errorf("summary: %s", stderr.String())
	}
	var got []string
	for _, v := range consumeValues(t, addr, "flows", len(want)) {
		got = append(got, string(v))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("read back %d messages, -o json wrote %d lines:\n%q\n%q", len(got), len(want), got, want)
	}

	// No broker: the flows fail after the close timeout, and the command says so
	// with exit status 1 and an error that names the topic and the broker.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	stderr.Reset()
	if code := run([]string{"-r", capture, "-o", "json", "--kafka", down}, &stdout, &stderr); code != exitFailure ||
		!strings.Contains(stderr.String(), fmt.Sprintf("kafka: %d flows to topic fparser-flows on %s: 0 sent, 0 dropped, %[1]d failed\n", len(want), down)) ||
		!strings.Contains(stderr.String(), "kafka: topic fparser-flows on "+down) {
		t.Errorf("no broker: exit %d, %s", code, stderr.String())
	}

	// A format the producer does not have is a usage error.
	stderr.Reset()
	if code := run([]string{"-r", capture, "--kafka", addr, "--kafka-format", "avro"}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), `format "avro": want json or protobuf`) {
		t.Errorf("--kafka-format avro: exit %d, %s", code, stderr.String())
	}

	// Options that need --kafka say so.
	stderr.Reset()
	if code := run([]string{"-r", capture, "--kafka-topic", "x"}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "needs --kafka") {
		t.Errorf("--kafka-topic alone: exit %d, %s", code, stderr.String())
	}
}

// consumeValues reads the values of the first n messages of topic, from the start;
// fewer if 30 s pass first.
func consumeValues(t *testing.T, addr, topic string, n int) [][]byte {
	t.Helper()
	consumer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var values [][]byte
	for len(values) < n && ctx.Err() == nil {
		consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) { values = append(values, r.Value) })
	}
	return values
}

// TestKafkaTLSAndSASL: --kafka-tls-ca and --kafka-sasl scram-sha-256 against a
// broker that serves TLS only and takes SCRAM: every flow is sent; a wrong password
// fails them all, and the error says the connection failed; the flags refuse what they cannot use.
func TestKafkaTLSAndSASL(t *testing.T) {
	dir := t.TempDir()
	cert, caPEM := testnet.SelfSigned(t)
	ca := filepath.Join(dir, "ca.pem")
	password := filepath.Join(dir, "password")
	wrong := filepath.Join(dir, "wrong")
	for name, content := range map[string][]byte{ca: caPEM, password: []byte("secret\n"), wrong: []byte("guess\n")} {
		if err := os.WriteFile(name, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "flows"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "fparser", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]
	capture := filepath.Join("..", "..", "testdata", "http.pcap")
	args := func(passwordFile string) []string {
		return []string{"-r", capture, "-o", "csv", "--kafka", addr, "--kafka-topic", "flows", "--kafka-tls-ca", ca,
			"--kafka-sasl", "scram-sha-256", "--kafka-user", "fparser", "--kafka-password-file", passwordFile, "--sink-timeout", "2s"}
	}
	var stdout, stderr bytes.Buffer
	if code := run(args(password), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	n := strings.Count(stdout.String(), "\n") - 1
	if want := fmt.Sprintf("fparser: kafka: %d flows to topic flows on %s: %[1]d sent, 0 dropped, 0 failed\n", n, addr); !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %s, want %s", stderr.String(), want)
	}
	stdout.Reset()
	stderr.Reset()
	code := run(args(wrong), &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "client closed (last broker error: connecting to "+addr) ||
		!strings.Contains(stderr.String(), fmt.Sprintf("%d flows to topic flows on %s: 0 sent, 0 dropped, %[1]d failed\n", n, addr)) {
		t.Errorf("wrong password: exit %d, %s", code, stderr.String())
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kafka-sasl", "plain"}, "fparser: --kafka-sasl needs --kafka-user"},
		{[]string{"--kafka-sasl", "plain", "--kafka-user", "u"}, "fparser: --kafka-sasl needs a password: in FPARSER_KAFKA_PASSWORD or --kafka-password-file"},
		{[]string{"--kafka-sasl", "gssapi", "--kafka-user", "u", "--kafka-password-file", password}, "fparser: --kafka-sasl gssapi: want plain, scram-sha-256 or scram-sha-512"},
		{[]string{"--kafka-user", "u"}, "fparser: --kafka-user needs --kafka-sasl"},
		{[]string{"--kafka-tls-ca", filepath.Join(dir, "missing.pem")}, "fparser: --kafka-tls-ca " + filepath.Join(dir, "missing.pem") + ": no such file or directory"},
		{[]string{"--kafka-tls-ca", password}, "fparser: --kafka-tls: TLS CA file " + password + ": no PEM certificate in it"},
		{[]string{"--kafka-tls-cert", ca}, "fparser: --kafka-tls: TLS client certificate and key: give both or neither"},
	} {
		stderr.Reset()
		if code := run(append([]string{"-r", capture, "--kafka", addr}, tc.args...), io.Discard, &stderr); code != exitUsage || !strings.HasPrefix(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, %q; want %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
