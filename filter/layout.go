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

	// A jump to the very next instruction is dropped; a label on it moves on to the
	// next instruction, which is where it led anyway.
	for {
		keep := make([]bool, len(e.insns))
		dropped := false
		for i, p := range e.insns {
			keep[i] = !(isJA(p) && e.labels[p.jt] == i+1)
			dropped = dropped || !keep[i]
		}
		if !dropped {
			break
		}
		newIndex := make([]int, len(e.insns)+1)
		var out []pinsn
		for i, p := range e.insns {
			newIndex[i] = len(out)
			if keep[i] {
				out = append(out, p)
			}
		}
		newIndex[len(e.insns)] = len(out)
		for l, at := range e.labels {
			e.labels[l] = newIndex[at]
		}
		e.insns = out
	}

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
