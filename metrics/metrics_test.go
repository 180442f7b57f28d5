package metrics_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

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
	resp, err := http.Get("http://" + addr.String() + "/metrics")
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
