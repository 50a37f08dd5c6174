// Package inet holds the address rules that vif's packages share, so that
// the packet loop and the ARP and NDP proxies agree on what a host may own.
package inet

import "net/netip"

// Why returns why a cannot be a host's own IPv4 address (a vif address, a
// tunnel endpoint, an address the ARP proxy answers for), or "" if it can:
// it must be IPv4 unicast outside 0.0.0.0/8 ("this network", RFC 1122
// section 3.2.1.3), 127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast) and
// 240.0.0.0/4 (reserved, RFC 1112 section 4, with the limited broadcast
// address 255.255.255.255).
func Why(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "no address"
	case !a.Is4():
		return "not IPv4"
	}
	return Why4(a.As4())
}

// Why4 is Why for an IPv4 address as an array, for the packet path: it
// does not allocate.
func Why4(a [4]byte) string {
	switch {
	case a == [4]byte{255, 255, 255, 255}:
		return "broadcast"
	case a[0] == 0:
		return "in 0.0.0.0/8"
	case a[0] == 127:
		return "loopback"
	case a[0] >= 240:
		return "reserved (240.0.0.0/4)"
	case a[0] >= 224:
		return "multicast"
	}
	return ""
}

// Why6 returns why a cannot be an IPv6 address that a host publishes on a
// link (an address the NDP proxy answers for), or "" if it can: it must
// be an IPv6 unicast address (RFC 4291 section 2.5) other than the
// unspecified address ::, the loopback address ::1, an IPv4-mapped
// address (::ffff:0:0/96) and a link-local address (fe80::/10), which
// belongs to one link and is never a vif's.
func Why6(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "no address"
	case a.Is4():
		return "not IPv6"
	case a.Is4In6():
		return "IPv4-mapped"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsMulticast():
		return "multicast"
	case a.IsLinkLocalUnicast():
		return "link-local"
	}
	return ""
}
