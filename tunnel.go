package fparser

import (
	"net/netip"

	"github.com/fparser/fparser/internal/userspace"
)

// TunnelKind is the kind of tunnel a flow came through (Options.Decap).
type TunnelKind uint8

// The tunnels Options.Decap opens, and what each one's Tunnel.ID is.
const (
	TunnelNone     TunnelKind = TunnelKind(userspace.TunnelNone)
	TunnelVXLAN    TunnelKind = TunnelKind(userspace.TunnelVXLAN)    // UDP 4789; ID: the VNI
	TunnelGeneve   TunnelKind = TunnelKind(userspace.TunnelGeneve)   // UDP 6081; ID: the VNI
	TunnelGRE      TunnelKind = TunnelKind(userspace.TunnelGRE)      // ID: the key (PPTP's: the call id), 0 without one
	TunnelERSPAN   TunnelKind = TunnelKind(userspace.TunnelERSPAN)   // ERSPAN type II, in GRE; ID: the session
	TunnelGTPU     TunnelKind = TunnelKind(userspace.TunnelGTPU)     // UDP 2152; ID: the TEID
	TunnelIPinIP   TunnelKind = TunnelKind(userspace.TunnelIPinIP)   // IP protocol 4: IPv4 inside; ID 0
	TunnelIPv6inIP TunnelKind = TunnelKind(userspace.TunnelIPv6inIP) // IP protocol 41: IPv6 inside; ID 0
	TunnelMPLS     TunnelKind = TunnelKind(userspace.TunnelMPLS)     // ID: the outermost label
	TunnelPPPoE    TunnelKind = TunnelKind(userspace.TunnelPPPoE)    // ID: the session
)

// String is the kind's name in fparser's output: "vxlan", "geneve", "gre",
// "erspan", "gtp-u", "ip-in-ip", "ipv6-in-ip", "mpls" or "pppoe"; "" for none.
func (k TunnelKind) String() string { return userspace.TunnelKind(k).String() }

// Tunnel is the tunnel a flow's first packet came through, with Options.Decap:
// the outermost one, when tunnels were nested. OuterSrc and OuterDst are the
// outermost IP header's addresses, OuterSrc on the side of the flow's Src; both
// are invalid (the zero netip.Addr) when the tunnel had no IP header outside the
// flow's own, as MPLS and PPPoE alone. A flow that came through no tunnel has the
// zero Tunnel.
type Tunnel struct {
	Kind               TunnelKind
	ID                 uint32
	OuterSrc, OuterDst netip.Addr
}

// tunnelOf converts a flow's tunnel; srcIsA says the flow's Src is its canonical
// endpoint A.
func tunnelOf(t *userspace.Tunnel, srcIsA bool) Tunnel {
	a, b := t.Outer()
	if !srcIsA {
		a, b = b, a
	}
	return Tunnel{Kind: TunnelKind(t.Kind), ID: t.ID, OuterSrc: a, OuterDst: b}
}
