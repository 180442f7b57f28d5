// Package ipfix exports fparser's flows as IPFIX (RFC 7011) to a collector, over UDP
// or TCP: one biflow record per flow, its reverse counts as RFC 5103 reverse
// information elements, or two uniflow records for collectors that do not read
// those. The templates, the sequence numbers and message sizes follow RFC 7011; an
// options record carries the exporter's own counters.
//
// # A collector that fails
//
// No collector holds the caller up for long. A message waits at most
// Config.WriteTimeout for the collector to take it. A send that fails is counted
// (Stats.Errors), and so are its flows, as not sent; after a send that timed out,
// and after any failure over TCP, the exporter takes the collector as down: for
// Config.RetryInterval it counts each message as not sent without trying, then tries
// again. Over TCP it connects anew, in the background, and the new connection starts
// with the templates and with sequence number 0; over UDP it sends again. Each
// failure within a minute of the one before doubles the wait, up to a minute. Stats
// never waits for a send, SetWriteTimeout cuts a waiting send short, and Close
// returns within WriteTimeout. Before it gives up on a TCP connection for a timeout,
// the exporter waits a quarter second more for acknowledgements, which the
// collector's host may delay (Linux by up to 200 ms): a message it took then counts
// as sent, as it is.
//
// # What counts as sent
//
// Stats counts as sent what the exporter can know was delivered, and no more. Over
// TCP a message is sent once the collector's host has acknowledged all of it (the
// kernel says how much of the stream is unacknowledged). What was written but not
// acknowledged when the connection fails,
// or when Close gives up waiting, is not sent, and the connection is reset so that
// it cannot arrive later either. A collector that closed its end acknowledges
// nothing more.
//
// UDP acknowledges nothing: a message the kernel takes is counted as sent. The one
// sign of loss it gives is an ICMP port unreachable from the collector's host, which
// the kernel reports on the connected socket as the failure of a later send. That
// send is not made, and is counted as not sent; the exporter also takes back the
// last message it had counted as sent, since the report means one was refused,
// without saying which. A collector
// that is down on a host that does not answer, a firewall that drops datagrams, or
// a collector whose socket buffer overflows goes unnoticed over UDP: the collector
// sees the loss in the sequence numbers.
package ipfix

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/fparser/fparser"
)

// Config says where and how to export.
type Config struct {
	// Network is "udp" (the default) or "tcp".
	Network string
	// Address is the collector's host:port.
	Address string
	// ObservationDomain is the IPFIX observation domain id in every message.
	ObservationDomain uint32
	// Uniflow sends two records per flow, one per direction, with no reverse
	// elements, for collectors without RFC 5103 support. A direction without
	// packets is not sent.
	Uniflow bool
	// MaxMessage is the largest message sent, in bytes: with UDP, the path's MTU
	// less the IP and UDP headers. Default 1400, which fits an Ethernet MTU over
	// IPv4 or IPv6.
	MaxMessage int
	// TemplateRefresh is how often templates are sent again over UDP, where the
	// collector may have missed them or restarted; they are also sent in every
	// TemplateRefreshMessages-th message. Defaults 60 s and 100. Over TCP they are
	// sent once per connection, when it opens.
	TemplateRefresh         time.Duration
	TemplateRefreshMessages int
	// DialTimeout bounds the TCP connect. Default 5 s.
	DialTimeout time.Duration
	// WriteTimeout is how long a message may wait for the collector to take it
	// (over TCP, for room in the connection's window), and how long Close waits in
	// all for what is left to be delivered. Default 5 s.
	WriteTimeout time.Duration
	// RetryInterval is how long the exporter takes the collector as down after a
	// failure before it tries again; see the package doc. Default 1 s.
	RetryInterval time.Duration
	// TCPQuality adds each TCP flow's quality (fparser.Options.TCPQuality) to its
	// record, in fparser's own elements (the QualityElements) under
	// EnterpriseNumber: IANA's registry has none for a round trip or a
	// retransmission count. TCP flows then go in templates of their own (ids 261 to
	// 264), UDP flows in the usual ones. The templates take 800 bytes then:
	// MaxMessage must be at least 966.
	TCPQuality bool
	// EnterpriseNumber is the Private Enterprise Number that fparser's elements
	// are sent under. fparser has none registered: the default,
	// DefaultEnterpriseNumber, is RFC 5612's number for examples, which no one's
	// elements use; a site that has its own PEN may send them under it.
	EnterpriseNumber uint32
}

