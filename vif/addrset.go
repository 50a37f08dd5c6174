package vif

import (
	"net/netip"
	"slices"

	"github.com/vif-project/vif/internal/inet"
)

// addrSet is an immutable set of IPv4 addresses, replaced as a whole when
// the addresses change, so the packet loop reads it without locks. Small
// sets are scanned (faster than hashing for a handful of addresses); large
// ones use a map.
type addrSet struct {
	prefixes []netip.Prefix // as configured
	list     []uint32
	m        map[uint32]struct{}
}

const addrSetScanMax = 8

// newAddrSet returns the set of the addresses of prefixes, which
// Config.check has found to be host addresses.
func newAddrSet(prefixes []netip.Prefix) *addrSet {
	s := &addrSet{prefixes: slices.Clone(prefixes)}
	for _, p := range prefixes {
		k := key(p.Addr().As4())
		if s.has(k) {
			continue
		}
		s.list = append(s.list, k)
		if len(s.list) > addrSetScanMax {
			if s.m == nil {
				s.m = make(map[uint32]struct{}, len(prefixes))
				for _, k := range s.list {
					s.m[k] = struct{}{}
				}
			}
			s.m[k] = struct{}{}
		}
	}
	return s
}

func (s *addrSet) has(k uint32) bool {
	if s.m != nil {
		_, ok := s.m[k]
		return ok
	}
	for _, a := range s.list {
		if a == k {
			return true
		}
	}
	return false
}

func key(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

// IsHostAddr reports whether a can be a vif's own address, a peer or a
// local underlay address: an IPv4 unicast address outside 0.0.0.0/8,
// 127.0.0.0/8, multicast (224/4), the reserved 240/4 and the limited
// broadcast address. New, SetAddrs and Up refuse other addresses, and the
// ARP proxy (package arpproxy) refuses to answer for them.
func IsHostAddr(a netip.Addr) bool { return inet.Why(a) == "" }

// validUnicast is IsHostAddr for an address as an array.
func validUnicast(a [4]byte) bool { return inet.Why4(a) == "" }

// badSource reports whether an inner source address must never arrive from
// a tunnel: one of our own addresses (spoofing), 0/8, loopback, multicast,
// class E or broadcast.
func (s *addrSet) badSource(src [4]byte) bool {
	return !validUnicast(src) || s.has(key(src))
}
