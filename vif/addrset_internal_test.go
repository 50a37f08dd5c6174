package vif

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
)

// BenchmarkHas6 measures the loop's lookup of an IPv6 destination: an
// address of the vif, an address of a /64 range, an excluded address of
// it, and an address that is not the vif's, among 100 addresses, a /64
// and a /120 range and 100 exclusions.
func BenchmarkHas6(b *testing.B) {
	var addrs []netip.Prefix
	var exclude []netip.Addr
	for k := range 100 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0xa, 14: byte(k >> 8), 15: byte(k) + 1})
		addrs = append(addrs, netip.PrefixFrom(a, 128))
		exclude = append(exclude, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte(k >> 8), 15: byte(k)*2 + 1}))
	}
	s := newAddrSet(addrs, []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64"), netip.MustParsePrefix("2001:db8:2::/120")}, exclude)
	inRange := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1}
	binary.BigEndian.PutUint64(inRange[8:], 0x9e3779b97f4a7c15)
	for _, bc := range []struct {
		name string
		a    [16]byte
		want bool
	}{
		{"address", addrs[50].Addr().As16(), true},
		{"range", inRange, true},
		{"excluded", exclude[50].As16(), false},
		{"other", [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 9, 15: 1}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if s.many6 {
				b.Fatal("the ranges are looked up in the trie, not scanned")
			}
			if s.has6(bc.a) != bc.want {
				b.Fatalf("has6(%v) = %v", netip.AddrFrom16(bc.a), !bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				s.has6(bc.a)
			}
		})
	}
}

// BenchmarkHas6Many is BenchmarkHas6's range lookup with more ranges
// than are scanned: a /64 among 16, looked up in the trie.
func BenchmarkHas6Many(b *testing.B) {
	var ranges []netip.Prefix
	for k := range 16 {
		ranges = append(ranges, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(k + 1)}), 64))
	}
	s := newAddrSet(nil, ranges, nil)
	a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1}
	binary.BigEndian.PutUint64(a[8:], 0x9e3779b97f4a7c15)
	if !s.many6 || !s.has6(a) {
		b.Fatalf("many6 %v, has6 %v", s.many6, s.has6(a))
	}
	b.ReportAllocs()
	for b.Loop() {
		s.has6(a)
	}
}

// has6 agrees with a longest-prefix match over the ranges, scanned (a
// few ranges) or looked up in the trie (many), at their edges and around.
func TestHas6Ranges(t *testing.T) {
	ranges := []netip.Prefix{
		netip.MustParsePrefix("2001:db8:1::/64"), netip.MustParsePrefix("2001:db8::/48"),
		netip.MustParsePrefix("2001:db8:2::/120"), netip.MustParsePrefix("2001:db8:3::5/128"),
		netip.MustParsePrefix("2001:db8:4::/127"), netip.MustParsePrefix("2001:db8:5::/63"),
		netip.MustParsePrefix("2001:db8:6::/65"), netip.MustParsePrefix("2001:db8:7::/96"),
		netip.MustParsePrefix("2001:db8:8::/100"), netip.MustParsePrefix("2001:db8:9::/49"),
	}
	exclude := []netip.Addr{netip.MustParseAddr("2001:db8:1::9"), netip.MustParseAddr("2001:db8:6::1")}
	for _, n := range []int{1, 2, maxScan6, maxScan6 + 1, len(ranges)} {
		rs := ranges[:n]
		s := newAddrSet(nil, rs, exclude)
		if s.many6 != (n > maxScan6) {
			t.Fatalf("%d ranges: many6 %v", n, s.many6)
		}
		for _, r := range ranges {
			first := r.Masked().Addr()
			last := first.As16()
			for k := r.Bits(); k < 128; k++ {
				last[k/8] |= 0x80 >> (k % 8)
			}
			for _, a := range []netip.Addr{first, first.Next(), first.Prev(), netip.AddrFrom16(last), netip.AddrFrom16(last).Prev(), netip.AddrFrom16(last).Next(), exclude[0], exclude[1]} {
				want := false
				for _, q := range rs {
					if q.Contains(a) && !slices.Contains(exclude, a) && (q.Bits() > 126 || a != q.Masked().Addr()) {
						want = true
					}
				}
				// An anycast address of one range inside another is
				// no address of either: the vif is no router there.
				for _, q := range rs {
					if q.Bits() <= 126 && a == q.Masked().Addr() {
						want = false
					}
				}
				if got := s.has6(a.As16()); got != want {
					t.Errorf("%d ranges: has6(%v) = %v, want %v", n, a, got, want)
				}
			}
		}
	}
}
