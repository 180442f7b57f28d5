package filter

import "golang.org/x/net/bpf"

// Layout turns the code tree into a straight program with forward jumps: each test
// jumps to the label of what follows when it is true and when it is false.

const (
	labelAccept = 0
	labelReject = 1
)

type pinsn struct {
	raw    bpf.RawInstruction
	jt, jf int // labels of a conditional jump; jt alone for ja; -1 for none
}

type emitter struct {
	insns  []pinsn
	labels []int // label -> index of the instruction it marks
}

func (e *emitter) newLabel() int {
	e.labels = append(e.labels, -1)
	return len(e.labels) - 1
}

func (e *emitter) place(l int) { e.labels[l] = len(e.insns) }

func (e *emitter) emit(c code, t, f int) {
	switch c := c.(type) {
	case cConst:
		target := f
		if c {
			target = t
		}
		e.insns = append(e.insns, pinsn{raw: stmt(clsJMP|jJA, 0), jt: target, jf: -1})
	case test:
		for _, s := range c.stmts {
			e.insns = append(e.insns, pinsn{raw: s, jt: -1, jf: -1})
		}
		e.insns = append(e.insns, pinsn{raw: stmt(clsJMP|c.jop, c.k), jt: t, jf: f})
	case cAnd:
		m := e.newLabel()
		e.emit(c.l, m, f)
		e.place(m)
		e.emit(c.r, t, f)
	case cOr:
		m := e.newLabel()
		e.emit(c.l, t, m)
		e.place(m)
		e.emit(c.r, t, f)
	case cNot:
		e.emit(c.x, f, t)
	}
}

func isJA(p pinsn) bool { return p.raw.Op == clsJMP|jJA && p.jt >= 0 }
func isCond(p pinsn) bool {
	return p.raw.Op&0x07 == clsJMP && p.raw.Op&0xf0 != jJA && p.jt >= 0
}

func layout(c code) []bpf.RawInstruction {
	e := &emitter{}
	e.newLabel() // accept
	e.newLabel() // reject
	e.emit(c, labelAccept, labelReject)
	e.place(labelAccept)
	e.insns = append(e.insns, pinsn{raw: stmt(clsRET|retK, acceptLen), jt: -1, jf: -1})
	e.place(labelReject)
	e.insns = append(e.insns, pinsn{raw: stmt(clsRET|retK, 0), jt: -1, jf: -1})

	e.threadJumps()
	e.drop(e.unreachable())
	e.drop(e.redundantLoads())
	e.dropJumpsToNext()

	return e.place255()
}

// place255 writes the program out. Conditional jumps reach 255 instructions; a longer
// one goes through ja, which reaches 2^32: "jcond +0 +1; ja T; ja F". Each split adds
// two instructions after its jump, lengthening the jumps over it, so whether a jump
// must be split depends on the splits between it and its targets, all later in the
// program: deciding from the last jump to the first settles each once, with a
// Fenwick tree counting the splits in a span.
func (e *emitter) place255() []bpf.RawInstruction {
	n := len(e.insns)
	split := make([]bool, n)
	tree := make([]int, n+1)          // Fenwick tree over split, 1-based
	splitsBefore := func(x int) int { // splits at indices < x
		s := 0
		for ; x > 0; x -= x & -x {
			s += tree[x]
		}
		return s
	}
	for i := n - 1; i >= 0; i-- {
		p := e.insns[i]
		if !isCond(p) {
			continue
		}
		far := func(label int) bool {
			at := e.labels[label]
			return at-(i+1)+2*(splitsBefore(at)-splitsBefore(i+1)) > 255
		}
		if far(p.jt) || far(p.jf) {
			split[i] = true
			for x := i + 1; x <= n; x += x & -x {
				tree[x]++
			}
		}
	}
	pos := make([]int, n+1) // where each instruction ends up
	for i, extra := 0, 0; i <= n; i++ {
		pos[i] = i + extra
		if i < n && split[i] {
			extra += 2
		}
	}
	out := make([]bpf.RawInstruction, 0, pos[n])
	to := func(label, from int) int { return pos[e.labels[label]] - (from + 1) }
	for i, p := range e.insns {
		r := p.raw
		switch {
		case isJA(p):
			r.K = uint32(to(p.jt, pos[i]))
		case isCond(p) && split[i]:
			r.Jt, r.Jf = 0, 1
			out = append(out, r)
			r = stmt(clsJMP|jJA, uint32(to(p.jt, pos[i]+1)))
			out = append(out, r)
			r = stmt(clsJMP|jJA, uint32(to(p.jf, pos[i]+2)))
		case isCond(p):
			r.Jt, r.Jf = uint8(to(p.jt, pos[i])), uint8(to(p.jf, pos[i]))
		}
		out = append(out, r)
	}
	return out
}

// drop removes the instructions marked; a label on one moves on to the next kept
// instruction.
func (e *emitter) drop(remove []bool) bool {
	newIndex := make([]int, len(e.insns)+1)
	var out []pinsn
	for i, p := range e.insns {
		newIndex[i] = len(out)
		if !remove[i] {
			out = append(out, p)
		}
	}
	newIndex[len(e.insns)] = len(out)
	if len(out) == len(e.insns) {
		return false
	}
	for l, at := range e.labels {
		if at >= 0 {
			e.labels[l] = newIndex[at]
		}
	}
	e.insns = out
	return true
}

