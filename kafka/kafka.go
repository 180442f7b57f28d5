// Package kafka publishes fparser's flows to Kafka, with franz-go: one message per
// flow. Its value is the flow's line of -o json (internal/flowfmt), without the
// newline, or with Config.Format "protobuf" a flowpb.Flow (kafka/flowpb/flow.proto,
// the same fields typed; Message builds it); its key is a hash of the flow's key, the same for both directions, so
// that every record of a flow goes to one partition; its headers name the host
// ("host") and the fparser that sent it ("fparser-version").
//
// # Delivery
//
// Export hands a flow to the client's buffer and returns at once: the client
// batches, compresses and sends in the background, and retries a broker that fails
// until Config.DeliveryTimeout. A full buffer (Config.MaxBuffered flows waiting)
// never holds the caller up: the flow is dropped, and counted; unless Config.Block,
// for a caller that can wait (a replay), when Export waits for room. Every flow given to
// Export is counted once, when its fate is known (Stats): sent, once the broker
// acknowledged it; failed, when the client gave up on it; dropped, when there was
// no room for it. Close waits up to Config.CloseTimeout for what is buffered; what
// is still undelivered then fails. After Close, Sent + Failed + Dropped is every
// flow given to Export.
package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"google.golang.org/protobuf/proto"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/flowfmt"
	"github.com/fparser/fparser/kafka/flowpb"
)

// DefaultTopic is the topic flows go to unless Config.Topic says otherwise.
const DefaultTopic = "fparser-flows"

// Config says where and how to publish.
type Config struct {
	// Brokers are the seed brokers, host:port each.
	Brokers []string
	// Topic is the topic flows are published to. Default DefaultTopic.
	Topic string
	// Format is the messages' format: "json" (the default) or "protobuf".
	Format string
	// Compression is the batches' codec: "zstd" (the default), "lz4", "snappy",
	// "gzip" or "none".
	Compression string
	// Features and Packets add to each message what -o json adds with --features
	// and --packets.
	Features, Packets bool
	// Quality adds what -o json adds with --tcp-quality: its fields to a JSON
	// message, tcp_quality (QualityMessage) to a protobuf one.
	Quality bool
	// Tunnel adds what -o json adds with --decap: its fields to a JSON message,
	// tunnel (TunnelMessage) to a protobuf one.
	Tunnel bool
	// TLS, when set, connects to the brokers with it (TLSFiles makes one).
	TLS *tls.Config
	// SASL, when set, authenticates to the brokers.
	SASL *SASL
	// Linger is how long a batch waits for more flows before it is sent. Default
	// 100 ms.
	Linger time.Duration
	// MaxBuffered is how many flows may wait in the client's buffer; past it,
	// Export drops. Default 100,000.
	MaxBuffered int
	// Block makes Export wait for room in a full buffer rather than drop the flow:
	// for a replay, whose pace can follow the broker's. Live, counting goes on in
	// the kernel meanwhile, but the flows that end wait.
	Block bool
	// DeliveryTimeout is how long the client keeps trying to deliver a flow.
	// Default 30 s.
	DeliveryTimeout time.Duration
	// CloseTimeout is how long Close waits for the flows still buffered. Default
	// 5 s.
	CloseTimeout time.Duration
	// Host is the "host" header. Default the host's name.
	Host string
	// Opts are more franz-go options (SASL, for one), applied after fparser's.
	Opts []kgo.Opt
}

// SASL is a SASL authentication: Mechanism is "plain", "scram-sha-256" or
// "scram-sha-512" (any case), as franz-go's sasl/plain and sasl/scram do them.
type SASL struct {
	Mechanism      string
	User, Password string
}

// Check says whether the mechanism is one New takes; the error matches ErrConfig.
func (s *SASL) Check() error {
	_, err := s.opt()
	return err
}

func (s *SASL) opt() (kgo.Opt, error) {
	switch strings.ToLower(s.Mechanism) {
	case "plain":
		return kgo.SASL(plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()), nil
	case "scram-sha-256":
		return kgo.SASL(scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism()), nil
	case "scram-sha-512":
		return kgo.SASL(scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism()), nil
	}
	return nil, fmt.Errorf("%w: SASL mechanism %q: want plain, scram-sha-256 or scram-sha-512", ErrConfig, s.Mechanism)
}

