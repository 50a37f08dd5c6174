package vif_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/vif-project/vif/ndpproxy"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/viftest"
)

var (
	// range6 is an IPv6 range of the documentation prefix (RFC 3849).
	range6         = netip.MustParsePrefix("2001:db8:1::/64")
	range6Excluded = netip.MustParseAddr("2001:db8:1::77")
)

// range6Addr returns the j-th of a spread of addresses of range6: the
// interface identifier is j times a large odd number, so they fall all
// over the /64 (never the anycast address nor the excluded one).
func range6Addr(j int) netip.Addr {
	b := range6.Addr().As16()
	binary.BigEndian.PutUint64(b[8:], uint64(j+1)*0x9e3779b97f4a7c15)
	return netip.AddrFrom16(b)
}

// An IPv6 range is the interface's, address by address, but the excluded
// ones and its Subnet-Router anycast address (RFC 4291 section 2.6.1):
// packets for them are looped back, decapsulated to, and refused as inner
// sources from a tunnel; ICMPv6 errors come from the range's first
// address when the vif has no IPv6 address.
func TestRanges6(t *testing.T) {
	cfg := vif.Config{
		Ranges:  []netip.Prefix{range6, netip.MustParsePrefix("203.0.113.0/24")},
		Exclude: []netip.Addr{range6Excluded, netip.MustParseAddr("203.0.113.9")},
		Local:   localA,
		Peers:   []vif.Peer{{Addr: localB, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:b::/64")}}},
	}
	r := newRig(t, cfg)
	for j := range 50 {
		pkt := udp6(t, hostB6, range6Addr(j), "in the range")
		r.tun.Inject(pkt)
		if got, ok := r.tun.Recv(wait); !ok || !bytes.Equal(got, pkt) {
			t.Fatalf("a packet for %v of the range was not looped back", range6Addr(j))
		}
	}
	last := netip.MustParseAddr("2001:db8:1:0:ffff:ffff:ffff:ffff")
	pkt := udp6(t, hostB6, last, "last")
	r.tun.Inject(pkt)
	if got, ok := r.tun.Recv(wait); !ok || !bytes.Equal(got, pkt) {
		t.Fatalf("a packet for %v, the range's last address, was not looped back", last)
	}
	// Not the vif's: dropped for want of a peer, and answered from the
	// range's first address.
	for k, dst := range []netip.Addr{range6Excluded, range6.Addr(), netip.MustParseAddr("2001:db8:2::1")} {
		r.tun.Inject(udp6(t, hostB6, dst, "not ours"))
		ip, icmp := recvICMPv6(t, r.tun)
		if src := netip.MustParseAddr(ip.SrcIP.String()); src != netip.MustParseAddr("2001:db8:1::1") || icmp.TypeCode.Type() != 1 {
			t.Errorf("%v: ICMPv6 type %d from %v, want Destination Unreachable from 2001:db8:1::1", dst, icmp.TypeCode.Type(), src)
		}
		waitStats(t, r.ifc, "tx_no_peer", func(s vif.Stats) bool { return s.Drops["tx_no_peer"] == uint64(k+1) })
	}

	// Decapsulated to addresses of the range, not to the others.
	inner := udp6(t, hostB6, range6Addr(7), "from the peer")
	r.under.Inject(encap6(t, localB, localA, inner))
	if got, ok := r.tun.Recv(wait); !ok || !bytes.Equal(got, inner) {
		t.Fatalf("decapsulated to an address of the range: %v", ok)
	}
	r.under.Inject(encap6(t, localB, localA, udp6(t, hostB6, range6Excluded, "excluded")))
	r.under.Inject(encap6(t, localB, localA, udp6(t, hostB6, range6.Addr(), "anycast")))
	waitStats(t, r.ifc, "rx_not_local", func(s vif.Stats) bool { return s.Drops["rx_not_local"] == 2 })
	// An address of the range is ours: no peer may send from it.
	r.under.Inject(encap6(t, localB, localA, udp6(t, range6Addr(3), range6Addr(4), "spoofed")))
	waitStats(t, r.ifc, "rx_bad_source", func(s vif.Stats) bool { return s.Drops["rx_bad_source"] == 1 })
	if s := r.ifc.Stats(); s.Looped != 51 || s.Decapsulated != 1 {
		t.Errorf("looped %d, decapsulated %d; want 51, 1", s.Looped, s.Decapsulated)
	}
}

// Config.check takes IPv6 ranges of MinRangeBits6 or longer that hold
// host addresses, and refuses the others with ErrBadRange.
func TestRangeCheck6(t *testing.T) {
	for _, tt := range []struct {
		rng string
		ok  bool
	}{
		{"2001:db8:1::/64", true},
		{"2001:db8::/48", true},
		{"2001:db8:1::/120", true},
		{"2001:db8:1::5/128", true},
		{"2001:db8::/47", false},    // shorter than MinRangeBits6
		{"2001:db8:1::1/64", false}, // host bits
		{"fe80::/64", false},
		{"ff02::/64", false},
		{"::/64", false},
		{"::ffff:0:0/96", false},
		{"::fffe:0:0/95", false}, // holds the IPv4-mapped addresses
		{"fd00:1::/64", true},    // unique local (RFC 4193)
	} {
		ifc, err := vif.New(viftest.NewTUN(1), nil, &vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix(tt.rng)}})
		if err == nil {
			ifc.Close()
		}
		if tt.ok && err != nil || !tt.ok && !errors.Is(err, vif.ErrBadRange) {
			t.Errorf("range %s: %v, want ok %v", tt.rng, err, tt.ok)
		}
	}
	// What the vif takes, its NDP proxy publishes.
	if vif.MinRangeBits6 != ndpproxy.MinRangeBits {
		t.Errorf("vif.MinRangeBits6 %d, ndpproxy.MinRangeBits %d", vif.MinRangeBits6, ndpproxy.MinRangeBits)
	}
	// A peer's prefix over an IPv6 range would route it into the tunnel.
	_, err := vif.New(viftest.NewTUN(1), viftest.NewUnderlay(1), &vif.Config{Ranges: []netip.Prefix{range6}, Local: localA,
		Peers: []vif.Peer{{Addr: localB, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}}}})
	if !errors.Is(err, vif.ErrBadPeer) {
		t.Errorf("a peer prefix over an IPv6 range: %v, want ErrBadPeer", err)
	}
}
