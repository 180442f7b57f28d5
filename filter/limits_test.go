package filter_test

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser/filter"
)

// allocBound is what the package doc promises a compile allocates at most.
const allocBound = 64 << 20

// safety turns a compile that hangs into a failure; it bounds nothing else.
const safety = 10 * time.Second

// chain joins n units with sep.
func chain(n int, unit func(i int) string, sep string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = unit(i)
	}
	return strings.Join(parts, sep)
}

// grow joins units with sep until the result is at least size bytes long.
func grow(size int, unit func(i int) string, sep string) string {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(unit(i))
	}
	return b.String()
}

func ports(n int) string {
	return chain(n, func(i int) string { return "port " + strconv.Itoa(i+1) }, " or ")
}

// hostile are the shapes an attacker measured against the compiler, and the
// lexer's own: each builds an expression of at least size bytes.
var hostile = []struct {
	name  string
	build func(size int) string
}{
	{"unbalanced parentheses", func(n int) string { return strings.Repeat("(", n) }},
	{"balanced nesting", func(n int) string { return strings.Repeat("(", n/2) + "tcp" + strings.Repeat(")", n/2) }},
	{"or of ports", func(n int) string {
		return grow(n, func(i int) string { return "port " + strconv.Itoa(i%65535+1) }, " or ")
	}},
	{"or of tcp", func(n int) string { return grow(n, func(int) string { return "tcp" }, " or ") }},
	{"or of vlan", func(n int) string { return grow(n, func(int) string { return "vlan" }, " or ") }},
	{"and of vlan ids", func(n int) string {
		return grow(n, func(i int) string { return "vlan " + strconv.Itoa(i%4096) }, " and ")
	}},
	{"not", func(n int) string { return strings.Repeat("not ", n/4) + "tcp" }},
	{"unary minus", func(n int) string { return strings.Repeat("-", n) + "1 = 1" }},
	{"sum", func(n int) string { return grow(n, func(int) string { return "len" }, " + ") + " > 1" }},
	{"loads in loads", func(n int) string { return strings.Repeat("ether[", n/7) + "0" + strings.Repeat("]", n/7) + " = 1" }},
	{"-ddd program", func(n int) string { return strconv.Itoa(n/8) + strings.Repeat(",6 0 0 1", n/8) }},
	{"long word", func(n int) string { return "host " + strings.Repeat("a", n) }},
	{"dashes", func(n int) string { return "ether host " + grow(n, func(int) string { return "1" }, "-") }},
	{"colons", func(n int) string { return "host " + grow(n, func(int) string { return "a" }, ":") }},
	{"dots", func(n int) string { return "host " + grow(n, func(int) string { return "1" }, ".") }},
	{"spaces", func(n int) string { return "tcp" + strings.Repeat(" ", n) }},
}

// compileBounded compiles expr, fails the test if it does not finish within the
// safety timeout, and returns the bytes allocated meanwhile and its error.
func compileBounded(t *testing.T, expr string, l filter.Link) (uint64, error) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	done := make(chan error, 1)
	go func() {
		_, err := filter.Compile(expr, l)
		done <- err
	}()
	select {
	case err := <-done:
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc, err
	case <-time.After(safety):
		t.Fatalf("compiling %d bytes did not finish in %v", len(expr), safety)
		return 0, nil
	}
}

// refusedWithin checks that expr is refused as too large, within the allocation
// bound, with a message that quotes a window of it, not all of it.
func refusedWithin(t *testing.T, name, expr string) {
	t.Helper()
	alloc, err := compileBounded(t, expr, filter.Ethernet)
	if !errors.Is(err, filter.ErrTooLarge) || !errors.Is(err, filter.ErrFilter) {
		t.Errorf("%s (%d bytes): %.200v; want ErrTooLarge and ErrFilter", name, len(expr), err)
	}
	if alloc > allocBound {
		t.Errorf("%s (%d bytes): %d bytes allocated, more than %d", name, len(expr), alloc, allocBound)
	}
	if err != nil && len(err.Error()) > 300 {
		t.Errorf("%s (%d bytes): a message of %d bytes", name, len(expr), len(err.Error()))
	}
}

// The attacker's table, one row each.

func TestUnbalancedParenthesesAreRefused(t *testing.T) {
	for _, n := range []int{8000, 16000, 50000} {
		refusedWithin(t, fmt.Sprintf("%d '('", n), strings.Repeat("(", n))
	}
}

func TestBalancedNestingIsRefused(t *testing.T) {
	for _, n := range []int{5000, 100000} {
		refusedWithin(t, fmt.Sprintf("tcp in %d parentheses", n), strings.Repeat("(", n)+"tcp"+strings.Repeat(")", n))
	}
}

