package filter

import (
	"fmt"
	"net/netip"
	"strings"
)

type tokKind uint8

const (
	tEOF   tokKind = iota
	tWord          // keyword or name; a leading backslash is dropped and escaped set
	tNum           // integer in decimal, 0x hex or leading-0 octal
	tAddr4         // dotted IPv4 address, possibly partial (10.1)
	tAddr6         // IPv6 address
	tMAC           // Ethernet address
	tPunct         // operator or bracket
)

type token struct {
	kind    tokKind
	text    string // as written (for punctuation, the operator itself)
	col     int    // 1-based column of the first character
	num     uint32 // tNum value
	escaped bool   // tWord written with a backslash: a protocol name, not a keyword
}

// twoCharOps are tried before single characters, so "!=" is not "!" then "=".
var twoCharOps = []string{"&&", "||", "<<", ">>", "<=", ">=", "!=", "=="}

const oneCharOps = "()[]:!&|^+-*/%<>="

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || (c|0x20) >= 'a' && (c|0x20) <= 'f' }
func isAlpha(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// lex splits an expression into tokens, as libpcap's scanner does for the syntax
// fparser supports. Addresses are recognised by their shape, so "6:2" inside
// brackets stays two numbers while "fe80::1" is one address. It reads each byte a
// bounded number of times and stops at the token past MaxTokens.
func lex(expr string) ([]token, error) {
	var toks []token
	i := 0
	for {
		for i < len(expr) && isSpace(expr[i]) {
			i++
		}
		if i == len(expr) {
			toks = append(toks, token{kind: tEOF, col: i + 1})
			return toks, nil
		}
		start := i
		if len(toks) == MaxTokens {
			return nil, &Error{Col: start + 1, Msg: fmt.Sprintf("more than %d tokens", MaxTokens), tooLarge: true}
		}
		c := expr[i]
		// Addresses first: they may begin with a hex letter or a colon.
		if isHex(c) || c == ':' {
			if t, n, ok := lexAddress(expr[i:]); ok {
				t.col = start + 1
				toks = append(toks, t)
				i += n
				continue
			}
		}
		switch {
		case isDigit(c):
			j := i
			for j < len(expr) && (isDigit(expr[j]) || expr[j] == '.') {
				j++
			}
			text := expr[i:j]
			if strings.Contains(text, ".") {
				if _, err := parseDotted(text); err != nil {
					return nil, &Error{Col: start + 1, Token: text, Msg: "bad IPv4 address"}
				}
				toks = append(toks, token{kind: tAddr4, text: text, col: start + 1})
				i = j
				continue
			}
			if c == '0' && j < len(expr) && (expr[j]|0x20) == 'x' {
				j++
				for j < len(expr) && isHex(expr[j]) {
					j++
				}
			} else {
				for j < len(expr) && isAlpha(expr[j]) {
					j++ // so that "12ab" is reported whole
				}
			}
			text = expr[i:j]
			v, err := parseNumber(text)
			if err != nil {
				return nil, &Error{Col: start + 1, Token: text, Msg: err.Error()}
			}
			toks = append(toks, token{kind: tNum, text: text, col: start + 1, num: v})
			i = j
		case isAlpha(c) || c == '_' || c == '\\':
			esc := c == '\\'
			j := i
			if esc {
				j++
			}
			for j < len(expr) && (isAlpha(expr[j]) || isDigit(expr[j]) || expr[j] == '_' || expr[j] == '-' || expr[j] == '.') {
				j++
			}
			text := expr[i:j]
			word := text
			if esc {
				word = text[1:]
			}
			if word == "" {
				return nil, &Error{Col: start + 1, Token: "\\", Msg: "a backslash must be followed by a protocol name"}
			}
			toks = append(toks, token{kind: tWord, text: word, col: start + 1, escaped: esc})
			i = j
		default:
			op := ""
			for _, two := range twoCharOps {
				if strings.HasPrefix(expr[i:], two) {
					op = two
					break
				}
			}
			if op == "" && strings.IndexByte(oneCharOps, c) >= 0 {
				op = expr[i : i+1]
			}
			if op == "" {
				return nil, &Error{Col: start + 1, Token: expr[i : i+1], Msg: "unexpected character"}
			}
			toks = append(toks, token{kind: tPunct, text: op, col: start + 1})
			i += len(op)
		}
	}
}

// The longest addresses: an IPv6 address with an IPv4 tail
// ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255") and an Ethernet address with
// separators ("01-02-03-04-05-06"). lexAddress reads no further, so that a long run
// of hex digits and separators costs its length once, not once per token in it.
const (
	maxAddr6Len = 45
	maxMACLen   = 17
)

// lexAddress recognises an IPv6 or Ethernet address at the start of s.
func lexAddress(s string) (token, int, bool) {
	n := 0
	for n < len(s) && n <= maxAddr6Len && (isHex(s[n]) || s[n] == ':' || s[n] == '.') {
		n++
	}
	run := s[:n]
	if n > maxAddr6Len {
		run = "" // too long for any address
	}
	if strings.Contains(run, ":") {
		if _, ok := parseMAC(run); ok {
			return token{kind: tMAC, text: run}, n, true
		}
		if a, err := netip.ParseAddr(run); err == nil && a.Is6() && a.Zone() == "" {
			return token{kind: tAddr6, text: run}, n, true
		}
	}
	if strings.Count(run, ".") == 2 && len(run) == 14 {
		if _, ok := parseMAC(run); ok {
			return token{kind: tMAC, text: run}, n, true
		}
	}
	// 01-02-03-04-05-06
	m := 0
	for m < len(s) && m <= maxMACLen && (isHex(s[m]) || s[m] == '-') {
		m++
	}
	if m <= maxMACLen && strings.Count(s[:m], "-") == 5 {
		if _, ok := parseMAC(s[:m]); ok {
			return token{kind: tMAC, text: s[:m]}, m, true
		}
	}
	return token{}, 0, false
}

// parseMAC reads xx:xx:xx:xx:xx:xx (one or two digits a group, or '-' between
// them) and xxxx.xxxx.xxxx.
func parseMAC(s string) ([6]byte, bool) {
	var mac [6]byte
	if strings.Count(s, ".") == 2 {
		parts := strings.Split(s, ".")
		for i, p := range parts {
			if len(p) != 4 {
				return mac, false
			}
			for j := 0; j < 2; j++ {
				v, ok := hexByte(p[2*j : 2*j+2])
				if !ok {
					return mac, false
				}
				mac[2*i+j] = v
			}
		}
		return mac, true
	}
	sep := ":"
	if strings.Contains(s, "-") {
		sep = "-"
	}
	parts := strings.Split(s, sep)
	if len(parts) != 6 {
		return mac, false
	}
	for i, p := range parts {
		if len(p) < 1 || len(p) > 2 {
			return mac, false
		}
		v, ok := hexByte(p)
		if !ok {
			return mac, false
		}
		mac[i] = v
	}
	return mac, true
}

func hexByte(s string) (byte, bool) {
	var v byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isDigit(c):
			v = v<<4 | (c - '0')
		case isHex(c):
			v = v<<4 | ((c | 0x20) - 'a' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

type numError string

func (e numError) Error() string { return string(e) }

// parseNumber reads decimal, 0x hexadecimal and leading-zero octal, as libpcap does,
// and refuses what does not fit 32 bits.
func parseNumber(s string) (uint32, error) {
	base, digits := uint64(10), s
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1]|0x20) == 'x':
		base, digits = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, digits = 8, s[1:]
	}
	var v uint64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		var d uint64
		switch {
		case isDigit(c):
			d = uint64(c - '0')
		case isHex(c):
			d = uint64((c|0x20)-'a') + 10
		default:
			return 0, numError("not a number")
		}
		if d >= base {
			return 0, numError("not a number")
		}
		v = v*base + d
		if v > 0xFFFFFFFF {
			return 0, numError("number overflows 32 bits")
		}
	}
	if len(digits) == 0 {
		return 0, numError("not a number")
	}
	return uint32(v), nil
}

// parseDotted reads an IPv4 address of one to four parts, each 0-255.
func parseDotted(s string) ([]byte, error) {
	if strings.Count(s, ".") > 3 {
		return nil, numError("bad IPv4 address")
	}
	parts := strings.Split(s, ".")
	out := make([]byte, 0, 4)
	for _, p := range parts {
		if p == "" || len(p) > 3 {
			return nil, numError("bad IPv4 address")
		}
		v := 0
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return nil, numError("bad IPv4 address")
			}
			v = v*10 + int(p[i]-'0')
		}
		if v > 255 {
			return nil, numError("bad IPv4 address")
		}
		out = append(out, byte(v))
	}
	return out, nil
}
