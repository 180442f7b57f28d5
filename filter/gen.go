package filter

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Classic BPF opcodes (linux/filter.h).
const (
	clsLD, clsLDX, clsST, clsSTX, clsALU, clsJMP, clsRET, clsMISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07

	szW, szH, szB = 0x00, 0x08, 0x10

	mIMM, mABS, mIND, mMEM, mLEN, mMSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xa0

	aADD, aSUB, aMUL, aDIV, aOR, aAND, aLSH, aRSH, aNEG, aMOD, aXOR = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0

	jJA, jJEQ, jJGT, jJGE, jJSET = 0x00, 0x10, 0x20, 0x30, 0x40

	srcK, srcX = 0x00, 0x08

	retK, retA = 0x00, 0x10

	miscTAX, miscTXA = 0x00, 0x80
)

// acceptLen is what a matching program returns, as libpcap's do.
const acceptLen = 262144

var sizeCode = map[int]uint16{1: szB, 2: szH, 4: szW}

// The code tree: the expression lowered for one link type into tests (straight-line
// statements ending in a conditional jump) joined by and, or and not.
type code interface{ isCode() }

type test struct {
	stmts []bpf.RawInstruction
	jop   uint16 // jJEQ, jJGT, jJGE or jJSET, with srcK or srcX
	k     uint32
}
type cAnd struct{ l, r code }
type cOr struct{ l, r code }
type cNot struct{ x code }
type cConst bool

func (test) isCode()   {}
func (cAnd) isCode()   {}
func (cOr) isCode()    {}
func (cNot) isCode()   {}
func (cConst) isCode() {}

// and, or and not fold constants only where libpcap's result cannot change: a
// constant on the left decides before anything is loaded, a neutral constant on the
// right changes nothing. A load that runs past the packet rejects it outright, so
// "x and false" must still evaluate x.
func and(l, r code) code {
	if c, ok := l.(cConst); ok {
		if !c {
			return c
		}
		return r
	}
	if c, ok := r.(cConst); ok && bool(c) {
		return l
	}
	return cAnd{l, r}
}

func or(l, r code) code {
	if c, ok := l.(cConst); ok {
		if c {
			return c
		}
		return r
	}
	if c, ok := r.(cConst); ok && !bool(c) {
		return l
	}
	return cOr{l, r}
}

func not(x code) code {
	if c, ok := x.(cConst); ok {
		return !c
	}
	if n, ok := x.(cNot); ok {
		return n.x
	}
	return cNot{x}
}

func stmt(op uint16, k uint32) bpf.RawInstruction { return bpf.RawInstruction{Op: op, K: k} }

// ld loads size bytes at off into A.
func ld(size int, off uint32) bpf.RawInstruction {
	return stmt(clsLD|sizeCode[size]|mABS, off)
}

// cmp is "the size bytes at off, masked, equal v". A zero mask compares nothing and
// loads nothing, as after libpcap's optimizer.
func cmp(size int, off, mask, v uint32) code {
	if mask == 0 {
		return cConst(v == 0)
	}
	t := test{stmts: []bpf.RawInstruction{ld(size, off)}, jop: jJEQ | srcK, k: v}
	full := uint32(1)<<(8*size) - 1
	if size == 4 {
		full = 0xffffffff
	}
	if mask != full {
		t.stmts = append(t.stmts, stmt(clsALU|aAND|srcK, mask))
	}
	return t
}

// link describes where a link type puts the network protocol and its header.
type link struct {
	l        Link
	name     string
	typeOff  int    // offset of a 16-bit ethertype, or -1
	nl       uint32 // offset of the network header
	ethernet bool
}

var linkNames = map[uint32]string{0: "BSD loopback (NULL)", 1: "Ethernet", 12: "raw IP", 14: "raw IP", 101: "raw IP", 108: "OpenBSD loopback (LOOP)", 113: "Linux cooked (SLL)", 228: "raw IPv4", 229: "raw IPv6", 276: "Linux cooked v2 (SLL2)"}

