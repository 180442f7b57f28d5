package filter

import (
	"fmt"
	"net/netip"
	"strings"
)

// The syntax tree. It is independent of the link type: a primitive records how many
// "vlan" keywords came before it in the expression, because libpcap shifts the
// offsets of everything parsed after a "vlan" (also across "or"), and fparser
// answers as libpcap does.

type node interface{ isNode() }

type andNode struct{ l, r node }
type orNode struct{ l, r node }
type notNode struct{ x node }

// protoNode is a protocol keyword on its own ("tcp", "ip6", "arp") or a protocol
// number ("proto 17", "ip proto 6", "ether proto 0x88cc").
type protoNode struct {
	qual  string // "", "ip", "ip6", "ether", or the keyword itself
	name  string // keyword, or "" for a number
	num   uint32
	vlans int
}

// hostNode is an IPv4 or IPv6 address with a mask ("host", "net", bare addresses).
type hostNode struct {
	qual  string // "", "ip", "ip6", "arp", "rarp"
	dir   string // "src", "dst", "or", "and"
	v6    bool
	addr  [16]byte
	mask  [16]byte
	vlans int
}

type etherNode struct {
	dir   string
	mac   [6]byte
	vlans int
}

type portNode struct {
	l4     string // "", "tcp", "udp", "sctp"
	dir    string
	lo, hi uint32
	vlans  int
}

// castNode is broadcast or multicast at the link ("ether"), IPv4 or IPv6 level.
type castNode struct {
	qual      string // "ether", "ip", "ip6"
	broadcast bool
	vlans     int
}

type vlanNode struct {
	id    int // -1: any
	vlans int // tags already matched before this one
}

type relNode struct {
	op   string // ">", ">=", "<", "<=", "=", "!="
	l, r arith
}

func (andNode) isNode()   {}
func (orNode) isNode()    {}
func (notNode) isNode()   {}
func (protoNode) isNode() {}
func (hostNode) isNode()  {}
func (etherNode) isNode() {}
func (portNode) isNode()  {}
func (castNode) isNode()  {}
func (vlanNode) isNode()  {}
func (relNode) isNode()   {}

// Arithmetic, all in 32-bit unsigned integers as in BPF.
type arith interface{ isArith() }

type numArith struct{ v uint32 }
type lenArith struct{}
type loadArith struct {
	proto string // "ether"/"link", "ip", "ip6", "arp", "rarp", "tcp", "udp", ...
	idx   arith
	size  int
	vlans int
}
type binArith struct {
	op   string
	l, r arith
}
type negArith struct{ x arith }

func (numArith) isArith()  {}
func (lenArith) isArith()  {}
func (loadArith) isArith() {}
func (binArith) isArith()  {}
func (negArith) isArith()  {}

