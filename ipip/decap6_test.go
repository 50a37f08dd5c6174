package ipip_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/ipip"
)

type decapFunc func([]byte, uint8) ([]byte, error)

// TestDecapIPv6Errors produces every reason DecapIPv6, and Decap with
// ProtoIPv6, can give with a crafted packet; each packet has one defect.
func TestDecapIPv6Errors(t *testing.T) {
	inner4 := icmpPacket(t, 16)
	inner6 := udp6Packet(t, 16)
	good4in6 := outer6Packet(t, ipip.ProtoIPinIP, inner4)
	good6in6 := outer6Packet(t, ipip.ProtoIPv6, inner6)
	mod := func(pkt []byte, f func(b []byte)) []byte {
		b := append([]byte(nil), pkt...)
		f(b)
		return b
	}
	in6 := func(f func(b []byte)) []byte { return outer6Packet(t, ipip.ProtoIPv6, mod(inner6, f)) }
	in4 := func(f func(b []byte)) []byte { return outer6Packet(t, ipip.ProtoIPinIP, mod(inner4, f)) }
	// six4 wraps an inner IPv6 packet in an outer IPv4 one (6in4).
	six4 := func(inner []byte, mods ...func(*layers.IPv4)) []byte {
		return outerPacket(t, ipip.ProtoIPv6, inner, mods...)
	}
	hbh := func(nh layers.IPProtocol, rest []byte) []byte { return append(extHeader(nh, 0), rest...) }

	tests := []struct {
		name    string
		decap   decapFunc // nil: DecapIPv6
		pkt     []byte
		proto   uint8 // 0: ProtoIPv6
		wantErr ipip.Error
	}{
		// The tunnel's protocol.
		{name: "protocol 94 over IPv6", pkt: good4in6, proto: ipip.ProtoIPIP, wantErr: ipip.ErrProtocolFamily},
		{name: "protocol 17 over IPv6", pkt: good4in6, proto: 17, wantErr: ipip.ErrProtocolFamily},
		// The outer header.
		{name: "empty", pkt: nil, wantErr: ipip.ErrTruncated},
		{name: "39 bytes", pkt: good6in6[:39], wantErr: ipip.ErrTruncated},
		{name: "version 4", pkt: mod(good6in6, func(b []byte) { b[0] = 0x40 }), wantErr: ipip.ErrVersion},
		{name: "an IPv4 packet", pkt: outerPacket(t, ipip.ProtoIPv6, inner6), wantErr: ipip.ErrVersion},
		{name: "payload length past buffer", pkt: good6in6[:len(good6in6)-1], wantErr: ipip.ErrTotalLen},
		{name: "jumbogram", pkt: mod(outer6Packet(t, 0, hbh(layers.IPProtocolIPv6, inner6)), func(b []byte) { b[4], b[5] = 0, 0 }), wantErr: ipip.ErrJumbogram},
		{name: "fragment header", pkt: outer6Packet(t, 44, append(fragHeader(layers.IPProtocolIPv6, 0, true), inner6...)), wantErr: ipip.ErrFragment},
		{name: "last fragment", pkt: outer6Packet(t, 44, append(fragHeader(layers.IPProtocolIPv6, 8, false), inner6...)), wantErr: ipip.ErrFragment},
		{name: "hop-by-hop header", pkt: outer6Packet(t, 0, hbh(layers.IPProtocolIPv6, inner6)), wantErr: ipip.ErrExtensionHeader},
		{name: "destination options (tunnel encapsulation limit)", pkt: outer6Packet(t, 60, append([]byte{41, 0, 4, 1, 4, 1, 1, 0}, inner6...)), wantErr: ipip.ErrExtensionHeader},
		{name: "routing header", pkt: outer6Packet(t, 43, append(extHeader(layers.IPProtocolIPv6, 0), inner6...)), wantErr: ipip.ErrExtensionHeader},
		{name: "ESP", pkt: outer6Packet(t, 50, inner6), wantErr: ipip.ErrExtensionHeader},
		{name: "AH", pkt: outer6Packet(t, 51, inner6), wantErr: ipip.ErrExtensionHeader},
		{name: "UDP", pkt: outer6Packet(t, 17, inner6), wantErr: ipip.ErrProtocol},
		{name: "next header 94 on a 4 tunnel", pkt: outer6Packet(t, ipip.ProtoIPIP, inner4), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrProtocol},
		{name: "next header 4 on a 41 tunnel", pkt: good4in6, wantErr: ipip.ErrProtocol},
		{name: "next header 41 on a 4 tunnel", pkt: good6in6, proto: ipip.ProtoIPinIP, wantErr: ipip.ErrProtocol},
		// An inner IPv6 packet.
		{name: "inner empty", pkt: outer6Packet(t, ipip.ProtoIPv6, nil, func(ip *layers.IPv6) { ip.Length = 0 }), wantErr: ipip.ErrInnerTruncated},
		{name: "inner 39 bytes", pkt: outer6Packet(t, ipip.ProtoIPv6, inner6[:39]), wantErr: ipip.ErrInnerTruncated},
		{name: "inner cut by outer payload length", pkt: mod(good6in6, func(b []byte) { binary.BigEndian.PutUint16(b[4:], 39) }), wantErr: ipip.ErrInnerTruncated},
		{name: "inner version 4", pkt: in6(func(b []byte) { b[0] = 0x45 }), wantErr: ipip.ErrInnerVersion},
		{name: "inner payload past outer payload", pkt: in6(func(b []byte) { binary.BigEndian.PutUint16(b[4:], uint16(len(inner6)-40+1)) }), wantErr: ipip.ErrInnerTotalLen},
		{name: "inner payload past outer payload, within buffer", pkt: append(mod(good6in6, func(b []byte) { binary.BigEndian.PutUint16(b[4:], uint16(len(inner6)-1)) }), 0), wantErr: ipip.ErrInnerTotalLen},
		{name: "inner jumbogram", pkt: in6(func(b []byte) { b[4], b[5], b[6] = 0, 0, 0 }), wantErr: ipip.ErrJumbogram},
		{name: "inner hop limit 0", pkt: in6(func(b []byte) { b[7] = 0 }), wantErr: ipip.ErrInnerTTL},
		{name: "inner extension header past its payload", pkt: outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolIPv6Destination, extHeader(layers.IPProtocolUDP, 1)[:12])), wantErr: ipip.ErrInnerTruncated},
		{name: "inner extension header shorter than 8", pkt: outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolIPv6Routing, []byte{17, 0, 0, 0})), wantErr: ipip.ErrInnerTruncated},
		{name: "inner AH past its payload", pkt: outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolAH, []byte{17, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})), wantErr: ipip.ErrInnerTruncated},
		{name: "nested 41 in 41", pkt: outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolIPv6, inner6)), wantErr: ipip.ErrNested},
		{name: "nested 4 in 41", pkt: outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolIPv4, inner4)), wantErr: ipip.ErrNested},
		{name: "nested 94 in 41", pkt: outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocol(ipip.ProtoIPIP), inner4)), wantErr: ipip.ErrNested},
		{name: "nested behind hop-by-hop and destination options", pkt: outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolIPv6HopByHop,
			append(append(extHeader(layers.IPProtocolIPv6Destination, 0), extHeader(layers.IPProtocolIPv6, 2)...), inner6...))), wantErr: ipip.ErrNested},
		{name: "nested behind a routing header and AH", pkt: outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolIPv6Routing,
			append(append(extHeader(layers.IPProtocolAH, 0), 4, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1), inner4...))), wantErr: ipip.ErrNested},
		{name: "nested in a first fragment", pkt: outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolIPv6Fragment, append(fragHeader(layers.IPProtocolIPv6, 0, true), inner6...))), wantErr: ipip.ErrNested},
		{name: "nested in a later fragment", pkt: outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolIPv6Fragment, append(fragHeader(layers.IPProtocolIPv4, 3, false), pattern(24)...))), wantErr: ipip.ErrNested},
		{name: "CE over Not-ECT", pkt: outer6Packet(t, ipip.ProtoIPv6, inner6, func(ip *layers.IPv6) { ip.TrafficClass = tos(0, ipip.CE) }), wantErr: ipip.ErrECN},
		// An inner IPv4 packet.
		{name: "4in6 inner truncated", pkt: outer6Packet(t, ipip.ProtoIPinIP, inner4[:19]), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrInnerTruncated},
		{name: "4in6 inner version 6", pkt: outer6Packet(t, ipip.ProtoIPinIP, inner6), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrInnerVersion},
		{name: "4in6 inner IHL 4", pkt: in4(func(b []byte) { b[0] = 0x44 }), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrInnerHeaderLen},
		{name: "4in6 inner total length past payload", pkt: in4(func(b []byte) { binary.BigEndian.PutUint16(b[2:], uint16(len(inner4)+1)) }), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrInnerTotalLen},
		{name: "4in6 inner checksum", pkt: in4(func(b []byte) { b[10] ^= 1 }), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrInnerChecksum},
		{name: "4in6 inner TTL 0", pkt: outer6Packet(t, ipip.ProtoIPinIP, icmpPacket(t, 8, func(ip *layers.IPv4) { ip.TTL = 0 })), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrInnerTTL},
		{name: "4in6 nested 41", pkt: outer6Packet(t, ipip.ProtoIPinIP, rawInner(t, layers.IPProtocolIPv6, inner6)), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrNested},
		{name: "4in6 nested 94", pkt: outer6Packet(t, ipip.ProtoIPinIP, rawInner(t, layers.IPProtocol(ipip.ProtoIPIP), inner4)), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrNested},
		{name: "4in6 CE over Not-ECT", pkt: outer6Packet(t, ipip.ProtoIPinIP, inner4, func(ip *layers.IPv6) { ip.TrafficClass = tos(0, ipip.CE) }), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrECN},
		// 6in4: Decap with ProtoIPv6.
		{name: "6in4 outer checksum", decap: ipip.Decap, pkt: mod(six4(inner6), func(b []byte) { b[11] ^= 1 }), wantErr: ipip.ErrChecksum},
		{name: "6in4 outer fragment", decap: ipip.Decap, pkt: six4(inner6, func(ip *layers.IPv4) { ip.Flags = layers.IPv4MoreFragments }), wantErr: ipip.ErrFragment},
		{name: "6in4 protocol 94", decap: ipip.Decap, pkt: outerPacket(t, ipip.ProtoIPIP, inner6), wantErr: ipip.ErrProtocol},
		{name: "6in4 inner version 4", decap: ipip.Decap, pkt: six4(inner4), wantErr: ipip.ErrInnerVersion},
		{name: "6in4 inner truncated", decap: ipip.Decap, pkt: six4(inner6[:39]), wantErr: ipip.ErrInnerTruncated},
		{name: "6in4 inner payload past outer", decap: ipip.Decap, pkt: six4(inner6[:len(inner6)-1]), wantErr: ipip.ErrInnerTotalLen},
		{name: "6in4 inner jumbogram", decap: ipip.Decap, pkt: six4(mod(inner6, func(b []byte) { b[4], b[5], b[6] = 0, 0, 0 })), wantErr: ipip.ErrJumbogram},
		{name: "6in4 inner hop limit 0", decap: ipip.Decap, pkt: six4(udp6Packet(t, 8, func(ip *layers.IPv6) { ip.HopLimit = 0 })), wantErr: ipip.ErrInnerTTL},
		{name: "6in4 nested 41", decap: ipip.Decap, pkt: six4(raw6(t, layers.IPProtocolIPv6, inner6)), wantErr: ipip.ErrNested},
		{name: "6in4 nested 4", decap: ipip.Decap, pkt: six4(raw6(t, layers.IPProtocolIPv4, inner4)), wantErr: ipip.ErrNested},
		{name: "6in4 CE over Not-ECT", decap: ipip.Decap, pkt: six4(inner6, func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.CE) }), wantErr: ipip.ErrECN},
	}
	seen := make(map[ipip.Error]bool)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decap := tt.decap
			if decap == nil {
				decap = ipip.DecapIPv6
			}
			proto := tt.proto
			if proto == 0 {
				proto = ipip.ProtoIPv6
			}
			orig := append([]byte(nil), tt.pkt...)
			got, err := decap(tt.pkt, proto)
			if err != tt.wantErr {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			seen[tt.wantErr] = true
			if got != nil {
				t.Errorf("%d bytes returned with error %v", len(got), err)
			}
			if diff := cmp.Diff(orig, tt.pkt); diff != "" {
				t.Errorf("a failed decapsulation modified its argument (-want +got):\n%s", diff)
			}
		})
	}
	for e := ipip.Error(1); e < ipip.NumErrors; e++ {
		switch e {
		case ipip.ErrHeaderLen, ipip.ErrHeadroom, ipip.ErrTooBig, ipip.ErrEndpoints: // IPv4 outer or Encap only
			continue
		}
		if !seen[e] {
			t.Errorf("no test case produces %v", e)
		}
	}
}

