package kafka_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/flowfmt"
	"github.com/fparser/fparser/internal/testflows"
	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testpackets"
	"github.com/fparser/fparser/kafka"
	"github.com/fparser/fparser/kafka/flowpb"
)

// broker starts franz-go's in-process Kafka broker on loopback, with a topic per
// format in three partitions each, and returns its address.
func broker(t *testing.T) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "flows-json-false", "flows-protobuf-false", "flows-json-true", "flows-protobuf-true"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// sent is a message as the test expects it: its value and its key.
type sent struct{ value, key string }

// TestRoundTrip: every flow of testdata and of the corpus (when present), and the
// inner flows of the tunnel captures, goes out, in each format, with and without
// the TCP quality and the tunnel, and the messages a consumer reads back equal them
// one for one: in JSON, the flows' -o json lines; in protobuf, their flowpb
// messages. Each has its flow's key and the host and version headers. Where kcat is
// installed, it reads every JSON message too.
func TestRoundTrip(t *testing.T) {
	flows, files := testflows.All(t)
	flows = append(flows, decapFlows(t)...)
	addr := broker(t)
	for _, c := range []struct {
		format string
		more   bool // the TCP quality and the tunnel
	}{{"json", false}, {"protobuf", false}, {"json", true}, {"protobuf", true}} {
		format := c.format
		topic := fmt.Sprintf("flows-%s-%v", format, c.more)
		enc := flowfmt.Encoder{Quality: c.more, Tunnel: c.more}
		p, err := kafka.New(kafka.Config{Brokers: []string{addr}, Topic: topic, Format: format, Host: "testhost", Linger: time.Millisecond, Quality: c.more, Tunnel: c.more})
		if err != nil {
			t.Fatal(err)
		}
		var want []sent
		for i := range flows {
			f := &flows[i]
			value := enc.AppendJSON(nil, f)
			value = value[:len(value)-1]
			if format == "protobuf" {
				m := kafka.Message(f, false, false)
				if c.more {
					m.TcpQuality = kafka.QualityMessage(f)
					m.Tunnel = kafka.TunnelMessage(f)
				}
				value = deterministic(t, m)
			}
			want = append(want, sent{string(value), string(kafka.Key(f))})
			if err := p.Export(f); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if st := p.Stats(); st.Sent != uint64(len(want)) || st.Failed != 0 || st.Dropped != 0 {
			t.Fatalf("%s: stats %+v, want %d sent", format, st, len(want))
		}
		got := consume(t, addr, topic, len(want))
		if format == "protobuf" {
			for i := range got {
				var m flowpb.Flow
				if err := proto.Unmarshal([]byte(got[i].value), &m); err != nil {
					t.Fatal(err)
				}
				got[i].value = string(deterministic(t, &m))
			}
		}
		cmp := func(a, b sent) int { return strings.Compare(a.value+"\x00"+a.key, b.value+"\x00"+b.key) }
		slices.SortFunc(want, cmp)
		slices.SortFunc(got, cmp)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: read back %d messages, sent %d: they differ", format, len(got), len(want))
		}
		t.Logf("%s: %d flows of %d captures out and back, equal one for one", format, len(want), files)
	}

	testharness.Require(t, testharness.HasTool("kcat"), "kcat (librdkafka) is not installed: the cross-check with an independent client is skipped")
	out, err := exec.Command("kcat", "-C", "-b", addr, "-t", "flows-json-false", "-e", "-q", "-f", "%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	var values []string
	for i := range flows {
		line := (&flowfmt.Encoder{}).AppendJSON(nil, &flows[i])
		values = append(values, string(line[:len(line)-1]))
	}
	slices.Sort(lines)
	slices.Sort(values)
	if !slices.Equal(lines, values) {
		t.Errorf("kcat read %d messages, want the %d sent", len(lines), len(values))
	}
}

// deterministic marshals m the same way every time, to compare messages as bytes.
func deterministic(t *testing.T, m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// consume reads n messages of the topic from its start, checking their headers.
func consume(t *testing.T, addr, topic string, n int) []sent {
	consumer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var got []sent
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(got) < n && ctx.Err() == nil {
		consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
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
	return got
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

// decapFlows are the inner flows of testdata's tunnel captures, with their tunnels.
func decapFlows(t *testing.T) []fparser.Flow {
	var flows []fparser.Flow
	keep := func(f fparser.Flow) { flows = append(flows, f) }
	for _, c := range []string{"vxlan.pcap", "gre.pcap"} {
		p, err := fparser.Open(filepath.Join(testpackets.ModuleRoot(t), "testdata", c), &fparser.Options{OnTCP: keep, OnUDP: keep, Decap: true})
		if err != nil {
			t.Fatal(err)
		}
		p.Wait()
		p.Close()
	}
	return flows
}

// TestMessageMatchesJSON: a flow's protobuf message says what its JSON line says,
// field for field, features, TCP quality and tunnel included.
func TestMessageMatchesJSON(t *testing.T) {
	var flows []fparser.Flow
	keep := func(f fparser.Flow) { flows = append(flows, f) }
	for _, c := range []string{"http.pcap", "tcp-quality.pcap", "vxlan.pcap", "gre.pcap"} {
		p, err := fparser.Open(filepath.Join(testpackets.ModuleRoot(t), "testdata", c), &fparser.Options{OnTCP: keep, OnUDP: keep, Statistics: true, TCPQuality: true, Decap: true})
		if err != nil {
			t.Fatal(err)
		}
		p.Wait()
		p.Close()
	}
	enc := flowfmt.Encoder{Features: true, Quality: true, Tunnel: true}
	measured, tunneled := 0, 0
	for i := range flows {
		var j map[string]any
		if err := json.Unmarshal(enc.AppendJSON(nil, &flows[i]), &j); err != nil {
			t.Fatal(err)
		}
		m := kafka.Message(&flows[i], true, false)
		src, _ := netip.AddrFromSlice(m.SrcIp)
		dst, _ := netip.AddrFromSlice(m.DstIp)
		got := map[string]any{
			"protocol": m.Protocol, "src_ip": src.String(), "src_port": float64(m.SrcPort), "dst_ip": dst.String(), "dst_port": float64(m.DstPort),
			"src2dst_packets": float64(m.Src2Dst.Packets), "src2dst_bytes": float64(m.Src2Dst.Bytes),
			"dst2src_packets": float64(m.Dst2Src.Packets), "dst2src_bytes": float64(m.Dst2Src.Bytes),
			"first_seen": time.Unix(0, m.FirstSeenNs).UTC().Format(flowfmt.TimeLayout), "last_seen": time.Unix(0, m.LastSeenNs).UTC().Format(flowfmt.TimeLayout),
			"end_reason": m.EndReason, "src2dst_tcp_flags": fparser.TCPFlags(m.Src2Dst.TcpFlags).String(),
			"src2dst_mean_ps": m.Src2Dst.Features.MeanPs, "dst2src_max_piat_ms": m.Dst2Src.Features.MaxPiatMs, "dst2src_ack_packets": float64(m.Dst2Src.Features.AckPackets),
			"byte_rate": m.ByteRate, "community_id": m.CommunityId,
		}
		if q := kafka.QualityMessage(&flows[i]); q != nil {
			ms := func(ns int64) any {
				if flows[i].HandshakeRTT == 0 {
					return nil // not measured: null
				}
				return float64(ns) / 1e6
			}
			got["handshake_rtt_ms"], got["src2dst_rtt_ms"], got["dst2src_rtt_ms"] = ms(q.HandshakeRttNs), ms(q.Src2DstRttNs), ms(q.Dst2SrcRttNs)
			got["src2dst_retransmissions"], got["dst2src_retransmissions"] = float64(q.Src2DstRetransmissions), float64(q.Dst2SrcRetransmissions)
			got["src2dst_out_of_order"], got["dst2src_out_of_order"] = float64(q.Src2DstOutOfOrder), float64(q.Dst2SrcOutOfOrder)
			got["src2dst_zero_windows"], got["dst2src_zero_windows"] = float64(q.Src2DstZeroWindows), float64(q.Dst2SrcZeroWindows)
			measured += int(q.Src2DstRetransmissions + q.Dst2SrcZeroWindows)
		}
		got["tunnel"], got["tunnel_id"], got["outer_src_ip"], got["outer_dst_ip"] = nil, nil, nil, nil
		if tun := kafka.TunnelMessage(&flows[i]); tun != nil {
			got["tunnel"], got["tunnel_id"] = tun.Kind, float64(tun.Id)
			for k, b := range map[string][]byte{"outer_src_ip": tun.OuterSrcIp, "outer_dst_ip": tun.OuterDstIp} {
				if a, ok := netip.AddrFromSlice(b); ok {
					got[k] = a.String()
				}
			}
			tunneled++
		}
		for k, v := range got {
			if j[k] != v {
				t.Errorf("flow %d: %s is %v in the message, %v in JSON", i, k, v, j[k])
			}
		}
	}
	if len(flows) == 0 || measured == 0 || tunneled != 6 || tunneled == len(flows) {
		t.Fatalf("%d flows, %d retransmissions and zero windows, %d through a tunnel", len(flows), measured, tunneled)
	}
}

// TestFullBuffer: with the buffer full, Export drops and counts the flow, unless
// Block, when it waits for room: a replay loses none.
func TestFullBuffer(t *testing.T) {
	f := fparser.Flow{Protocol: fparser.UDP}
	downAddr := noBroker(t)
	p, err := kafka.New(kafka.Config{Brokers: []string{downAddr}, MaxBuffered: 10, CloseTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		p.Export(&f)
	}
	p.Close()
	if st := p.Stats(); st.Dropped != 90 || st.Failed != 10 {
		t.Errorf("no broker, a buffer of 10: stats %+v; want 90 dropped, 10 failed", st)
	}

	p, err = kafka.New(kafka.Config{Brokers: []string{broker(t)}, Topic: "flows-json-false", MaxBuffered: 10, Block: true, Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if err := p.Export(&f); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Sent != 1000 {
		t.Errorf("blocking, a buffer of 10: stats %+v, want 1000 sent", st)
	}
}

// TestCut: with Block and the buffer full, Cut makes the Export that waits return,
// and fails the flows not sent; Delivered and Shutdown then count every flow given
// to Export as failed, as a sink's queue expects.
func TestCut(t *testing.T) {
	f := fparser.Flow{Protocol: fparser.UDP}
	downAddr := noBroker(t)
	p, err := kafka.New(kafka.Config{Brokers: []string{downAddr}, MaxBuffered: 10, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		p.Export(&f)
	}
	waiting := make(chan struct{})
	go func() {
		defer close(waiting)
		p.Export(&f) // no room: waits until Cut
	}()
	select {
	case <-waiting:
		t.Fatal("Export did not wait for room")
	case <-time.After(50 * time.Millisecond):
	}
	p.Cut()
	<-waiting
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.Shutdown(ctx)
	if sent, failed := p.Delivered(); sent != 0 || failed != 11 {
		t.Errorf("Delivered: %d sent, %d failed; want 11 failed", sent, failed)
	}
}

// noBroker is a loopback address where nothing listens.
func noBroker(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
