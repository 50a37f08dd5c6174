package vif

import (
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
	"github.com/vif-project/vif/internal/inet"
)

// addrSet is the interface's addresses: as configured, and as the set the
// packet loop looks addresses up in, with the ranges it owns whole (but
// for the excluded addresses). It is immutable, replaced as a whole when
// the addresses change, so the loop reads it without locks.
type addrSet struct {
	prefixes []netip.Prefix // as configured
	set      *inet.Set
	ranges   *bart.Lite // nil without ranges
	excluded *inet.Set
	set6     map[[16]byte]struct{} // the IPv6 addresses; nil without
	src6     [16]byte              // the first IPv6 address, the source of ICMPv6 errors
	hasSrc6  bool
}

// has6 reports whether the IPv6 address a is the interface's.
func (s *addrSet) has6(a [16]byte) bool {
	_, ok := s.set6[a]
	return ok
}

// newAddrSet returns the set of the addresses of prefixes, which
// Config.check has found to be host addresses, and of the ranges but
// exclude.
func newAddrSet(prefixes, ranges []netip.Prefix, exclude []netip.Addr) *addrSet {
	addrs := make([]netip.Addr, len(prefixes))
	for k, p := range prefixes {
		addrs[k] = p.Addr()
	}
	s := &addrSet{prefixes: slices.Clone(prefixes), set: inet.NewSet(addrs...), excluded: inet.NewSet(exclude...)}
	for _, a := range addrs {
		if a.Is6() {
			if !s.hasSrc6 {
				s.src6, s.hasSrc6 = a.As16(), true
			}
			if s.set6 == nil {
				s.set6 = map[[16]byte]struct{}{}
			}
			s.set6[a.As16()] = struct{}{}
		}
	}
	if len(ranges) > 0 {
		s.ranges = new(bart.Lite)
		for _, p := range ranges {
			s.ranges.Insert(p.Masked())
		}
	}
	return s
}

func (s *addrSet) has(k uint32) bool {
	if s.set.Has(k) {
		return true
	}
	return s.ranges != nil && s.ranges.Lookup(netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})) &&
		!s.excluded.Has(k)
}

func key(a [4]byte) uint32 { return inet.Key(a) }

// IsHostAddr reports whether a can be a vif's own address, a peer or a
// local underlay address: an IPv4 unicast address outside 0.0.0.0/8,
// 127.0.0.0/8, multicast (224/4), the reserved 240/4 and the limited
// broadcast address; or an IPv6 unicast address but ::, ::1, multicast,
// link-local and IPv4-mapped ones (RFC 4291 section 2.4); a tunnel's local
// and peer addresses are all of one family. New, SetAddrs and Up refuse
// other addresses, and the ARP
// proxy (package arpproxy) refuses to answer for them.
func IsHostAddr(a netip.Addr) bool {
	if a.Is6() && !a.Is4In6() {
		return inet.Why6(a) == ""
	}
	return inet.Why(a) == ""
}

// badSource6 reports whether an inner IPv6 source address must never
// arrive from a tunnel (RFC 4213 section 3.6): one of our own addresses,
// ::, ::1, multicast, link-local or IPv4-mapped.
func (s *addrSet) badSource6(src [16]byte) bool {
	switch {
	case src[0] == 0xff, // multicast
		src[0] == 0xfe && src[1]&0xc0 == 0x80,              // fe80::/10
		[12]byte(src[:12]) == [12]byte{10: 0xff, 11: 0xff}, // ::ffff:0:0/96
		[15]byte(src[:15]) == [15]byte{} && src[15] <= 1:   // :: and ::1
		return true
	}
	return s.has6(src)
}

// validUnicast is IsHostAddr for an address as an array.
func validUnicast(a [4]byte) bool { return inet.Why4(a) == "" }

// badSource reports whether an inner source address must never arrive from
// a tunnel: one of our own addresses (spoofing), 0/8, loopback, multicast,
// class E or broadcast.
func (s *addrSet) badSource(src [4]byte) bool {
	return !validUnicast(src) || s.has(key(src))
}