// TestDecapIPv6Accepts checks packets that must pass, and where the inner
// packet is in them.
func TestDecapIPv6Accepts(t *testing.T) {
	inner4 := udpPacket(t, 40)
	inner6 := udp6Packet(t, 40)
	hdrOnly := raw6(t, layers.IPProtocolNoNextHeader, nil)
	hdrOnly[4], hdrOnly[5] = 0, 0 // a payload length of 0, which gopacket does not write
	hdrOnly = hdrOnly[:40]
	laterFrag := raw6(t, layers.IPProtocolIPv6Fragment, append(fragHeader(layers.IPProtocolUDP, 3, false), pattern(24)...))
	tests := []struct {
		name  string
		decap decapFunc
		proto uint8
		pkt   []byte
		inner []byte
		off   int
	}{
		{"4in6", ipip.DecapIPv6, ipip.ProtoIPinIP, outer6Packet(t, ipip.ProtoIPinIP, inner4), inner4, 40},
		{"6in6", ipip.DecapIPv6, ipip.ProtoIPv6, outer6Packet(t, ipip.ProtoIPv6, inner6), inner6, 40},
		{"6in4", ipip.Decap, ipip.ProtoIPv6, outerPacket(t, ipip.ProtoIPv6, inner6), inner6, 20},
		{"6in4, outer options", ipip.Decap, ipip.ProtoIPv6, outerPacket(t, ipip.ProtoIPv6, inner6, func(ip *layers.IPv4) { ip.Options = []layers.IPv4Option{routerAlert} }), inner6, 24},
		{"6in4 padded (RFC 4213 section 3.6)", ipip.Decap, ipip.ProtoIPv6, outerPacket(t, ipip.ProtoIPv6, append(append([]byte(nil), inner6...), 0, 0, 0)), inner6, 20},
		{"6in6 inner shorter than the outer payload", ipip.DecapIPv6, ipip.ProtoIPv6, outer6Packet(t, ipip.ProtoIPv6, append(append([]byte(nil), inner6...), 0xff)), inner6, 40},
		{"6in6 trailing bytes past the outer payload", ipip.DecapIPv6, ipip.ProtoIPv6, append(outer6Packet(t, ipip.ProtoIPv6, inner6), 0x60, 0, 0, 0), inner6, 40},
		{"4in6 trailing bytes", ipip.DecapIPv6, ipip.ProtoIPinIP, append(outer6Packet(t, ipip.ProtoIPinIP, inner4), 0x45, 0), inner4, 40},
		{"inner header only, payload length 0", ipip.DecapIPv6, ipip.ProtoIPv6, outer6Packet(t, ipip.ProtoIPv6, hdrOnly), hdrOnly, 40},
		{"inner ICMPv6 error", ipip.DecapIPv6, ipip.ProtoIPv6, outer6Packet(t, ipip.ProtoIPv6, icmp6Packet(t, 1, 48)), icmp6Packet(t, 1, 48), 40},
		{"inner behind extension headers", ipip.DecapIPv6, ipip.ProtoIPv6, outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolIPv6HopByHop, append(extHeader(layers.IPProtocolUDP, 1), 1, 2, 3, 4))),
			raw6(t, layers.IPProtocolIPv6HopByHop, append(extHeader(layers.IPProtocolUDP, 1), 1, 2, 3, 4)), 40},
		{"inner later fragment of UDP", ipip.DecapIPv6, ipip.ProtoIPv6, outer6Packet(t, ipip.ProtoIPv6, laterFrag), laterFrag, 40},
		{"inner ESP (not walked)", ipip.DecapIPv6, ipip.ProtoIPv6, outer6Packet(t, ipip.ProtoIPv6, raw6(t, layers.IPProtocolESP, pattern(30))), raw6(t, layers.IPProtocolESP, pattern(30)), 40},
		{"outer hop limit 0", ipip.DecapIPv6, ipip.ProtoIPv6, outer6Packet(t, ipip.ProtoIPv6, inner6, func(ip *layers.IPv6) { ip.HopLimit = 0 }), inner6, 40},
		{"outer flow label", ipip.DecapIPv6, ipip.ProtoIPv6, outer6Packet(t, ipip.ProtoIPv6, inner6, func(ip *layers.IPv6) { ip.FlowLabel = 0xabcde }), inner6, 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.decap(tt.pkt, tt.proto)
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if diff := cmp.Diff(tt.inner, got); diff != "" {
				t.Errorf("inner packet (-want +got):\n%s", diff)
			}
			if off, ok := subSliceOf(got, tt.pkt); !ok || off != tt.off {
				t.Errorf("result at offset %d (sub-slice: %v), want an alias of pkt[%d:]", off, ok, tt.off)
			}
		})
	}
}

