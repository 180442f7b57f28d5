// Package loader puts fparser's kernel datapath in place: it loads the programs and
// maps compiled from bpf/, sets their load-time constants, splices in the packet
// filter (translated from classic BPF), attaches them to a network interface with
// bpf_links (so a process that dies leaves nothing attached), and owns the objects
// until Close.
package loader

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/cgroups"
	"github.com/fparser/fparser/internal/userspace"
)

// Errors that callers test with errors.Is.
var (
	ErrNoInterface   = errors.New("no such network interface")
	ErrNotPermitted  = errors.New("not permitted")
	ErrKernelTooOld  = errors.New("kernel too old")
	ErrVerifier      = errors.New("the kernel's verifier rejected the program")
	ErrAttachMode    = errors.New("unknown attach mode")
	ErrAttachRefused = errors.New("attach refused")
	ErrConfig        = errors.New("bad configuration")
)

// Mode says where the programs attach.
type Mode string

// Attach modes.
const (
	// ModeAuto: XDP on ingress (native where the driver has it, generic otherwise)
	// and TC on egress, so both directions of the host's own traffic are seen once.
	ModeAuto Mode = "auto"
	// ModeXDP: XDP on ingress only, native where the driver has it, generic
	// otherwise. ModeXDPNative and ModeXDPGeneric force one.
	ModeXDP        Mode = "xdp"
	ModeXDPNative  Mode = "xdp-native"
	ModeXDPGeneric Mode = "xdp-generic"
	// ModeTC: TCX on ingress and on egress; on kernels without TCX (before 6.6), a
	// filter on the clsact qdisc. ModeTCLegacy forces the clsact filters.
	ModeTC       Mode = "tc"
	ModeTCLegacy Mode = "tc-legacy"
)

// Config says what to load and where.
type Config struct {
	Interface string
	Mode      Mode // default ModeAuto
	Timeouts  userspace.Timeouts
	// MaxFlows is the flow map's size. An LRU map starts evicting before it is full,
	// so give it headroom over the flows expected. Default 1<<20.
	MaxFlows uint32
	// CoarseClock stamps packets with the kernel's coarse monotonic clock (tick
	// resolution, CLOCK_MONOTONIC_COARSE) instead of the precise one: cheaper per
	// packet, with timestamps a few ms apart at best.
	CoarseClock bool

	// Statistics makes the kernel keep each direction's statistics in the flow's
	// map value (userspace.DirStats).
	Statistics bool

	// TCPQuality makes the kernel keep each TCP flow's quality in the flow's map
	// value (userspace.TCPQuality).
	TCPQuality bool

	// Decap makes the kernel open tunnels and count their packets by the headers
	// inside, keeping each flow's tunnel in its map value (userspace.Tunnel).
	Decap bool

	// PinDir, when set, pins the maps and the links in this directory of a BPF
	// filesystem: a process that dies leaves the programs counting into them, and
	// the next one started with the same PinDir and options adopts them, flows and
	// counters included. Only bpf_links pin: not with ModeTCLegacy.
	PinDir string

	// HistoryLimit is how many packets of each flow the kernel sends a record of
	// (EventPacket): 0 none, a negative number all.
	HistoryLimit int

	// Filter, when set, is the classic BPF program (compiled for Ethernet) that
	// decides which packets count; the others count only as filtered.
	Filter *filter.Program

	// Owners makes the TC programs find the local socket that sent each direction
	// of a flow, its cgroup and the process that created it (Datapath.Senders). A
	// kernel that refuses it counts without (Datapath.Attribution).
	Owners bool

	// RingBufferSize is the size in bytes of the ring buffer that carries events
	// and packet records to userspace: a power of two, at least a page. Default 4 MiB.
	RingBufferSize int

	testClock bool // the differential test sets the clock before each run
}

// programs are the attachable programs, one for each hook (the TC programs differ
// only in the direction they give packets); the filter probe is loaded only by
// FilterProbe.
type programs struct {
	FparserXdp       *ebpf.Program `ebpf:"fparser_xdp"`
	FparserTcIngress *ebpf.Program `ebpf:"fparser_tc_ingress"`
	FparserTcEgress  *ebpf.Program `ebpf:"fparser_tc_egress"`
}

func (p *programs) Close() error {
	return errors.Join(p.FparserXdp.Close(), p.FparserTcIngress.Close(), p.FparserTcEgress.Close())
}

// tc is the TC program for a hook: "ingress" or "egress".
func (p *programs) tc(dir string) *ebpf.Program {
	if dir == "egress" {
		return p.FparserTcEgress
	}
	return p.FparserTcIngress
}