// DefaultEnterpriseNumber is RFC 5612's Private Enterprise Number for examples in
// documentation, under which fparser's elements go by default (Config).
const DefaultEnterpriseNumber = 32473

// QualityElements are fparser's own information elements (Config.TCPQuality), by
// id under Config.EnterpriseNumber, with their names: unsigned64 nanoseconds for
// the round trips, 0 when not measured; unsigned32 counts. A biflow record carries
// all nine, forward being the initiator's direction; a uniflow record carries the
// handshake's round trip and its direction's own: ids 1, 2, 4, 6 and 8.
var QualityElements = map[uint16]string{
	qeHandshakeRTT:       "tcpHandshakeRttNanoseconds",
	qeRTT:                "tcpRttNanoseconds",
	qeRevRTT:             "reverseTcpRttNanoseconds",
	qeRetransmissions:    "tcpRetransmissionCount",
	qeRevRetransmissions: "reverseTcpRetransmissionCount",
	qeOutOfOrder:         "tcpOutOfOrderCount",
	qeRevOutOfOrder:      "reverseTcpOutOfOrderCount",
	qeZeroWindows:        "tcpZeroWindowCount",
	qeRevZeroWindows:     "reverseTcpZeroWindowCount",
}

// fparser's elements (QualityElements).
const (
	qeHandshakeRTT = iota + 1
	qeRTT
	qeRevRTT
	qeRetransmissions
	qeRevRetransmissions
	qeOutOfOrder
	qeRevOutOfOrder
	qeZeroWindows
	qeRevZeroWindows
)

// Stats are the exporter's counters. Every message, and every record and flow in
// it, is counted once as sent or not sent when its fate is known: until then it is
// being built, or written and waiting for the collector's acknowledgement (TCP).
// After Close, Flows + NotSentFlows is every flow given to Export.
type Stats struct {
	Messages uint64 // messages delivered (see the package doc)
	Records  uint64 // data records in them: flow records, and the options record
	Flows    uint64 // flows in them

	NotSentMessages uint64 // messages not delivered: failed, abandoned, or dropped while the collector was down
	NotSentRecords  uint64
	NotSentFlows    uint64

	Errors uint64 // sends that failed, and connection attempts that failed
}

func (s *Stats) sent(records, flows int) {
	s.Messages++
	s.Records += uint64(records)
	s.Flows += uint64(flows)
}

func (s *Stats) notSent(records, flows int) {
	s.NotSentMessages++
	s.NotSentRecords += uint64(records)
	s.NotSentFlows += uint64(flows)
}

// ErrConfig is a bad configuration; errors.Is finds it. The error is a *ConfigError,
// which names the field.
var ErrConfig = errors.New("ipfix: bad configuration")

// ConfigError is a field of Config that Dial refuses. It matches ErrConfig.
type ConfigError struct {
	Field  string // of Config, as "Network"
	Value  any    // the value refused
	Reason string // what is wanted
	Err    error  // the cause, if any
}

func (e *ConfigError) Error() string {
	msg := fmt.Sprintf("ipfix: bad configuration: %s %v: %s", e.Field, e.Value, e.Reason)
	if s, ok := e.Value.(string); ok {
		msg = fmt.Sprintf("ipfix: bad configuration: %s %q: %s", e.Field, s, e.Reason)
	}
	return msg
}

// Is makes errors.Is(err, ErrConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

// Template ids.
const (
	tmplV4Biflow  = 256
	tmplV6Biflow  = 257
	tmplV4Uniflow = 258
	tmplV6Uniflow = 259
	tmplOptions   = 260
	// With the TCP quality: each of the four, plus tmplQuality.
	tmplQuality = 5
)