// TestDecapIPv6ECN applies the RFC 6040 table to every pair of outer and
// inner IP versions but IPv4 in IPv4 (TestDecapECN): only the inner ECN
// field changes, as gopacket sees it, and an IPv4 inner checksum stays
// right.
func TestDecapIPv6ECN(t *testing.T) {
	ecns := []ipip.ECN{ipip.NotECT, ipip.ECT0, ipip.ECT1, ipip.CE}
	const dscp = 46
	mk4 := func(e ipip.ECN) []byte { return udpPacket(t, 30, func(ip *layers.IPv4) { ip.TOS = tos(dscp, e) }) }
	mk6 := func(e ipip.ECN) []byte {
		return udp6Packet(t, 30, func(ip *layers.IPv6) { ip.TrafficClass, ip.FlowLabel = tos(dscp, e), 0x12345 })
	}
	combos := []struct {
		name  string
		inner func(ipip.ECN) []byte
		outer func(inner []byte, e ipip.ECN) []byte
		decap decapFunc
		proto uint8
	}{
		{"4in6", mk4, func(in []byte, e ipip.ECN) []byte {
			return outer6Packet(t, ipip.ProtoIPinIP, in, func(ip *layers.IPv6) { ip.TrafficClass = tos(10, e) })
		}, ipip.DecapIPv6, ipip.ProtoIPinIP},
		{"6in6", mk6, func(in []byte, e ipip.ECN) []byte {
			return outer6Packet(t, ipip.ProtoIPv6, in, func(ip *layers.IPv6) { ip.TrafficClass = tos(10, e) })
		}, ipip.DecapIPv6, ipip.ProtoIPv6},
		{"6in4", mk6, func(in []byte, e ipip.ECN) []byte {
			return outerPacket(t, ipip.ProtoIPv6, in, func(ip *layers.IPv4) { ip.TOS = tos(10, e) })
		}, ipip.Decap, ipip.ProtoIPv6},
	}
	for _, c := range combos {
		for _, innerECN := range ecns {
			for _, outerECN := range ecns {
				t.Run(fmt.Sprintf("%s/inner=%v/outer=%v", c.name, innerECN, outerECN), func(t *testing.T) {
					want, ok := ipip.DecapECN(outerECN, innerECN)
					res, err := c.decap(c.outer(c.inner(innerECN), outerECN), c.proto)
					if !ok {
						if err != ipip.ErrECN {
							t.Errorf("error %v, want %v", err, ipip.ErrECN)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(c.inner(want), res); diff != "" {
						t.Errorf("inner packet (-want +got):\n%s", diff)
					}
					if res[0]>>4 == 4 && !gopacketChecksumOK(t, res) {
						t.Error("inner IPv4 checksum invalid after the ECN rewrite")
					}
				})
			}
		}
	}
}
