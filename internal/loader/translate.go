package loader

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/net/bpf"

	"github.com/fparser/fparser/filter"
)

// The translation of a classic BPF program into the body of fparser_filter. The
// function is called with R1 = the packet's first byte, R2 = its end, R3 = its
// length, and returns non-zero to count the packet. Classic BPF's registers live in
//
//	A = R4, X = R5, scratch word i at R10 - 4*(i+1),
//
// and R6-R8 are temporaries. Every packet load is bounds-checked against R2 in the
// form the verifier follows; a load past the end, or a division by zero, returns 0
// (no match), as in classic BPF. A and X and the scratch words the program uses
// start at zero. Constants of 2^31 or more go through a register, so that no
// immediate is sign-extended.
const (
	regData    = asm.R1
	regDataEnd = asm.R2
	regLen     = asm.R3
	regA       = asm.R4
	regX       = asm.R5
	regT1      = asm.R6
	regT2      = asm.R7
	regK       = asm.R8
)

// maxPacketOff is the verifier's bound on a packet offset (MAX_PACKET_OFF).
const maxPacketOff = 0xffff

// maxVarOff bounds a load's offset from X: a mask, so the verifier can apply it, and
// small enough that the 4 bytes after it stay within maxPacketOff. A load from X
// past 32 KiB does not match in the kernel; no XDP frame, and no headers in an skb's
// linear part, reach that far.
const maxVarOff = 0x7fff

// Classic BPF fields.
const (
	cLD, cLDX, cST, cSTX, cALU, cJMP, cRET, cMISC        = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
	modeIMM, modeABS, modeIND, modeMEM, modeLEN, modeMSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xa0
	sizeW, sizeH, sizeB                                  = 0x00, 0x08, 0x10
	srcKField, srcXField                                 = 0x00, 0x08
)

var loadSize = map[uint16]struct {
	n    int32
	size asm.Size
}{sizeW: {4, asm.Word}, sizeH: {2, asm.Half}, sizeB: {1, asm.Byte}}

var aluOf = map[uint16]asm.ALUOp{
	0x00: asm.Add, 0x10: asm.Sub, 0x20: asm.Mul, 0x30: asm.Div, 0x40: asm.Or, 0x50: asm.And,
	0x60: asm.LSh, 0x70: asm.RSh, 0x90: asm.Mod, 0xa0: asm.Xor,
}

// fixup says where a jump goes: to the start of a classic instruction, or to the
// shared "return 0" at the end.
type fixup struct {
	at     int // index of the jump in the output
	target int // classic instruction index, or -1 for reject
}

type translator struct {
	out    asm.Instructions
	fixups []fixup
	start  []int // output index where each classic instruction begins (-1: unreachable)
}

func (t *translator) emit(ins ...asm.Instruction) { t.out = append(t.out, ins...) }

// jump emits a jump whose offset is fixed once every block is placed.
func (t *translator) jump(ins asm.Instruction, target int) {
	t.fixups = append(t.fixups, fixup{at: len(t.out), target: target})
	t.out = append(t.out, ins)
}

func ja() asm.Instruction { return asm.Instruction{OpCode: asm.Ja.Op(asm.ImmSource)} }

func jmpImm(op asm.JumpOp, dst asm.Register, k int32) asm.Instruction {
	return asm.Instruction{OpCode: op.Op(asm.ImmSource), Dst: dst, Constant: int64(k)}
}

func jmpReg(op asm.JumpOp, dst, src asm.Register) asm.Instruction {
	return asm.Instruction{OpCode: op.Op(asm.RegSource), Dst: dst, Src: src}
}

func scratch(k uint32) int16 { return -4 * int16(k+1) }

// pastAnyPacket says r loads at a constant offset beyond what the verifier lets a
// program read: it always fails, so what follows it is reached only from elsewhere.
func pastAnyPacket(r bpf.RawInstruction) bool {
	var n uint64
	switch {
	case r.Op&0x07 == cLD && r.Op&0xe0 == modeABS:
		n = uint64(loadSize[r.Op&0x18].n)
	case r.Op == cLDX|sizeB|modeMSH:
		n = 1
	default:
		return false
	}
	return uint64(r.K)+n > maxPacketOff
}

// reachable marks the classic instructions control can reach: the verifier refuses
// code that nothing reaches.
func reachable(raw []bpf.RawInstruction) []bool {
	seen := make([]bool, len(raw))
	seen[0] = true
	for i, r := range raw {
		if !seen[i] {
			continue
		}
		switch {
		case r.Op&0x07 == cRET, pastAnyPacket(r):
		case r.Op == cJMP: // ja
			seen[i+1+int(r.K)] = true
		case r.Op&0x07 == cJMP:
			seen[i+1+int(r.Jt)] = true
			seen[i+1+int(r.Jf)] = true
		default:
			seen[i+1] = true
		}
	}
	return seen
}