// TestLongOrChainsAreRefusedBeforeLayout: 1,000 and 4,000 ports generate far more
// than MaxCode instructions; the generator stops at MaxCode, before the layout.
func TestLongOrChainsAreRefusedBeforeLayout(t *testing.T) {
	for _, n := range []int{1000, 4000} {
		expr := ports(n)
		refusedWithin(t, fmt.Sprintf("%d ports", n), expr)
		_, err := filter.Compile(expr, filter.Ethernet)
		if err == nil || !strings.Contains(err.Error(), "before optimization") {
			t.Errorf("%d ports: %v; want the refusal before optimization", n, err)
		}
	}
}

// TestTenMegabytesOfOrIsRefused: 10 MB of "tcp or tcp or ..." used to overflow the
// stack in the generator, which no caller can recover from.
func TestTenMegabytesOfOrIsRefused(t *testing.T) {
	expr := grow(10<<20, func(int) string { return "tcp" }, " or ")
	refusedWithin(t, "10 MB of tcp or", expr)
	// Under MaxLen the lexer stops at the token past MaxTokens.
	refusedWithin(t, "1 MB of tcp or", expr[:filter.MaxLen])
}

func TestLongVLANChainsAreRefused(t *testing.T) {
	for _, sep := range []string{" or ", " and "} {
		refusedWithin(t, "3,000 vlan"+sep, chain(3000, func(int) string { return "vlan" }, sep))
		refusedWithin(t, "3,000 vlan ids"+sep, chain(3000, func(i int) string { return "vlan " + strconv.Itoa(i) }, sep))
	}
}

// TestHostileInputsAreBounded: every shape, at 10 kB, 1 MB and 10 MB, compiles or
// is refused with ErrFilter within the allocation bound.
func TestHostileInputsAreBounded(t *testing.T) {
	for _, h := range hostile {
		for _, size := range []int{10_000, 1_000_000, 10_000_000} {
			expr := h.build(size)
			alloc, err := compileBounded(t, expr, filter.Ethernet)
			if err != nil && !errors.Is(err, filter.ErrFilter) {
				t.Errorf("%s, %d bytes: %.200v, not an ErrFilter", h.name, len(expr), err)
			}
			if alloc > allocBound {
				t.Errorf("%s, %d bytes: %d bytes allocated, more than %d", h.name, len(expr), alloc, allocBound)
			}
			if err != nil && len(err.Error()) > 300 {
				t.Errorf("%s, %d bytes: a message of %d bytes: %.300s", h.name, len(expr), len(err.Error()), err)
			}
		}
	}
}

// TestLimitsAreExact: each limit of the package doc lets its value through and
// refuses one more.
func TestLimitsAreExact(t *testing.T) {
	ok := func(name, expr string, l filter.Link) {
		t.Helper()
		if _, err := compileBounded(t, expr, l); err != nil {
			t.Errorf("%s: %.300v", name, err)
		}
	}
	refused := func(name, expr string, l filter.Link, want string) {
		t.Helper()
		_, err := compileBounded(t, expr, l)
		if !errors.Is(err, filter.ErrTooLarge) || errors.Is(err, filter.ErrSyntax) || !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("%s: %.300v; want ErrTooLarge (not ErrSyntax) saying %q", name, err, want)
		}
	}
	rawIPv4 := filter.Link{Type: 228}

	pad := func(n int) string { return "tcp" + strings.Repeat(" ", n-3) }
	ok("MaxLen bytes", pad(filter.MaxLen), filter.Ethernet)
	refused("MaxLen+1 bytes", pad(filter.MaxLen+1), filter.Ethernet, "more than 1048576")

	// On raw IPv4, "ip6" is false and "not ip6" true: constants, so the tokens are
	// what counts. k terms joined by "or" are 2k-1 tokens, and "not" adds one.
	terms := func(k int) string { return chain(k, func(int) string { return "ip6" }, " or ") }
	ok("MaxTokens tokens", "not "+terms(filter.MaxTokens/2), rawIPv4)
	refused("MaxTokens+1 tokens", "not not "+terms(filter.MaxTokens/2), rawIPv4, "more than 16384 tokens")

	for _, nest := range []struct{ name, open, inner, close, tail string }{
		{"parentheses", "(", "tcp", ")", ""},
		{"not", "not ", "tcp", "", ""},
		{"parentheses in arithmetic", "(", "len", ")", " > 1"},
		{"unary minus", "-", "len", "", " > 1"},
		{"loads", "ether[", "0", "]", " = 1"},
	} {
		deep := func(d int) string {
			return strings.Repeat(nest.open, d) + nest.inner + strings.Repeat(nest.close, d) + nest.tail
		}
		ok(fmt.Sprintf("%s %d deep", nest.name, filter.MaxDepth), deep(filter.MaxDepth), filter.Ethernet)
		refused(fmt.Sprintf("%s %d deep", nest.name, filter.MaxDepth+1), deep(filter.MaxDepth+1), filter.Ethernet, "nested more than 256 levels deep")
	}

	// "ip host A" generates 8 instructions before optimization on Ethernet (source
	// or destination, each an ethertype test and an address test, 2 each): 2048 of
	// them are MaxCode, and their program is then too long; one more is refused
	// before the layout.
	hosts := func(k int) string { return chain(k, func(int) string { return "ip host 10.0.0.1" }, " and ") }
	refused("MaxCode instructions generated", hosts(filter.MaxCode/8), filter.Ethernet, "more than classic BPF's 4096")
	refused("MaxCode+8 instructions generated", hosts(filter.MaxCode/8+1), filter.Ethernet, "more than 16384 instructions before optimization")

	// A program of 100 ports is longer than MaxInsns; an expression's program is
	// refused as too large, not as a malformed program.
	refused("100 ports", ports(100), filter.Ethernet, "more than classic BPF's 4096")
	if _, err := filter.Compile(ports(100), filter.Ethernet); errors.Is(err, filter.ErrProgram) {
		t.Errorf("100 ports: %v matches ErrProgram", err)
	}
	ok("50 ports", ports(50), filter.Ethernet)
}

