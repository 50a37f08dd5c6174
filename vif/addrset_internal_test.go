package vif

import (
	"encoding/binary"
	"net/netip"
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