// Information elements (IANA IPFIX registry), and RFC 5103's reverse PEN.
const (
	ieOctetDeltaCount              = 1
	iePacketDeltaCount             = 2
	ieProtocolIdentifier           = 4
	ieTCPControlBits               = 6
	ieSourceTransportPort          = 7
	ieSourceIPv4Address            = 8
	ieDestinationTransportPort     = 11
	ieIngressInterface             = 10
	ieDestinationIPv4Address       = 12
	ieEgressInterface              = 14
	ieSourceIPv6Address            = 27
	ieDestinationIPv6Address       = 28
	ieExportedMessageTotalCount    = 41
	ieExportedFlowRecordTotalCount = 42
	ieVlanID                       = 58
	ieFlowEndReason                = 136
	ieObservationDomainID          = 149
	ieFlowStartMilliseconds        = 152
	ieFlowEndMilliseconds          = 153
	ieNotSentFlowTotalCount        = 166

	reversePEN = 29305
)

type field struct {
	id     uint16
	length uint16
	pen    uint32 // 0: IANA
}

func flowFields(v6, biflow bool) []field {
	fs := []field{{ieSourceIPv4Address, 4, 0}, {ieDestinationIPv4Address, 4, 0}}
	if v6 {
		fs = []field{{ieSourceIPv6Address, 16, 0}, {ieDestinationIPv6Address, 16, 0}}
	}
	fs = append(fs,
		field{ieSourceTransportPort, 2, 0}, field{ieDestinationTransportPort, 2, 0},
		field{ieProtocolIdentifier, 1, 0}, field{ieVlanID, 2, 0},
		field{ieFlowStartMilliseconds, 8, 0}, field{ieFlowEndMilliseconds, 8, 0},
		field{ieTCPControlBits, 2, 0}, field{ieFlowEndReason, 1, 0},
		field{ieIngressInterface, 4, 0}, field{ieEgressInterface, 4, 0},
		field{ieOctetDeltaCount, 8, 0}, field{iePacketDeltaCount, 8, 0},
	)
	if biflow {
		// Only the reverse counts: nfdump reads other reverse elements as their
		// forward ones and would overwrite them.
		fs = append(fs, field{ieOctetDeltaCount, 8, reversePEN}, field{iePacketDeltaCount, 8, reversePEN})
	}
	return fs
}

// qualityFields are the TCP quality's fields, after flowFields, under pen.
func qualityFields(biflow bool, pen uint32) []field {
	if !biflow {
		return []field{{qeHandshakeRTT, 8, pen}, {qeRTT, 8, pen}, {qeRetransmissions, 4, pen}, {qeOutOfOrder, 4, pen}, {qeZeroWindows, 4, pen}}
	}
	return []field{
		{qeHandshakeRTT, 8, pen}, {qeRTT, 8, pen}, {qeRevRTT, 8, pen},
		{qeRetransmissions, 4, pen}, {qeRevRetransmissions, 4, pen},
		{qeOutOfOrder, 4, pen}, {qeRevOutOfOrder, 4, pen},
		{qeZeroWindows, 4, pen}, {qeRevZeroWindows, 4, pen},
	}
}

// templateFields are the fields of template id, as appendTemplates defines it.
func (cfg *Config) templateFields(v6, biflow, quality bool) []field {
	fs := flowFields(v6, biflow)
	if quality {
		fs = append(fs, qualityFields(biflow, cfg.EnterpriseNumber)...)
	}
	return fs
}

// optionsScope and optionsFields describe the options record: the exporter's
// counters, scoped to its observation domain.
var (
	optionsScope  = []field{{ieObservationDomainID, 4, 0}}
	optionsFields = []field{{ieExportedMessageTotalCount, 8, 0}, {ieExportedFlowRecordTotalCount, 8, 0}, {ieNotSentFlowTotalCount, 8, 0}}
)

func recordSize(fs []field) int {
	n := 0
	for _, f := range fs {
		n += int(f.length)
	}
	return n
}

