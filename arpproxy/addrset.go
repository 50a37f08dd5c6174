package arpproxy

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// AddrSet is an immutable set of IPv4 addresses with an allocation-free,
// O(log n) Contains. It is safe for concurrent use. The zero value and a
// nil *AddrSet are empty sets.
//
// The Responder publishes a new AddrSet through an atomic pointer on every
// Add and Remove, so lookups on the receive path take no lock.
type AddrSet struct {
	keys []uint32 // sorted, unique
}

// NewAddrSet returns the set of the addresses among addrs that can be
// owned: IPv4 unicast addresses, as Responder.Add accepts. Others
// (see ErrInvalidAddr: 0/8, loopback, multicast, 240/4, IPv6) are ignored;
// duplicates are merged.
func NewAddrSet(addrs ...netip.Addr) *AddrSet {
	keys := make([]uint32, 0, len(addrs))
	for _, a := range addrs {
		if checkAddr(a) == nil {
			keys = append(keys, key4(a))
		}
	}
	slices.Sort(keys)
	return &AddrSet{keys: slices.Compact(keys)}
}

func key4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// index returns the position of a in s.keys, or -1.
func (s *AddrSet) index(a netip.Addr) int {
	if s == nil || !a.Is4() {
		return -1
	}
	i, ok := slices.BinarySearch(s.keys, key4(a))
	if !ok {
		return -1
	}
	return i
}

// Contains reports whether a is in s. Only IPv4 addresses can be members.
func (s *AddrSet) Contains(a netip.Addr) bool { return s.index(a) >= 0 }

// containsKey reports whether the IPv4 address k (big-endian) is in s.
func (s *AddrSet) containsKey(k uint32) bool {
	if s == nil {
		return false
	}
	_, ok := slices.BinarySearch(s.keys, k)
	return ok
}

// Len returns the number of addresses in s.
func (s *AddrSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// Addrs returns the addresses in s in ascending order, in a new slice.
func (s *AddrSet) Addrs() []netip.Addr {
	out := make([]netip.Addr, 0, s.Len())
	if s == nil {
		return out
	}
	for _, k := range s.keys {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], k)
		out = append(out, netip.AddrFrom4(b))
	}
	return out
}

// with returns a copy of s with a added at the position where a sorts; it
// also returns that position. a must be IPv4 and not in s.
func (s *AddrSet) with(a netip.Addr) (*AddrSet, int) {
	k := key4(a)
	var keys []uint32
	if s != nil {
		keys = s.keys
	}
	i, _ := slices.BinarySearch(keys, k)
	n := make([]uint32, 0, len(keys)+1)
	n = append(n, keys[:i]...)
	n = append(n, k)
	n = append(n, keys[i:]...)
	return &AddrSet{keys: n}, i
}

// without returns a copy of s without the member at index i.
func (s *AddrSet) without(i int) *AddrSet {
	n := make([]uint32, 0, len(s.keys)-1)
	n = append(n, s.keys[:i]...)
	n = append(n, s.keys[i+1:]...)
	return &AddrSet{keys: n}
}
