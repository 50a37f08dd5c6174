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
	if _, _, _, _, ok := i.tunnelError(errorAbout("198.51.100.7")); !ok {
		t.Error("an error about a packet to a routed prefix is not relayed")
	}
	if _, _, _, _, ok := i.tunnelError(errorAbout("203.0.113.99")); ok {
		t.Error("an error about a packet the tunnel never carried (203.0.113.99) is relayed")
	}
}
