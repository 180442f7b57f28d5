package filter_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/fparser/fparser/filter"
)

func TestErrorsNameTheColumn(t *testing.T) {
	for _, tc := range []struct {
		expr string
		is   error
		want string
	}{
		{"tcp prot 80", filter.ErrSyntax, `column 5 ("prot"): unknown word "prot"`},
		{"host example.com", filter.ErrHostName, `column 6 ("example.com"): host names are not resolved`},
		{"port https", filter.ErrSyntax, `port names are not resolved`},
		{"tcp and", filter.ErrSyntax, "column 8: expression ends where a primitive was expected"},
		{"ip[1:3] = 1", filter.ErrSyntax, `column 6 ("3"): data size must be 1, 2, or 4`},
		{"net 10.1.2.3/16", filter.ErrSyntax, "non-network bits set"},
		{"protochain 6", filter.ErrUnsupported, "tcpdump -ddd"},
		{"ip broadcast", filter.ErrUnsupported, "netmask"},
		{"tcp[13] $ 2", filter.ErrSyntax, `column 9 ("$"): unexpected character`},
		{"ip[0] / 0 = 1", filter.ErrSyntax, "division by zero"},
		{"80", filter.ErrSyntax, "needs a qualifier"},
	} {
		_, err := filter.Compile(tc.expr, filter.Ethernet)
		if !errors.Is(err, tc.is) || !errors.Is(err, filter.ErrFilter) || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %v containing %q", tc.expr, err, tc.is, tc.want)
		}
	}
	if _, err := filter.Compile("ether host 1:2:3:4:5:6", filter.Link{Type: 101}); !errors.Is(err, filter.ErrLinkType) {
		t.Errorf("ether host on raw IP: %v, want ErrLinkType", err)
	}
	if _, err := filter.Compile("tcp", filter.Link{Type: 9}); !errors.Is(err, filter.ErrLinkType) {
		t.Errorf("PPP: %v, want ErrLinkType", err)
	}
}

func TestDefaultIsIPAndIPv6(t *testing.T) {
	def, err := filter.Compile("", filter.Ethernet)
	if err != nil {
		t.Fatal(err)
	}
	explicit, _ := filter.Compile("ip or ip6", filter.Ethernet)
	if !slices.Equal(def.Raw(), explicit.Raw()) {
		t.Errorf("default:\n%s\nip or ip6:\n%s", def.DDD(), explicit.DDD())
	}
}

func TestDDDRoundTrip(t *testing.T) {
	prog, err := filter.Compile("tcp port 443 or (vlan and udp)", filter.Ethernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{prog.DDD(), strings.ReplaceAll(strings.TrimSpace(prog.DDD()), "\n", ",")} {
		back, err := filter.Compile(text, filter.Link{Type: 101})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(back.Raw(), prog.Raw()) {
			t.Errorf("round trip changed the program:\n%s\n%s", prog.DDD(), back.DDD())
		}
	}
}

func TestProgramValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		ddd  string
	}{
		{"jump out", "2\n21 5 0 1\n6 0 0 1"},
		{"no return at the end", "2\n6 0 0 1\n0 0 0 1"},
		{"scratch index", "2\n96 0 0 16\n6 0 0 1"},
		{"division by constant zero", "2\n52 0 0 0\n6 0 0 1"},
		{"ancillary load", "2\n32 0 0 4294963200\n6 0 0 1"},
		{"unknown opcode", "2\n255 0 0 0\n6 0 0 1"},
		{"count mismatch", "3\n6 0 0 1"},
	} {
		if _, err := filter.Compile(tc.ddd, filter.Ethernet); !errors.Is(err, filter.ErrProgram) {
			t.Errorf("%s: %v, want ErrProgram", tc.name, err)
		}
	}
}

// TestMatchEdges: what classic BPF leaves to the interpreter.
func TestMatchEdges(t *testing.T) {
	pkt := []byte{1, 2, 3, 4, 5, 6}
	ret := func(in ...bpf.Instruction) *filter.Program {
		raw, err := bpf.Assemble(in)
		if err != nil {
			t.Fatal(err)
		}
		p, err := filter.NewProgram(raw)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		prog *filter.Program
		want bool
	}{
		{"load past the end", ret(bpf.LoadAbsolute{Off: 4, Size: 4}, bpf.RetConstant{Val: 1}), false},
		{"load at the end", ret(bpf.LoadAbsolute{Off: 2, Size: 4}, bpf.RetA{}), true},
		{"division by X = 0", ret(bpf.LoadConstant{Dst: bpf.RegA, Val: 7}, bpf.ALUOpX{Op: bpf.ALUOpDiv}, bpf.RetConstant{Val: 1}), false},
		{"shift by X >= 32 gives 0", ret(bpf.LoadConstant{Dst: bpf.RegA, Val: 7}, bpf.LoadConstant{Dst: bpf.RegX, Val: 40}, bpf.ALUOpX{Op: bpf.ALUOpShiftLeft}, bpf.RetA{}), false},
		{"ret A", ret(bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.RetA{}), true},
		{"len is the wire length", ret(bpf.LoadExtension{Num: bpf.ExtLen}, bpf.JumpIf{Cond: bpf.JumpEqual, Val: 60, SkipTrue: 1}, bpf.RetConstant{Val: 0}, bpf.RetConstant{Val: 1}), true},
		// A jump lands on the jump after a load: the pair cannot be fused.
		{"jump into a load-and-jump pair", ret(
			bpf.LoadConstant{Dst: bpf.RegA, Val: 9},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 9, SkipTrue: 1},
			bpf.LoadAbsolute{Off: 0, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 9, SkipTrue: 1},
			bpf.RetConstant{Val: 0},
			bpf.RetConstant{Val: 1}), true},
	} {
		if got := tc.prog.Match(pkt, 60); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
