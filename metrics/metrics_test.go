package metrics_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/ipfix"
	"github.com/fparser/fparser/metrics"
)

// scrape fetches and parses addr's /metrics.
func scrape(t *testing.T, addr net.Addr) map[string]*dto.MetricFamily {
	t.Helper()
	// A timeout only to turn a hang into a failure.
	client := http.Client{Timeout: time.Minute}
	resp, err := client.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value returns the value of family name's metric whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no %s with labels %v", name, want)
	return 0
}

// TestScrapeEqualsInfo scrapes the endpoint after a replay and checks each value
// against Info, and the IPFIX exporter's counters against its Stats.
func TestScrapeEqualsInfo(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	e, err := ipfix.Dial(ipfix.Config{Address: pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	export := func(f fparser.Flow) { e.Export(&f) }
	p, err := fparser.New("../testdata/http.pcap", &fparser.Options{OnTCP: export, OnUDP: export, Packets: 4,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.Flush()
	srv, err := metrics.Serve("127.0.0.1:0", metrics.NewCollector(p, e))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fams := scrape(t, srv.Addr())
	in, st := p.Info(), e.Stats()
	for _, c := range []struct {
		name   string
		labels []string
		want   uint64
	}{
		{"fparser_packets_total", []string{"result", "accepted_tcp"}, in.AcceptedTCP},
		{"fparser_packets_total", []string{"result", "accepted_udp"}, in.AcceptedUDP},
		{"fparser_packets_total", []string{"result", "non_ip"}, in.NonIP},
		{"fparser_packets_total", []string{"result", "other_l4"}, in.OtherL4},
		{"fparser_packets_total", []string{"result", "malformed"}, in.Malformed},
		{"fparser_flows_created_total", nil, in.FlowsCreated},
		{"fparser_flows_ended_total", []string{"reason", "end-of-capture"}, in.FlowsEnded[fparser.EndEndOfCapture]},
		{"fparser_flow_packets_ended_total", nil, in.EndedPackets},
		{"fparser_flow_bytes_ended_total", nil, in.EndedBytes},
		{"fparser_flows_active", []string{"protocol", "tcp"}, uint64(in.TCPFlows)},
		{"fparser_history_packets_stored_total", []string{"protocol", "tcp"}, in.StoredTCPPackets},
		{"fparser_sweep_duration_seconds", nil, sum(in.SweepTimes.Counts)},
		{"fparser_ipfix_flows_total", nil, st.Flows},
		{"fparser_ipfix_messages_total", nil, st.Messages},
		{"fparser_ipfix_records_total", nil, st.Records},
		{"fparser_ipfix_messages_not_sent_total", nil, st.NotSentMessages},
		{"fparser_ipfix_records_not_sent_total", nil, st.NotSentRecords},
		{"fparser_ipfix_flows_not_sent_total", nil, st.NotSentFlows},
		{"fparser_ipfix_errors_total", nil, st.Errors},
	} {
		if got := value(t, fams, c.name, c.labels...); got != float64(c.want) {
			t.Errorf("%s%v = %v, Info says %d", c.name, c.labels, got, c.want)
		}
	}
	if in.EndedPackets != in.PacketsAccepted || in.EndedBytes == 0 || st.Flows != in.FlowsCreated || in.FlowsCreated < 3 {
		t.Errorf("Info: %d packets in ended flows of %d accepted, %d bytes; %d flows exported of %d", in.EndedPackets, in.PacketsAccepted, in.EndedBytes, st.Flows, in.FlowsCreated)
	}
	if value(t, fams, "fparser_build_info") != 1 {
		t.Error("build info")
	}
	for _, perFlow := range []string{"src_ip", "dst_ip", "src_port", "flow"} {
		for _, f := range fams {
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if l.GetName() == perFlow {
						t.Errorf("%s has a per-flow label %s", f.GetName(), perFlow)
					}
				}
			}
		}
	}
}

// TestListenAddress: the endpoint binds to loopback unless an address says where.
func TestListenAddress(t *testing.T) {
	for in, want := range map[string]string{
		":9464": "127.0.0.1:9464", "9464": "127.0.0.1:9464", "0.0.0.0:9464": "0.0.0.0:9464",
		"[::1]:9464": "[::1]:9464", "192.0.2.7:80": "192.0.2.7:80",
	} {
		if got, err := metrics.ListenAddress(in); err != nil || got != want {
			t.Errorf("ListenAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := metrics.ListenAddress("nine"); err == nil {
		t.Error("ListenAddress(nine) accepted")
	}
	srv, err := metrics.Serve(":0", metrics.NewCollector(infoOnly{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if a := srv.Addr().(*net.TCPAddr); !a.IP.IsLoopback() {
		t.Errorf("Serve(:0) listens on %v", a)
	}
	if value(t, scrape(t, srv.Addr()), "fparser_sweep_duration_seconds") != 0 {
		t.Error("sweeps of a parser that never swept")
	}
}

type infoOnly struct{}

func (infoOnly) Info() fparser.Info { return fparser.Info{} }

func sum(v []uint64) uint64 {
	var s uint64
	for _, x := range v {
		s += x
	}
	return s
}

// TestScrapeDuringStalledSend: a scrape answers while the exporter's send waits for
// a collector that reads nothing, and after the stall the IPFIX counters, the ones
// for what was not sent included, equal the exporter's Stats.
func TestScrapeDuringStalledSend(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	ln, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e, err := ipfix.Dial(ipfix.Config{Network: "tcp", Address: ln.Addr().String(), WriteTimeout: time.Hour, RetryInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ln.Accept() // and never read
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var flows []fparser.Flow
	keep := func(f fparser.Flow) { flows = append(flows, f) }
	p, err := fparser.New("../testdata/http.pcap", &fparser.Options{OnTCP: keep, OnUDP: keep, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; e.Export(&flows[i%len(flows)]) == nil; i++ {
		}
	}()
	// Wait until the send is stuck: a goroutine waits to write, inside the exporter.
	buf := make([]byte, 1<<20)
	for stuck, start := false, time.Now(); !stuck; time.Sleep(5 * time.Millisecond) {
		select {
		case <-done:
			t.Fatal("exporting ended before a send got stuck")
		default:
		}
		if time.Since(start) > time.Minute {
			t.Fatal("no send got stuck")
		}
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			stuck = stuck || strings.Contains(g, "[IO wait") && strings.Contains(g, "ipfix.(*Exporter)")
		}
	}
	srv, err := metrics.Serve("127.0.0.1:0", metrics.NewCollector(p, e))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if got := value(t, scrape(t, srv.Addr()), "fparser_ipfix_flows_not_sent_total"); got != 0 {
		t.Errorf("during the stall, %v flows not sent; none has failed yet", got)
	}
	e.SetWriteTimeout(time.Millisecond)
	<-done
	e.Close()
	fams, st := scrape(t, srv.Addr()), e.Stats()
	for name, want := range map[string]uint64{
		"fparser_ipfix_messages_total": st.Messages, "fparser_ipfix_records_total": st.Records, "fparser_ipfix_flows_total": st.Flows,
		"fparser_ipfix_messages_not_sent_total": st.NotSentMessages, "fparser_ipfix_records_not_sent_total": st.NotSentRecords,
		"fparser_ipfix_flows_not_sent_total": st.NotSentFlows, "fparser_ipfix_errors_total": st.Errors,
	} {
		if got := value(t, fams, name); got != float64(want) {
			t.Errorf("%s = %v, Stats say %d", name, got, want)
		}
	}
	if st.NotSentFlows == 0 || st.Errors != 1 {
		t.Errorf("Stats %+v: want flows not sent and one failed send", st)
	}
}
