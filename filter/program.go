package filter

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/net/bpf"
)

// maxInsns is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const maxInsns = 4096

// scratchSlots is the number of 32-bit scratch memory words (BPF_MEMWORDS).
const scratchSlots = 16

// Program is a validated classic BPF program and its interpreter.
type Program struct {
	raw  []bpf.RawInstruction
	code []vmInsn
	mem  bool // uses scratch memory
}

// Raw returns the program's instructions.
func (p *Program) Raw() []bpf.RawInstruction { return p.raw }

// DDD prints the program as tcpdump -ddd does.
func (p *Program) DDD() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", len(p.raw))
	for _, r := range p.raw {
		fmt.Fprintf(&b, "%d %d %d %d\n", r.Op, r.Jt, r.Jf, r.K)
	}
	return b.String()
}

func isDDDSpace(c byte) bool { return c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r' }

// looksLikeDDD says s is a list of numbers only: a program, not an expression. It
// reads s once and allocates nothing, whatever its length.
func looksLikeDDD(s string) bool {
	if !strings.ContainsAny(s, ",\n") {
		return false
	}
	fields := 0
	for i := 0; i < len(s); {
		if isDDDSpace(s[i]) {
			i++
			continue
		}
		var v uint64
		for ; i < len(s) && !isDDDSpace(s[i]); i++ {
			if !isDigit(s[i]) {
				return false
			}
			if v = v*10 + uint64(s[i]-'0'); v > 0xFFFFFFFF {
				return false
			}
		}
		fields++
	}
	return fields >= 5
}

// dddLines calls f with each line of a -ddd text and its index, until f returns
// false: the text split at newlines and commas, empty pieces skipped, each trimmed of
// spaces.
func dddLines(s string, f func(i int, line string) bool) {
	for i := 0; len(s) > 0; {
		end := strings.IndexAny(s, ",\n\r")
		if end < 0 {
			end = len(s)
		}
		piece := s[:end]
		s = s[min(end+1, len(s)):]
		if piece == "" {
			continue
		}
		if !f(i, strings.TrimSpace(piece)) {
			return
		}
		i++
	}
}

// ParseDDD reads a program in the form tcpdump -ddd prints it: the instruction
// count, then "code jt jf k" per instruction, separated by newlines or commas. A
// text longer than MaxLen, or a program longer than MaxInsns, is refused before its
// instructions are read.
func ParseDDD(s string) ([]bpf.RawInstruction, error) {
	if len(s) > MaxLen {
		return nil, fmt.Errorf("%w: %d bytes, more than %d (%w)", ErrProgram, len(s), MaxLen, ErrTooLarge)
	}
	var first string
	lines := 0
	dddLines(s, func(i int, line string) bool {
		if i == 0 {
			first = line
		}
		lines++
		return true
	})
	if lines == 0 {
		return nil, fmt.Errorf("%w: empty", ErrProgram)
	}
	n, err := strconv.Atoi(first)
	if err != nil {
		return nil, fmt.Errorf("%w: first line %q is not an instruction count", ErrProgram, shorten(first))
	}
	if n != lines-1 {
		return nil, fmt.Errorf("%w: count says %d instructions, %d follow", ErrProgram, n, lines-1)
	}
	if n > maxInsns {
		return nil, fmt.Errorf("%w: %d instructions, more than %d (%w)", ErrProgram, n, maxInsns, ErrTooLarge)
	}
	out := make([]bpf.RawInstruction, 0, n)
	dddLines(s, func(i int, line string) bool {
		if i == 0 {
			return true // the count
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			err = fmt.Errorf("%w: instruction %d: %q is not \"code jt jf k\"", ErrProgram, i-1, shorten(line))
			return false
		}
		var v [4]uint64
		for j, bits := range []int{16, 8, 8, 32} {
			var perr error
			if v[j], perr = strconv.ParseUint(f[j], 10, bits); perr != nil {
				if ne, ok := perr.(*strconv.NumError); ok {
					perr = ne.Err // its message would quote the field whole
				}
				err = fmt.Errorf("%w: instruction %d: field %d %q: %w", ErrProgram, i-1, j+1, shorten(f[j]), perr)
				return false
			}
		}
		out = append(out, bpf.RawInstruction{Op: uint16(v[0]), Jt: uint8(v[1]), Jf: uint8(v[2]), K: uint32(v[3])})
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Interpreter opcodes: dense, so that the dispatch switch becomes a jump table.
const (
	opLdW uint8 = iota
	opLdH
	opLdB
	opLdIndW
	opLdIndH
	opLdIndB
	opLdLen
	opLdImm
	opLdMem
	opLdxImm
	opLdxMem
	opLdxLen
	opLdxMsh
	opSt
	opStx
	opAddK
	opSubK
	opMulK
	opDivK
	opModK
	opAndK
	opOrK
	opXorK
	opLshK
	opRshK
	opAddX
	opSubX
	opMulX
	opDivX
	opModX
	opAndX
	opOrX
	opXorX
	opLshX
	opRshX
	opNeg
	opJa
	opJeqK
	opJgtK
	opJgeK
	opJsetK
	opJeqX
	opJgtX
	opJgeX
	opJsetX
	opRetK
	opRetA
	opTax
	opTxa
	// A load followed by a conditional jump on A against a constant, fused so that
	// the pair costs one dispatch: cop is the jump, k2 its constant, jt and jf count
	// from the load.
	opLdWJ
	opLdHJ
	opLdBJ
	opLdIndWJ
	opLdIndHJ
	opLdIndBJ
)

type vmInsn struct {
	op     uint8
	cop    uint8 // fused jump: opJeqK, opJgtK, opJgeK or opJsetK
	jt, jf uint16
	k, k2  uint32
}

var aluOps = map[uint16][2]uint8{
	aADD: {opAddK, opAddX}, aSUB: {opSubK, opSubX}, aMUL: {opMulK, opMulX}, aDIV: {opDivK, opDivX},
	aMOD: {opModK, opModX}, aAND: {opAndK, opAndX}, aOR: {opOrK, opOrX}, aXOR: {opXorK, opXorX},
	aLSH: {opLshK, opLshX}, aRSH: {opRshK, opRshX},
}

var jmpOps = map[uint16][2]uint8{jJEQ: {opJeqK, opJeqX}, jJGT: {opJgtK, opJgtX}, jJGE: {opJgeK, opJgeX}, jJSET: {opJsetK, opJsetX}}

// NewProgram validates a classic BPF program by the rules of the kernel's checker
// and decodes it for the interpreter. Loads at negative offsets (the Linux socket
// filter extensions) are refused: a capture file has no such metadata.
func NewProgram(raw []bpf.RawInstruction) (*Program, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: no instructions", ErrProgram)
	}
	if len(raw) > maxInsns {
		return nil, fmt.Errorf("%w: %d instructions, more than %d (%w)", ErrProgram, len(raw), maxInsns, ErrTooLarge)
	}
	raw = append([]bpf.RawInstruction(nil), raw...)
	p := &Program{raw: raw, code: make([]vmInsn, len(raw))}
	bad := func(i int, why string) error {
		return fmt.Errorf("%w: instruction %d (code %#x k %d): %s", ErrProgram, i, raw[i].Op, raw[i].K, why)
	}
	for i, r := range raw {
		v := vmInsn{jt: uint16(r.Jt), jf: uint16(r.Jf), k: r.K}
		op := r.Op
		switch op & 0x07 {
		case clsLD, clsLDX:
			ldx := op&0x07 == clsLDX
			switch mode, size := op&0xe0, op&0x18; {
			case !ldx && (mode == mABS || mode == mIND) && size != 0x18:
				if r.K >= 0x80000000 {
					return nil, bad(i, "negative offsets (Linux ancillary data) are not supported")
				}
				v.op = map[uint16]uint8{szW: opLdW, szH: opLdH, szB: opLdB}[size]
				if mode == mIND {
					v.op += opLdIndW - opLdW
				}
			case mode == mIMM && size == szW:
				v.op = opLdImm
				if ldx {
					v.op = opLdxImm
				}
			case mode == mMEM && size == szW:
				if r.K >= scratchSlots {
					return nil, bad(i, "scratch memory index out of range")
				}
				p.mem = true
				v.op = opLdMem
				if ldx {
					v.op = opLdxMem
				}
			case mode == mLEN && size == szW:
				v.op = opLdLen
				if ldx {
					v.op = opLdxLen
				}
			case ldx && mode == mMSH && size == szB:
				if r.K >= 0x80000000 {
					return nil, bad(i, "negative offsets (Linux ancillary data) are not supported")
				}
				v.op = opLdxMsh
			default:
				return nil, bad(i, "unknown load")
			}
		case clsST, clsSTX:
			if op&^0x07 != 0 {
				return nil, bad(i, "unknown store")
			}
			if r.K >= scratchSlots {
				return nil, bad(i, "scratch memory index out of range")
			}
			p.mem = true
			v.op = opSt
			if op&0x07 == clsSTX {
				v.op = opStx
			}
		case clsALU:
			if op&0xf0 == aNEG {
				if op != clsALU|aNEG {
					return nil, bad(i, "unknown ALU operation")
				}
				v.op = opNeg
				break
			}
			ops, ok := aluOps[op&0xf0]
			if !ok || op&^0xf8 != clsALU {
				return nil, bad(i, "unknown ALU operation")
			}
			if op&srcX != 0 {
				v.op = ops[1]
			} else {
				v.op = ops[0]
				if (op&0xf0 == aDIV || op&0xf0 == aMOD) && r.K == 0 {
					return nil, bad(i, "division by zero")
				}
				if (op&0xf0 == aLSH || op&0xf0 == aRSH) && r.K >= 32 {
					return nil, bad(i, "shift by 32 or more")
				}
			}
		case clsJMP:
			if op == clsJMP|jJA {
				if uint64(i)+1+uint64(r.K) >= uint64(len(raw)) {
					return nil, bad(i, "jump out of the program")
				}
				v.op = opJa
				break
			}
			ops, ok := jmpOps[op&0xf0]
			if !ok || op&^0xf8 != clsJMP {
				return nil, bad(i, "unknown jump")
			}
			if i+1+int(r.Jt) >= len(raw) || i+1+int(r.Jf) >= len(raw) {
				return nil, bad(i, "jump out of the program")
			}
			v.op = ops[0]
			if op&srcX != 0 {
				v.op = ops[1]
			}
		case clsRET:
			switch op {
			case clsRET | retK:
				v.op = opRetK
			case clsRET | retA:
				v.op = opRetA
			default:
				return nil, bad(i, "unknown return")
			}
		case clsMISC:
			switch op {
			case clsMISC | miscTAX:
				v.op = opTax
			case clsMISC | miscTXA:
				v.op = opTxa
			default:
				return nil, bad(i, "unknown miscellaneous instruction")
			}
		}
		p.code[i] = v
	}
	if last := raw[len(raw)-1].Op; last != clsRET|retK && last != clsRET|retA {
		return nil, fmt.Errorf("%w: the last instruction must return", ErrProgram)
	}
	p.fuse()
	return p, nil
}

// fuse turns a load at a constant or X-relative offset followed by a conditional
// jump against a constant into one instruction, unless something jumps to the jump
// itself (it would then need A from elsewhere). The jump stays in place, unused.
func (p *Program) fuse() {
	target := make([]bool, len(p.code)+1)
	for i, in := range p.code {
		switch {
		case in.op == opJa:
			target[i+1+int(in.k)] = true
		case in.op >= opJeqK && in.op <= opJsetX:
			target[i+1+int(in.jt)] = true
			target[i+1+int(in.jf)] = true
		}
	}
	for i := 0; i+1 < len(p.code); i++ {
		in, next := &p.code[i], p.code[i+1]
		if in.op > opLdIndB || target[i+1] || next.op < opJeqK || next.op > opJsetK {
			continue
		}
		in.op += opLdWJ - opLdW
		in.cop, in.k2 = next.op, next.k
		in.jt, in.jf = next.jt+1, next.jf+1
	}
}

// Match runs the program on a packet: pkt is the captured bytes, wire its length on
// the wire (what "len" sees). A load past the end of pkt rejects the packet, as does
// a division by zero; a shift by 32 or more gives 0.
func (p *Program) Match(pkt []byte, wire int) bool {
	var a, x uint32
	var m [scratchSlots]uint32
	n := uint64(len(pkt))
	code := p.code
	for pc := 0; pc < len(code); pc++ {
		in := &code[pc]
		switch in.op {
		case opLdW:
			k := uint64(in.k)
			if k+4 > n {
				return false
			}
			a = uint32(pkt[k])<<24 | uint32(pkt[k+1])<<16 | uint32(pkt[k+2])<<8 | uint32(pkt[k+3])
		case opLdH:
			k := uint64(in.k)
			if k+2 > n {
				return false
			}
			a = uint32(pkt[k])<<8 | uint32(pkt[k+1])
		case opLdB:
			k := uint64(in.k)
			if k >= n {
				return false
			}
			a = uint32(pkt[k])
		case opLdIndW:
			k := uint64(x) + uint64(in.k)
			if k+4 > n {
				return false
			}
			a = uint32(pkt[k])<<24 | uint32(pkt[k+1])<<16 | uint32(pkt[k+2])<<8 | uint32(pkt[k+3])
		case opLdIndH:
			k := uint64(x) + uint64(in.k)
			if k+2 > n {
				return false
			}
			a = uint32(pkt[k])<<8 | uint32(pkt[k+1])
		case opLdIndB:
			k := uint64(x) + uint64(in.k)
			if k >= n {
				return false
			}
			a = uint32(pkt[k])
		case opLdLen:
			a = uint32(wire)
		case opLdImm:
			a = in.k
		case opLdMem:
			a = m[in.k&(scratchSlots-1)]
		case opLdxImm:
			x = in.k
		case opLdxMem:
			x = m[in.k&(scratchSlots-1)]
		case opLdxLen:
			x = uint32(wire)
		case opLdxMsh:
			k := uint64(in.k)
			if k >= n {
				return false
			}
			x = uint32(pkt[k]&0xf) << 2
		case opSt:
			m[in.k&(scratchSlots-1)] = a
		case opStx:
			m[in.k&(scratchSlots-1)] = x
		case opAddK:
			a += in.k
		case opSubK:
			a -= in.k
		case opMulK:
			a *= in.k
		case opDivK:
			a /= in.k
		case opModK:
			a %= in.k
		case opAndK:
			a &= in.k
		case opOrK:
			a |= in.k
		case opXorK:
			a ^= in.k
		case opLshK:
			a <<= in.k
		case opRshK:
			a >>= in.k
		case opAddX:
			a += x
		case opSubX:
			a -= x
		case opMulX:
			a *= x
		case opDivX:
			if x == 0 {
				return false
			}
			a /= x
		case opModX:
			if x == 0 {
				return false
			}
			a %= x
		case opAndX:
			a &= x
		case opOrX:
			a |= x
		case opXorX:
			a ^= x
		case opLshX:
			a <<= x // Go gives 0 for x >= 32, as libpcap does
		case opRshX:
			a >>= x
		case opNeg:
			a = -a
		case opJa:
			pc += int(in.k)
		case opJeqK:
			pc += int(pick(a == in.k, in.jt, in.jf))
		case opJgtK:
			pc += int(pick(a > in.k, in.jt, in.jf))
		case opJgeK:
			pc += int(pick(a >= in.k, in.jt, in.jf))
		case opJsetK:
			pc += int(pick(a&in.k != 0, in.jt, in.jf))
		case opJeqX:
			pc += int(pick(a == x, in.jt, in.jf))
		case opJgtX:
			pc += int(pick(a > x, in.jt, in.jf))
		case opJgeX:
			pc += int(pick(a >= x, in.jt, in.jf))
		case opJsetX:
			pc += int(pick(a&x != 0, in.jt, in.jf))
		case opRetK:
			return in.k != 0
		case opRetA:
			return a != 0
		case opTax:
			x = a
		case opTxa:
			a = x
		case opLdWJ:
			k := uint64(in.k)
			if k+4 > n {
				return false
			}
			a = uint32(pkt[k])<<24 | uint32(pkt[k+1])<<16 | uint32(pkt[k+2])<<8 | uint32(pkt[k+3])
			goto jump
		case opLdHJ:
			k := uint64(in.k)
			if k+2 > n {
				return false
			}
			a = uint32(pkt[k])<<8 | uint32(pkt[k+1])
			goto jump
		case opLdBJ:
			k := uint64(in.k)
			if k >= n {
				return false
			}
			a = uint32(pkt[k])
			goto jump
		case opLdIndWJ:
			k := uint64(x) + uint64(in.k)
			if k+4 > n {
				return false
			}
			a = uint32(pkt[k])<<24 | uint32(pkt[k+1])<<16 | uint32(pkt[k+2])<<8 | uint32(pkt[k+3])
			goto jump
		case opLdIndHJ:
			k := uint64(x) + uint64(in.k)
			if k+2 > n {
				return false
			}
			a = uint32(pkt[k])<<8 | uint32(pkt[k+1])
			goto jump
		case opLdIndBJ:
			k := uint64(x) + uint64(in.k)
			if k >= n {
				return false
			}
			a = uint32(pkt[k])
			goto jump
		}
		continue
	jump:
		{
			var c bool
			switch in.cop {
			case opJeqK:
				c = a == in.k2
			case opJgtK:
				c = a > in.k2
			case opJgeK:
				c = a >= in.k2
			default:
				c = a&in.k2 != 0
			}
			if c {
				pc += int(in.jt)
			} else {
				pc += int(in.jf)
			}
		}
	}
	return false
}

func pick(c bool, t, f uint16) uint16 {
	if c {
		return t
	}
	return f
}