// Keywords.
var (
	protoQuals = map[string]bool{"ether": true, "link": true, "ip": true, "ip6": true, "arp": true, "rarp": true, "tcp": true, "udp": true, "sctp": true}
	// Protocols that are only abbreviations, never qualifiers.
	protoOnly  = map[string]bool{"icmp": true, "icmp6": true, "igmp": true, "pim": true, "esp": true, "ah": true, "vrrp": true, "carp": true}
	dirWords   = map[string]bool{"src": true, "dst": true}
	typeWords  = map[string]bool{"host": true, "net": true, "port": true, "portrange": true, "proto": true, "gateway": true, "protochain": true}
	loadProtos = map[string]bool{"ether": true, "link": true, "ip": true, "ip6": true, "arp": true, "rarp": true, "tcp": true, "udp": true, "sctp": true, "icmp": true, "icmp6": true, "igmp": true, "pim": true, "vrrp": true, "carp": true}
	// Keywords libpcap knows that fparser does not compile.
	unsupportedWords = map[string]string{
		"gateway": "it needs host name resolution", "protochain": "", "mpls": "", "pppoed": "", "pppoes": "", "geneve": "",
		"atalk": "", "aarp": "", "decnet": "", "lat": "", "sca": "", "moprc": "", "mopdl": "", "iso": "", "esis": "",
		"isis": "", "clnp": "", "stp": "", "ipx": "", "netbeui": "", "llc": "", "fddi": "", "tr": "", "wlan": "",
		"radio": "", "type": "", "subtype": "", "dir": "", "inbound": "", "outbound": "", "ifname": "", "on": "",
		"rnr": "", "reason": "", "rset": "", "ruleset": "", "srnr": "", "action": "", "atm": "", "lane": "",
		"vpi": "", "vci": "", "oam": "", "oamf4": "", "oamf4ec": "", "oamf4sc": "", "metac": "", "bcc": "",
		"sc": "", "ilmic": "", "connectmsg": "", "metaconnect": "", "fisu": "", "lssu": "", "msu": "", "sio": "",
		"opc": "", "dpc": "", "sls": "", "hfisu": "", "hlssu": "", "hmsu": "", "hsio": "", "hopc": "", "hdpc": "",
		"hsls": "", "igrp": "", "slip": "", "ppp": "", "ra": "", "ta": "", "addr1": "", "addr2": "", "addr3": "",
		"addr4": "", "bssid": "",
	}
	// Named constants of pcap-filter(7).
	namedConsts = map[string]uint32{
		"tcpflags": 13, "tcp-fin": 0x01, "tcp-syn": 0x02, "tcp-rst": 0x04, "tcp-push": 0x08, "tcp-ack": 0x10,
		"tcp-urg": 0x20, "tcp-ece": 0x40, "tcp-cwr": 0x80,
		"icmptype": 0, "icmpcode": 1, "icmp-echoreply": 0, "icmp-unreach": 3, "icmp-sourcequench": 4,
		"icmp-redirect": 5, "icmp-echo": 8, "icmp-routeradvert": 9, "icmp-routersolicit": 10, "icmp-timxceed": 11,
		"icmp-paramprob": 12, "icmp-tstamp": 13, "icmp-tstampreply": 14, "icmp-ireq": 15, "icmp-ireqreply": 16,
		"icmp-maskreq": 17, "icmp-maskreply": 18,
		"icmp6type": 0, "icmp6code": 1, "icmp6-destinationunreach": 1, "icmp6-packettoobig": 2,
		"icmp6-timeexceeded": 3, "icmp6-parameterproblem": 4, "icmp6-echo": 128, "icmp6-echoreply": 129,
		"icmp6-multicastlistenerquery": 130, "icmp6-multicastlistenerreportv1": 131,
		"icmp6-multicastlistenerdone": 132, "icmp6-routersolicit": 133, "icmp6-routeradvert": 134,
		"icmp6-neighborsolicit": 135, "icmp6-neighboradvert": 136, "icmp6-redirect": 137,
		"icmp6-routerrenum": 138, "icmp6-nodeinformationquery": 139, "icmp6-nodeinformationresponse": 140,
		"icmp6-ineighbordiscoverysolicit": 141, "icmp6-ineighbordiscoveryadvert": 142,
		"icmp6-multicastlistenerreportv2": 143, "icmp6-homeagentdiscoveryrequest": 144,
		"icmp6-homeagentdiscoveryreply": 145, "icmp6-mobileprefixsolicit": 146,
		"icmp6-mobileprefixadvert": 147, "icmp6-certpathsolicit": 148, "icmp6-certpathadvert": 149,
		"icmp6-multicastrouteradvert": 151, "icmp6-multicastroutersolicit": 152,
		"icmp6-multicastrouterterm": 153,
	}
	// IP protocol names after "proto" ("ip proto \tcp"): libpcap looks them up in
	// /etc/protocols; these are that file's names, built in so that the answer does
	// not depend on the machine.
	ipProtoNames = map[string]uint32{
		"ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6, "egp": 8, "igp": 9,
		"pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27, "iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37,
		"idpr-cmtp": 38, "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50,
		"ah": 51, "skip": 57, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "rspf": 73, "vmtp": 81, "eigrp": 88,
		"ospf": 89, "ax.25": 93, "ipip": 94, "etherip": 97, "encap": 98, "pim": 103, "ipcomp": 108, "vrrp": 112,
		"l2tp": 115, "isis": 124, "sctp": 132, "fc": 133, "mobility-header": 135, "udplite": 136, "mpls-in-ip": 137,
		"manet": 138, "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142, "ethernet": 143,
	}
	// Ethertype names after "ether proto", from libpcap's own table (those that are
	// a plain ethertype comparison).
	etherProtoNames = map[string]uint32{"ip": 0x0800, "ip6": 0x86dd, "arp": 0x0806, "rarp": 0x8035, "loopback": 0x9000,
		"decnet": 0x6003, "lat": 0x6004, "mopdl": 0x6001, "moprc": 0x6002, "sca": 0x6007}
)

