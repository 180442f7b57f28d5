package kafka_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/flowfmt"
	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testpackets"
	"github.com/fparser/fparser/kafka"
)

// broker starts franz-go's in-process Kafka broker on loopback, with the topic in
// three partitions, and returns its address.
func broker(t *testing.T) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, kafka.DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// sent is a message as the test expects it: the flow's -o json line and its key.
type sent struct{ value, key string }

// TestRoundTrip: every flow of testdata and of the corpus (when present) goes out,
// and the messages a consumer reads back equal the flows' -o json lines one for
// one, each keyed by its flow, with the host and version headers. Where kcat is
// installed, it reads every message too.
func TestRoundTrip(t *testing.T) {
	addr := broker(t)
	p, err := kafka.New(kafka.Config{Brokers: []string{addr}, Host: "testhost", Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var want []sent
	var enc flowfmt.Encoder
	files := testpackets.Files(t)
	for _, path := range files {
		export := func(f fparser.Flow) {
			line := enc.AppendJSON(nil, &f)
			want = append(want, sent{string(line[:len(line)-1]), string(kafka.Key(&f))})
			if err := p.Export(&f); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		parser, err := fparser.Open(path, &fparser.Options{OnTCP: export, OnUDP: export})
		if err != nil {
			continue // not a capture fparser reads: the corpus has a few on purpose
		}
		parser.Wait() // a damaged capture's flows before the damage count too
		parser.Close()
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Sent != uint64(len(want)) || st.Failed != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v, want %d sent", st, len(want))
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(kafka.DefaultTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var got []sent
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(got) < len(want) && ctx.Err() == nil {
		fetches := consumer.PollFetches(ctx)
		fetches.EachRecord(func(r *kgo.Record) {
			got = append(got, sent{string(r.Value), string(r.Key)})
			var host, version string
			for _, h := range r.Headers {
				switch h.Key {
				case "host":
					host = string(h.Value)
				case "fparser-version":
					version = string(h.Value)
				}
			}
			if host != "testhost" || version != fparser.Version().Module {
				t.Errorf("headers %v", r.Headers)
			}
		})
	}
	cmp := func(a, b sent) int { return strings.Compare(a.value+"\x00"+a.key, b.value+"\x00"+b.key) }
	slices.SortFunc(want, cmp)
	slices.SortFunc(got, cmp)
	if !slices.Equal(got, want) {
		t.Fatalf("read back %d messages, sent %d: they differ", len(got), len(want))
	}
	t.Logf("%d flows of %d captures out and back, equal to their -o json lines", len(want), len(files))

	testharness.Require(t, testharness.HasTool("kcat"), "kcat (librdkafka) is not installed: the cross-check with an independent client is skipped")
	out, err := exec.Command("kcat", "-C", "-b", addr, "-t", kafka.DefaultTopic, "-e", "-q", "-f", "%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	var values []string
	for _, w := range want {
		values = append(values, w.value)
	}
	slices.Sort(lines)
	if !slices.Equal(lines, values) {
		t.Errorf("kcat read %d messages, want the %d sent", len(lines), len(values))
	}
}

// TestBrokerDown: with no broker listening, Export still returns at once; Close
// gives up after CloseTimeout, every flow counts as failed, and the error names
// the topic and the broker.
func TestBrokerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	p, err := kafka.New(kafka.Config{Brokers: []string{addr}, CloseTimeout: 500 * time.Millisecond, DeliveryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := fparser.Flow{Protocol: fparser.UDP}
	began := time.Now()
	for range 100 {
		if err := p.Export(&f); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("100 exports took %v", d)
	}
	err = p.Close()
	if st := p.Stats(); st.Failed+st.Sent+st.Dropped != 100 || st.Sent != 0 {
		t.Errorf("stats %+v, want 100 failed", st)
	}
	if err == nil || !strings.Contains(err.Error(), "topic "+kafka.DefaultTopic+" on "+addr) {
		t.Errorf("Close: %v; want an error naming the topic and the broker", err)
	}
}

// TestKey: a flow's key is the same read from either end.
func TestKey(t *testing.T) {
	a := fparser.Flow{Protocol: fparser.TCP}
	a.Src, a.Dst = mustAddrPort("192.0.2.1:40000"), mustAddrPort("192.0.2.2:80")
	b := a
	b.Src, b.Dst = a.Dst, a.Src
	c := a
	c.VLAN = 7
	if !bytes.Equal(kafka.Key(&a), kafka.Key(&b)) || bytes.Equal(kafka.Key(&a), kafka.Key(&c)) {
		t.Errorf("keys %x, %x (reversed), %x (another VLAN)", kafka.Key(&a), kafka.Key(&b), kafka.Key(&c))
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
