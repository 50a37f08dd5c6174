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

// icmp6Packet builds an ICMPv6 message of type typ from the default inner
// addresses, with an 4-byte type-specific word of zero and n bytes after.
func icmp6Packet(tb testing.TB, typ uint8, n int, mods ...func(*layers.IPv6)) []byte {
	tb.Helper()
	ip := innerIP6(mods...)
	ip.NextHeader = layers.IPProtocolICMPv6
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, ip, icmp, gopacket.Payload(append(make([]byte, 4), pattern(n)...)))
}

// raw6 builds an IPv6 packet whose Next Header is nh and whose payload is
// the given bytes (extension headers, nested packets).
func raw6(tb testing.TB, nh layers.IPProtocol, payload []byte, mods ...func(*layers.IPv6)) []byte {
	tb.Helper()
	ip := innerIP6(mods...)
	ip.NextHeader = nh
	return serialize(tb, ip, gopacket.Payload(payload))
}

// outer6Packet builds, with gopacket, an outer IPv6 header of next header
// nh from tun6Src to tun6Dst around payload.
func outer6Packet(tb testing.TB, nh uint8, payload []byte, mods ...func(*layers.IPv6)) []byte {
	tb.Helper()
	ip := &layers.IPv6{
		Version:    6,
		HopLimit:   64,
		NextHeader: layers.IPProtocol(nh),
		SrcIP:      tun6Src.AsSlice(),
		DstIP:      tun6Dst.AsSlice(),
	}
	for _, m := range mods {
		m(ip)
	}
	return serialize(tb, ip, gopacket.Payload(payload))
}

// extHeader returns an IPv6 extension header of the Hop-by-Hop, Routing or
// Destination Options shape: next header nh, n*8+8 bytes, padded with
// PadN.
func extHeader(nh layers.IPProtocol, n int) []byte {
	b := make([]byte, 8*(n+1))
	b[0], b[1] = byte(nh), byte(n)
	b[2], b[3] = 1, byte(len(b)-4) // PadN covering the rest
	return b
}

// fragHeader returns an IPv6 Fragment header: next header nh, offset in
// 8-byte units, more fragments.
func fragHeader(nh layers.IPProtocol, offset uint16, more bool) []byte {
	b := []byte{byte(nh), 0, byte(offset >> 5), byte(offset << 3), 0, 0, 0x12, 0x34}
	if more {
		b[3] |= 1
	}
	return b
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

// gopacketPayload is n bytes of pattern as a gopacket layer.
func gopacketPayload(n int) gopacket.Payload { return gopacket.Payload(pattern(n)) }

// parseIP6 parses an IPv6 address for gopacket.
func parseIP6(s string) net.IP { return net.ParseIP(s).To16() }
