package metrics_test

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/ipfix"
	"github.com/fparser/fparser/metrics"
	"github.com/fparser/fparser/sink"
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
	p := replayInto(t, e)
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
		{"fparser_flows_ended_packets_total", nil, in.EndedPackets},
		{"fparser_flows_ended_bytes_total", nil, in.EndedBytes},
		{"fparser_flows_evicted_total", nil, in.Evictions},
		{"fparser_flows_active", []string{"protocol", "tcp"}, uint64(in.TCPFlows)},
		{"fparser_flows_active_packets", []string{"protocol", "udp"}, in.UDPPackets},
		{"fparser_flows_active_bytes", []string{"protocol", "udp"}, in.UDPBytes},
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

// exporter returns an IPFIX exporter to a UDP socket nothing reads, so that the
// collector sends its IPFIX metrics too.
func exporter(t *testing.T) *ipfix.Exporter {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	e, err := ipfix.Dial(ipfix.Config{Address: pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// gather gathers reg's metrics by name. Tests use pedantic registries, whose Gather
// also fails on a metric that Describe did not announce.
func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := make(map[string]*dto.MetricFamily, len(got))
	for _, f := range got {
		fams[f.GetName()] = f
	}
	return fams
}

// TestMetricNames pins every metric's name, type and label names: renaming one breaks
// the queries and dashboards built on it, so it must be deliberate, and docs/metrics.md's
// table must follow.
func TestMetricNames(t *testing.T) {
	want := map[string]string{
		"fparser_packets_total":                    "COUNTER result",
		"fparser_fragments_total":                  "COUNTER",
		"fparser_duplicate_packets_total":          "COUNTER",
		"fparser_flows_active":                     "GAUGE protocol",
		"fparser_flows_active_packets":             "GAUGE protocol",
		"fparser_flows_active_bytes":               "GAUGE protocol",
		"fparser_flows_created_total":              "COUNTER",
		"fparser_flows_ended_total":                "COUNTER reason",
		"fparser_flows_ended_packets_total":        "COUNTER",
		"fparser_flows_ended_bytes_total":          "COUNTER",
		"fparser_flows_evicted_total":              "COUNTER",
		"fparser_kernel_events_lost_total":         "COUNTER",
		"fparser_history_packets_stored_total":     "COUNTER protocol",
		"fparser_history_packets_not_stored_total": "COUNTER",
		"fparser_callback_panics_total":            "COUNTER",
		"fparser_sweep_duration_seconds":           "HISTOGRAM",
		"fparser_build_info":                       "GAUGE goversion version",
	}
	ipfixWant := map[string]string{
		"fparser_ipfix_messages_total":          "COUNTER",
		"fparser_ipfix_records_total":           "COUNTER",
		"fparser_ipfix_flows_total":             "COUNTER",
		"fparser_ipfix_messages_not_sent_total": "COUNTER",
		"fparser_ipfix_records_not_sent_total":  "COUNTER",
		"fparser_ipfix_flows_not_sent_total":    "COUNTER",
		"fparser_ipfix_errors_total":            "COUNTER",
	}
	withIPFIX := maps.Clone(want)
	maps.Copy(withIPFIX, ipfixWant)
	withSinks := maps.Clone(withIPFIX)
	withSinks["fparser_sink_flows_total"] = "COUNTER result sink"
	withSinks["fparser_sink_queued_flows"] = "GAUGE sink"
	sinkExporter := exporter(t)
	q := sink.New("ipfix", sinkExporter, sink.Config{})
	t.Cleanup(func() { q.Close() })
	for _, tc := range []struct {
		name     string
		exporter *ipfix.Exporter
		sinks    []*sink.Queue
		want     map[string]string
	}{
		{"without exporter", nil, nil, want},
		{"with exporter", exporter(t), nil, withIPFIX},
		{"with sinks", sinkExporter, []*sink.Queue{q}, withSinks},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(metrics.NewCollector(infoOnly{}, tc.exporter, tc.sinks...))
			got := make(map[string]string)
			for name, f := range gather(t, reg) {
				var labels []string
				for _, l := range f.GetMetric()[0].GetLabel() {
					labels = append(labels, l.GetName())
				}
				slices.Sort(labels)
				got[name] = strings.Join(append([]string{f.GetType().String()}, labels...), " ")
			}
			for name, w := range tc.want {
				if g, ok := got[name]; !ok {
					t.Errorf("no metric %s", name)
				} else if g != w {
					t.Errorf("%s: %q, want %q", name, g, w)
				}
			}
			for name, g := range got {
				if _, ok := tc.want[name]; !ok {
					t.Errorf("unexpected metric %s (%s)", name, g)
				}
			}
		})
	}
}

