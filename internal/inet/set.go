package inet

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Set is an immutable set of IPv4 addresses, with a lookup that takes no
// lock and does not allocate (binary search, O(log n)). The packet loop
// and the ARP proxy each hold theirs behind an atomic pointer and replace
// it whole when the addresses change. A nil *Set is empty.
type Set struct {
	keys []uint32 // sorted, unique
}

// Key returns the address a as a number, the form Set looks up.
func Key(a [4]byte) uint32 { return binary.BigEndian.Uint32(a[:]) }

// NewSet returns the set of the IPv4 addresses among addrs; others are
// ignored, duplicates merged.
func NewSet(addrs ...netip.Addr) *Set {
	keys := make([]uint32, 0, len(addrs))
	for _, a := range addrs {
		if a.Is4() {
			keys = append(keys, Key(a.As4()))
		}
	}
	slices.Sort(keys)
	return &Set{keys: slices.Compact(keys)}
}

// Has reports whether the address with key k is in s. A few addresses
// are scanned, which beats searching them.
func (s *Set) Has(k uint32) bool {
	if s == nil {
		return false
	}
	if len(s.keys) <= 8 {
		for _, x := range s.keys {
			if x == k {
				return true
			}
		}
		return false
	}
	_, ok := slices.BinarySearch(s.keys, k)
	return ok
}

// Index returns the position of a among the addresses of s in ascending
// order, or -1 if it is not in s.
func (s *Set) Index(a netip.Addr) int {
	if !a.Is4() {
		return -1
	}
	return s.index(Key(a.As4()))
}

// IndexKey is Index for the address with key k.
func (s *Set) IndexKey(k uint32) int {
	if s != nil && len(s.keys) <= 8 {
		for i, x := range s.keys {
			if x == k {
				return i
			}
		}
		return -1
	}
	return s.index(k)
}

func (s *Set) index(k uint32) int {
	if s == nil {
		return -1
	}
	if i, ok := slices.BinarySearch(s.keys, k); ok {
		return i
	}
	return -1
}

// Len returns the number of addresses in s.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// Addrs returns the addresses of s in ascending order, in a new slice.
func (s *Set) Addrs() []netip.Addr {
	out := make([]netip.Addr, 0, s.Len())
	for _, k := range s.keysOrNil() {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], k)
		out = append(out, netip.AddrFrom4(b))
	}
	return out
}

// With returns a copy of s with the IPv4 address a added, and the
// position where it sorts. a must not be in s.
func (s *Set) With(a netip.Addr) (*Set, int) {
	keys := s.keysOrNil()
	k := Key(a.As4())
	i, _ := slices.BinarySearch(keys, k)
	return &Set{keys: slices.Insert(slices.Clone(keys), i, k)}, i
}

// Without returns a copy of s without the address at position i.
func (s *Set) Without(i int) *Set {
	return &Set{keys: slices.Delete(slices.Clone(s.keys), i, i+1)}
}

func (s *Set) keysOrNil() []uint32 {
	if s == nil {
		return nil
	}
	return s.keys
}