// TestDDDLimits: a -ddd program longer than MaxInsns, or a text longer than MaxLen,
// is refused as too large before its instructions are read (and, from ParseDDD, as
// a bad program).
func TestDDDLimits(t *testing.T) {
	ddd := func(n int) string { return strconv.Itoa(n) + strings.Repeat("\n6 0 0 1", n) }
	if _, err := filter.Compile(ddd(filter.MaxInsns), filter.Ethernet); err != nil {
		t.Errorf("%d instructions: %v", filter.MaxInsns, err)
	}
	for _, text := range []string{ddd(filter.MaxInsns + 1), ddd(filter.MaxLen / 8)} {
		if _, err := filter.ParseDDD(text); !errors.Is(err, filter.ErrTooLarge) || !errors.Is(err, filter.ErrProgram) {
			t.Errorf("ParseDDD, %d bytes: %.200v; want ErrTooLarge and ErrProgram", len(text), err)
		}
		alloc, err := compileBounded(t, text, filter.Ethernet)
		if !errors.Is(err, filter.ErrTooLarge) || alloc > 1<<20 {
			t.Errorf("Compile, %d bytes: %.200v, %d bytes allocated; want ErrTooLarge and at most 1 MiB", len(text), err, alloc)
		}
	}
	// A field too long for its width is quoted shortened, with strconv's reason.
	_, err := filter.ParseDDD("1\n6 0 0 " + strings.Repeat("9", 100000))
	if !errors.Is(err, filter.ErrProgram) || len(err.Error()) > 200 || !strings.Contains(err.Error(), "value out of range") {
		t.Errorf("a 100,000-digit field: %.300v", err)
	}
}

// TestLongExpressionErrorsQuoteAWindow: an error in a long expression quotes about
// 80 bytes around its column, with its length; the column stays exact.
func TestLongExpressionErrorsQuoteAWindow(t *testing.T) {
	half := strings.Repeat("tcp or ", 3200)
	expr := half + "tcp prot 80 or " + half + "tcp"
	col := len(half) + 5
	_, err := filter.Compile(expr, filter.Ethernet)
	var fe *filter.Error
	if !errors.As(err, &fe) || fe.Col != col || fe.Expr != expr {
		t.Fatalf("%.300v; want a *filter.Error at column %d", err, col)
	}
	msg := err.Error()
	end := strings.Index(msg, fmt.Sprintf(" (%d bytes)", len(expr)))
	if !strings.HasPrefix(msg, "filter ") || end < 0 {
		t.Fatalf("message of %d bytes without the expression's length: %.300s", len(msg), msg)
	}
	window, qerr := strconv.Unquote(msg[len("filter "):end])
	if qerr != nil || !strings.HasPrefix(window, "…") || !strings.HasSuffix(window, "…") ||
		len(window) > 80+2*len("…") || !strings.Contains(window, "tcp prot 80") ||
		!strings.Contains(msg, fmt.Sprintf(`: column %d ("prot"): unknown word "prot"`, col)) {
		t.Errorf("message %q (window %q)", msg, window)
	}

	// A long token is shortened where it is quoted.
	_, err = filter.Compile("host "+strings.Repeat("a", 100000), filter.Ethernet)
	if !errors.Is(err, filter.ErrHostName) || len(err.Error()) > 250 || !strings.Contains(err.Error(), `column 6 ("aaaa`) {
		t.Errorf("a 100,000-byte host name: %.300v", err)
	}
	_, err = filter.Compile("tcp or "+strings.Repeat("b", 100000), filter.Ethernet)
	if !errors.Is(err, filter.ErrSyntax) || len(err.Error()) > 250 || !strings.Contains(err.Error(), "unknown word \"bbbb") {
		t.Errorf("a 100,000-byte word: %.300v", err)
	}
}
