package arpproxy

import (
	"net/netip"

	"github.com/vif-project/vif/internal/inet"
)

// AddrSet is an immutable set of IPv4 addresses with an allocation-free,
// O(log n) Contains. It is safe for concurrent use. The zero value and a
// nil *AddrSet are empty sets.
//
// The Responder publishes a new AddrSet through an atomic pointer on every
// Add and Remove, so lookups on the receive path take no lock.
type AddrSet struct {
	s *inet.Set // the set the vif packet loop uses too
}

// NewAddrSet returns the set of the addresses among addrs that can be
// owned: IPv4 unicast addresses, as Responder.Add accepts. Others
// (see ErrInvalidAddr: 0/8, loopback, multicast, 240/4, IPv6) are ignored;
// duplicates are merged.
func NewAddrSet(addrs ...netip.Addr) *AddrSet {
	var ok []netip.Addr
	for _, a := range addrs {
		if checkAddr(a) == nil {
			ok = append(ok, a)
		}
	}
	return &AddrSet{inet.NewSet(ok...)}
}

func (s *AddrSet) set() *inet.Set {
	if s == nil {
		return nil
	}
	return s.s
}

// index returns the position of a among the members in ascending order,
// or -1.
func (s *AddrSet) index(a netip.Addr) int { return s.set().Index(a) }

// Contains reports whether a is in s. Only IPv4 addresses can be members.
func (s *AddrSet) Contains(a netip.Addr) bool { return s.index(a) >= 0 }

// containsKey reports whether the IPv4 address k (big-endian) is in s.
func (s *AddrSet) containsKey(k uint32) bool { return s.set().Has(k) }

// Len returns the number of addresses in s.
func (s *AddrSet) Len() int { return s.set().Len() }

// Addrs returns the addresses in s in ascending order, in a new slice.
func (s *AddrSet) Addrs() []netip.Addr { return s.set().Addrs() }

// with returns a copy of s with a added at the position where a sorts; it
// also returns that position. a must be IPv4 and not in s.
func (s *AddrSet) with(a netip.Addr) (*AddrSet, int) {
	n, i := s.set().With(a)
	return &AddrSet{n}, i
}

// without returns a copy of s without the member at index i.
func (s *AddrSet) without(i int) *AddrSet { return &AddrSet{s.set().Without(i)} }