// TestMetricsLint lints the collector's output as promtool check metrics does, with
// the linter it uses (promlint), plus the one naming rule that linter leaves out: a
// unit comes last, before only _total. The collector runs over a replay with an IPFIX
// exporter, so that every metric is there. Then the endpoint's whole page, the Go
// runtime's and the process's metrics included, goes through promlint alone, as
// promtool would read it from a scrape.
func TestMetricsLint(t *testing.T) {
	e := exporter(t)
	p := replayInto(t, e)
	c := metrics.NewCollector(p, e)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) < 23 {
		t.Fatalf("only %d metric families", len(fams))
	}
	l := promlint.NewWithMetricFamilies(fams)
	l.AddCustomValidations(unitLast)
	lint(t, l)

	srv, err := metrics.Serve("127.0.0.1:0", c)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client := http.Client{Timeout: time.Minute} // a timeout only to turn a hang into a failure
	resp, err := client.Get("http://" + srv.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lint(t, promlint.New(resp.Body))
}

func lint(t *testing.T, l *promlint.Linter) {
	t.Helper()
	problems, err := l.Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("%s: %s", pr.Metric, pr.Text)
	}
}

// unitLast is the naming guide's rule that a metric's unit is its last word but for
// _total, for the guide's base units a flow tracker could measure in.
func unitLast(mf *dto.MetricFamily) []error {
	var problems []error
	name := mf.GetName()
	for _, u := range []string{"seconds", "bytes", "meters", "ratio", "volts", "amperes", "joules", "grams", "celsius"} {
		if strings.Contains(name, "_"+u+"_") && !strings.HasSuffix(name, "_"+u+"_total") {
			problems = append(problems, fmt.Errorf("the unit %s is not last", u))
		}
	}
	return problems
}

// evictionsSource reports the evictions of a parser whose counters, read at
// slightly different instants, make them dip.
type evictionsSource struct{ n *uint64 }

func (s evictionsSource) Info() fparser.Info { return fparser.Info{Evictions: *s.n} }

// TestEvictedNeverDecreases: fparser_flows_evicted_total is a counter, so a dip of
// Info.Evictions must not reach Prometheus, which would read it as a restart.
func TestEvictedNeverDecreases(t *testing.T) {
	var n uint64
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(evictionsSource{&n}, nil))
	for _, step := range []struct{ info, want uint64 }{{0, 0}, {5, 5}, {3, 5}, {5, 5}, {9, 9}, {8, 9}, {12, 12}} {
		n = step.info
		if got := value(t, gather(t, reg), "fparser_flows_evicted_total"); got != float64(step.want) {
			t.Errorf("Info.Evictions %d: fparser_flows_evicted_total %v, want %d", step.info, got, step.want)
		}
	}
}

// replayInto replays testdata/http.pcap to its end, keeping 4 packets a flow and
// exporting every flow to e.
func replayInto(t *testing.T, e *ipfix.Exporter) *fparser.Parser {
	t.Helper()
	export := func(f fparser.Flow) { e.Export(&f) }
	p, err := fparser.New("../testdata/http.pcap", &fparser.Options{OnTCP: export, OnUDP: export, Packets: 4,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	return p
}