// TLSFiles makes a TLS configuration from PEM files: ca, when not empty, holds the
// CA certificates that the brokers' certificates must chain to (else the host's
// roots); cert and key,
// when not empty, the client's certificate and key. An error names the file.
func TLSFiles(ca, cert, key string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: TLS CA file %s: no PEM certificate in it", ErrConfig, ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("%w: TLS client certificate and key: give both or neither", ErrConfig)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS client certificate %s and key %s: %w", cert, key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Stats are the producer's counters (see the package doc).
type Stats struct {
	Sent    uint64 // flows the broker acknowledged
	Failed  uint64 // flows the client gave up on
	Dropped uint64 // flows Export found no room for
}

// ErrConfig is a bad configuration; errors.Is finds it.
var ErrConfig = errors.New("kafka: bad configuration")

// Producer publishes flows. Export is for one goroutine at a time; Stats, Err and
// Close may be called from any.
type Producer struct {
	cl      *kgo.Client
	topic   string
	where   string // brokers and topic, for errors
	headers []kgo.RecordHeader
	timeout time.Duration

	enc      flowfmt.Encoder // Export's alone
	protobuf bool
	block    bool

	log    *brokerLog
	ctx    context.Context // the flows' context: Cut cancels it
	cancel context.CancelFunc

	sent, failed, dropped atomic.Uint64
	pending               sync.WaitGroup // flows handed to the client, until their fate is known
	errOnce               sync.Once
	err                   atomic.Pointer[error] // the first delivery failure
}

// New makes a producer. It connects to the brokers in the background: a broker
// that is down makes the flows wait, then fail, rather than New.
func New(cfg Config) (*Producer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("%w: no brokers", ErrConfig)
	}
	topic := cfg.Topic
	if topic == "" {
		topic = DefaultTopic
	}
	codec, err := compression(cfg.Compression)
	if err != nil {
		return nil, err
	}
	if cfg.Format != "" && cfg.Format != "json" && cfg.Format != "protobuf" {
		return nil, fmt.Errorf("%w: format %q: want json or protobuf", ErrConfig, cfg.Format)
	}
	host := cfg.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerLinger(orDefault(cfg.Linger, 100*time.Millisecond)),
		kgo.MaxBufferedRecords(orDefault(cfg.MaxBuffered, 100_000)),
		kgo.RecordDeliveryTimeout(orDefault(cfg.DeliveryTimeout, 30*time.Second)),
	}
	log := new(brokerLog)
	opts = append(opts, kgo.WithLogger(log), kgo.WithHooks(log))
	if cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg.TLS))
	}
	if cfg.SASL != nil {
		opt, err := cfg.SASL.opt()
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	}
	cl, err := kgo.NewClient(append(opts, cfg.Opts...)...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Producer{
		log:      log,
		ctx:      ctx,
		cancel:   cancel,
		cl:       cl,
		topic:    topic,
		where:    "topic " + topic + " on " + strings.Join(cfg.Brokers, ","),
		headers:  []kgo.RecordHeader{{Key: "host", Value: []byte(host)}, {Key: "fparser-version", Value: []byte(fparser.Version().Module)}},
		timeout:  orDefault(cfg.CloseTimeout, 5*time.Second),
		enc:      flowfmt.Encoder{Features: cfg.Features, Quality: cfg.Quality, Tunnel: cfg.Tunnel, Packets: cfg.Packets},
		protobuf: cfg.Format == "protobuf",
		block:    cfg.Block,
	}, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func compression(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "zstd":
		return kgo.ZstdCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("%w: compression %q: want zstd, lz4, snappy, gzip or none", ErrConfig, name)
}

// Key is the message key of a flow: an FNV-1a hash of its protocol, VLAN and two
// endpoints in a fixed order, so both directions of a conversation hash alike.
func Key(f *fparser.Flow) []byte {
	a, b := f.Src, f.Dst
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	h := fnv.New64a()
	var buf [2*18 + 3]byte
	a16, b16 := a.Addr().As16(), b.Addr().As16()
	copy(buf[0:], a16[:])
	binary.BigEndian.PutUint16(buf[16:], a.Port())
	copy(buf[18:], b16[:])
	binary.BigEndian.PutUint16(buf[34:], b.Port())
	buf[36] = byte(f.Protocol)
	binary.BigEndian.PutUint16(buf[37:], f.VLAN)
	h.Write(buf[:])
	return h.Sum(nil)
}

// Export publishes a flow. It returns at once, unless Config.Block and the buffer is
// full: what becomes of the flow (sent, failed, or dropped for want of room) comes
// later, in Stats and Err. It returns an error only for a flow it cannot encode,
// which it counts as failed.
func (p *Producer) Export(f *fparser.Flow) error {
	var value []byte
	if p.protobuf {
		var err error
		m := Message(f, p.enc.Features, p.enc.Packets)
		if p.enc.Quality {
			m.TcpQuality = QualityMessage(f)
		}
		if p.enc.Tunnel {
			m.Tunnel = TunnelMessage(f)
		}
		if value, err = proto.Marshal(m); err != nil {
			p.failed.Add(1)
			return fmt.Errorf("kafka: %s: %w", p.where, err)
		}
	} else {
		line := p.enc.AppendJSON(nil, f)
		value = line[:len(line)-1]
	}
	r := &kgo.Record{Key: Key(f), Value: value, Headers: p.headers}
	p.pending.Add(1)
	produce := p.cl.TryProduce
	if p.block {
		produce = p.cl.Produce
	}
	produce(p.ctx, r, func(_ *kgo.Record, err error) {
		defer p.pending.Done()
		switch {
		case err == nil:
			p.sent.Add(1)
		case errors.Is(err, kgo.ErrMaxBuffered):
			p.dropped.Add(1)
		default:
			p.failed.Add(1)
			p.errOnce.Do(func() {
				e := fmt.Errorf("kafka: %s: %w", p.where, err)
				if last := p.log.last.Load(); last != nil {
					// The flow failed for want of a broker: say why there was none.
					e = fmt.Errorf("kafka: %s: %w (last broker error: %s)", p.where, err, *last)
				}
				p.err.Store(&e)
			})
		}
	})
	return nil
}

// brokerLog keeps the last failure franz-go reports about a broker, as a warning or
// an error in its log, or through its hooks (a refused connection, a connection
// closed in the SASL handshake): a flow that fails for want of a broker then says
// why.
type brokerLog struct{ last atomic.Pointer[string] }

func (l *brokerLog) note(msg string) { l.last.Store(&msg) }

// OnBrokerConnect is franz-go's kgo.HookBrokerConnect.
func (l *brokerLog) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		l.note(fmt.Sprintf("connecting to %s: %v", brokerAddr(meta), err))
	}
}

