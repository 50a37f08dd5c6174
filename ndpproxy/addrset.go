package ndpproxy

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
	"github.com/vif-project/vif/internal/inet"
)

// key is an IPv6 address as two numbers, the form AddrSet searches.
type key struct{ hi, lo uint64 }

func keyOf(b []byte) key {
	return key{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
}

func (k key) addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.AddrFrom16(b)
}

func compareKeys(a, b key) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

// AddrSet is an immutable set of IPv6 addresses with an allocation-free,
// O(log n) Contains. It is safe for concurrent use. The zero value and a
// nil *AddrSet are empty sets.
//
// The Responder publishes a new AddrSet through an atomic pointer on every
// Add and Remove, so lookups on the receive path take no lock.
type AddrSet struct {
	keys []key // sorted, unique
	// ranges are owned prefixes (AddRange), but for excluded. nil
	// without ranges.
	ranges   *bart.Lite
	excluded []key // sorted, unique
}

// NewAddrSet returns the set of the addresses among addrs that can be
// owned, as Responder.Add accepts (see ErrInvalidAddr); others are
// ignored, duplicates merged.
func NewAddrSet(addrs ...netip.Addr) *AddrSet {
	var ks []key
	for _, a := range addrs {
		if checkAddr(a) == nil {
			b := a.As16()
			ks = append(ks, keyOf(b[:]))
		}
	}
	slices.SortFunc(ks, compareKeys)
	return &AddrSet{keys: slices.Compact(ks)}
}

func (s *AddrSet) keyList() []key {
	if s == nil {
		return nil
	}
	return s.keys
}

// search returns the position of k among the members, or -1.
func search(keys []key, k key) int {
	if len(keys) <= 8 { // a few are scanned, which beats searching them
		for i, x := range keys {
			if x == k {
				return i
			}
		}
		return -1
	}
	// By hand: slices.BinarySearchFunc calls its comparison through a
	// function value, which made lookups three times slower.
	lo, hi := 0, len(keys)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if x := keys[m]; x.hi < k.hi || x.hi == k.hi && x.lo < k.lo {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(keys) && keys[lo] == k {
		return lo
	}
	return -1
}

// index returns the position of a among the members in ascending order,
// or -1.
func (s *AddrSet) index(a netip.Addr) int {
	if !a.Is6() || a.Is4In6() {
		return -1
	}
	b := a.As16()
	return search(s.keyList(), keyOf(b[:]))
}

// Contains reports whether a is in s: added, or in a range but for the
// range's Subnet-Router anycast address and the excluded addresses.
func (s *AddrSet) Contains(a netip.Addr) bool {
	if !a.Is6() || a.Is4In6() {
		return false
	}
	b := a.As16()
	return s.containsKey(b[:])
}

// containsKey is Contains for an address as 16 bytes.
func (s *AddrSet) containsKey(b []byte) bool {
	if s == nil {
		return false
	}
	k := keyOf(b)
	if search(s.keys, k) >= 0 {
		return true
	}
	if s.ranges == nil {
		return false
	}
	p, ok := s.ranges.LookupPrefixLPM(netip.PrefixFrom(netip.AddrFrom16([16]byte(b)), 128))
	if !ok || search(s.excluded, k) >= 0 {
		return false
	}
	if p.Bits() <= 126 && p.Addr() == netip.AddrFrom16([16]byte(b)) {
		// The Subnet-Router anycast address of the range (RFC 4291
		// section 2.6.1): a router on the link owns it.
		return false
	}
	return true
}

// Ranges returns the owned ranges (AddRange), in ascending order.
func (s *AddrSet) Ranges() []netip.Prefix {
	if s == nil || s.ranges == nil {
		return nil
	}
	return slices.Collect(s.ranges.AllSorted6())
}

// Len returns the number of addresses in s, not counting ranges.
func (s *AddrSet) Len() int { return len(s.keyList()) }

// Addrs returns the addresses in s in ascending order, in a new slice;
// ranges are not expanded.
func (s *AddrSet) Addrs() []netip.Addr {
	out := make([]netip.Addr, 0, s.Len())
	for _, k := range s.keyList() {
		out = append(out, k.addr())
	}
	return out
}

// with returns a copy of s with a added at the position where a sorts; it
// also returns that position. a must be IPv6 and not in s.
func (s *AddrSet) with(a netip.Addr) (*AddrSet, int) {
	b := a.As16()
	k := keyOf(b[:])
	keys := s.keyList()
	i, _ := slices.BinarySearchFunc(keys, k, compareKeys)
	c := s.clone()
	c.keys = slices.Insert(slices.Clone(keys), i, k)
	return c, i
}

// without returns a copy of s without the member at index i.
func (s *AddrSet) without(i int) *AddrSet {
	c := s.clone()
	c.keys = slices.Delete(slices.Clone(s.keys), i, i+1)
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
	ex := slices.Clone(c.excluded)
	for _, a := range exclude {
		if a.Is6() && !a.Is4In6() {
			b := a.As16()
			ex = append(ex, keyOf(b[:]))
		}
	}
	slices.SortFunc(ex, compareKeys)
	c.excluded = slices.Compact(ex)
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
	c.excluded = slices.DeleteFunc(slices.Clone(c.excluded), func(k key) bool { return p.Contains(k.addr()) })
	if c.ranges.Size() == 0 {
		c.ranges, c.excluded = nil, nil
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

// checkAddr returns an error wrapping ErrInvalidAddr if a cannot be owned
// (inet.Why6).
func checkAddr(a netip.Addr) error {
	if why := inet.Why6(a); why != "" {
		return fmt.Errorf("%w %s: %s", ErrInvalidAddr, a, why)
	}
	return nil
}