// Exporter sends flows to one collector. Its methods are safe for concurrent use.
type Exporter struct {
	cfg Config
	tcp bool

	// mu is the send lock: the message being built, and the connection, which a
	// send holds while it waits for the collector (WriteTimeout at most).
	mu             sync.Mutex
	msg            []byte // the message being filled: header, then sets
	set            int    // where the open data set's header is, or -1
	setTemplate    uint16
	records        int // data records in msg
	flowsInMsg     int
	msgTemplates   bool   // msg carries the templates
	tmplMsg        []byte // a message of templates alone, for a connection made while msg was filled
	seq            uint32 // data records written on this connection before msg
	lastTemplate   time.Time
	sinceTmpl      int
	written        uint64 // messages written in full, for the options record
	writtenRecords uint64
	conn           net.Conn  // nil while the TCP connection is down
	connTemplates  bool      // the templates were written on conn (TCP)
	resumeAt       time.Time // UDP: a send timed out; nothing is sent before this
	failure        error     // why the collector is taken as down
	lastFailure    time.Time
	retry          time.Duration // the wait after the last failure
	closed         bool
	err            error // the first send error, returned by Close
	now            func() time.Time

	// smu guards what Stats reads and what cuts a send short. It is never held
	// while waiting for the collector, so Stats and SetWriteTimeout never wait.
	smu          sync.Mutex
	stats        Stats
	writeTimeout time.Duration
	closing      bool      // Close has begun: no reconnecting
	closeBy      time.Time // Close's deadline
	writing      net.Conn  // the connection a send is writing on, or nil
	deadline     time.Time // that send's deadline
	raw          syscall.RawConn
	wrote        uint64    // bytes written on the TCP connection
	pending      []pending // messages written on it, not yet acknowledged, from head
	head         int
	lastSent     pending // UDP: the last message counted as sent,
	canTakeBack  bool    // while no refusal has taken it back

	// A reconnect waits in the background; Close ends it.
	quit    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	redials sync.WaitGroup
}

// pending is a message written on a TCP connection: where it ends in the
// connection's stream, and what it carries.
type pending struct {
	end            uint64
	records, flows int
}

// Dial opens an exporter to cfg.Address. Over TCP it connects now, and fails if the
// collector does not accept; over UDP nothing is sent until the first flush.
func Dial(cfg Config) (*Exporter, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout(cfg.Network, cfg.Address, cfg.DialTimeout)
	if err != nil {
		return nil, fmt.Errorf("ipfix: connect to collector %s over %s: %w", cfg.Address, cfg.Network, err)
	}
	return newExporter(cfg, conn), nil
}

// withDefaults checks cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	switch cfg.Network {
	case "":
		cfg.Network = "udp"
	case "udp", "tcp":
	default:
		return cfg, &ConfigError{Field: "Network", Value: cfg.Network, Reason: "want udp or tcp"}
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = 1400
	}
	if cfg.MaxMessage < 512 || cfg.MaxMessage > 65535 {
		return cfg, &ConfigError{Field: "MaxMessage", Value: cfg.MaxMessage, Reason: "want 512 to 65535"}
	}
	if cfg.TemplateRefresh <= 0 {
		cfg.TemplateRefresh = time.Minute
	}
	if cfg.TemplateRefreshMessages <= 0 {
		cfg.TemplateRefreshMessages = 100
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.EnterpriseNumber == 0 {
		cfg.EnterpriseNumber = DefaultEnterpriseNumber
	}
	// A message carries all the templates and a record at least: with the TCP
	// quality's templates, more than the smallest MaxMessage.
	if least := 16 + len(cfg.appendTemplates(nil)) + 4 + recordSize(cfg.templateFields(true, true, cfg.TCPQuality)); cfg.MaxMessage < least {
		return cfg, &ConfigError{Field: "MaxMessage", Value: cfg.MaxMessage, Reason: fmt.Sprintf("want at least %d, for the templates and a record", least)}
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return cfg, &ConfigError{Field: "Address", Value: cfg.Address, Reason: "want HOST:PORT: " + addrReason(err), Err: err}
	}
	return cfg, nil
}

// newExporter returns an exporter of cfg, with its defaults, over conn.
func newExporter(cfg Config, conn net.Conn) *Exporter {
	e := &Exporter{cfg: cfg, tcp: cfg.Network == "tcp", set: -1, now: time.Now,
		writeTimeout: cfg.WriteTimeout, quit: make(chan struct{})}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.installLocked(conn)
	return e
}

