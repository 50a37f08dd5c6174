package ipip_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// IPv6 test packets, built with gopacket like the IPv4 ones.

var (
	inner6Src = net.ParseIP("2001:db8:1::1")
	inner6Dst = net.ParseIP("2001:db8:2::2")
	tun6Src   = netip.MustParseAddr("2001:db8:ffff::1")
	tun6Dst   = netip.MustParseAddr("2001:db8:eeee::7")
)

// innerIP6 returns the IPv6 layer of a default inner packet; mods adjust it.
func innerIP6(mods ...func(*layers.IPv6)) *layers.IPv6 {
	ip := &layers.IPv6{
		Version:    6,
		HopLimit:   64,
		NextHeader: layers.IPProtocolUDP,
		SrcIP:      inner6Src,
		DstIP:      inner6Dst,
	}
	for _, m := range mods {
		m(ip)
	}
	return ip
}

// udp6Packet builds an IPv6 UDP packet carrying n payload bytes.
func udp6Packet(tb testing.TB, n int, mods ...func(*layers.IPv6)) []byte {
	tb.Helper()
	ip := innerIP6(mods...)
	ip.NextHeader = layers.IPProtocolUDP
	udp := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, ip, udp, gopacket.Payload(pattern(n)))
}

// decodeIPv6 decodes the IPv6 header at the start of b with gopacket.
func decodeIPv6(tb testing.TB, b []byte) *layers.IPv6 {
	tb.Helper()
	var ip layers.IPv6
	if err := ip.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		tb.Fatalf("gopacket cannot decode IPv6 header % x: %v", b[:min(len(b), 60)], err)
	}
	return &ip
}
