package fparser

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/loader"
	"github.com/fparser/fparser/internal/userspace"
)

// DefaultFilter is the expression nearest to what is counted when no filter is
// given, all IPv4 and IPv6 traffic, for a caller that wants to write a filter
// around it; it compiles for every link type. It is not the same as no filter:
//   - No program runs without a filter; given, it runs, and non-IP packets count as
//     filtered rather than as non-IP.
//   - Without a filter, packets under up to two VLAN tags count. Like libpcap's ip,
//     this expression does not look past a VLAN tag, so tagged packets are
//     filtered out. On Ethernet, "ip or ip6 or (vlan and (ip or ip6 or (vlan and (ip or
//     ip6))))" counts what no filter does; "vlan" is refused on link types without
//     VLAN tags, such as raw IP.
const DefaultFilter = filter.Default

// AllPackets, as Options.Packets, keeps the headers of every packet of every flow.
const AllPackets = -1

// DefaultMaxPacketMemory is the default of Options.MaxPacketMemory.
const DefaultMaxPacketMemory = 1 << 30

// DefaultSnaplen is the capture length used when none is given: libpcap's maximum.
const DefaultSnaplen = 262144

// Options configure a Parser. The zero value, like a nil *Options, means every default.
// New checks them once, for the kind of source: an option for the other kind (Attach,
// Interfaces, PinDir, RingBufferSize, MaxFlows and CoarseClock are for interfaces; ReplaySpeed
// and Snaplen for capture files) is refused with an *OptionError rather than ignored.
type Options struct {
	// FlowTimeout ends a flow after this long without a packet. Default
	// DefaultFlowTimeout, 10 minutes.
	FlowTimeout time.Duration
	// FinTimeout ends a flow this long after its last packet once a FIN or RST was
	// seen. Default DefaultFinTimeout, 30 s.
	FinTimeout time.Duration
	// ActiveTimeout, when positive, ends a flow this long after its first packet,
	// however busy; the next packet starts a new flow. Default off.
	ActiveTimeout time.Duration
	// Filter selects the packets to count, in pcap-filter syntax, as tcpdump takes
	// it ("tcp port 443", "net 10.0.0.0/8 and not port 22"), or a program as
	// "tcpdump -ddd" prints it. It is compiled to classic BPF by fparser itself: host
	// and port names are not resolved. Live, it runs in the kernel, before the flow
	// update; offline, on each frame, compiled for the capture's link type. Packets
	// it rejects count only in Info.Filtered. The default, empty, counts all IPv4 and
	// IPv6 traffic without running a filter.
	Filter string
	// Packets keeps the headers of each flow's packets, for Flow.History: 0 (the
	// default) keeps none, N keeps the first N of each flow, AllPackets keeps all.
	// It is not a count: a flow's packets are counted in Counters.Packets either way.
	Packets int
	// ReplaySpeed replays a capture file at this multiple of its own pace: 1 as it
	// was captured, 10 ten times faster. 0, the default, replays as fast as it can.
	// The flows, their counts and times are the same either way. For capture files
	// only.
	ReplaySpeed float64
	// Statistics makes the datapath keep each direction's statistics, NFStream's
	// post-mortem features: packet sizes, gaps between packets and TCP flag counts
	// (Counters.Size, Gap, FlagPackets), updated per packet, in the kernel live.
	// Off by default, as in NFStream: they cost a few ns a packet and two more
	// cache lines of the flow's entry.
	Statistics bool
	// TCPQuality makes the datapath measure each TCP flow's quality, per packet, in
	// the kernel live: the handshake's round trip (Flow.HandshakeRTT, Counters.RTT),
	// and per direction the retransmissions, out-of-order segments and zero windows
	// (Counters.Retransmissions, OutOfOrder, ZeroWindows), by the rules of tshark's
	// TCP analysis that docs/fields.md states. Off by default, like Statistics: off,
	// it costs nothing per packet.
	TCPQuality bool
	// Decap opens tunnels and counts their packets by the headers inside, in the
	// kernel live: VXLAN (UDP 4789), Geneve (6081), GTP-U (2152), GRE (with or
	// without a key, PPTP's, and ERSPAN type II), IP in IP (protocol 4 or 41), MPLS
	// label stacks and PPPoE session frames, up to two nested. Each flow is keyed
	// on the innermost headers and says which tunnel its first packet came
	// through (Flow.Tunnel). The filter still reads the outer frame, as libpcap's
	// does. Off by default: off, a tunnel counts as its outer flow (or, for GRE
	// and IP in IP, as other traffic, and for MPLS and PPPoE, as non-IP), and
	// parsing costs nothing more. docs/flows.md states the rules.
	Decap bool
	// MaxPacketMemory caps the memory the histories of active flows may take
	// (default DefaultMaxPacketMemory, 1 GiB). When it is reached, storing stops, the flows that miss
	// packets say so (Flow.HistoryIncomplete), and Info counts the packets not kept.
	MaxPacketMemory int64
	// Snaplen cuts every frame of a capture file to this many bytes before it is
	// parsed, as a capture would. Byte counts come from the IP header and do not
	// change. Default DefaultSnaplen, 262144. For capture files only: the kernel datapath reads
	// headers only, and an interface refuses it.
	Snaplen int
	// Attach says where the kernel datapath attaches on an interface: "auto" (the
	// default: XDP on ingress, native where the driver has it, and TC on egress, so
	// each packet of the host's own traffic is seen once; on a veth, TC on ingress
	// too, where a container's packets still carry their socket, for
	// Flow.Process), "xdp" (ingress only,
	// native where the driver has it, generic otherwise), "xdp-native" or
	// "xdp-generic" (ingress only, and only that kind: an error where it cannot
	// attach) or "tc" (TCX on ingress and egress). Where the
	// kernel has no TCX (before 6.6), TC programs attach as clsact filters instead;
	// "tc-legacy" forces that. Unlike TCX and XDP links, a clsact filter stays
	// attached if the process is killed; a clean stop removes it.
	Attach string
	// Interfaces are more interfaces to count on, besides the source given to New
	// or Open (which may then be ""): names, shell patterns as path.Match takes them
	// ("veth*"), or AllInterfaces. Every interface shares one flow table. With a
	// pattern or AllInterfaces, interfaces that appear later are attached as they
	// appear; one that goes away is detached and its flows are kept, ending by their
	// timeouts. Every interface named must exist when the parser is opened; when
	// the last of them is deleted and no pattern is given, Wait returns
	// ErrInterfaceGone.
	Interfaces []string
	// PinDir, live, pins the kernel's maps and links in this directory of a BPF
	// filesystem (for example /sys/fs/bpf/fparser): if the process dies, the
	// programs go on counting, and the next parser opened with the same PinDir and
	// options adopts them, its flows and counters included, without losing or
	// counting twice a packet. A clean stop removes the pins. Packet histories and
	// marks kept in the process are not adopted.
	PinDir string
	// RingBufferSize, live, sizes the ring buffer that carries the kernel's events
	// and packet records to the process: a power of two from the page size (4096
	// bytes on most machines) to 1 GiB. Default DefaultRingBufferSize, 4 MiB. A
	// packet record the ring has no room for is counted in Info.PacketsNotStored,
	// and its flow's history is marked incomplete; an event (a FIN or RST mark, an
	// ended flow) in Info.EventsLost.
	RingBufferSize int
	// MaxFlows sizes the kernel's flow map (default DefaultMaxFlows, 1<<20). An LRU
	// map evicts before it is full: give it headroom. Evicted flows show in
	// Info.Evictions.
	MaxFlows int
	// CoarseClock makes the kernel stamp packets with its coarse clock, which
	// advances once per kernel tick (a few ms): timestamps and durations lose
	// precision, and a packet costs less (on the machine measured, 83 to 53 ns for a
	// hot flow). The default is the precise clock.
	CoarseClock bool
	// Logger receives the parser's log records. When nil, records at LogLevel and
	// above go to standard error as text.
	Logger *slog.Logger
	// LogLevel is the least level logged when Logger is nil. The zero value is
	// slog.LevelInfo; the parser logs routine events at Debug only.
	LogLevel slog.Level
	// OnTCP and OnUDP receive each flow as it ends. OnKill runs once for every
	// parser New or Open returned, after its last flow has been delivered, however
	// it ended: its source ended, it was stopped, or the capture failed (Wait then
	// returns the error, after the flows before the fault). When New or Open returns
	// an error, there is no parser and no callback runs: the error is the whole
	// answer. All three run on one goroutine, in the order flows end,
	// while counting pauses: a callback sees the parser as it was when its flow ended
	// and may call its methods, Stop included. Close, Wait, WaitContext and Run,
	// which would wait for the callback itself, return an error matching
	// ErrInCallback at once instead (Close stops the parser first). A callback that
	// panics is recovered: the panic is logged at Error and counted in
	// Info.CallbackPanics, and the flows after it are still delivered.
	OnTCP  func(Flow)
	OnUDP  func(Flow)
	OnKill func()
}

