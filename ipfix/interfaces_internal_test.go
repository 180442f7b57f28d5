package ipfix

import (
	"encoding/binary"
	"testing"

	"github.com/fparser/fparser"
)

// TestInterfaceElements: ingressInterface and egressInterface from where each
// direction was counted, live.
func TestInterfaceElements(t *testing.T) {
	at := func(index int, egress bool) fparser.Counters {
		return fparser.Counters{Packets: 1, InterfaceIndex: index, Egress: egress}
	}
	for _, tc := range []struct {
		name          string
		fwd, rev      fparser.Counters
		in, out       uint32 // the forward direction's, as a biflow record has them
		revIn, revOut uint32 // the reverse direction's, as its uniflow record has them
	}{
		{"the host connects out by 2", at(2, true), at(2, false), 0, 2, 2, 0},
		{"the host accepts by 2", at(2, false), at(2, true), 2, 0, 0, 2},
		{"routed from 2 to 3", at(2, false), at(3, false), 2, 3, 3, 2},
		{"no answer, routed", at(2, false), fparser.Counters{}, 2, 0, 0, 2},
		{"loopback, counted leaving", at(1, true), at(1, true), 1, 1, 1, 1},
		{"a capture file", at(1, false), at(1, false), 1, 0, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				this, other *fparser.Counters
				in, out     uint32
			}{{&tc.fwd, &tc.rev, tc.in, tc.out}, {&tc.rev, &tc.fwd, tc.revIn, tc.revOut}} {
				b := appendInterfaces(nil, c.this, c.other)
				if in, out := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]); in != c.in || out != c.out {
					t.Errorf("%+v, other %+v: ingress %d, egress %d; want %d, %d", *c.this, *c.other, in, out, c.in, c.out)
				}
			}
		})
	}
}
