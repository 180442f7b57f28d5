package filter

import (
	"strings"
	"testing"
)

// TestParseReadsEachTokenTwiceAtMost: a term may be arithmetic or a primitive in
// parentheses, and the parser decides without parsing anything twice as arithmetic,
// so it consumes at most two tokens per token of the expression (a parenthesis is
// read once as arithmetic and once as a boolean bracket), however deep the
// parentheses, valid or not.
func TestParseReadsEachTokenTwiceAtMost(t *testing.T) {
	deep := func(d int, inner string) string {
		return strings.Repeat("(", d) + inner + strings.Repeat(")", d)
	}
	groups := func(n int, group string) string {
		return strings.TrimSuffix(strings.Repeat(group+" and ", n), " and ")
	}
	for name, expr := range map[string]string{
		"unbalanced parentheses":       strings.Repeat("(", MaxDepth-1),
		"balanced nesting":             deep(MaxDepth-1, "tcp"),
		"arithmetic nesting":           deep(MaxDepth-1, "1 + len") + " > 3",
		"relation in nesting":          deep(MaxDepth-1, "len - 14 > 100"),
		"arithmetic under boolean":     deep(MaxDepth/2, deep(MaxDepth/2-1, "len")+" > 3 and tcp"),
		"groups of nesting":            groups(60, deep(120, "udp")),
		"groups of unbalanced":         groups(60, strings.Repeat("(", 120)),
		"groups of arithmetic":         groups(40, deep(100, "len * 2")+" = 8"),
		"a primitive after arithmetic": groups(300, "(len - 14) > 100 and (tcp or (udp))"),
	} {
		toks, err := lex(expr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p := newParser(expr, toks)
		p.parseAll()
		if p.steps > 2*len(toks) {
			t.Errorf("%s: %d tokens consumed for %d tokens", name, p.steps, len(toks))
		}
	}
}
