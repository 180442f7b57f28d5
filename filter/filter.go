// Package filter compiles pcap-filter expressions (tcpdump's syntax) to classic BPF
// and runs classic BPF programs on packets. It is pure Go: no libpcap.
//
// The compiler answers as libpcap does, quirks included: "and" and "or" have equal
// precedence, a bare value takes the previous primitive's qualifiers, "vlan" shifts
// the offsets of everything after it, and a load past the end of the packet rejects
// it. Host and port names are not resolved. For syntax the compiler lacks, a program
// printed by "tcpdump -ddd" is accepted as it is.
package filter

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/bpf"
)

// Default is the expression used when none is given: all IPv4 and IPv6 traffic.
const Default = "ip or ip6"

// Errors that callers test with errors.Is.
var (
	// ErrFilter matches every error of this package.
	ErrFilter = errors.New("bad filter")
	// ErrSyntax: the expression is not valid pcap-filter syntax, or uses it wrongly.
	ErrSyntax = errors.New("filter syntax error")
	// ErrUnsupported: valid pcap-filter syntax that fparser does not compile.
	ErrUnsupported = errors.New("filter syntax not supported")
	// ErrHostName: a host name where an address is needed; names are not resolved.
	ErrHostName = errors.New("host names are not resolved")
	// ErrLinkType: the expression cannot apply to the capture's link type (an
	// Ethernet address on raw IP, say), or the link type is unknown to the compiler.
	ErrLinkType = errors.New("filter does not apply to this link type")
	// ErrProgram: a classic BPF program (from tcpdump -ddd) is malformed.
	ErrProgram = fmt.Errorf("%w: bad BPF program", ErrFilter)
)

// Error is an error in an expression, at a column (1-based, in bytes).
type Error struct {
	Expr  string
	Col   int
	Token string
	Msg   string

	unsupported, hostName, link bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "filter %q", e.Expr)
	if e.Col > 0 {
		fmt.Fprintf(&b, ": column %d", e.Col)
		if e.Token != "" {
			fmt.Fprintf(&b, " (%q)", e.Token)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes the error match ErrFilter, and ErrSyntax, ErrUnsupported, ErrHostName or
// ErrLinkType.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrFilter:
		return true
	case ErrSyntax:
		return !e.unsupported && !e.link
	case ErrUnsupported:
		return e.unsupported
	case ErrHostName:
		return e.hostName
	case ErrLinkType:
		return e.link
	}
	return false
}

// Filter is a parsed expression, ready to compile for any link type.
type Filter struct {
	expr string
	root node                 // nil: match everything ("" parses to the default)
	raw  []bpf.RawInstruction // a tcpdump -ddd program given instead of an expression
}

// Parse parses a pcap-filter expression, or a program in the form tcpdump -ddd
// prints it (a count, then one "code jt jf k" line per instruction; commas may
// separate them). The empty expression is [Default].
func Parse(expr string) (*Filter, error) {
	if strings.TrimSpace(expr) == "" {
		expr = Default
	}
	if looksLikeDDD(expr) {
		raw, err := ParseDDD(expr)
		if err != nil {
			return nil, err
		}
		return &Filter{expr: expr, raw: raw}, nil
	}
	root, err := parse(expr)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Expr = expr
		}
		return nil, err
	}
	return &Filter{expr: expr, root: root}, nil
}

// String returns the expression as given.
func (f *Filter) String() string { return f.expr }

// Link is the link type a program is compiled for.
type Link struct {
	// Type is the LINKTYPE_* value of the capture (1 is Ethernet).
	Type uint32
	// BigEndian says the capture file was written big-endian. It matters only for
	// LINKTYPE_NULL, whose protocol family is in the byte order of the host that
	// captured it.
	BigEndian bool
}

// Ethernet is the link type of the live datapath.
var Ethernet = Link{Type: 1}

// Compile compiles the filter for a link type. A raw program is returned as given,
// whatever the link type.
func (f *Filter) Compile(l Link) (*Program, error) {
	if f.raw != nil {
		return NewProgram(f.raw)
	}
	insns, err := generate(f.root, l)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Expr = f.expr
		}
		return nil, err
	}
	return NewProgram(insns)
}

// Compile parses and compiles expr for a link type in one step.
func Compile(expr string, l Link) (*Program, error) {
	f, err := Parse(expr)
	if err != nil {
		return nil, err
	}
	return f.Compile(l)
}