// The timeouts a parser uses when Options leaves them zero: the original FParser's.
const (
	DefaultFlowTimeout = 10 * time.Minute
	DefaultFinTimeout  = 30 * time.Second
)

// DefaultMaxFlows is the kernel flow map's size when Options.MaxFlows is zero.
const DefaultMaxFlows = 1 << 20

// AttachModes are the values Options.Attach takes, "" aside, which means "auto". It
// is for reading (help texts, validation); changing it changes nothing.
var AttachModes = []string{"auto", "xdp", "xdp-native", "xdp-generic", "tc", "tc-legacy"}

// attachModes are the modes New accepts, apart from what a caller does to
// AttachModes.
var attachModes = slices.Clone(AttachModes)

// OptionError is an Options field whose value New or Open refuses: out of its range, or for
// the other kind of source (MaxFlows for a capture file, ReplaySpeed for an
// interface). It matches ErrOption.
type OptionError struct {
	Option string // the field of Options, as "FlowTimeout"
	Value  any    // the value refused
	Reason string // what is wrong with it, or what is wanted
}

// Error names the field, its value and what is wrong.
func (e *OptionError) Error() string {
	if s, ok := e.Value.(string); ok {
		return fmt.Sprintf("invalid option %s %q: %s", e.Option, s, e.Reason)
	}
	return fmt.Sprintf("invalid option %s %v: %s", e.Option, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrOption) true.
func (e *OptionError) Is(target error) bool { return target == ErrOption }

// normalise checks the options for a source, live or a capture file, and fills in
// the defaults of the fields left zero: the one place either is decided.
func (o *Options) normalise(live bool) error {
	refuse := func(option string, value any, reason string) error {
		return &OptionError{Option: option, Value: value, Reason: reason}
	}
	switch {
	case o.FlowTimeout < 0:
		return refuse("FlowTimeout", o.FlowTimeout, "is negative")
	case o.FinTimeout < 0:
		return refuse("FinTimeout", o.FinTimeout, "is negative")
	case o.ActiveTimeout < 0:
		return refuse("ActiveTimeout", o.ActiveTimeout, "is negative")
	case o.Snaplen < 0:
		return refuse("Snaplen", o.Snaplen, "is negative")
	case o.MaxPacketMemory < 0:
		return refuse("MaxPacketMemory", o.MaxPacketMemory, "is negative")
	case o.RingBufferSize != 0 && !loader.ValidRingBufferSize(o.RingBufferSize):
		return refuse("RingBufferSize", o.RingBufferSize, loader.RingBufferSizeRule())
	case o.ReplaySpeed < 0:
		return refuse("ReplaySpeed", o.ReplaySpeed, "is negative")
	case o.Packets < AllPackets:
		return refuse("Packets", o.Packets, "want 0, a positive count, or AllPackets")
	case o.MaxFlows < 0 || o.MaxFlows > 1<<30:
		return refuse("MaxFlows", o.MaxFlows, "out of range (0 to 2^30)")
	}
	if modes := attachModes; o.Attach != "" && !slices.Contains(modes, o.Attach) {
		return refuse("Attach", o.Attach, "want "+strings.Join(modes[:len(modes)-1], ", ")+" or "+modes[len(modes)-1])
	}
	if o.Attach == "tc-legacy" && o.PinDir != "" {
		return refuse("Attach", o.Attach, "clsact filters are not BPF links and cannot be pinned")
	}
	if live {
		switch {
		case o.ReplaySpeed != 0:
			return refuse("ReplaySpeed", o.ReplaySpeed, "is for a capture file, not an interface")
		case o.Snaplen != 0:
			return refuse("Snaplen", o.Snaplen, "is for a capture file: the kernel datapath reads headers only")
		}
	} else {
		for _, f := range []struct {
			name  string
			value any
			set   bool
		}{
			{"Attach", o.Attach, o.Attach != ""},
			{"Interfaces", o.Interfaces, len(o.Interfaces) > 0},
			{"PinDir", o.PinDir, o.PinDir != ""},
			{"MaxFlows", o.MaxFlows, o.MaxFlows != 0},
			{"RingBufferSize", o.RingBufferSize, o.RingBufferSize != 0},
			{"CoarseClock", o.CoarseClock, o.CoarseClock},
		} {
			if f.set {
				return refuse(f.name, f.value, "is for an interface, not a capture file")
			}
		}
	}
	if o.FlowTimeout == 0 {
		o.FlowTimeout = DefaultFlowTimeout
	}
	if o.FinTimeout == 0 {
		o.FinTimeout = DefaultFinTimeout
	}
	if o.Snaplen == 0 && !live {
		o.Snaplen = DefaultSnaplen
	}
	if o.MaxPacketMemory == 0 {
		o.MaxPacketMemory = DefaultMaxPacketMemory
	}
	if live {
		if o.Attach == "" {
			o.Attach = "auto"
		}
		if o.MaxFlows == 0 {
			o.MaxFlows = DefaultMaxFlows
		}
		if o.RingBufferSize == 0 {
			o.RingBufferSize = DefaultRingBufferSize
		}
	}
	return nil
}

// DefaultRingBufferSize is the ring buffer's size when Options.RingBufferSize is
// zero.
const DefaultRingBufferSize = 4 << 20

// history is the engine's history configuration for the options.
func (o *Options) history() userspace.HistoryConfig {
	return userspace.HistoryConfig{Limit: o.Packets, MaxBytes: o.MaxPacketMemory}
}
