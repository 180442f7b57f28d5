package loader

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/net/bpf"

	"github.com/fparser/fparser/filter"
)

// FuzzTranslate feeds arbitrary classic BPF programs to the translator: those the
// classic checker accepts are translated and loaded, and either pass the kernel's
// verifier and decide as the Go interpreter does on every frame, or are refused with
// ErrVerifier; nothing panics, and nothing unchecked is loaded.
func FuzzTranslate(f *testing.F) {
	requireBPF(f)
	for _, expr := range verifierExpressions {
		p, err := filter.Compile(expr, filter.Ethernet)
		if err != nil {
			continue
		}
		var b []byte
		for _, in := range p.Raw() {
			b = binary.LittleEndian.AppendUint16(b, in.Op)
			b = append(b, in.Jt, in.Jf)
			b = binary.LittleEndian.AppendUint32(b, in.K)
		}
		f.Add(b)
	}
	frames := testFrames(f)
	if len(frames) > 64 {
		frames = frames[:64]
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		var raw []bpf.RawInstruction
		for len(code) >= 8 && len(raw) < 256 {
			raw = append(raw, bpf.RawInstruction{Op: binary.LittleEndian.Uint16(code), Jt: code[2], Jf: code[3], K: binary.LittleEndian.Uint32(code[4:])})
			code = code[8:]
		}
		prog, err := filter.NewProgram(raw)
		if err != nil {
			return // refused by the classic checker, as the kernel would
		}
		probe, err := FilterProbe(prog)
		if err != nil {
			if !errors.Is(err, ErrVerifier) {
				t.Fatalf("a checked program failed to load, not as a verifier refusal: %v\n%s", err, ddd(raw))
			}
			return
		}
		defer probe.Close()
		for i, fr := range frames {
			ret, err := probe.Run(&ebpf.RunOptions{Data: fr})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := ret == xdpPass, prog.Match(fr, len(fr)); got != want {
				t.Fatalf("frame %d: kernel %v, Go %v for\n%s", i, got, want, ddd(raw))
			}
		}
	})
}