// Translate turns a validated classic BPF program into eBPF for fparser_filter.
func Translate(p *filter.Program) (asm.Instructions, error) {
	raw := p.Raw()
	live := reachable(raw)
	t := &translator{start: make([]int, len(raw))}

	t.emit(asm.Mov.Imm32(regA, 0), asm.Mov.Imm32(regX, 0))
	var used [16]bool
	for i, r := range raw {
		if !live[i] {
			continue
		}
		switch cls, mode := r.Op&0x07, r.Op&0xe0; {
		case (cls == cLD || cls == cLDX) && mode == modeMEM, cls == cST, cls == cSTX:
			used[r.K] = true
		}
	}
	for k, u := range used {
		if u {
			t.emit(asm.StoreImm(asm.RFP, scratch(uint32(k)), 0, asm.Word))
		}
	}

	for i, r := range raw {
		t.start[i] = -1
		if !live[i] {
			continue
		}
		t.start[i] = len(t.out)
		if err := t.insn(i, r); err != nil {
			return nil, fmt.Errorf("%w: instruction %d (code %#x k %d): %v", filter.ErrProgram, i, r.Op, r.K, err)
		}
	}
	reject := len(t.out)
	rejectUsed := false
	for _, f := range t.fixups {
		target := reject
		if f.target >= 0 {
			target = t.start[f.target]
		} else {
			rejectUsed = true
		}
		off := target - (f.at + 1)
		if off > 0x7fff {
			return nil, fmt.Errorf("%w: the translated program is too long for a 16-bit jump", filter.ErrProgram)
		}
		t.out[f.at].Offset = int16(off)
	}
	if rejectUsed {
		t.emit(asm.Mov.Imm32(asm.R0, 0), asm.Return())
	}
	return t.out, nil
}

// loadChecked loads size bytes at R1 + off (a constant) into dst, and says whether
// code follows: a load past any packet only jumps to the rejection.
func (t *translator) loadChecked(dst asm.Register, off uint32, n int32, size asm.Size) bool {
	if uint64(off)+uint64(n) > maxPacketOff {
		t.jump(ja(), -1) // pastAnyPacket: nothing falls through from here
		return false
	}
	end := int32(off) + n
	t.emit(asm.Mov.Reg(regT1, regData), asm.Add.Imm(regT1, end))
	t.jump(jmpReg(asm.JGT, regT1, regDataEnd), -1)
	t.emit(asm.LoadMem(dst, regT1, int16(-n), size))
	return true
}

func (t *translator) swap(n int32) {
	switch n {
	case 2:
		t.emit(asm.HostTo(asm.BE, regA, asm.Half))
	case 4:
		t.emit(asm.HostTo(asm.BE, regA, asm.Word))
	}
}

// constReg puts k in regK when it does not fit a positive 32-bit immediate.
func (t *translator) constReg(k uint32) bool {
	if k < 1<<31 {
		return false
	}
	t.emit(asm.Mov.Imm32(regK, int32(k)))
	return true
}