// Export adds a flow to the message being built, and sends the message when the
// next record would not fit. It returns an error when that message was not sent:
// its flows are counted as not sent. After Close, it counts the flow as not sent
// and returns an error that matches net.ErrClosed.
func (e *Exporter) Export(f *fparser.Flow) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		e.smu.Lock()
		e.stats.NotSentFlows++ // no message: one flow, as not sent
		e.smu.Unlock()
		return fmt.Errorf("ipfix: exporter to %s: %w", e.cfg.Address, net.ErrClosed)
	}
	v6 := f.Src.Addr().Is6()
	quality := e.cfg.TCPQuality && f.Protocol == fparser.TCP
	var extra uint16
	if quality {
		extra = tmplQuality
	}
	if e.cfg.Uniflow {
		tmpl, fs := tmplV4Uniflow+extra, e.cfg.templateFields(v6, false, quality)
		if v6 {
			tmpl = tmplV6Uniflow + extra
		}
		var err error
		sent := false
		for _, rev := range []bool{false, true} {
			c := &f.Fwd
			if rev {
				c = &f.Rev
			}
			if c.Packets == 0 {
				continue
			}
			write := func(b []byte) []byte {
				b = appendUniflow(b, f, rev)
				if quality {
					b = appendUniflowQuality(b, f, rev)
				}
				return b
			}
			if err2 := e.add(tmpl, recordSize(fs), write, !sent); err2 != nil && err == nil {
				err = err2
			}
			sent = true
		}
		return err
	}
	tmpl, fs := tmplV4Biflow+extra, e.cfg.templateFields(v6, true, quality)
	if v6 {
		tmpl = tmplV6Biflow + extra
	}
	return e.add(tmpl, recordSize(fs), func(b []byte) []byte {
		b = appendBiflow(b, f)
		if quality {
			b = appendBiflowQuality(b, f)
		}
		return b
	}, true)
}

// add appends one data record of template tmpl, size bytes long, written by write;
// newFlow says the record starts a flow, for the flow counters.
func (e *Exporter) add(tmpl uint16, size int, write func([]byte) []byte, newFlow bool) error {
	var err error
	if len(e.msg) > 0 {
		extra := size
		if e.set < 0 || e.setTemplate != tmpl {
			extra += 4
		}
		if len(e.msg)+extra > e.cfg.MaxMessage {
			err = e.sendLocked()
		}
	}
	if len(e.msg) == 0 {
		e.startLocked()
	}
	if e.set < 0 || e.setTemplate != tmpl {
		e.closeSetLocked()
		e.set, e.setTemplate = len(e.msg), tmpl
		e.msg = binary.BigEndian.AppendUint16(e.msg, tmpl)
		e.msg = append(e.msg, 0, 0) // the set's length, when it closes
	}
	e.msg = write(e.msg)
	e.records++
	if newFlow {
		e.flowsInMsg++
	}
	return err
}

// startLocked begins a message: the header, and the templates when they are due:
// over TCP, until they are written on the connection; over UDP, when the refresh
// is due.
func (e *Exporter) startLocked() {
	e.msg = append(e.msg[:0], make([]byte, 16)...)
	e.set, e.records, e.flowsInMsg, e.msgTemplates = -1, 0, 0, false
	now := e.now()
	due := !e.connTemplates
	if !e.tcp {
		due = now.Sub(e.lastTemplate) >= e.cfg.TemplateRefresh || e.sinceTmpl >= e.cfg.TemplateRefreshMessages
	}
	if due {
		e.msg = e.cfg.appendTemplates(e.msg)
		e.msgTemplates = true
		e.lastTemplate, e.sinceTmpl = now, 0
	}
}

// closeSetLocked writes the open data set's length.
func (e *Exporter) closeSetLocked() {
	if e.set >= 0 {
		binary.BigEndian.PutUint16(e.msg[e.set+2:], uint16(len(e.msg)-e.set))
		e.set = -1
	}
}