type objects struct {
	programs
	fparserMaps
	TestNow *ebpf.Variable `ebpf:"test_now"`
}

func (o *objects) Close() error { return errors.Join(o.programs.Close(), o.fparserMaps.Close()) }

// attachment is an attached program that can be swapped for a new one in place.
type attachment interface {
	io.Closer
	update(p *programs) error
}

type xdpLink struct{ link.Link }

func (l xdpLink) update(p *programs) error { return l.Update(p.FparserXdp) }

type tcxLink struct {
	link.Link
	dir string // "ingress" or "egress"
}

func (l tcxLink) update(p *programs) error { return l.Update(p.tc(l.dir)) }

// Datapath is the loaded kernel datapath and the interfaces it is attached to: one
// set of maps, whose programs are attached to every interface.
type Datapath struct {
	cfg Config

	// mu guards the attachments and the programs, which SetFilter swaps while
	// interfaces come and go.
	mu      sync.Mutex
	objs    objects
	mode    Mode               // where Attach attaches: cfg.Mode, checked
	ifaces  []*ifaceAttachment // in the order attached
	adopted bool               // the maps were pinned by a previous process
	table   *Table             // the flow map as the engine reads it, once asked for
	quiet   bool               // MarkQuiet

	owners    bool      // the TC programs attribute flows (Config.Owners, allowed)
	ownersErr error     // what the kernel refused of the attribution
	sockLink  link.Link // the socket program's, at the root of cgroup v2
}

// Adopted says the datapath took over the maps and links a previous process pinned
// in Config.PinDir.
func (d *Datapath) Adopted() bool { return d.adopted }

// Load loads the programs with cfg's constants (cfg.Interface aside) but attaches
// nothing: Attach attaches them, to as many interfaces as wanted; tests run them
// unattached with BPF_PROG_TEST_RUN.
func Load(cfg Config) (*Datapath, error) {
	mode, err := checkMode(cfg)
	if err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, classify("lift the memlock limit", err)
	}
	var ownersErr error
	if cfg.Owners {
		// Without cgroup v2 in sight there is no socket program and no cgroup
		// to name: attribution would find nothing worth its cost.
		if _, err := cgroups.Mount(); err != nil {
			cfg.Owners, ownersErr = false, err
		}
	}
	spec, err := collectionSpec(cfg, cfg.Filter)
	if err != nil {
		return nil, err
	}
	d := &Datapath{cfg: cfg, mode: mode, ownersErr: ownersErr}
	var opts *ebpf.CollectionOptions
	if cfg.PinDir != "" {
		if d.adopted, err = preparePin(cfg.PinDir, spec); err != nil {
			return nil, err
		}
		opts = &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: cfg.PinDir}}
	}
	err = spec.LoadAndAssign(&d.objs, opts)
	if err != nil && cfg.Owners && !errors.Is(err, ebpf.ErrMapIncompatible) {
		// A kernel whose TC programs may not read a packet's socket: count
		// without attribution rather than not at all.
		d.ownersErr = classify("load the programs that attribute flows to sockets", err)
		cfg.Owners = false
		if spec, err = collectionSpec(cfg, cfg.Filter); err != nil {
			return nil, err
		}
		if cfg.PinDir != "" {
			if _, err := preparePin(cfg.PinDir, spec); err != nil {
				return nil, err
			}
		}
		err = spec.LoadAndAssign(&d.objs, opts)
	}
	if err != nil {
		if d.adopted && errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("%w: the maps pinned in %s were made with other options (statistics, flow map size) or by another version of fparser: start with the same options and version, or remove %s: %w", ErrPin, cfg.PinDir, cfg.PinDir, err)
		}
		return nil, classify("load the programs", err)
	}
	if cfg.Owners {
		d.owners = true
		if err := d.attachSockCreate(spec); err != nil {
			d.ownersErr = err
		}
	}
	return d, nil
}