func newLink(l Link) (*link, error) {
	k := &link{l: l, name: linkNames[l.Type], typeOff: -1}
	switch l.Type {
	case 1:
		k.typeOff, k.nl, k.ethernet = 12, 14, true
	case 113:
		k.typeOff, k.nl = 14, 16
	case 276:
		k.typeOff, k.nl = 0, 20
	case 0, 108:
		k.nl = 4
	case 12, 14, 101, 228, 229:
	default:
		return nil, &Error{Msg: fmt.Sprintf("link type %d is not supported by the filter compiler", l.Type), link: true}
	}
	return k, nil
}

// gen lowers the syntax tree for one link type.
type gen struct {
	lk        *link
	generated int // instructions generated so far, against MaxCode
}

// spend counts the instructions of a primitive's code, and refuses the expression
// once they pass MaxCode, before the layout (whose cost grows with the code) runs.
func (g *gen) spend(c code) (code, error) {
	g.generated += size(c)
	if g.generated > MaxCode {
		return nil, &Error{Msg: fmt.Sprintf("the expression generates more than %d instructions before optimization (a program may have %d)", MaxCode, MaxInsns), tooLarge: true}
	}
	return c, nil
}

// size is the number of instructions layout emits for c before optimizing.
func size(c code) int {
	switch c := c.(type) {
	case test:
		return len(c.stmts) + 1
	case cAnd:
		return size(c.l) + size(c.r)
	case cOr:
		return size(c.l) + size(c.r)
	case cNot:
		return size(c.x)
	}
	return 1 // cConst: a jump
}

func (g *gen) nl(vlans int) uint32 { return g.lk.nl + 4*uint32(vlans) }

func (g *gen) errLink(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...) + " (link type " + fmt.Sprint(g.lk.l.Type) + ", " + g.lk.name + ")", link: true}
}

// BSD address family values for IPv6, as libpcap checks them.
var bsdInet6 = []uint32{30, 24, 28}

func bswap32(v uint32) uint32 { return v>>24 | v>>8&0xff00 | v<<8&0xff0000 | v<<24 }

// linktype tests the link header's protocol field for an ethertype.
func (g *gen) linktype(ethertype uint32, vlans int) code {
	lk := g.lk
	switch lk.l.Type {
	case 1, 113, 276:
		off := uint32(lk.typeOff) + 4*uint32(vlans)
		return test{stmts: []bpf.RawInstruction{ld(2, off)}, jop: jJEQ | srcK, k: ethertype}
	case 12, 14, 101:
		switch ethertype {
		case 0x0800:
			return cmp(1, 0, 0xf0, 0x40)
		case 0x86dd:
			return cmp(1, 0, 0xf0, 0x60)
		}
		return cConst(false)
	case 228:
		return cConst(ethertype == 0x0800)
	case 229:
		return cConst(ethertype == 0x86dd)
	case 0, 108:
		fam := func(v uint32) uint32 {
			if lk.l.Type == 0 && !lk.l.BigEndian {
				return bswap32(v)
			}
			return v
		}
		switch ethertype {
		case 0x0800:
			return cmp(4, 0, 0xffffffff, fam(2))
		case 0x86dd:
			var c code = cConst(false)
			for _, af := range bsdInet6 {
				c = or(c, cmp(4, 0, 0xffffffff, fam(af)))
			}
			return c
		}
		return cConst(false)
	}
	return cConst(false)
}

func (g *gen) ipProto(p uint32, vlans int) code {
	return and(g.linktype(0x0800, vlans), cmp(1, g.nl(vlans)+9, 0xff, p))
}

// ip6Proto matches the next header, or the one after a fragment header, as libpcap.
func (g *gen) ip6Proto(p uint32, vlans int) code {
	nl := g.nl(vlans)
	return and(g.linktype(0x86dd, vlans), or(cmp(1, nl+6, 0xff, p), and(cmp(1, nl+6, 0xff, 44), cmp(1, nl+40, 0xff, p))))
}