// sendLocked finishes the message and sends it.
func (e *Exporter) sendLocked() error {
	if len(e.msg) == 0 {
		return nil
	}
	e.closeSetLocked()
	if e.tcp && e.conn != nil && !e.connTemplates && !e.msgTemplates {
		// The connection was made while the message was filled: the templates
		// go first, in a message of their own. Should it fail, so does msg.
		e.tmplMsg = e.cfg.appendTemplates(append(e.tmplMsg[:0], make([]byte, 16)...))
		e.writeLocked(e.tmplMsg, 0, 0, true)
	}
	err := e.writeLocked(e.msg, e.records, e.flowsInMsg, e.msgTemplates)
	e.msg = e.msg[:0]
	e.records, e.flowsInMsg, e.msgTemplates = 0, 0, false
	return err
}

// Flush sends what is buffered.
func (e *Exporter) Flush() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sendLocked()
}

// Stats returns the exporter's counters. It does not wait for a send in progress.
func (e *Exporter) Stats() Stats {
	e.smu.Lock()
	defer e.smu.Unlock()
	e.retireLocked()
	return e.stats
}

// SetWriteTimeout replaces Config.WriteTimeout for the sends to come and for Close,
// and cuts short a send that is waiting: it then gives up d from now at the latest.
// A program told to stop can so bound its wait for a collector that does not take
// what it sends.
func (e *Exporter) SetWriteTimeout(d time.Duration) {
	e.smu.Lock()
	defer e.smu.Unlock()
	e.writeTimeout = d
	by := time.Now().Add(d)
	if e.closing && by.Before(e.closeBy) {
		e.closeBy = by
	}
	e.cutLocked(by)
}

// Close sends what is buffered, then an options record with the exporter's counters,
// waits for the collector to acknowledge them (TCP), and closes the connection. It
// gives up after WriteTimeout in all (and a quarter second for delayed
// acknowledgements; see the package doc), a send that another goroutine has waiting
// included: what was not delivered by then is counted as not sent. It returns the
// first error of the exporter's life.
func (e *Exporter) Close() error {
	e.smu.Lock()
	if e.closing {
		e.smu.Unlock()
		return fmt.Errorf("ipfix: close: %w", net.ErrClosed)
	}
	e.closing = true
	e.closeBy = time.Now().Add(e.writeTimeout)
	e.cutLocked(e.closeBy)
	e.smu.Unlock()
	close(e.quit)
	e.cancel()
	e.redials.Wait()

	e.mu.Lock()
	defer e.mu.Unlock()
	e.sendLocked()
	e.startLocked()
	if !e.msgTemplates && !e.tcp {
		// Over UDP the options template goes with its record; over TCP the
		// first message defined it for the session.
		e.msg = e.cfg.appendTemplates(e.msg)
		e.msgTemplates = true
	}
	e.smu.Lock()
	notSent := e.stats.NotSentFlows
	e.smu.Unlock()
	e.msg = binary.BigEndian.AppendUint16(e.msg, tmplOptions)
	e.msg = binary.BigEndian.AppendUint16(e.msg, uint16(4+recordSize(optionsScope)+recordSize(optionsFields)))
	e.msg = binary.BigEndian.AppendUint32(e.msg, e.cfg.ObservationDomain)
	e.msg = binary.BigEndian.AppendUint64(e.msg, e.written+1) // this one included
	e.msg = binary.BigEndian.AppendUint64(e.msg, e.writtenRecords)
	e.msg = binary.BigEndian.AppendUint64(e.msg, notSent)
	e.records++
	e.sendLocked()
	err := e.finishLocked()
	e.closed = true
	return errors.Join(e.err, err)
}

