package inet

import (
	"net/netip"
	"slices"
	"testing"
)

func TestSet(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	for _, n := range []int{0, 1, 8, 9, 300} { // scanned and searched
		var addrs []netip.Addr
		for k := range n {
			addrs = append(addrs, netip.AddrFrom4([4]byte{192, 0, byte(2 + k/256), byte(k)}))
		}
		s := NewSet(append(addrs, append(addrs, a("2001:db8::1"))...)...) // duplicates, IPv6
		if s.Len() != n || !slices.Equal(s.Addrs(), addrs) {
			t.Fatalf("%d addresses: Len %d, Addrs %v", n, s.Len(), s.Addrs())
		}
		for k, x := range addrs {
			if !s.Has(Key(x.As4())) || s.Index(x) != k {
				t.Errorf("%d addresses: %v not found at %d (Index %d)", n, x, k, s.Index(x))
			}
		}
		if s.Has(Key([4]byte{203, 0, 113, 1})) || s.Index(a("203.0.113.1")) != -1 || s.Index(a("2001:db8::1")) != -1 {
			t.Errorf("%d addresses: a non-member is found", n)
		}
		w, i := s.With(a("198.51.100.1"))
		if w.Len() != n+1 || w.Index(a("198.51.100.1")) != i || s.Len() != n {
			t.Errorf("%d addresses: With: %v at %d; s now %d long", n, w.Addrs(), i, s.Len())
		}
		if back := w.Without(i); !slices.Equal(back.Addrs(), addrs) {
			t.Errorf("%d addresses: Without undoes With: %v", n, back.Addrs())
		}
		k := Key([4]byte{192, 0, 2, 7})
		if allocs := testing.AllocsPerRun(100, func() { s.Has(k) }); allocs != 0 {
			t.Errorf("Has allocates %v times", allocs)
		}
	}
	var nilSet *Set
	if nilSet.Has(1) || nilSet.Len() != 0 || len(nilSet.Addrs()) != 0 || nilSet.Index(a("192.0.2.1")) != -1 {
		t.Error("a nil Set is not empty")
	}
}
