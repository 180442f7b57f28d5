package userspace

import "net/netip"

// TunnelKind is the encapsulation a decapsulated packet came through: the
// outermost one, when there were two.
type TunnelKind uint8

// Tunnel kinds, as the kernel numbers them (TUNNEL_*).
const (
	TunnelNone     TunnelKind = iota
	TunnelVXLAN               // UDP 4789; id: the VNI
	TunnelGeneve              // UDP 6081; id: the VNI
	TunnelGRE                 // id: the key, 0 without one
	TunnelERSPAN              // ERSPAN type II, in GRE; id: the session
	TunnelGTPU                // UDP 2152; id: the TEID
	TunnelIPinIP              // IP protocol 4: IPv4 inside IPv4 or IPv6
	TunnelIPv6inIP            // IP protocol 41: IPv6 inside IPv4 or IPv6
	TunnelMPLS                // id: the outermost label
	TunnelPPPoE               // PPPoE session frames; id: the session
)

var tunnelNames = [...]string{"", "vxlan", "geneve", "gre", "erspan", "gtp-u", "ip-in-ip", "ipv6-in-ip", "mpls", "pppoe"}

// String is the kind's name in fparser's output: "vxlan", "geneve", "gre",
// "erspan", "gtp-u", "ip-in-ip", "ipv6-in-ip", "mpls", "pppoe"; "" for none.
func (k TunnelKind) String() string {
	if int(k) < len(tunnelNames) {
		return tunnelNames[k]
	}
	return "unknown"
}

// Tunnel is the tunnel a flow's first packet came through, when the datapath
// decapsulates (struct tunnel): its kind, its id, and the outermost IP header's
// addresses, by the flow's canonical endpoints: OuterA is the outer address on
// endpoint A's side. The outer addresses are zero for a tunnel with no outer IP
// header (MPLS and PPPoE alone). 40 bytes, the kernel's layout.
type Tunnel struct {
	Kind           TunnelKind
	_              [3]uint8
	ID             uint32
	OuterA, OuterB [16]byte
}

// Outer returns the outer addresses by canonical endpoint, unmapped; invalid when
// the tunnel has no outer IP header.
func (t *Tunnel) Outer() (a, b netip.Addr) {
	if t.OuterA == ([16]byte{}) && t.OuterB == ([16]byte{}) {
		return netip.Addr{}, netip.Addr{}
	}
	return netip.AddrFrom16(t.OuterA).Unmap(), netip.AddrFrom16(t.OuterB).Unmap()
}