// appendTemplates appends the template set and the options template set.
func (cfg *Config) appendTemplates(b []byte) []byte {
	start := len(b)
	b = append(b, 0, 2, 0, 0) // template set; length below
	for _, quality := range []bool{false, true} {
		if quality && !cfg.TCPQuality {
			break
		}
		var extra uint16
		if quality {
			extra = tmplQuality
		}
		for _, t := range []struct {
			id     uint16
			v6, bi bool
		}{{tmplV4Biflow, false, true}, {tmplV6Biflow, true, true}, {tmplV4Uniflow, false, false}, {tmplV6Uniflow, true, false}} {
			fs := cfg.templateFields(t.v6, t.bi, quality)
			b = binary.BigEndian.AppendUint16(b, t.id+extra)
			b = binary.BigEndian.AppendUint16(b, uint16(len(fs)))
			b = appendFieldSpecs(b, fs)
		}
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))

	start = len(b)
	b = append(b, 0, 3, 0, 0) // options template set
	b = binary.BigEndian.AppendUint16(b, tmplOptions)
	b = binary.BigEndian.AppendUint16(b, uint16(len(optionsScope)+len(optionsFields)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(optionsScope)))
	b = appendFieldSpecs(b, optionsScope)
	b = appendFieldSpecs(b, optionsFields)
	for (len(b)-start)%4 != 0 {
		b = append(b, 0) // padding, allowed at a set's end
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	return b
}

func appendFieldSpecs(b []byte, fs []field) []byte {
	for _, f := range fs {
		if f.pen != 0 {
			b = binary.BigEndian.AppendUint16(b, f.id|0x8000)
			b = binary.BigEndian.AppendUint16(b, f.length)
			b = binary.BigEndian.AppendUint32(b, f.pen)
			continue
		}
		b = binary.BigEndian.AppendUint16(b, f.id)
		b = binary.BigEndian.AppendUint16(b, f.length)
	}
	return b
}

// EndReason is the IPFIX flowEndReason (RFC 5102) of a flow's end.
func EndReason(r fparser.EndReason) uint8 {
	switch r {
	case fparser.EndIdle:
		return 1 // idle timeout
	case fparser.EndActive:
		return 2 // active timeout
	case fparser.EndFIN, fparser.EndRST, fparser.EndReused:
		return 3 // end of flow detected
	case fparser.EndEvicted:
		return 5 // lack of resources
	}
	return 4 // forced end: end of capture, stopped
}

