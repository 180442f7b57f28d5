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

	// Conditional jumps reach 255 instructions; a longer one goes through ja, which
	// reaches 2^32. Splitting lengthens other jumps, so repeat until none is too long.
	for {
		split := false
		for i := 0; i < len(e.insns) && !split; i++ {
			p := e.insns[i]
			if !isCond(p) {
				continue
			}
			if e.labels[p.jt]-(i+1) <= 255 && e.labels[p.jf]-(i+1) <= 255 {
				continue
			}
			// jcond -> +0 (ja T) / +1 (ja F)
			t, f := e.newLabel(), e.newLabel()
			tramp := []pinsn{{raw: stmt(clsJMP|jJA, 0), jt: p.jt, jf: -1}, {raw: stmt(clsJMP|jJA, 0), jt: p.jf, jf: -1}}
			e.insns[i].jt, e.insns[i].jf = t, f
			rest := append(tramp, e.insns[i+1:]...)
			e.insns = append(e.insns[:i+1], rest...)
			for l, at := range e.labels {
				if at > i {
					e.labels[l] = at + 2
				}
			}
			e.labels[t], e.labels[f] = i+1, i+2
			split = true
		}
		if !split {
			break
		}
	}

	out := make([]bpf.RawInstruction, len(e.insns))
	for i, p := range e.insns {
		out[i] = p.raw
		switch {
		case isJA(p):
			out[i].K = uint32(e.labels[p.jt] - (i + 1))
		case isCond(p):
			out[i].Jt = uint8(e.labels[p.jt] - (i + 1))
			out[i].Jf = uint8(e.labels[p.jf] - (i + 1))
		}
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
// goes anyway.
func (e *emitter) dropJumpsToNext() {
	for {
		remove := make([]bool, len(e.insns))
		for i, p := range e.insns {
			remove[i] = isJA(p) && e.labels[p.jt] == i+1
		}
		if !e.drop(remove) {
			return
		}
	}
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

// fact is what a path knows of a packet load: its value, or values it is not.
type fact struct {
	eq bool
	v  uint32
	ne []uint32
}

type knowledge map[regValue]fact

func (k knowledge) with(l regValue, f fact) knowledge {
	out := make(knowledge, len(k)+1)
	for key, v := range k {
		out[key] = v
	}
	if old, ok := out[l]; ok && !f.eq && !old.eq {
		f.ne = append(append([]uint32(nil), old.ne...), f.ne...)
	} else if ok && old.eq {
		return out // equality already says more
	}
	out[l] = f
	return out
}

// meetKnowledge keeps what both paths know.
func meetKnowledge(a, b knowledge, aReached bool) knowledge {
	if !aReached {
		return b
	}
	out := knowledge{}
	for l, fa := range a {
		fb, ok := b[l]
		if !ok {
			continue
		}
		switch {
		case fa.eq && fb.eq && fa.v == fb.v:
			out[l] = fa
		case !fa.eq && !fb.eq:
			var both []uint32
			for _, x := range fa.ne {
				for _, y := range fb.ne {
					if x == y {
						both = append(both, x)
						break
					}
				}
			}
			if len(both) > 0 {
				out[l] = fact{ne: both}
			}
		}
	}
	return out
}

// outcome is a conditional jump's result on a load the path knows, if it is decided.
func outcome(f fact, op uint16, k uint32) (taken, decided bool) {
	if f.eq {
		switch op & 0xf0 {
		case jJEQ:
			return f.v == k, true
		case jJGT:
			return f.v > k, true
		case jJGE:
			return f.v >= k, true
		case jJSET:
			return f.v&k != 0, true
		}
		return false, false
	}
	if op&0xf0 == jJEQ {
		for _, v := range f.ne {
			if v == k {
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
	known[0] = knowledge{}
	at := func(l int) int { return e.labels[l] }
	flow := func(to int, k knowledge, a regValue) {
		if !reached[to] {
			known[to], aHolds[to], reached[to] = k, a, true
			return
		}
		known[to] = meetKnowledge(known[to], k, true)
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
			f, ok := k[regValue{known: true, op: p.raw.Op, k: p.raw.K}]
			if !ok {
				return label
			}
			j := e.insns[t+1]
			taken, decided := outcome(f, j.raw.Op, j.raw.K)
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
					kf = k.with(a, fact{ne: []uint32{p.raw.K}})
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
