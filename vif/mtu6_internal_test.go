package vif

import (
	"errors"
	"net/netip"
	"testing"
)

// TestCheckMTU6: below 1280 is refused for a vif that carries IPv6 by an
// address, a route or a peer prefix (the kernel would turn IPv6 off on
// it), and allowed for an IPv4-only one.
func TestCheckMTU6(t *testing.T) {
	pfx := netip.MustParsePrefix
	v4 := Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32")}}
	for _, tc := range []struct {
		name   string
		c      Config
		routes []netip.Prefix
		six    bool
	}{
		{"IPv4 only", v4, nil, false},
		{"IPv6 address", Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32"), pfx("2001:db8::1/128")}}, nil, true},
		{"IPv6 route", v4, []netip.Prefix{pfx("2001:db8:b::/64")}, true},
		{"IPv6 peer prefix", Config{Addrs: v4.Addrs, Peers: []Peer{{Addr: netip.MustParseAddr("198.18.0.2"), Prefixes: []netip.Prefix{pfx("2001:db8:b::/64")}}}}, nil, true},
	} {
		l := LinkConfig{Config: tc.c, Routes: tc.routes}
		for _, mtu := range []int{1000, 1279, 1280, 1400} {
			err := l.checkMTU6(mtu)
			if want := tc.six && mtu < 1280; (err != nil) != want || (err != nil && !errors.Is(err, ErrBadMTU)) {
				t.Errorf("%s: checkMTU6(%d) = %v; want an ErrBadMTU: %v", tc.name, mtu, err, want)
			}
		}
	}
}