// qualifiers are the keywords in front of a value; a bare value after "and" or
// "or" takes the previous primitive's.
type qualifiers struct {
	proto, dir, typ string
	set             bool
}

type parser struct {
	expr  string
	toks  []token
	pos   int
	vlans int
	last  qualifiers

	// A term may be a relation ("(len - 14) > 100") or a primitive in parentheses
	// ("(tcp)"): the parser tries arithmetic first. arith remembers the outcome of
	// each arithmetic parse by the token it started at, so that no token is parsed
	// as arithmetic twice and deep parentheses cost their length, not its square.
	arith map[int]arithResult
	depth int   // nesting at the token being parsed
	fatal error // a limit was passed: the parse stops, whatever it was trying
	steps int   // tokens consumed, counting those consumed again: for tests
}

type arithResult struct {
	a         arith
	committed bool
	err       error
	end       int // the token after it
	vlans     int // the "vlan" count it was parsed with
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
		p.steps++
	}
	return t
}

// enter opens a level of nesting at t; past MaxDepth the parse fails for good.
func (p *parser) enter(t token) error {
	p.depth++
	if p.depth > MaxDepth && p.fatal == nil {
		p.fatal = &Error{Col: t.col, Token: t.text, Msg: fmt.Sprintf("nested more than %d levels deep (parentheses, brackets, not and unary minus)", MaxDepth), tooLarge: true}
	}
	return p.fatal
}
func (p *parser) isWord(w string) bool {
	t := p.peek()
	return t.kind == tWord && !t.escaped && t.text == w
}
func (p *parser) isPunct(op string) bool {
	t := p.peek()
	return t.kind == tPunct && t.text == op
}

