package fparser

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
)

// CommunityID is the flow's Community ID, version 1, with the specification's
// default seed, 0: "1:" and the base64 of a SHA-1 over the seed, the two endpoints
// in a fixed order, and the protocol. Zeek, Suricata and tshark give a
// conversation the same string, so it finds the flow in their logs. It is the
// same for both directions, leaves the VLAN out (the specification has no field
// for it), and is computed when called: never per packet.
func (f *Flow) CommunityID() string {
	return string(AppendCommunityID(nil, 0, f.Protocol, f.Src, f.Dst))
}

// AppendCommunityID appends the Community ID, version 1, of a conversation of
// proto between src and dst with the given seed, as Flow.CommunityID and the
// community_id field write it, and returns the extended buffer. It allocates
// nothing but what b needs to grow.
func AppendCommunityID(b []byte, seed uint16, proto Protocol, src, dst netip.AddrPort) []byte {
	a, z := src, dst
	// The endpoint with the smaller address goes first; for equal addresses, the
	// one with the smaller port.
	if c := z.Addr().Compare(a.Addr()); c < 0 || c == 0 && z.Port() < a.Port() {
		a, z = z, a
	}
	var in [2 + 16 + 16 + 2 + 4]byte
	binary.BigEndian.PutUint16(in[0:], seed)
	n := 2 + putAddr(in[2:], a.Addr())
	n += putAddr(in[n:], z.Addr())
	in[n], in[n+1] = byte(proto), 0
	binary.BigEndian.PutUint16(in[n+2:], a.Port())
	binary.BigEndian.PutUint16(in[n+4:], z.Port())
	sum := sha1.Sum(in[:n+6])
	b = append(b, "1:"...)
	return base64.StdEncoding.AppendEncode(b, sum[:])
}

// putAddr writes a's 4 or 16 bytes into b and returns how many.
func putAddr(b []byte, a netip.Addr) int {
	if a.Unmap().Is4() {
		v4 := a.Unmap().As4()
		return copy(b, v4[:])
	}
	v6 := a.As16()
	return copy(b, v6[:])
}
