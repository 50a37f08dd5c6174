package vif

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// A forged ICMP error quoting one of our outer headers is relayed only
// when the quoted inner packet went to a destination the tunnel carries.
func TestTunnelErrorRoutedOnly(t *testing.T) {
	i := &Interface{proto: 94}
	i.peers.Store(newPeerTable([]Peer{{Addr: netip.AddrFrom4([4]byte{198, 18, 1, 2}), Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}}, 1480))
	local := netip.AddrFrom4([4]byte{198, 18, 1, 1})
	i.local.Store(&local)
	i.routes.Store(&[]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")})
	i.addrs.Store(newAddrSet([]netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, nil, nil))
	errorAbout := func(innerDst string) []byte {
		inner := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: []byte{192, 0, 2, 1}, DstIP: netip.MustParseAddr(innerDst).AsSlice()}
		outer := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: 94,
			SrcIP: []byte{198, 18, 1, 1}, DstIP: []byte{198, 18, 1, 2}}
		quote := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		if err := gopacket.SerializeLayers(quote, opts, outer, inner, gopacket.Payload(make([]byte, 8))); err != nil {
			t.Fatal(err)
		}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: []byte{198, 18, 1, 77}, DstIP: []byte{198, 18, 1, 1}}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 1)}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, opts, ip, icmp, gopacket.Payload(quote.Bytes())); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	if _, ok := i.tunnelError(errorAbout("198.51.100.7")); !ok {
		t.Error("an error about a packet to a routed prefix is not relayed")
	}
	if _, ok := i.tunnelError(errorAbout("203.0.113.99")); ok {
		t.Error("an error about a packet the tunnel never carried (203.0.113.99) is relayed")
	}
}

// An ICMP error quoting one of our 6in4 packets (protocol 41) is relayed,
// as the ICMPv6 counterpart, only when the quoted IPv6 packet went to a
// destination the tunnel carries.
func TestTunnelError6in4(t *testing.T) {
	i := &Interface{proto: 94}
	i.peers.Store(newPeerTable([]Peer{{Addr: netip.AddrFrom4([4]byte{198, 18, 1, 2}), Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:b::/64")}}}, 1480))
	local := netip.AddrFrom4([4]byte{198, 18, 1, 1})
	i.local.Store(&local)
	i.routes.Store(&[]netip.Prefix{})
	i.addrs.Store(newAddrSet([]netip.Prefix{netip.MustParsePrefix("2001:db8:a::1/128")}, nil, nil))
	errorAbout := func(innerDst string, typ, code uint8, proto layers.IPProtocol) []byte {
		inner := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
			SrcIP: netip.MustParseAddr("2001:db8:a::1").AsSlice(), DstIP: netip.MustParseAddr(innerDst).AsSlice()}
		outer := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto,
			SrcIP: []byte{198, 18, 1, 1}, DstIP: []byte{198, 18, 1, 2}}
		quote := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		if err := gopacket.SerializeLayers(quote, opts, outer, inner, gopacket.Payload(make([]byte, 8))); err != nil {
			t.Fatal(err)
		}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: []byte{198, 18, 1, 77}, DstIP: []byte{198, 18, 1, 1}}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Seq: 1400}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, opts, ip, icmp, gopacket.Payload(quote.Bytes())); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	e, ok := i.tunnelError(errorAbout("2001:db8:b::7", 3, 1, layers.IPProtocolIPv6))
	if !ok || e.inner6 == nil || e.inner6.Dst() != netip.MustParseAddr("2001:db8:b::7") || e.code != 1 {
		t.Errorf("an error about a 6in4 packet to a peer's prefix: %+v, %v; want relayed, code 1, the inner IPv6 header", e, ok)
	}
	if e, ok := i.tunnelError(errorAbout("2001:db8:b::7", 3, 4, layers.IPProtocolIPv6)); !ok || e.code != 4 || e.mtu != 1400 {
		t.Errorf("fragmentation needed about a 6in4 packet: %+v, %v; want code 4, MTU 1400", e, ok)
	}
	if _, ok := i.tunnelError(errorAbout("2001:db8:c::7", 3, 1, layers.IPProtocolIPv6)); ok {
		t.Error("an error about a 6in4 packet the tunnel never carried (2001:db8:c::7) is relayed")
	}
	if _, ok := i.tunnelError(errorAbout("2001:db8:b::7", 3, 1, layers.IPProtocol(4))); ok {
		t.Error("an IPv6 quote under protocol 4 is relayed")
	}
}