// dropJumpsToNext removes jumps to the very next instruction, which is where control
// goes anyway, including those that only jump over jumps removed. Jumps go forward,
// so deciding from the last instruction to the first sees what follows each settled.
func (e *emitter) dropJumpsToNext() {
	n := len(e.insns)
	remove := make([]bool, n)
	kept := make([]int, n+1) // kept[x]: the first instruction kept at or after x
	kept[n] = n
	for i := n - 1; i >= 0; i-- {
		p := e.insns[i]
		remove[i] = isJA(p) && kept[e.labels[p.jt]] == kept[i+1]
		kept[i] = i
		if remove[i] {
			kept[i] = kept[i+1]
		}
	}
	e.drop(remove)
}

// regValue is what a register is known to hold: the result of one instruction
// (a load at a constant offset, an immediate, the length), or nothing known.
type regValue struct {
	known bool
	op    uint16
	k     uint32
}

type regState struct {
	a, x    regValue
	reached bool
}

func meet(s, t regState) regState {
	if !s.reached {
		return t
	}
	if !t.reached {
		return s
	}
	if s.a != t.a {
		s.a = regValue{}
	}
	if s.x != t.x {
		s.x = regValue{}
	}
	return s
}

// redundantLoads marks the loads whose value the register already holds on every
// path to them, as libpcap's optimizer removes them ("ldh [12]" once per protocol
// test, "ldxb 4*([14]&0xf)" once per port). A load that already succeeded cannot
// fail the second time, so removing it changes no decision. Jumps only go forward,
// so one pass in order sees every predecessor first.
func (e *emitter) redundantLoads() []bool {
	in := make([]regState, len(e.insns)+1)
	in[0].reached = true
	at := func(l int) int { return e.labels[l] }
	remove := make([]bool, len(e.insns))
	for i, p := range e.insns {
		st := in[i]
		if !st.reached {
			continue
		}
		op := p.raw.Op
		v := regValue{known: true, op: op, k: p.raw.K}
		switch cls, mode := op&0x07, op&0xe0; {
		case cls == clsLD && (mode == mABS || mode == mIMM || mode == mLEN):
			remove[i] = st.a == v
			st.a = v
		case cls == clsLD:
			st.a = regValue{}
		case cls == clsLDX && (mode == mMSH || mode == mIMM || mode == mLEN):
			remove[i] = st.x == v
			st.x = v
		case cls == clsLDX:
			st.x = regValue{}
		case cls == clsALU:
			st.a = regValue{}
		case cls == clsMISC && op&0xf8 == miscTXA:
			st.a = regValue{}
		case cls == clsMISC:
			st.x = regValue{}
		}
		switch {
		case isJA(p):
			in[at(p.jt)] = meet(in[at(p.jt)], st)
			continue
		case isCond(p):
			in[at(p.jt)] = meet(in[at(p.jt)], st)
			in[at(p.jf)] = meet(in[at(p.jf)], st)
			continue
		case op&0x07 == clsRET:
			continue
		}
		in[i+1] = meet(in[i+1], st)
	}
	return remove
}

// unreachable marks the instructions no path reaches.
func (e *emitter) unreachable() []bool {
	seen := make([]bool, len(e.insns)+1)
	seen[0] = true
	for i, p := range e.insns {
		if !seen[i] {
			continue
		}
		switch {
		case isJA(p):
			seen[e.labels[p.jt]] = true
		case isCond(p):
			seen[e.labels[p.jt]] = true
			seen[e.labels[p.jf]] = true
		case p.raw.Op&0x07 != clsRET:
			seen[i+1] = true
		}
	}
	remove := make([]bool, len(e.insns))
	for i := range remove {
		remove[i] = !seen[i]
	}
	return remove
}

// knowledge is what a path knows of packet loads: facts, sorted by load, each that
// the load equals a value or that it differs from one. A load has one "equals" fact
// or any number of "differs" facts. A knowledge is never changed once made, so
// paths share it; it holds at most maxFacts facts, the ones learnt first (a path
// that knows less only threads fewer jumps), so that copying it costs little.
type knowledge []fact

type fact struct {
	load regValue
	eq   bool
	v    uint32
}

const maxFacts = 32

func loadLess(a, b regValue) bool { return a.op < b.op || a.op == b.op && a.k < b.k }

