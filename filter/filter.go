// Package filter compiles pcap-filter expressions (tcpdump's syntax) to classic BPF
// and runs classic BPF programs on packets. It is pure Go: no libpcap.
//
// The compiler answers as libpcap does, quirks included: "and" and "or" have equal
// precedence, a bare value takes the previous primitive's qualifiers, "vlan" shifts
// the offsets of everything after it, and a load past the end of the packet rejects
// it. Host and port names are not resolved. For syntax the compiler lacks, a program
// printed by "tcpdump -ddd" is accepted as it is.
//
// The work is bounded whatever the input: the parser consumes at most two tokens
// per token of the expression (it never parses anything as arithmetic twice), and an
// expression past one of the fixed limits below is refused with [ErrTooLarge] before
// the work it would take. An expression may be at most [MaxLen] bytes long (a
// tcpdump -ddd program too) and have at most [MaxTokens] tokens (words, numbers,
// addresses, operators), nested at most [MaxDepth] levels deep (parentheses,
// brackets, "not" and unary minus each open one); it may generate at most [MaxCode]
// instructions before optimization, and its program may have at most [MaxInsns]
// instructions, classic BPF's limit. Parsing and compiling any expression allocate
// at most 64 MiB. Error messages quote at most about 80 bytes of the expression,
// around the column of the error.
package filter

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/bpf"
)

// Default is the expression Parse and Compile use for an empty one: all IPv4 and
// IPv6 traffic. fparser itself runs no filter when none is given, which is not quite
// the same (see fparser.DefaultFilter).
const Default = "ip or ip6"

// The compiler's limits. Past one, Parse or Compile returns an error that matches
// ErrTooLarge, before the work the rest of the expression would cost.
const (
	// MaxLen is the longest expression, in bytes: room for MaxTokens IPv6
	// addresses, or a MaxInsns-instruction tcpdump -ddd program (about 100 KB).
	MaxLen = 1 << 20
	// MaxTokens is the most tokens an expression may have.
	MaxTokens = 16384
	// MaxDepth is the deepest nesting of parentheses, brackets, "not" and unary
	// minus.
	MaxDepth = 256
	// MaxCode is the most instructions the expression may generate before
	// optimization, primitives that a constant makes moot included: four times
	// MaxInsns. Chains of ports, hosts, nets, VLANs and loads whose program fits
	// generate at most about twice its length; what optimizes down from more than
	// four times (a chain of contradictions, say) is refused.
	MaxCode = 4 * MaxInsns
	// MaxInsns is the most instructions of a program, BPF_MAXINSNS.
	MaxInsns = maxInsns
)

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
	// ErrTooLarge: the expression or program is past one of the compiler's limits
	// (MaxLen, MaxTokens, MaxDepth, MaxCode, MaxInsns).
	ErrTooLarge = errors.New("filter past the compiler's limits")
	// ErrProgram: a classic BPF program (from tcpdump -ddd) is malformed.
	ErrProgram = fmt.Errorf("%w: bad BPF program", ErrFilter)
)

// Error is an error in an expression, at a column (1-based, in bytes).
type Error struct {
	Expr  string
	Col   int
	Token string
	Msg   string

	unsupported, hostName, link, tooLarge bool
}

// exprWindow is how much of a long expression an error quotes, in bytes, and
// tokenWindow how much of a long token.
const (
	exprWindow  = 80
	tokenWindow = 40
)

// Error quotes the expression whole when it is short; otherwise the window of it
// around the column (its start when there is none), with "…" where it is cut, and
// its length, so that a message about a 10 MB expression stays one line.
func (e *Error) Error() string {
	var b strings.Builder
	if len(e.Expr) <= exprWindow {
		fmt.Fprintf(&b, "filter %q", e.Expr)
	} else {
		from := max(e.Col-1-exprWindow/2, 0)
		to := min(from+exprWindow, len(e.Expr))
		from = max(to-exprWindow, 0)
		fmt.Fprintf(&b, "filter %q (%d bytes)", cut(e.Expr, from, to), len(e.Expr))
	}
	if e.Col > 0 {
		fmt.Fprintf(&b, ": column %d", e.Col)
		if e.Token != "" {
			fmt.Fprintf(&b, " (%q)", shorten(e.Token))
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// cut is s[from:to], moved onto rune boundaries, with "…" on each side cut off.
func cut(s string, from, to int) string {
	for from > 0 && !utf8.RuneStart(s[from]) {
		from--
	}
	for to < len(s) && !utf8.RuneStart(s[to]) {
		to--
	}
	out := s[from:to]
	if from > 0 {
		out = "…" + out
	}
	if to < len(s) {
		out += "…"
	}
	return out
}

// shorten is s, or its start and "…" when it is longer than tokenWindow: for the
// text of a token quoted in a message.
func shorten(s string) string {
	if len(s) <= tokenWindow {
		return s
	}
	return cut(s, 0, tokenWindow)
}

// Is makes the error match ErrFilter, and ErrSyntax, ErrUnsupported, ErrHostName,
// ErrLinkType or ErrTooLarge.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrFilter:
		return true
	case ErrTooLarge:
		return e.tooLarge
	case ErrSyntax:
		return !e.unsupported && !e.link && !e.tooLarge
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
	if len(expr) > MaxLen {
		return nil, &Error{Expr: expr, Col: MaxLen + 1, Msg: fmt.Sprintf("the expression is %d bytes long, more than %d", len(expr), MaxLen), tooLarge: true}
	}
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
