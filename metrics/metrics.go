// Package metrics serves a parser's counters in Prometheus's text format: the
// datapath's packet counters, flows active, created and ended, losses, sweep times,
// an IPFIX exporter's counters, and what became of the flows given to each sink's
// queue. It reads Parser.Info once per scrape and keeps
// no per-flow label.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/ipfix"
	"github.com/fparser/fparser/sink"
)

// Source is what the collector reads: a *fparser.Parser.
type Source interface{ Info() fparser.Info }

// Collector is a prometheus.Collector over a parser and, optionally, an IPFIX
// exporter and sink queues.
type Collector struct {
	src      Source
	exporter *ipfix.Exporter
	sinks    []*sink.Queue
	version  string

	// mu guards evicted, the most Info.Evictions has been, for scrapes that run
	// at once.
	mu      sync.Mutex
	evicted uint64
}

// NewCollector returns a collector of src's counters, of exporter's when it is not
// nil, and of each sink queue's, labelled with its name.
func NewCollector(src Source, exporter *ipfix.Exporter, sinks ...*sink.Queue) *Collector {
	version := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	return &Collector{src: src, exporter: exporter, sinks: sinks, version: version}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("fparser_"+name, help, labels, nil)
}

// Names follow the Prometheus naming guide: the unit, when there is one in the
// guide's narrow sense (bytes, seconds), comes last, then _total for a counter;
// TestMetricNames pins them, since a rename breaks every query that uses one.
var (
	descPackets       = desc("packets_total", "Frames handed to the datapath, by what became of them.", "result")
	descFragments     = desc("fragments_total", "IP fragments seen, first and later.")
	descDuplicates    = desc("duplicate_packets_total", "Packets seen again on another interface after they were counted (accepted too): routed through the host, or crossing a veth and a bridge.")
	descFlowsActive   = desc("flows_active", "Flows being tracked.", "protocol")
	descActivePackets = desc("flows_active_packets", "Packets counted in the flows being tracked.", "protocol")
	descActiveBytes   = desc("flows_active_bytes", "Bytes (IP lengths) counted in the flows being tracked.", "protocol")
	descFlowsCreated  = desc("flows_created_total", "Flows the datapath created.")
	descFlowsEnded    = desc("flows_ended_total", "Flows reported as ended, by reason. reason=\"evicted\": reported because a table had no room "+
		"(no datapath reports this yet). Flows dropped unreported count in fparser_flows_evicted_total, never here.", "reason")
	descEndedPackets = desc("flows_ended_packets_total", "Packets of the flows reported as ended.")
	descEndedBytes   = desc("flows_ended_bytes_total", "Bytes (IP lengths) of the flows reported as ended.")
	descFlowsEvicted = desc("flows_evicted_total", "Flows dropped unreported: created, but neither reported as ended nor active (created - ended - active, less the ends still on their way from the kernel). "+
		"Mostly flows the kernel's LRU flow map evicted for lack of room; also flows whose end event the ring buffer lost. "+
		"Disjoint from fparser_flows_ended_total. Held at its highest value, as the difference of counters read at slightly different instants can dip.")
	descEventsLost = desc("kernel_events_lost_total", "Kernel events the ring buffer had no room for: FIN or RST marks, and flow ends, "+
		"whose flows then count in fparser_flows_evicted_total.")
	descStored        = desc("history_packets_stored_total", "Packets whose headers the history stored.", "protocol")
	descNotStored     = desc("history_packets_not_stored_total", "Packets missing from histories: memory cap, or records lost in the ring buffer.")
	descPanics        = desc("callback_panics_total", "Callbacks that panicked, recovered.")
	descSweeps        = desc("sweep_duration_seconds", "Time the sweeps that look for ended flows took.")
	descIPFIXMessages = desc("ipfix_messages_total", "IPFIX messages delivered: over TCP, acknowledged by the collector; over UDP, sent and not refused.")
	descIPFIXRecords  = desc("ipfix_records_total", "IPFIX data records delivered.")
	descIPFIXFlows    = desc("ipfix_flows_total", "Flows delivered over IPFIX.")
	descIPFIXMsgsLost = desc("ipfix_messages_not_sent_total", "IPFIX messages not delivered: failed, abandoned, or dropped while the collector was down.")
	descIPFIXRecsLost = desc("ipfix_records_not_sent_total", "IPFIX data records not delivered.")
	descIPFIXNotSent  = desc("ipfix_flows_not_sent_total", "Flows whose IPFIX message was not delivered.")
	descIPFIXErrors   = desc("ipfix_errors_total", "IPFIX sends and connection attempts that failed.")
	descSinkFlows     = desc("sink_flows_total", "Flows given to a sink, by what became of them: sent (delivered, as far as the sink can know), "+
		"dropped (its queue was full), failed (it gave up on them, or the stop's deadline came first). Flows still on their way count in none.", "sink", "result")
	descSinkQueued = desc("sink_queued_flows", "Flows waiting in a sink's queue.", "sink")
	descBuildInfo  = desc("build_info", "Always 1; the labels say which build runs.", "version", "goversion")
	flowReasons    = []fparser.EndReason{fparser.EndIdle, fparser.EndFIN, fparser.EndRST, fparser.EndReused, fparser.EndActive, fparser.EndEndOfCapture, fparser.EndStopped, fparser.EndEvicted}
)

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descFragments, descDuplicates, descFlowsActive, descActivePackets, descActiveBytes,
		descFlowsCreated, descFlowsEnded, descEndedPackets, descEndedBytes, descFlowsEvicted, descEventsLost, descStored,
		descNotStored, descPanics, descSweeps, descBuildInfo} {
		ch <- d
	}
	if c.exporter != nil {
		for _, d := range []*prometheus.Desc{descIPFIXMessages, descIPFIXRecords, descIPFIXFlows, descIPFIXMsgsLost, descIPFIXRecsLost, descIPFIXNotSent, descIPFIXErrors} {
			ch <- d
		}
	}
	if len(c.sinks) > 0 {
		ch <- descSinkFlows
		ch <- descSinkQueued
	}
}