var abbrevProto = map[string]uint32{"tcp": 6, "udp": 17, "sctp": 132, "esp": 50, "ah": 51, "pim": 103, "icmp": 1, "igmp": 2, "vrrp": 112, "carp": 112, "icmp6": 58}

// Protocols that libpcap looks for in IPv4 only.
var ipv4Only = map[string]bool{"icmp": true, "igmp": true, "vrrp": true, "carp": true}

func (g *gen) lower(n node) (code, error) {
	switch n := n.(type) {
	case nil:
		return cConst(true), nil
	case andNode:
		return g.lowerPair(n.l, n.r, and)
	case orNode:
		return g.lowerPair(n.l, n.r, or)
	case notNode:
		x, err := g.lower(n.x)
		if err != nil {
			return nil, err
		}
		return not(x), nil
	}
	c, err := g.primitive(n)
	if err != nil {
		return nil, err
	}
	return g.spend(c)
}

func (g *gen) primitive(n node) (code, error) {
	switch n := n.(type) {
	case protoNode:
		return g.proto(n)
	case hostNode:
		return g.host(n), nil
	case etherNode:
		if !g.lk.ethernet {
			return nil, g.errLink("Ethernet addresses need an Ethernet link")
		}
		return g.etherHost(n), nil
	case portNode:
		return g.port(n), nil
	case castNode:
		return g.cast(n)
	case vlanNode:
		if !g.lk.ethernet {
			return nil, g.errLink("no VLAN support")
		}
		off := 12 + 4*uint32(n.vlans)
		tag := or(or(cmp(2, off, 0xffff, 0x8100), cmp(2, off, 0xffff, 0x88a8)), cmp(2, off, 0xffff, 0x9100))
		if n.id >= 0 {
			tag = and(tag, cmp(2, off+2, 0x0fff, uint32(n.id)))
		}
		return tag, nil
	case relNode:
		return g.relation(n)
	}
	return nil, fmt.Errorf("filter: unknown node %T", n)
}

func (g *gen) lowerPair(ln, rn node, join func(l, r code) code) (code, error) {
	l, err := g.lower(ln)
	if err != nil {
		return nil, err
	}
	r, err := g.lower(rn)
	if err != nil {
		return nil, err
	}
	return join(l, r), nil
}

func (g *gen) proto(n protoNode) (code, error) {
	if n.name != "" {
		switch n.name {
		case "ip":
			return g.linktype(0x0800, n.vlans), nil
		case "ip6":
			return g.linktype(0x86dd, n.vlans), nil
		case "arp":
			return g.linktype(0x0806, n.vlans), nil
		case "rarp":
			return g.linktype(0x8035, n.vlans), nil
		}
		p := abbrevProto[n.name]
		switch {
		case n.name == "icmp6":
			return g.ip6Proto(p, n.vlans), nil
		case ipv4Only[n.name]:
			return g.ipProto(p, n.vlans), nil
		}
		return or(g.ipProto(p, n.vlans), g.ip6Proto(p, n.vlans)), nil
	}
	switch n.qual {
	case "ip":
		return g.ipProto(n.num, n.vlans), nil
	case "ip6":
		return g.ip6Proto(n.num, n.vlans), nil
	case "ether":
		return g.linktype(n.num, n.vlans), nil
	}
	return or(g.ipProto(n.num, n.vlans), g.ip6Proto(n.num, n.vlans)), nil
}

// byDir applies a per-direction test for src, dst, "src or dst" and "src and dst".
func byDir(dir string, f func(src bool) code) code {
	switch dir {
	case "src":
		return f(true)
	case "dst":
		return f(false)
	case "and":
		return and(f(true), f(false))
	}
	return or(f(true), f(false))
}

