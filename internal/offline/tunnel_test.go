package offline

import (
	"net/netip"
	"testing"

	pb "github.com/fparser/fparser/internal/pktbuild"
	"github.com/fparser/fparser/internal/userspace"
)

// TestInnerHeaderPastLimit: a tunnel whose inner IP header would start past the
// frame's first 16 KiB (maxInnerOff, the kernel's MAX_INNER_OFF) makes the packet
// malformed with decap, as docs/flows.md says; without decap it is other traffic.
func TestInnerHeaderPastLimit(t *testing.T) {
	inner := pb.IPv4{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: pb.ProtoUDP}.Build(pb.UDP(1, 2, nil))
	exts := make([]pb.Ext, 8) // 8 destination-options headers of 2048 bytes
	for i := range exts {
		exts[i] = pb.Ext{Type: pb.ExtDestOpts, Len: 255}
	}
	outer := pb.IPv6{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Next: protoIPinIP, Exts: exts, PayloadLen: -1}
	frame := pb.Ethernet(pb.EtherIPv6, nil, outer.Build(inner))
	near := outer
	near.Exts = exts[:7] // 2 KiB less: opened
	for _, c := range []struct {
		frame []byte
		decap bool
		want  verdict
	}{
		{frame, true, vMalformed},
		{frame, false, vOtherL4},
		{pb.Ethernet(pb.EtherIPv6, nil, near.Build(inner)), true, vFlow},
	} {
		var p packet
		if c.decap {
			p.tun = new(userspace.Tunnel)
		}
		if v := parse(&p, c.frame, LinkEthernet, len(c.frame)); v != c.want {
			t.Errorf("%d-byte frame, decap %v: verdict %d, want %d", len(c.frame), c.decap, v, c.want)
		}
	}
}