func appendKey(b []byte, src, dst netip.AddrPort, proto fparser.Protocol, vlan uint16) []byte {
	if src.Addr().Is4() {
		a, d := src.Addr().As4(), dst.Addr().As4()
		b = append(b, a[:]...)
		b = append(b, d[:]...)
	} else {
		a, d := src.Addr().As16(), dst.Addr().As16()
		b = append(b, a[:]...)
		b = append(b, d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	b = append(b, byte(proto))
	return binary.BigEndian.AppendUint16(b, vlan)
}

func appendTimes(b []byte, first, last time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(first.UnixMilli()))
	return binary.BigEndian.AppendUint64(b, uint64(last.UnixMilli()))
}

// appendBiflow writes a flow as one record: forward from the initiator, the
// reverse counts in the reverse elements, the TCP flags of both directions.
func appendBiflow(b []byte, f *fparser.Flow) []byte {
	b = appendKey(b, f.Src, f.Dst, f.Protocol, f.VLAN)
	b = appendTimes(b, f.FirstSeen, f.LastSeen)
	b = binary.BigEndian.AppendUint16(b, uint16(f.Fwd.Flags|f.Rev.Flags))
	b = append(b, EndReason(f.EndReason))
	b = appendInterfaces(b, &f.Fwd, &f.Rev)
	b = binary.BigEndian.AppendUint64(b, f.Fwd.Bytes)
	b = binary.BigEndian.AppendUint64(b, f.Fwd.Packets)
	b = binary.BigEndian.AppendUint64(b, f.Rev.Bytes)
	return binary.BigEndian.AppendUint64(b, f.Rev.Packets)
}

// appendInterfaces writes ingressInterface and egressInterface for the direction
// this, whose flow's other direction is other: where this was counted arriving is
// its ingress, leaving its egress; failing that, the other direction, counted
// arriving where this one leaves, or leaving where this one arrives, says the
// other. 0 where neither tells (a flow of the host's own, say, has no ingress).
// Offline the index is the capture's interface plus one (Counters.InterfaceIndex).
func appendInterfaces(b []byte, this, other *fparser.Counters) []byte {
	var in, out int
	switch {
	case this.InterfaceIndex != 0 && !this.Egress:
		in = this.InterfaceIndex
	case other.InterfaceIndex != 0 && other.Egress:
		in = other.InterfaceIndex
	}
	switch {
	case this.InterfaceIndex != 0 && this.Egress:
		out = this.InterfaceIndex
	case other.InterfaceIndex != 0 && !other.Egress && other.InterfaceIndex != in:
		out = other.InterfaceIndex
	}
	b = binary.BigEndian.AppendUint32(b, uint32(in))
	return binary.BigEndian.AppendUint32(b, uint32(out))
}

// appendUniflow writes one direction of a flow as a record of its own.
func appendUniflow(b []byte, f *fparser.Flow, rev bool) []byte {
	src, dst, c, other := f.Src, f.Dst, &f.Fwd, &f.Rev
	if rev {
		src, dst, c, other = f.Dst, f.Src, &f.Rev, &f.Fwd
	}
	b = appendKey(b, src, dst, f.Protocol, f.VLAN)
	b = appendTimes(b, c.First, c.Last)
	b = binary.BigEndian.AppendUint16(b, uint16(c.Flags))
	b = append(b, EndReason(f.EndReason))
	b = appendInterfaces(b, c, other)
	b = binary.BigEndian.AppendUint64(b, c.Bytes)
	return binary.BigEndian.AppendUint64(b, c.Packets)
}

// appendBiflowQuality writes a TCP flow's quality after its biflow record
// (qualityFields).
func appendBiflowQuality(b []byte, f *fparser.Flow) []byte {
	for _, d := range [...]time.Duration{f.HandshakeRTT, f.Fwd.RTT, f.Rev.RTT} {
		b = binary.BigEndian.AppendUint64(b, uint64(max(d, 0)))
	}
	for _, n := range [...]uint32{f.Fwd.Retransmissions, f.Rev.Retransmissions, f.Fwd.OutOfOrder, f.Rev.OutOfOrder, f.Fwd.ZeroWindows, f.Rev.ZeroWindows} {
		b = binary.BigEndian.AppendUint32(b, n)
	}
	return b
}

// appendUniflowQuality writes the quality of one direction of a TCP flow after its
// uniflow record.
func appendUniflowQuality(b []byte, f *fparser.Flow, rev bool) []byte {
	c := &f.Fwd
	if rev {
		c = &f.Rev
	}
	b = binary.BigEndian.AppendUint64(b, uint64(max(f.HandshakeRTT, 0)))
	b = binary.BigEndian.AppendUint64(b, uint64(max(c.RTT, 0)))
	b = binary.BigEndian.AppendUint32(b, c.Retransmissions)
	b = binary.BigEndian.AppendUint32(b, c.OutOfOrder)
	return binary.BigEndian.AppendUint32(b, c.ZeroWindows)
}

// addrReason is what net's error about an address says, without the address, which
// the ConfigError names already.
func addrReason(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

// Delivered counts the flows whose fate is known: sent (Stats.Flows) and not sent
// (Stats.NotSentFlows). It makes the exporter a sink.Exporter.
func (e *Exporter) Delivered() (sent, failed uint64) {
	st := e.Stats()
	return st.Flows, st.NotSentFlows
}

// Cut makes a send that waits for the collector give up now, and every later one
// at once: SetWriteTimeout(0).
func (e *Exporter) Cut() { e.SetWriteTimeout(0) }

// Ready waits while the collector is taken as down (see the package doc): until
// the connection is made again (TCP) or the retry interval has passed (UDP). It
// returns nil at once when the exporter is closed, whose Export counts what it is
// given as not sent, and ctx's error when ctx is done first.
func (e *Exporter) Ready(ctx context.Context) error {
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		e.mu.Lock()
		down := !e.closed && e.downLocked() != nil
		e.mu.Unlock()
		if !down {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Shutdown is Close, given no more than until ctx's deadline: it makes the exporter
// a sink.Exporter.
func (e *Exporter) Shutdown(ctx context.Context) error {
	if by, ok := ctx.Deadline(); ok {
		e.smu.Lock()
		d := e.writeTimeout
		e.smu.Unlock()
		if left := max(time.Until(by), 0); left < d {
			e.SetWriteTimeout(left)
		}
	}
	return e.Close()
}