func word(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (g *gen) host(n hostNode) code {
	nl := g.nl(n.vlans)
	if n.v6 {
		return byDir(n.dir, func(src bool) code {
			off := nl + 24
			if src {
				off = nl + 8
			}
			c := g.linktype(0x86dd, n.vlans)
			for i := 0; i < 4; i++ {
				c = and(c, cmp(4, off+4*uint32(i), word(n.mask[4*i:]), word(n.addr[4*i:])))
			}
			return c
		})
	}
	addr, mask := word(n.addr[:]), word(n.mask[:])
	ipv4 := func(src bool) code {
		off := nl + 16
		if src {
			off = nl + 12
		}
		return and(g.linktype(0x0800, n.vlans), cmp(4, off, mask, addr))
	}
	arp := func(ethertype uint32) func(bool) code {
		return func(src bool) code {
			off := nl + 24
			if src {
				off = nl + 14
			}
			return and(g.linktype(ethertype, n.vlans), cmp(4, off, mask, addr))
		}
	}
	switch n.qual {
	case "ip":
		return byDir(n.dir, ipv4)
	case "arp":
		return byDir(n.dir, arp(0x0806))
	case "rarp":
		return byDir(n.dir, arp(0x8035))
	}
	return or(or(byDir(n.dir, ipv4), byDir(n.dir, arp(0x0806))), byDir(n.dir, arp(0x8035)))
}

func (g *gen) etherHost(n etherNode) code {
	return byDir(n.dir, func(src bool) code {
		off := uint32(0)
		if src {
			off = 6
		}
		lo := word(n.mac[2:])
		hi := uint32(n.mac[0])<<8 | uint32(n.mac[1])
		return and(cmp(4, off+2, 0xffffffff, lo), cmp(2, off, 0xffff, hi))
	})
}

func (g *gen) cast(n castNode) (code, error) {
	nl := g.nl(n.vlans)
	switch n.qual {
	case "ether":
		if !g.lk.ethernet {
			return nil, g.errLink("broadcast and multicast need an Ethernet link")
		}
		if n.broadcast {
			return and(cmp(4, 2, 0xffffffff, 0xffffffff), cmp(2, 0, 0xffff, 0xffff)), nil
		}
		return test{stmts: []bpf.RawInstruction{ld(1, 0)}, jop: jJSET | srcK, k: 1}, nil
	case "ip":
		return and(g.linktype(0x0800, n.vlans), test{stmts: []bpf.RawInstruction{ld(1, nl+16)}, jop: jJGE | srcK, k: 0xe0}), nil
	}
	return and(g.linktype(0x86dd, n.vlans), cmp(1, nl+24, 0xff, 0xff)), nil
}

// portTest checks a port (or range) at a fixed offset, or at X plus an offset after
// loading X with the IPv4 header length, as libpcap does for each comparison.
func portTest(lo, hi uint32, pre []bpf.RawInstruction, load bpf.RawInstruction) code {
	stmts := func() []bpf.RawInstruction {
		return append(append([]bpf.RawInstruction(nil), pre...), load)
	}
	if lo == hi {
		return test{stmts: stmts(), jop: jJEQ | srcK, k: lo}
	}
	return and(test{stmts: stmts(), jop: jJGE | srcK, k: lo}, not(test{stmts: stmts(), jop: jJGT | srcK, k: hi}))
}

func (g *gen) port(n portNode) code {
	nl := g.nl(n.vlans)
	protos := []uint32{132, 6, 17}
	if n.l4 != "" {
		protos = []uint32{abbrevProto[n.l4]}
	}
	var v6 code = cConst(false)
	for _, p := range protos {
		ports := byDir(n.dir, func(src bool) code {
			off := nl + 42
			if src {
				off = nl + 40
			}
			return portTest(n.lo, n.hi, nil, ld(2, off))
		})
		v6 = or(v6, and(cmp(1, nl+6, 0xff, p), ports))
	}
	v6 = and(g.linktype(0x86dd, n.vlans), v6)
	var v4 code = cConst(false)
	msh := []bpf.RawInstruction{stmt(clsLDX|szB|mMSH, nl)}
	for _, p := range protos {
		ports := byDir(n.dir, func(src bool) code {
			off := nl + 2
			if src {
				off = nl
			}
			return portTest(n.lo, n.hi, msh, stmt(clsLD|szH|mIND, off))
		})
		v4 = or(v4, and(and(cmp(1, nl+9, 0xff, p), g.notFragment(nl)), ports))
	}
	v4 = and(g.linktype(0x0800, n.vlans), v4)
	return or(v6, v4)
}

func (g *gen) notFragment(nl uint32) code {
	return not(test{stmts: []bpf.RawInstruction{ld(2, nl+6)}, jop: jJSET | srcK, k: 0x1fff})
}

// Transport protocols whose header follows a variable-length IPv4 header.
var transportLoad = map[string]bool{"tcp": true, "udp": true, "sctp": true, "icmp": true, "igmp": true, "pim": true, "vrrp": true, "carp": true}

// loadCond is what must hold before proto[...] can be read.
func (g *gen) loadCond(l loadArith) code {
	nl := g.nl(l.vlans)
	switch l.proto {
	case "ether":
		return cConst(true)
	case "ip":
		return g.linktype(0x0800, l.vlans)
	case "ip6":
		return g.linktype(0x86dd, l.vlans)
	case "arp":
		return g.linktype(0x0806, l.vlans)
	case "rarp":
		return g.linktype(0x8035, l.vlans)
	case "icmp6":
		return and(g.linktype(0x86dd, l.vlans), cmp(1, nl+6, 0xff, 58))
	}
	return and(and(g.linktype(0x0800, l.vlans), cmp(1, nl+9, 0xff, abbrevProto[l.proto])), g.notFragment(nl))
}

func (g *gen) conds(a arith) code {
	switch a := a.(type) {
	case loadArith:
		return and(g.conds(a.idx), g.loadCond(a))
	case binArith:
		// libpcap keeps only the left operand's checks in arithmetic ("2 * ip[9]"
		// does not check that the packet is IP); relations keep both sides'.
		return g.conds(a.l)
	case negArith:
		return g.conds(a.x)
	}
	return cConst(true)
}

var aluCode = map[string]uint16{"+": aADD, "-": aSUB, "*": aMUL, "/": aDIV, "%": aMOD, "&": aAND, "|": aOR, "^": aXOR, "<<": aLSH, ">>": aRSH}

// arith emits code that leaves a's value in A, using scratch slots from slot up.
func (g *gen) arith(a arith, slot int, out []bpf.RawInstruction) ([]bpf.RawInstruction, error) {
	if slot >= 16 {
		return nil, &Error{Msg: "expression too complex: it needs more than 16 scratch memory slots"}
	}
	switch a := a.(type) {
	case numArith:
		return append(out, stmt(clsLD|mIMM, a.v)), nil
	case lenArith:
		return append(out, stmt(clsLD|szW|mLEN, 0)), nil
	case negArith:
		out, err := g.arith(a.x, slot, out)
		if err != nil {
			return nil, err
		}
		return append(out, stmt(clsALU|aNEG, 0)), nil
	case binArith:
		op := aluCode[a.op]
		// libpcap refuses a divisor or shift whose code starts by loading a constant
		// 0 (or more than 31), even when that constant is an offset ("x / tcp[0]").
		if k, ok := leadingConst(a.r); ok {
			switch {
			case op == aDIV && k == 0:
				return nil, &Error{Msg: "division by zero (libpcap also refuses a divisor that begins with the constant 0, like tcp[0])"}
			case op == aMOD && k == 0:
				return nil, &Error{Msg: "modulus by zero (libpcap also refuses a divisor that begins with the constant 0, like tcp[0])"}
			case (op == aLSH || op == aRSH) && k > 31:
				return nil, &Error{Msg: "shift by more than 31 bits"}
			}
		}
		if k, ok := a.r.(numArith); ok {
			out, err := g.arith(a.l, slot, out)
			if err != nil {
				return nil, err
			}
			return append(out, stmt(clsALU|op|srcK, k.v)), nil
		}
		out, err := g.arith(a.r, slot, out)
		if err != nil {
			return nil, err
		}
		out = append(out, stmt(clsST, uint32(slot)))
		if out, err = g.arith(a.l, slot+1, out); err != nil {
			return nil, err
		}
		return append(out, stmt(clsLDX|mMEM, uint32(slot)), stmt(clsALU|op|srcX, 0)), nil
	case loadArith:
		size := sizeCode[a.size]
		nl := g.nl(a.vlans)
		base := nl
		switch a.proto {
		case "ether":
			base = 0
		case "icmp6":
			base = nl + 40
		}
		transport := transportLoad[a.proto]
		if k, ok := a.idx.(numArith); ok {
			if transport {
				return append(out, stmt(clsLDX|szB|mMSH, nl), stmt(clsLD|size|mIND, nl+k.v)), nil
			}
			return append(out, stmt(clsLD|size|mABS, base+k.v)), nil
		}
		out, err := g.arith(a.idx, slot, out)
		if err != nil {
			return nil, err
		}
		if transport {
			out = append(out, stmt(clsST, uint32(slot)), stmt(clsLDX|szB|mMSH, nl), stmt(clsLD|mMEM, uint32(slot)), stmt(clsALU|aADD|srcX, 0))
		}
		return append(out, stmt(clsMISC|miscTAX, 0), stmt(clsLD|size|mIND, base)), nil
	}
	return nil, fmt.Errorf("filter: unknown arithmetic %T", a)
}

// leadingConst is the constant libpcap's code for a loads first, if it starts with
// one: a number, or the offset of a load at a constant offset.
func leadingConst(a arith) (uint32, bool) {
	switch a := a.(type) {
	case numArith:
		return a.v, true
	case loadArith:
		return leadingConst(a.idx)
	case binArith:
		return leadingConst(a.l)
	case negArith:
		return leadingConst(a.x)
	}
	return 0, false
}

func (g *gen) relation(n relNode) (code, error) {
	var jop uint16
	negate := false
	switch n.op {
	case "=":
		jop = jJEQ
	case "!=":
		jop, negate = jJEQ, true
	case ">":
		jop = jJGT
	case ">=":
		jop = jJGE
	case "<":
		jop, negate = jJGE, true
	case "<=":
		jop, negate = jJGT, true
	}
	var t test
	var err error
	if k, ok := n.r.(numArith); ok {
		if t.stmts, err = g.arith(n.l, 0, nil); err != nil {
			return nil, err
		}
		t.jop, t.k = jop|srcK, k.v
	} else {
		if t.stmts, err = g.arith(n.r, 0, nil); err != nil {
			return nil, err
		}
		t.stmts = append(t.stmts, stmt(clsST, 0))
		if t.stmts, err = g.arith(n.l, 1, t.stmts); err != nil {
			return nil, err
		}
		t.stmts = append(t.stmts, stmt(clsLDX|mMEM, 0))
		t.jop = jop | srcX
	}
	var c code = t
	if negate {
		c = not(c)
	}
	return and(and(g.conds(n.l), g.conds(n.r)), c), nil
}

// generate lowers and lays out the program for one link type.
func generate(root node, l Link) ([]bpf.RawInstruction, error) {
	lk, err := newLink(l)
	if err != nil {
		return nil, err
	}
	g := &gen{lk: lk}
	c, err := g.lower(root)
	if err != nil {
		return nil, err
	}
	insns := layout(c)
	if len(insns) > MaxInsns {
		return nil, &Error{Msg: fmt.Sprintf("the program has %d instructions, more than classic BPF's %d", len(insns), MaxInsns), tooLarge: true}
	}
	return insns, nil
}