func (p *parser) errAt(t token, format string, args ...any) error {
	text := t.text
	if t.kind == tWord && t.escaped {
		text = `\` + text
	}
	if t.kind == tEOF {
		text = ""
	}
	return &Error{Col: t.col, Token: text, Msg: fmt.Sprintf(format, args...)}
}

func parse(expr string) (node, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	return newParser(expr, toks).parseAll()
}

func newParser(expr string, toks []token) *parser {
	return &parser{expr: expr, toks: toks, arith: map[int]arithResult{}}
}

func (p *parser) parseAll() (node, error) {
	if p.peek().kind == tEOF {
		return nil, nil
	}
	n, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "%s", describe(t)+" where 'and', 'or' or the end was expected")
	}
	return n, nil
}

var otherKeywords = map[string]bool{"and": true, "or": true, "not": true, "vlan": true, "greater": true, "less": true,
	"broadcast": true, "multicast": true, "len": true, "mask": true}

func isKeyword(w string) bool {
	_, unsupported := unsupportedWords[w]
	_, named := namedConsts[w]
	return unsupported || named || otherKeywords[w] || protoQuals[w] || protoOnly[w] || dirWords[w] || typeWords[w]
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tWord:
		if _, ok := unsupportedWords[t.text]; ok {
			return fmt.Sprintf("%q", t.text)
		}
		if !isKeyword(t.text) {
			return fmt.Sprintf("unknown word %q", shorten(t.text))
		}
		return fmt.Sprintf("word %q", t.text)
	default:
		return fmt.Sprintf("%q", shorten(t.text))
	}
}

// parseExpr: "and" and "or" have equal precedence and associate to the left, as in
// libpcap: "a or b and c" is "(a or b) and c".
func (p *parser) parseExpr() (node, error) {
	n, err := p.parseTerm()
	if err != nil {
		return nil, err
	}
	for {
		var and bool
		switch {
		case p.isWord("and") || p.isPunct("&&"):
			and = true
		case p.isWord("or") || p.isPunct("||"):
		default:
			return n, nil
		}
		p.next()
		r, err := p.parseTerm()
		if err != nil {
			return nil, err
		}
		if and {
			n = andNode{n, r}
		} else {
			n = orNode{n, r}
		}
	}
}

func (p *parser) parseTerm() (node, error) {
	defer func(depth int) { p.depth = depth }(p.depth)
	t := p.peek()
	if p.isWord("not") || p.isPunct("!") {
		if err := p.enter(t); err != nil {
			return nil, err
		}
		p.next()
		x, err := p.parseTerm()
		if err != nil {
			return nil, err
		}
		return notNode{x}, nil
	}
	if t.kind == tEOF {
		return nil, p.errAt(t, "expression ends where a primitive was expected")
	}
	// A relation ("tcp[13] & 2 != 0", "(len - 14) > 100", "len > 64") starts like an
	// arithmetic expression; try it first and fall back to a primitive. The
	// arithmetic parsed is remembered: the fallback into parentheses finds it again
	// without parsing it again.
	save, saveVlans := p.pos, p.vlans
	rel, committed, err := p.tryRelation()
	if rel != nil {
		return rel, nil
	}
	if p.fatal != nil {
		return nil, p.fatal
	}
	if committed {
		return nil, err
	}
	p.pos, p.vlans = save, saveVlans
	if p.isPunct("(") {
		if err := p.enter(t); err != nil {
			return nil, err
		}
		p.next()
		n, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if !p.isPunct(")") {
			return nil, p.errAt(p.peek(), "expected ')' but found %s", describe(p.peek()))
		}
		p.next()
		return n, nil
	}
	return p.parsePrimitive()
}

var relOps = map[string]bool{">": true, ">=": true, "<": true, "<=": true, "=": true, "==": true, "!=": true}

// tryRelation parses "arith relop arith". committed says the tokens could only be a
// relation, so err is the error to report.
func (p *parser) tryRelation() (n node, committed bool, err error) {
	l, committed, err := p.parseArith()
	if err != nil {
		return nil, committed, err
	}
	t := p.peek()
	if t.kind != tPunct || !relOps[t.text] {
		if committed {
			return nil, true, p.errAt(t, "expected a comparison (=, !=, <, <=, >, >=) but found %s", describe(t))
		}
		return nil, false, nil
	}
	p.next()
	r, _, err := p.parseArith()
	if err != nil {
		return nil, true, err
	}
	op := t.text
	if op == "==" {
		op = "="
	}
	return relNode{op: op, l: l, r: r}, true, nil
}

// Binary operator precedences from libpcap's grammar. '^' and '%' have none there,
// so yacc always shifts on them: "1 * 2 % 3" is "1 * (2 % 3)" and "-1 ^ 2" is
// "-(1 ^ 2)". The operator-precedence parser below follows the same rule.
var arithPrec = map[string]int{"|": 1, "&": 2, "<<": 3, ">>": 3, "+": 4, "-": 4, "*": 5, "/": 5, "^": 0, "%": 0}

const negPrec = 6

type opEntry struct {
	op   string
	prec int // 0: none
}

// parseArith parses an arithmetic expression. committed is set once it has seen
// something that cannot begin a primitive (a bracket load or an operator). Its
// outcome at a token is remembered: asked again there, it answers at once.
func (p *parser) parseArith() (arith, bool, error) {
	start := p.pos
	if r, ok := p.arith[start]; ok && r.vlans == p.vlans {
		p.pos = r.end
		return r.a, r.committed, r.err
	}
	a, committed, err := p.parseArithOnce()
	p.arith[start] = arithResult{a: a, committed: committed, err: err, end: p.pos, vlans: p.vlans}
	return a, committed, err
}

func (p *parser) parseArithOnce() (arith, bool, error) {
	defer func(depth int) { p.depth = depth }(p.depth)
	var vals []arith
	var ops []opEntry
	committed := false
	reduce := func() {
		top := ops[len(ops)-1]
		ops = ops[:len(ops)-1]
		if top.op == "neg" {
			vals[len(vals)-1] = negArith{vals[len(vals)-1]}
			return
		}
		r := vals[len(vals)-1]
		l := vals[len(vals)-2]
		vals = vals[:len(vals)-2]
		vals = append(vals, binArith{op: top.op, l: l, r: r})
	}
	for {
		for p.isPunct("-") {
			if err := p.enter(p.peek()); err != nil {
				return nil, true, err
			}
			p.next()
			committed = true
			ops = append(ops, opEntry{"neg", negPrec})
		}
		v, c, err := p.parsePrimary()
		committed = committed || c
		if err != nil {
			return nil, committed, err
		}
		vals = append(vals, v)
		t := p.peek()
		look := ""
		if _, ok := arithPrec[t.text]; ok && t.kind == tPunct {
			look = t.text
		}
		for len(ops) > 0 {
			top := ops[len(ops)-1]
			if look != "" && (top.prec == 0 || arithPrec[look] == 0 || top.prec < arithPrec[look]) {
				break
			}
			reduce()
		}
		if look == "" {
			return vals[0], committed, nil
		}
		p.next()
		committed = true
		ops = append(ops, opEntry{look, arithPrec[look]})
	}
}

func (p *parser) parsePrimary() (arith, bool, error) {
	defer func(depth int) { p.depth = depth }(p.depth)
	t := p.peek()
	switch {
	case t.kind == tNum:
		p.next()
		return numArith{t.num}, false, nil
	case t.kind == tPunct && t.text == "(":
		if err := p.enter(t); err != nil {
			return nil, true, err
		}
		p.next()
		a, _, err := p.parseArith()
		if err != nil {
			return nil, false, err
		}
		if !p.isPunct(")") {
			return nil, false, p.errAt(p.peek(), "expected ')' but found %s", describe(p.peek()))
		}
		p.next()
		return a, false, nil
	case t.kind == tWord && !t.escaped && t.text == "len":
		p.next()
		return lenArith{}, false, nil
	case t.kind == tWord && !t.escaped && loadProtos[t.text] && p.toks[p.pos+1].kind == tPunct && p.toks[p.pos+1].text == "[":
		if err := p.enter(p.toks[p.pos+1]); err != nil {
			return nil, true, err
		}
		p.next()
		p.next()
		idx, _, err := p.parseArith()
		if err != nil {
			return nil, true, err
		}
		size := 1
		if p.isPunct(":") {
			p.next()
			st := p.peek()
			if st.kind != tNum || (st.num != 1 && st.num != 2 && st.num != 4) {
				return nil, true, p.errAt(st, "data size must be 1, 2, or 4")
			}
			p.next()
			size = int(st.num)
		}
		if !p.isPunct("]") {
			return nil, true, p.errAt(p.peek(), "expected ']' but found %s", describe(p.peek()))
		}
		p.next()
		proto := t.text
		if proto == "link" {
			proto = "ether"
		}
		return loadArith{proto: proto, idx: idx, size: size, vlans: p.vlans}, true, nil
	case t.kind == tWord && !t.escaped:
		if v, ok := namedConsts[t.text]; ok {
			p.next()
			return numArith{v}, false, nil
		}
	}
	return nil, false, p.errAt(t, "expected a number, len, or proto[offset] but found %s", describe(t))
}

func (p *parser) parsePrimitive() (node, error) {
	t := p.peek()
	if t.kind == tWord && !t.escaped {
		switch w := t.text; {
		case w == "vlan":
			p.next()
			id := -1
			if n := p.peek(); n.kind == tNum {
				if n.num > 4095 {
					return nil, p.errAt(n, "VLAN tag %d greater than maximum 4095", n.num)
				}
				id = int(n.num)
				p.next()
			}
			n := vlanNode{id: id, vlans: p.vlans}
			p.vlans++
			return n, nil
		case w == "greater" || w == "less":
			p.next()
			n := p.peek()
			if n.kind != tNum {
				return nil, p.errAt(n, "%s needs a number", w)
			}
			p.next()
			op := ">="
			if w == "less" {
				op = "<="
			}
			return relNode{op: op, l: lenArith{}, r: numArith{n.num}}, nil
		case w == "broadcast" || w == "multicast":
			p.next()
			return castNode{qual: "ether", broadcast: w == "broadcast", vlans: p.vlans}, nil
		case protoOnly[w]:
			p.next()
			return protoNode{qual: w, name: w, vlans: p.vlans}, nil
		}
		if why, ok := unsupportedWords[t.text]; ok {
			msg := fmt.Sprintf("%q is not supported by fparser's filter compiler", t.text)
			if why != "" {
				msg += ": " + why
			}
			return nil, &Error{Col: t.col, Token: t.text, Msg: msg + "; a program from tcpdump -ddd is accepted instead", unsupported: true}
		}
	}
	q := qualifiers{}
	start := p.peek()
	if t.kind == tWord && !t.escaped && protoQuals[t.text] {
		q.proto = t.text
		if q.proto == "link" {
			q.proto = "ether"
		}
		p.next()
		n := p.peek()
		isQual := n.kind == tWord && !n.escaped && (dirWords[n.text] || typeWords[n.text] || n.text == "broadcast" || n.text == "multicast")
		if !isQual {
			if q.proto == "ether" {
				return nil, p.errAt(n, "'ether' must be followed by host, src, dst, proto, broadcast or multicast")
			}
			return protoNode{qual: q.proto, name: q.proto, vlans: p.vlans}, nil
		}
		if n.text == "broadcast" || n.text == "multicast" {
			p.next()
			switch q.proto {
			case "ether", "ip", "ip6":
			default:
				return nil, p.errAt(t, "'%s' modifier applied to %s", q.proto, n.text)
			}
			if q.proto == "ip" && n.text == "broadcast" {
				return nil, &Error{Col: t.col, Token: "ip broadcast", Msg: "ip broadcast needs the interface's netmask, which fparser does not know", unsupported: true}
			}
			if q.proto == "ip6" && n.text == "broadcast" {
				return nil, p.errAt(n, "IPv6 has no broadcast")
			}
			return castNode{qual: q.proto, broadcast: n.text == "broadcast", vlans: p.vlans}, nil
		}
	}
	if p.isWord("src") || p.isWord("dst") {
		d := p.next().text
		q.dir = d
		other := "dst"
		if d == "dst" {
			other = "src"
		}
		if (p.isWord("or") || p.isWord("and")) && p.toks[p.pos+1].kind == tWord && p.toks[p.pos+1].text == other {
			q.dir = p.next().text
			p.next()
		}
	}
	if n := p.peek(); n.kind == tWord && !n.escaped && typeWords[n.text] {
		q.typ = n.text
		p.next()
	}
	q.set = true
	if q.proto == "" && q.dir == "" && q.typ == "" {
		// A bare value takes the qualifiers of the primitive before it.
		if !p.last.set {
			if t.kind == tWord {
				return nil, p.errAt(t, "unknown word %q", shorten(t.text))
			}
			return nil, p.errAt(t, "%s needs a qualifier such as host, net or port", describe(t))
		}
		q = p.last
	}
	p.last = q
	return p.primitiveValue(q, start)
}

func dirOrDefault(d string) string {
	if d == "" {
		return "or"
	}
	return d
}

// primitiveValue reads the value after the qualifiers q.
func (p *parser) primitiveValue(q qualifiers, start token) (node, error) {
	v := p.peek()
	typ := q.typ
	switch typ {
	case "gateway", "protochain":
		return nil, &Error{Col: start.col, Token: typ, Msg: fmt.Sprintf("%q is not supported by fparser's filter compiler; a program from tcpdump -ddd is accepted instead", typ), unsupported: true}
	case "proto":
		if q.dir != "" {
			return nil, p.errAt(v, "'%s' qualifier applied to proto", q.dir)
		}
		var num uint32
		switch {
		case v.kind == tNum:
			num = v.num
		case v.kind == tWord:
			names := ipProtoNames
			if q.proto == "ether" {
				names = etherProtoNames
			}
			n, ok := names[v.text]
			if !ok || !v.escaped && (protoQuals[v.text] || protoOnly[v.text]) {
				if ok {
					return nil, p.errAt(v, "%q is a keyword here: write \\%s", v.text, v.text)
				}
				return nil, p.errAt(v, "unknown protocol %q", shorten(v.text))
			}
			num = n
		default:
			return nil, p.errAt(v, "proto needs a number or a protocol name, found %s", describe(v))
		}
		p.next()
		switch q.proto {
		case "", "ip", "ip6":
		case "ether":
			if num <= 1500 {
				return nil, &Error{Col: v.col, Token: v.text, Msg: "ether proto values up to 1500 are 802.3 lengths (LLC); fparser does not compile them", unsupported: true}
			}
		default:
			return nil, p.errAt(start, "'%s' modifier applied to proto", q.proto)
		}
		return protoNode{qual: q.proto, num: num, vlans: p.vlans}, nil
	case "port", "portrange":
		switch q.proto {
		case "", "tcp", "udp", "sctp":
		default:
			return nil, p.errAt(start, "illegal qualifier of '%s'", typ)
		}
		if v.kind == tWord {
			return nil, p.errAt(v, "port names are not resolved: give %q as a number", shorten(v.text))
		}
		if v.kind != tNum {
			return nil, p.errAt(v, "%s needs a number, found %s", typ, describe(v))
		}
		p.next()
		lo, hi := v.num, v.num
		if typ == "portrange" {
			if !p.isPunct("-") {
				return nil, p.errAt(p.peek(), "portrange needs LOW-HIGH")
			}
			p.next()
			h := p.peek()
			if h.kind != tNum {
				return nil, p.errAt(h, "portrange needs LOW-HIGH")
			}
			p.next()
			hi = h.num
			if hi < lo {
				lo, hi = hi, lo
			}
		}
		if hi > 65535 {
			return nil, p.errAt(v, "illegal port number %d > 65535", hi)
		}
		return portNode{l4: q.proto, dir: dirOrDefault(q.dir), lo: lo, hi: hi, vlans: p.vlans}, nil
	}
	// host, net, or a value with only proto/dir qualifiers.
	switch v.kind {
	case tMAC:
		if q.proto != "ether" {
			return nil, p.errAt(v, "ethernet address used in non-ether expression")
		}
		if typ != "" && typ != "host" {
			return nil, p.errAt(v, "ethernet address used with '%s'", typ)
		}
		p.next()
		mac, _ := parseMAC(v.text)
		return etherNode{dir: dirOrDefault(q.dir), mac: mac, vlans: p.vlans}, nil
	case tWord:
		if v.escaped || protoQuals[v.text] || protoOnly[v.text] || typeWords[v.text] || dirWords[v.text] {
			return nil, p.errAt(v, "unexpected %s", describe(v))
		}
		return nil, &Error{Col: v.col, Token: v.text, Msg: "host names are not resolved: give an address", hostName: true}
	case tAddr6:
		return p.hostValue6(q, typ, v)
	case tAddr4, tNum:
		return p.hostValue4(q, typ, v)
	}
	return nil, p.errAt(v, "expected an address or a number but found %s", describe(v))
}

func (p *parser) checkHostQual(q qualifiers, v6 bool, start token) error {
	switch q.proto {
	case "", "ip", "arp", "rarp":
		if v6 && q.proto != "" {
			return p.errAt(start, "'%s' modifier applied to ip6 host", q.proto)
		}
	case "ip6":
		if !v6 {
			return p.errAt(start, "'ip6' modifier applied to ip host")
		}
	case "ether":
		return p.errAt(start, "'ether' needs an Ethernet address")
	default:
		return p.errAt(start, "'%s' modifier applied to host", q.proto)
	}
	return nil
}

func (p *parser) hostValue4(q qualifiers, typ string, v token) (node, error) {
	if err := p.checkHostQual(q, false, v); err != nil {
		return nil, err
	}
	p.next()
	var addr, mask uint32
	bits := 32
	if v.kind == tNum {
		addr = v.num
		if typ == "net" {
			// libpcap: "net 10" is 10.0.0.0/8; shift the number up to the top byte.
			mask = 0xffffffff
			for addr != 0 && addr&0xff000000 == 0 {
				addr <<= 8
				mask <<= 8
			}
			bits = -1
		}
	} else {
		parts, _ := parseDotted(v.text)
		for i, b := range parts {
			addr |= uint32(b) << (24 - 8*i)
		}
		bits = 8 * len(parts)
	}
	if bits >= 0 {
		mask = prefixMask(bits)
	}
	if typ == "net" {
		switch {
		case v.kind == tNum && (p.isPunct("/") || p.isWord("mask")):
			return nil, p.errAt(p.peek(), "a mask needs a dotted address (10.0.0.0/8, not 10/8)")
		case p.isPunct("/"):
			p.next()
			n := p.peek()
			if n.kind != tNum || n.num > 32 {
				return nil, p.errAt(n, "mask length must be <= 32")
			}
			p.next()
			mask = prefixMask(int(n.num))
		case p.isWord("mask"):
			p.next()
			n := p.peek()
			if n.kind != tAddr4 {
				return nil, p.errAt(n, "mask needs a dotted IPv4 netmask")
			}
			parts, _ := parseDotted(n.text)
			if len(parts) != 4 {
				return nil, p.errAt(n, "mask needs a dotted IPv4 netmask")
			}
			p.next()
			mask = uint32(parts[0])<<24 | uint32(parts[1])<<16 | uint32(parts[2])<<8 | uint32(parts[3])
		}
		if addr&^mask != 0 {
			return nil, p.errAt(v, "non-network bits set in %q", shorten(p.expr[v.col-1:p.peekEnd()]))
		}
	} else if p.isPunct("/") || p.isWord("mask") {
		return nil, p.errAt(p.peek(), "a mask needs 'net'")
	}
	n := hostNode{qual: q.proto, dir: dirOrDefault(q.dir), vlans: p.vlans}
	put32(n.addr[:], addr)
	put32(n.mask[:], mask)
	return n, nil
}

// peekEnd is the byte offset where the previous token ended.
func (p *parser) peekEnd() int {
	t := p.toks[p.pos-1]
	end := t.col - 1 + len(t.text)
	if t.kind == tWord && t.escaped {
		end++
	}
	return end
}

func (p *parser) hostValue6(q qualifiers, typ string, v token) (node, error) {
	if err := p.checkHostQual(q, true, v); err != nil {
		return nil, err
	}
	p.next()
	a := netip.MustParseAddr(v.text)
	bits := 128
	if typ == "net" && p.isPunct("/") {
		p.next()
		n := p.peek()
		if n.kind != tNum || n.num > 128 {
			return nil, p.errAt(n, "mask length must be <= 128")
		}
		p.next()
		bits = int(n.num)
	} else if p.isPunct("/") {
		return nil, p.errAt(p.peek(), "a mask needs 'net'")
	}
	n := hostNode{qual: q.proto, dir: dirOrDefault(q.dir), v6: true, addr: a.As16(), vlans: p.vlans}
	for i := 0; i < 16; i++ {
		switch {
		case bits >= 8*(i+1):
			n.mask[i] = 0xff
		case bits > 8*i:
			n.mask[i] = byte(0xff << (8 - (bits - 8*i)))
		}
		if n.addr[i]&^n.mask[i] != 0 {
			return nil, p.errAt(v, "non-network bits set in %q", shorten(strings.TrimSpace(p.expr[v.col-1:p.peekEnd()])))
		}
	}
	return n, nil
}

func prefixMask(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return 0xffffffff << (32 - bits)
}

func put32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}