// OnBrokerRead is franz-go's kgo.HookBrokerRead.
func (l *brokerLog) OnBrokerRead(meta kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err != nil {
		l.note(fmt.Sprintf("reading the %s response of %s: %v", kmsg.NameForKey(key), brokerAddr(meta), err))
	}
}

func brokerAddr(meta kgo.BrokerMetadata) string {
	return net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
}

func (l *brokerLog) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l *brokerLog) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if level > kgo.LogLevelWarn {
		return
	}
	for i := 0; i+1 < len(keyvals); i += 2 {
		if keyvals[i] == "err" {
			msg += ": " + fmt.Sprint(keyvals[i+1])
		}
	}
	l.note(msg)
}

// Message is the protobuf message of f, with the features and the packets when
// asked for, as the producer sends it with Config.Format "protobuf".
func Message(f *fparser.Flow, features, packets bool) *flowpb.Flow {
	m := &flowpb.Flow{
		Protocol:         f.Protocol.String(),
		SrcIp:            f.Src.Addr().AsSlice(),
		SrcPort:          uint32(f.Src.Port()),
		DstIp:            f.Dst.Addr().AsSlice(),
		DstPort:          uint32(f.Dst.Port()),
		VlanId:           uint32(f.VLAN),
		Src2Dst:          direction(&f.Fwd, features),
		Dst2Src:          direction(&f.Rev, features),
		FirstSeenNs:      f.FirstSeen.UnixNano(),
		LastSeenNs:       f.LastSeen.UnixNano(),
		EndReason:        f.EndReason.String(),
		DuplicatePackets: f.DuplicatePackets,
		CommunityId:      f.CommunityID(),
	}
	if !f.Process.IsZero() {
		m.Process = &flowpb.Process{Pid: uint32(f.Process.PID), Name: f.Process.Name, Cgroup: f.Process.Cgroup}
	}
	if features {
		m.PacketRate, m.ByteRate = f.PacketRate, f.ByteRate
	}
	if packets {
		for pk := range f.History() {
			m.Packets = append(m.Packets, &flowpb.Packet{TimeNs: pk.Time.UnixNano(), Reverse: pk.Reverse, IpId: uint32(pk.IPID), Ttl: uint32(pk.TTL),
				IpLen: pk.Length, TcpFlags: uint32(pk.Flags), Seq: pk.Seq, Ack: pk.Ack, Window: uint32(pk.Window)})
		}
		m.PacketsIncomplete = f.HistoryIncomplete()
	}
	return m
}