// facts returns the index of load's first fact and the facts about it.
func (k knowledge) facts(l regValue) (int, knowledge) {
	lo, hi := 0, len(k)
	for lo < hi {
		m := (lo + hi) / 2
		if loadLess(k[m].load, l) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	end := lo
	for end < len(k) && k[end].load == l {
		end++
	}
	return lo, k[lo:end:end]
}

// with adds a fact about l. An equality already known says more than anything
// added; a new equality replaces what was known to differ.
func (k knowledge) with(l regValue, f fact) knowledge {
	f.load = l
	at, old := k.facts(l)
	if len(old) > 0 && old[0].eq {
		return k
	}
	if !f.eq {
		for _, o := range old {
			if o.v == f.v {
				return k
			}
		}
		at += len(old)
		old = nil
	}
	if len(k)-len(old)+1 > maxFacts {
		return k
	}
	out := make(knowledge, 0, len(k)-len(old)+1)
	out = append(append(append(out, k[:at]...), f), k[at+len(old):]...)
	return out
}

// meetKnowledge keeps what both paths know: the same equality, or the values both
// know a load differs from.
func meetKnowledge(a, b knowledge) knowledge {
	var out knowledge
	for i := 0; i < len(a); {
		_, fa := a.facts(a[i].load)
		i += len(fa)
		_, fb := b.facts(fa[0].load)
		if len(fb) == 0 || fa[0].eq != fb[0].eq {
			continue
		}
		if fa[0].eq {
			if fa[0].v == fb[0].v {
				out = append(out, fa[0])
			}
			continue
		}
		for _, x := range fa {
			for _, y := range fb {
				if x.v == y.v {
					out = append(out, x)
					break
				}
			}
		}
	}
	return out
}

// outcome is a conditional jump's result on a load the path knows facts about, if
// they decide it.
func outcome(fs knowledge, op uint16, k uint32) (taken, decided bool) {
	if fs[0].eq {
		v := fs[0].v
		switch op & 0xf0 {
		case jJEQ:
			return v == k, true
		case jJGT:
			return v > k, true
		case jJGE:
			return v >= k, true
		case jJSET:
			return v&k != 0, true
		}
		return false, false
	}
	if op&0xf0 == jJEQ {
		for _, f := range fs {
			if f.v == k {
				return false, true
			}
		}
	}
	return false, false
}

// threadJumps sends a jump straight past a test whose result the path already knows
// (libpcap's optimizer does the same): after "ethertype is IPv6" failed at the next
// header, the "ethertype is IPv4" test that follows cannot pass, so the jump goes to
// where its failure leads. A packet's bytes do not change, so what a comparison of a
// load with a constant found holds for the rest of the path. The tests skipped only
// load what an earlier instruction of the path loaded already, so no load that could
// run past the packet is skipped. It runs before redundantLoads, while every test
// still loads its own operands.
func (e *emitter) threadJumps() {
	n := len(e.insns)
	known := make([]knowledge, n+1)
	reached := make([]bool, n+1)
	aHolds := make([]regValue, n+1) // what A holds on entry, when every path agrees
	reached[0] = true
	at := func(l int) int { return e.labels[l] }
	flow := func(to int, k knowledge, a regValue) {
		if !reached[to] {
			known[to], aHolds[to], reached[to] = k, a, true
			return
		}
		known[to] = meetKnowledge(known[to], k)
		if aHolds[to] != a {
			aHolds[to] = regValue{}
		}
	}
	// resolve follows a jump from a path that knows k past every test it decides.
	resolve := func(label int, k knowledge) int {
		for range 64 {
			t := at(label)
			if t >= n {
				return label
			}
			p := e.insns[t]
			if isJA(p) {
				label = p.jt
				continue
			}
			if t+1 >= n || !isLoadABS(p.raw) || !isCond(e.insns[t+1]) || e.insns[t+1].raw.Op&srcX != 0 {
				return label
			}
			_, fs := k.facts(regValue{known: true, op: p.raw.Op, k: p.raw.K})
			if len(fs) == 0 {
				return label
			}
			j := e.insns[t+1]
			taken, decided := outcome(fs, j.raw.Op, j.raw.K)
			if !decided {
				return label
			}
			if taken {
				label = j.jt
			} else {
				label = j.jf
			}
		}
		return label
	}
	for i := 0; i < n; i++ {
		if !reached[i] {
			continue
		}
		p := &e.insns[i]
		k, a := known[i], aHolds[i]
		switch cls := p.raw.Op & 0x07; {
		case isLoadABS(p.raw):
			a = regValue{known: true, op: p.raw.Op, k: p.raw.K}
		case cls == clsLD || cls == clsALU || cls == clsMISC && p.raw.Op&0xf8 == miscTXA:
			a = regValue{}
		}
		switch {
		case isJA(*p):
			p.jt = resolve(p.jt, k)
			flow(at(p.jt), k, a)
		case isCond(*p):
			kt, kf := k, k
			if a.known && p.raw.Op&srcX == 0 {
				if p.raw.Op&0xf0 == jJEQ {
					kt = k.with(a, fact{eq: true, v: p.raw.K})
					kf = k.with(a, fact{v: p.raw.K})
				}
			}
			p.jt = resolve(p.jt, kt)
			p.jf = resolve(p.jf, kf)
			flow(at(p.jt), kt, a)
			flow(at(p.jf), kf, a)
		case p.raw.Op&0x07 == clsRET:
		default:
			flow(i+1, k, a)
		}
	}
}

func isLoadABS(r bpf.RawInstruction) bool {
	return r.Op&0x07 == clsLD && r.Op&0xe0 == mABS
}