// collectionSpec reads the embedded programs and sets cfg's constants and the filter.
func collectionSpec(cfg Config, f *filter.Program) (*ebpf.CollectionSpec, error) {
	spec, err := loadFparser()
	if err != nil {
		return nil, fmt.Errorf("read the embedded programs: %w", err)
	}
	t := cfg.Timeouts
	if t.Idle <= 0 {
		t.Idle = userspace.DefaultTimeouts.Idle
	}
	if t.FIN <= 0 {
		t.FIN = userspace.DefaultTimeouts.FIN
	}
	for name, v := range map[string]uint64{"idle_ns": uint64(t.Idle), "fin_ns": uint64(t.FIN), "active_ns": uint64(max(t.Active, 0))} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	for name, on := range map[string]bool{"test_clock": cfg.testClock, "coarse_clock": cfg.CoarseClock, "filter_on": f != nil, "stats_on": cfg.Statistics, "quality_on": cfg.TCPQuality, "decap_on": cfg.Decap, "owners_on": cfg.Owners} {
		if on {
			if err := spec.Variables[name].Set(uint8(1)); err != nil {
				return nil, fmt.Errorf("set %s: %w", name, err)
			}
		}
	}
	if limit := userspace.RecordLimit(cfg.HistoryLimit); limit != 0 {
		if err := spec.Variables["history_limit"].Set(limit); err != nil {
			return nil, fmt.Errorf("set history_limit: %w", err)
		}
	}
	if cfg.MaxFlows > 0 {
		spec.Maps["flows"].MaxEntries = cfg.MaxFlows
		spec.Maps["owners"].MaxEntries = max(cfg.MaxFlows/8, 1024) // flows of local sockets
	}
	if !cfg.Extended() {
		// The map's values end where the statistics would start: smaller entries
		// make a new flow cheaper, as the kernel writes fewer cold cache lines.
		flows := spec.Maps["flows"]
		flows.ValueSize = uint32(coreSize)
		flows.Value = coreType(flows.Value)
	}
	if n := cfg.RingBufferSize; n != 0 {
		if !ValidRingBufferSize(n) {
			return nil, fmt.Errorf("%w: ring buffer size %d (%s)", ErrConfig, n, RingBufferSizeRule())
		}
		spec.Maps["events"].MaxEntries = uint32(n)
	}
	// Packet records wake the reader each time an eighth of the ring fills.
	ring := spec.Maps["events"].MaxEntries
	if err := spec.Variables["records_wake_shift"].Set(uint32(max(bits.Len32(ring)-1-3, 3))); err != nil {
		return nil, fmt.Errorf("set records_wake_shift: %w", err)
	}
	if f != nil {
		if err := spliceFilter(spec, f); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// coreType is the flow map's value type cut before its statistics, or nil (no
// type) if it is not the struct expected.
func coreType(t btf.Type) btf.Type {
	st, ok := t.(*btf.Struct)
	if !ok {
		return nil
	}
	core := btf.Copy(st).(*btf.Struct)
	for i, m := range core.Members {
		if m.Name == "st" && m.Offset.Bytes() == uint32(coreSize) {
			core.Members = core.Members[:i]
			core.Size = uint32(coreSize)
			return core
		}
	}
	return nil
}

// filterFunc is the placeholder function in bpf/fparser.c whose body the filter
// replaces.
const filterFunc = "fparser_filter"

// spliceFilter translates f and puts it in place of fparser_filter's body in every
// program that calls it. The first instruction keeps the placeholder's symbol and
// BTF function info, so the calls still resolve to it.
func spliceFilter(spec *ebpf.CollectionSpec, f *filter.Program) error {
	body, err := Translate(f)
	if err != nil {
		return err
	}
	spliced := 0
	for _, ps := range spec.Programs {
		start := -1
		for i, ins := range ps.Instructions {
			if ins.Symbol() == filterFunc {
				start = i
				break
			}
		}
		if start < 0 {
			continue
		}
		end := len(ps.Instructions)
		for i := start + 1; i < len(ps.Instructions); i++ {
			if ps.Instructions[i].Symbol() != "" {
				end = i
				break
			}
		}
		insns := make(asm.Instructions, 0, len(ps.Instructions)-(end-start)+len(body))
		insns = append(insns, ps.Instructions[:start]...)
		insns = append(insns, body[0].WithMetadata(ps.Instructions[start].Metadata))
		insns = append(insns, body[1:]...)
		insns = append(insns, ps.Instructions[end:]...)
		ps.Instructions = insns
		spliced++
	}
	if spliced == 0 {
		return fmt.Errorf("no program calls %s: the embedded object is not the one this loader expects", filterFunc)
	}
	return nil
}

// SetFilter swaps the attached programs for ones with filter f (nil: count every
// packet) without detaching: each bpf_link (or clsact filter) is updated in place,
// atomically, to programs that share this datapath's maps, so no flow and no count
// is lost. On error the old programs stay attached.
func (d *Datapath) SetFilter(f *filter.Program) error {
	spec, err := collectionSpec(d.cfg, f)
	if err != nil {
		return err
	}
	var progs programs
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"flows": d.objs.Flows, "frags": d.objs.Frags, "events": d.objs.Events, "stats": d.objs.Stats,
	}}
	if err := spec.LoadAndAssign(&progs, opts); err != nil {
		return classify("load the programs with the new filter", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var links []attachment
	for _, ia := range d.ifaces {
		links = append(links, ia.links...)
	}
	for i, a := range links {
		if err := a.update(&progs); err != nil {
			// Put back the programs already swapped.
			for _, done := range links[:i] {
				done.update(&d.objs.programs)
			}
			progs.Close()
			return classifyAttach("swap in the new filter", err)
		}
	}
	old := d.objs.programs
	d.objs.programs = progs
	d.cfg.Filter = f
	return old.Close()
}

// FilterProbe loads, without attaching, an XDP program that returns XDP_PASS for a
// packet f matches and XDP_DROP for one it does not: the spliced filter alone, for
// tests and benchmarks with BPF_PROG_TEST_RUN.
func FilterProbe(f *filter.Program) (*ebpf.Program, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, classify("lift the memlock limit", err)
	}
	spec, err := collectionSpec(Config{}, f)
	if err != nil {
		return nil, err
	}
	var probe struct {
		Probe *ebpf.Program `ebpf:"fparser_filter_probe"`
	}
	if err := spec.LoadAndAssign(&probe, nil); err != nil {
		return nil, classify("load the filter probe", err)
	}
	return probe.Probe, nil
}

// Close detaches the programs, then removes the pins and releases the maps and
// programs.
func (d *Datapath) Close() error {
	if t := d.tableIfAny(); t != nil {
		t.close()
	}
	errs := []error{d.Detach(), d.closeSockCreate(), d.unpin()}
	d.mu.Lock()
	errs = append(errs, d.objs.Close())
	d.mu.Unlock()
	return errors.Join(errs...)
}

func (d *Datapath) tableIfAny() *Table {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.table
}

// classify wraps a load failure in the sentinel error that names its cause, with what
// the caller can do about it.
func classify(what string, err error) error { return classifyOr(what, err, nil) }

// classifyAttach is classify for a step of attaching: a failure with no more specific
// cause is ErrAttachRefused.
func classifyAttach(what string, err error) error { return classifyOr(what, err, ErrAttachRefused) }

func classifyOr(what string, err, otherwise error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		lines := ve.Log
		if len(lines) > 8 {
			lines = lines[len(lines)-8:]
		}
		// The log's tail, not the whole of it, which Error would print.
		return &causeError{
			msg:      fmt.Sprintf("%s: %v: %v; last lines of the verifier log:\n  %s", what, ErrVerifier, ve.Cause, strings.Join(lines, "\n  ")),
			sentinel: ErrVerifier, cause: err,
		}
	case errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%s: %w: %s (%w)", what, ErrNotPermitted, missingCaps(), err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%s: %w: %w (fparser needs Linux 5.15 or later)", what, ErrKernelTooOld, err)
	case otherwise != nil:
		return fmt.Errorf("%s: %w: %w", what, otherwise, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// causeError is an error with its own message that matches both a sentinel and its
// cause with errors.Is and errors.As.
type causeError struct {
	msg             string
	sentinel, cause error
}

func (e *causeError) Error() string   { return e.msg }
func (e *causeError) Unwrap() []error { return []error{e.sentinel, e.cause} }

// Capabilities fparser needs, by bit number (linux/capability.h).
var neededCaps = []struct {
	bit  uint
	name string
}{{12, "CAP_NET_ADMIN"}, {38, "CAP_PERFMON"}, {39, "CAP_BPF"}}

// missingCaps names the capabilities this process lacks, from /proc/self/status.
func missingCaps() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or root)"
	}
	var eff uint64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	var missing []string
	for _, c := range neededCaps {
		if eff&(1<<c.bit) == 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) == 0 {
		return "the process has CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; a security module or sysctl (kernel.unprivileged_bpf_disabled) may refuse it"
	}
	return "missing " + strings.Join(missing, ", ") + " (run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
}

// ValidRingBufferSize says n bytes is a size the kernel takes for the ring buffer: a
// power of two, at least a page and at most 1 GiB.
func ValidRingBufferSize(n int) bool {
	return n >= os.Getpagesize() && n <= 1<<30 && n&(n-1) == 0
}

// RingBufferSizeRule says what ValidRingBufferSize wants, for error messages.
func RingBufferSizeRule() string {
	return fmt.Sprintf("want a power of two from %d (the page size) to 1 GiB", os.Getpagesize())
}

// ObjectID identifies the kernel object built into this binary: the first 12 hex
// digits of its SHA-256, the same for every build from the same C source and clang.
func ObjectID() string {
	sum := sha256.Sum256(_FparserBytes)
	return hex.EncodeToString(sum[:6])
}
