package vif

import (
	"encoding/binary"
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
	// The IPv6 ranges: a few (most vifs have one) in r6, scanned; more
	// in ranges (many6). notIn6 are the addresses of those that are not
	// the interface's: the excluded ones and each range's Subnet-Router
	// anycast address.
	r6      []range6
	many6   bool
	notIn6  map[[16]byte]struct{}
	src6    [16]byte // the first IPv6 address, the source of ICMPv6 errors
	hasSrc6 bool
}

// has6 reports whether the IPv6 address a is the interface's: one of its
// addresses, or in one of its ranges but not excluded. It does not
// allocate: a map lookup, and for a vif with IPv6 ranges a longest-prefix
// match in the ranges' table.
func (s *addrSet) has6(a [16]byte) bool {
	if _, ok := s.set6[a]; ok {
		return true
	}
	in := false
	if s.many6 {
		in = s.ranges.Lookup(netip.AddrFrom16(a))
	} else {
		hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
		for _, r := range s.r6 {
			if hi&r.mhi == r.hi && lo&r.mlo == r.lo {
				in = true
				break
			}
		}
	}
	if !in {
		return false
	}
	_, out := s.notIn6[a]
	return !out
}

// range6 is an IPv6 range as its masked address and mask, in two halves:
// a few compare faster than a longest-prefix match in a trie, which walks
// a node per byte of the prefix (eight for a /64).
type range6 struct{ hi, lo, mhi, mlo uint64 }

// maxScan6 is the most IPv6 ranges has6 scans; with more, it looks them up
// in the trie.
const maxScan6 = 8

func newRange6(p netip.Prefix) range6 {
	b := p.Masked().Addr().As16()
	// Go shifts a uint64 by 64 to zero: a /0 masks nothing, a /128
	// everything.
	bits := p.Bits()
	return range6{
		hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]),
		mhi: ^uint64(0) << (64 - min(bits, 64)), mlo: ^uint64(0) << (128 - max(bits, 64)),
	}
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
	for _, p := range ranges {
		if !p.Addr().Is6() {
			continue
		}
		if s.notIn6 == nil {
			s.notIn6 = map[[16]byte]struct{}{}
			for _, a := range exclude {
				if a.Is6() {
					s.notIn6[a.As16()] = struct{}{}
				}
			}
		}
		s.r6 = append(s.r6, newRange6(p))
		p = p.Masked()
		if p.Bits() <= 126 {
			// The Subnet-Router anycast address (RFC 4291 section
			// 2.6.1) is for the routers of the subnet, which a vif is
			// not; the NDP proxy does not answer for it either.
			s.notIn6[p.Addr().As16()] = struct{}{}
		}
	}
	if len(s.r6) > maxScan6 {
		s.r6, s.many6 = nil, true
	}
	if !s.hasSrc6 {
		// Without an IPv6 address, ICMPv6 errors come from the first
		// address of the first IPv6 range that is the interface's.
		for _, p := range ranges {
			if !p.Addr().Is6() {
				continue
			}
			// At most the exclusions and the anycast address are
			// skipped.
			a := p.Masked().Addr()
			for n := 0; n <= len(exclude)+1 && a.IsValid() && p.Contains(a); n, a = n+1, a.Next() {
				if s.has6(a.As16()) {
					s.src6, s.hasSrc6 = a.As16(), true
					break
				}
			}
			if s.hasSrc6 {
				break
			}
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