// QualityMessage is a TCP flow's quality (fparser.Options.TCPQuality) as the
// protobuf message's tcp_quality, which the producer sets with Config.Quality; nil
// for a flow of another protocol.
func QualityMessage(f *fparser.Flow) *flowpb.TcpQuality {
	if f.Protocol != fparser.TCP {
		return nil
	}
	return &flowpb.TcpQuality{
		HandshakeRttNs: int64(f.HandshakeRTT), Src2DstRttNs: int64(f.Fwd.RTT), Dst2SrcRttNs: int64(f.Rev.RTT),
		Src2DstRetransmissions: f.Fwd.Retransmissions, Dst2SrcRetransmissions: f.Rev.Retransmissions,
		Src2DstOutOfOrder: f.Fwd.OutOfOrder, Dst2SrcOutOfOrder: f.Rev.OutOfOrder,
		Src2DstZeroWindows: f.Fwd.ZeroWindows, Dst2SrcZeroWindows: f.Rev.ZeroWindows,
	}
}

// TunnelMessage is the tunnel a flow came through (fparser.Options.Decap) as the
// protobuf message's tunnel, which the producer sets with Config.Tunnel; nil for a
// flow that came through none.
func TunnelMessage(f *fparser.Flow) *flowpb.Tunnel {
	t := &f.Tunnel
	if t.Kind == fparser.TunnelNone {
		return nil
	}
	return &flowpb.Tunnel{Kind: t.Kind.String(), Id: t.ID, OuterSrcIp: t.OuterSrc.AsSlice(), OuterDstIp: t.OuterDst.AsSlice()}
}

func direction(c *fparser.Counters, features bool) *flowpb.Direction {
	d := &flowpb.Direction{Packets: c.Packets, Bytes: c.Bytes, TcpFlags: uint32(c.Flags), Interface: c.Interface}
	if features {
		ms := func(v time.Duration) float64 { return float64(v) / 1e6 }
		fc := &c.FlagPackets
		d.Features = &flowpb.Features{
			MinPs: c.Size.Min, MeanPs: c.Size.Mean, StddevPs: c.Size.Stddev, MaxPs: c.Size.Max,
			MinPiatMs: ms(c.Gap.Min), MeanPiatMs: ms(c.Gap.Mean), StddevPiatMs: ms(c.Gap.Stddev), MaxPiatMs: ms(c.Gap.Max),
			SynPackets: fc.SYN, CwrPackets: fc.CWR, EcePackets: fc.ECE, UrgPackets: fc.URG,
			AckPackets: fc.ACK, PshPackets: fc.PSH, RstPackets: fc.RST, FinPackets: fc.FIN,
		}
	}
	return d
}

// Stats returns the counters.
func (p *Producer) Stats() Stats {
	return Stats{Sent: p.sent.Load(), Failed: p.failed.Load(), Dropped: p.dropped.Load()}
}

// Err is the first delivery failure, naming the brokers and the topic, or nil.
func (p *Producer) Err() error {
	if e := p.err.Load(); e != nil {
		return *e
	}
	return nil
}

// Flush waits until every flow given to Export so far is sent or failed, or ctx
// is done.
func (p *Producer) Flush(ctx context.Context) error { return p.cl.Flush(ctx) }

// Close waits up to Config.CloseTimeout for the buffered flows, then closes the
// client: flows still undelivered fail. It returns the first delivery failure.
func (p *Producer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	return p.Shutdown(ctx)
}

// Shutdown is Close, waiting for the buffered flows until ctx is done rather than
// Config.CloseTimeout: it makes the producer a sink.Exporter.
func (p *Producer) Shutdown(ctx context.Context) error {
	p.cl.Flush(ctx)
	p.cl.Close() // fails what is still buffered: each flow's callback runs once
	p.pending.Wait()
	p.cancel()
	return p.Err()
}

// Cut makes an Export that waits for room (Config.Block) return, its flow failed,
// and fails the buffered flows that franz-go can still take back safely (those of a
// batch not being sent); the rest are sent or fail by Shutdown. Each is counted
// once either way.
func (p *Producer) Cut() { p.cancel() }

// Delivered counts the flows whose fate is known: sent, and failed or dropped
// (Stats). It makes the producer a sink.Exporter.
func (p *Producer) Delivered() (sent, failed uint64) {
	st := p.Stats()
	return st.Sent, st.Failed + st.Dropped
}
