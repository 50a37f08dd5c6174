package arpproxy

import (
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
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
	// ranges are owned prefixes (AddRange), but for excluded: whole
	// prefixes cost as little as one address. nil without ranges.
	ranges   *bart.Lite
	excluded *inet.Set
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
	return &AddrSet{s: inet.NewSet(ok...)}
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

// containsKey reports whether the IPv4 address k (big-endian) is in s:
// added, or in a range but for the range's network and broadcast
// addresses and the excluded ones.
func (s *AddrSet) containsKey(k uint32) bool {
	if s.set().Has(k) {
		return true
	}
	if s == nil || s.ranges == nil {
		return false
	}
	a := netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
	p, ok := s.ranges.LookupPrefixLPM(netip.PrefixFrom(a, 32))
	if !ok || s.excluded.Has(k) {
		return false
	}
	if p.Bits() <= 30 {
		host := ^uint32(0) >> p.Bits()
		if k&host == 0 || k&host == host {
			return false // the range's network or broadcast address
		}
	}
	return true
}

// Ranges returns the owned ranges (AddRange), in ascending order.
func (s *AddrSet) Ranges() []netip.Prefix {
	if s == nil || s.ranges == nil {
		return nil
	}
	return slices.Collect(s.ranges.AllSorted4())
}

// Len returns the number of addresses in s.
func (s *AddrSet) Len() int { return s.set().Len() }

// Addrs returns the addresses in s in ascending order, in a new slice.
func (s *AddrSet) Addrs() []netip.Addr { return s.set().Addrs() }

// with returns a copy of s with a added at the position where a sorts; it
// also returns that position. a must be IPv4 and not in s.
func (s *AddrSet) with(a netip.Addr) (*AddrSet, int) {
	n, i := s.set().With(a)
	c := s.clone()
	c.s = n
	return c, i
}

// without returns a copy of s without the member at index i.
func (s *AddrSet) without(i int) *AddrSet {
	c := s.clone()
	c.s = s.set().Without(i)
	return c
}

// withRange returns a copy of s that owns the range p too, but for the
// addresses in exclude (added to those excluded already).
func (s *AddrSet) withRange(p netip.Prefix, exclude []netip.Addr) *AddrSet {
	c := s.clone()
	if c.ranges == nil {
		c.ranges = new(bart.Lite)
	}
	c.ranges = c.ranges.InsertPersist(p.Masked())
	ex := append(c.excluded.Addrs(), exclude...)
	c.excluded = inet.NewSet(ex...)
	return c
}

// withoutRange returns a copy of s without the range p, and without the
// exclusions in it.
func (s *AddrSet) withoutRange(p netip.Prefix) *AddrSet {
	c := s.clone()
	if c.ranges == nil {
		return c
	}
	c.ranges = c.ranges.DeletePersist(p.Masked())
	var keep []netip.Addr
	for _, a := range c.excluded.Addrs() {
		if !p.Contains(a) {
			keep = append(keep, a)
		}
	}
	c.excluded = inet.NewSet(keep...)
	if c.ranges.Size() == 0 {
		c.ranges = nil
	}
	return c
}

// clone returns a shallow copy of s (its parts are immutable).
func (s *AddrSet) clone() *AddrSet {
	if s == nil {
		return &AddrSet{}
	}
	c := *s
	return &c
}