// Collect reads Info once and sends every metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	in := c.src.Info()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, r := range []struct {
		name string
		v    uint64
	}{{"accepted_tcp", in.AcceptedTCP}, {"accepted_udp", in.AcceptedUDP}, {"filtered", in.Filtered}, {"non_ip", in.NonIP},
		{"other_l4", in.OtherL4}, {"malformed", in.Malformed}, {"unattributed", in.Unattributed}} {
		counter(descPackets, r.v, r.name)
	}
	counter(descFragments, in.Fragments)
	counter(descDuplicates, in.DuplicatePackets)
	gauge(descFlowsActive, float64(in.TCPFlows), "tcp")
	gauge(descFlowsActive, float64(in.UDPFlows), "udp")
	gauge(descActivePackets, float64(in.TCPPackets), "tcp")
	gauge(descActivePackets, float64(in.UDPPackets), "udp")
	gauge(descActiveBytes, float64(in.TCPBytes), "tcp")
	gauge(descActiveBytes, float64(in.UDPBytes), "udp")
	counter(descFlowsCreated, in.FlowsCreated)
	for _, r := range flowReasons {
		counter(descFlowsEnded, in.FlowsEnded[r], r.String())
	}
	counter(descEndedPackets, in.EndedPackets)
	counter(descEndedBytes, in.EndedBytes)
	counter(descFlowsEvicted, c.evictions(in.Evictions))
	counter(descEventsLost, in.EventsLost)
	counter(descStored, in.StoredTCPPackets, "tcp")
	counter(descStored, in.StoredUDPPackets, "udp")
	counter(descNotStored, in.PacketsNotStored)
	counter(descPanics, in.CallbackPanics)

	sw := &in.SweepTimes
	buckets := make(map[float64]uint64, len(sw.Bounds))
	var total uint64
	for i, n := range sw.Counts {
		total += n
		if i < len(sw.Bounds) {
			buckets[sw.Bounds[i].Seconds()] = total
		}
	}
	ch <- prometheus.MustNewConstHistogram(descSweeps, total, sw.Sum.Seconds(), buckets)

	if c.exporter != nil {
		st := c.exporter.Stats() // never waits for a send, so a stalled collector cannot hang a scrape
		counter(descIPFIXMessages, st.Messages)
		counter(descIPFIXRecords, st.Records)
		counter(descIPFIXFlows, st.Flows)
		counter(descIPFIXMsgsLost, st.NotSentMessages)
		counter(descIPFIXRecsLost, st.NotSentRecords)
		counter(descIPFIXNotSent, st.NotSentFlows)
		counter(descIPFIXErrors, st.Errors)
	}
	for _, q := range c.sinks {
		st := q.Stats()
		counter(descSinkFlows, st.Sent, q.Name(), "sent")
		counter(descSinkFlows, st.Dropped, q.Name(), "dropped")
		counter(descSinkFlows, st.Failed, q.Name(), "failed")
		gauge(descSinkQueued, float64(st.Queued), q.Name())
	}
	gauge(descBuildInfo, 1, c.version, runtime.Version())
}

// evictions is the largest of n and the values before it. A Parser's Info.Evictions
// never decreases, but the collector takes any source of Info, and a counter that
// goes down reads to Prometheus as a restart (rate() would count its whole value
// again), so it keeps the guard.
func (c *Collector) evictions(n uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evicted = max(c.evicted, n)
	return c.evicted
}

// Handler serves the collector's metrics, and those of the Go runtime and the
// process, in a registry of its own.
func Handler(c *Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// ListenAddress is where Serve listens for addr: on loopback unless addr names a
// host, so that nothing is exposed unless asked for. ":9464" and "9464" mean
// 127.0.0.1:9464.
func ListenAddress(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// A bare port.
		if _, perr := net.LookupPort("tcp", addr); perr != nil {
			return "", fmt.Errorf("metrics address %q: %w", addr, err)
		}
		host, port = "", addr
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Server serves /metrics until Close.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Serve listens on addr (see ListenAddress) and serves c at /metrics.
func Serve(addr string, c *Collector) (*Server, error) {
	a, err := ListenAddress(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", a, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler(c))
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener failed: scrapes fail, which is how Prometheus learns of it
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops serving, letting scrapes in progress finish for up to a second.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