func (t *translator) insn(i int, r bpf.RawInstruction) error {
	cls := r.Op & 0x07
	switch cls {
	case cLD, cLDX:
		dst := regA
		if cls == cLDX {
			dst = regX
		}
		switch mode, sz := r.Op&0xe0, r.Op&0x18; mode {
		case modeABS:
			if s := loadSize[sz]; t.loadChecked(regA, r.K, s.n, s.size) {
				t.swap(s.n)
			}
		case modeIND:
			s := loadSize[sz]
			// T1 = X + k. Past maxVarOff it does not match. The AND changes nothing
			// then, but gives the verifier a bound on T1 that no branch analysis can
			// lose (a branch it cannot take may leave it believing anything), so
			// that R1 + T1 and the n bytes after it stay within its packet bound.
			t.emit(asm.Mov.Reg(regT1, regX))
			if r.K != 0 {
				if t.constReg(r.K) {
					t.emit(asm.Add.Reg(regT1, regK))
				} else {
					t.emit(asm.Add.Imm(regT1, int32(r.K)))
				}
			}
			t.jump(jmpImm(asm.JGT, regT1, maxVarOff), -1)
			t.emit(asm.And.Imm(regT1, maxVarOff))
			t.emit(asm.Add.Reg(regT1, regData), asm.Mov.Reg(regT2, regT1), asm.Add.Imm(regT2, s.n))
			t.jump(jmpReg(asm.JGT, regT2, regDataEnd), -1)
			t.emit(asm.LoadMem(regA, regT1, 0, s.size))
			t.swap(s.n)
		case modeMSH:
			if t.loadChecked(regX, r.K, 1, asm.Byte) {
				t.emit(asm.And.Imm32(regX, 0xf), asm.LSh.Imm32(regX, 2))
			}
		case modeIMM:
			t.emit(asm.Mov.Imm32(dst, int32(r.K)))
		case modeMEM:
			t.emit(asm.LoadMem(dst, asm.RFP, scratch(r.K), asm.Word))
		case modeLEN:
			t.emit(asm.Mov.Reg32(dst, regLen))
		default:
			return fmt.Errorf("unsupported load")
		}
	case cST:
		t.emit(asm.StoreMem(asm.RFP, scratch(r.K), regA, asm.Word))
	case cSTX:
		t.emit(asm.StoreMem(asm.RFP, scratch(r.K), regX, asm.Word))
	case cALU:
		op := r.Op & 0xf0
		if op == 0x80 { // neg
			t.emit(asm.Neg.Imm32(regA, 0))
			return nil
		}
		alu, ok := aluOf[op]
		if !ok {
			return fmt.Errorf("unsupported ALU operation")
		}
		if r.Op&srcXField != 0 {
			switch alu {
			case asm.Div, asm.Mod:
				t.jump(jmpImm(asm.JEq, regX, 0), -1)
				t.emit(alu.Reg32(regA, regX))
			case asm.LSh, asm.RSh:
				// A shift by 32 or more gives 0, as in libpcap; eBPF leaves it
				// to the JIT.
				t.emit(jmpImm(asm.JGT, regX, 31), alu.Reg32(regA, regX), ja(), asm.Mov.Imm32(regA, 0))
				n := len(t.out)
				t.out[n-4].Offset = 2
				t.out[n-2].Offset = 1
			default:
				t.emit(alu.Reg32(regA, regX))
			}
			return nil
		}
		switch {
		case (alu == asm.Div || alu == asm.Mod) && r.K == 0:
			t.jump(ja(), -1)
		case (alu == asm.LSh || alu == asm.RSh) && r.K >= 32:
			t.emit(asm.Mov.Imm32(regA, 0))
		case t.constReg(r.K):
			t.emit(alu.Reg32(regA, regK))
		default:
			t.emit(alu.Imm32(regA, int32(r.K)))
		}
	case cJMP:
		if r.Op == cJMP { // ja
			t.jump(ja(), i+1+int(r.K))
			return nil
		}
		// inverse jumps when false, to fall through when true; jset has none.
		var op, inverse asm.JumpOp
		hasInverse := true
		switch r.Op & 0xf0 {
		case 0x10:
			op, inverse = asm.JEq, asm.JNE
		case 0x20:
			op, inverse = asm.JGT, asm.JLE
		case 0x30:
			op, inverse = asm.JGE, asm.JLT
		case 0x40:
			op, hasInverse = asm.JSet, false
		default:
			return fmt.Errorf("unsupported jump")
		}
		tt, ff := i+1+int(r.Jt), i+1+int(r.Jf)
		if tt == ff {
			if tt != i+1 {
				t.jump(ja(), tt)
			}
			return nil
		}
		var cond func(asm.JumpOp) asm.Instruction
		if r.Op&srcXField != 0 {
			cond = func(o asm.JumpOp) asm.Instruction { return jmpReg(o, regA, regX) }
		} else if t.constReg(r.K) {
			cond = func(o asm.JumpOp) asm.Instruction { return jmpReg(o, regA, regK) }
		} else {
			cond = func(o asm.JumpOp) asm.Instruction { return jmpImm(o, regA, int32(r.K)) }
		}
		switch {
		case r.Jf == 0:
			t.jump(cond(op), tt)
		case r.Jt == 0 && hasInverse:
			t.jump(cond(inverse), ff)
		default:
			t.jump(cond(op), tt)
			t.jump(ja(), ff)
		}
	case cRET:
		if r.Op&0x18 == 0x10 { // ret A
			t.emit(asm.Mov.Reg32(asm.R0, regA), asm.Return())
		} else {
			t.emit(asm.Mov.Imm32(asm.R0, int32(r.K)), asm.Return())
		}
	case cMISC:
		if r.Op&0xf8 == 0x80 {
			t.emit(asm.Mov.Reg32(regA, regX))
		} else {
			t.emit(asm.Mov.Reg32(regX, regA))
		}
	}
	return nil
}
