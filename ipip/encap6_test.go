package ipip_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/ipip"
)

// outer6Fields are the outer IPv6 header fields Encap and EncapIPv6
// decide, as gopacket decodes them. The flow label is checked apart.
type outer6Fields struct {
	Version      uint8
	TrafficClass uint8
	Length       uint16
	NextHeader   layers.IPProtocol
	HopLimit     uint8
	SrcIP, DstIP string
}

func fields6Of(ip *layers.IPv6) outer6Fields {
	return outer6Fields{
		Version:      ip.Version,
		TrafficClass: ip.TrafficClass,
		Length:       ip.Length,
		NextHeader:   ip.NextHeader,
		HopLimit:     ip.HopLimit,
		SrcIP:        ip.SrcIP.String(),
		DstIP:        ip.DstIP.String(),
	}
}

// checkInPlace checks that out is buf[off-hl:] with the inner packet not
// copied and the bytes in front of the outer header untouched.
func checkInPlace(t *testing.T, buf, out []byte, off, hl, innerLen int) {
	t.Helper()
	if !sameMemory(out, buf[off-hl:]) {
		t.Error("result does not start at buf[off-hl]")
	}
	if &out[hl] != &buf[off] {
		t.Error("the inner packet was copied: &out[hl] != &buf[off]")
	}
	if diff := cmp.Diff(bytes.Repeat([]byte{0xa5}, off-hl), buf[:off-hl]); diff != "" {
		t.Errorf("wrote in front of the outer header (-want +got):\n%s", diff)
	}
	if got, want := len(out), hl+innerLen; got != want {
		t.Errorf("len(out) = %d, want %d", got, want)
	}
}

// TestEncapOverIPv6 is IPv4 in IPv6 (RFC 2473): Encap with IPv6 endpoints.
func TestEncapOverIPv6(t *testing.T) {
	tun := func(mods ...func(*ipip.Encapsulator)) ipip.Encapsulator {
		e := ipip.Encapsulator{Src: tun6Src, Dst: tun6Dst}
		for _, m := range mods {
			m(&e)
		}
		return e
	}
	want := func(n int, mods ...func(*outer6Fields)) outer6Fields {
		f := outer6Fields{Version: 6, Length: uint16(n), NextHeader: layers.IPProtocolIPv4, HopLimit: ipip.DefaultTTL,
			SrcIP: tun6Src.String(), DstIP: tun6Dst.String()}
		for _, m := range mods {
			m(&f)
		}
		return f
	}
	icmp := icmpPacket(t, 32)
	tests := []struct {
		name  string
		enc   ipip.Encapsulator
		inner []byte
		off   int // 0 means IPv6HeaderLen
		want  outer6Fields
	}{
		{name: "default protocol is 4", enc: tun(), inner: icmp, want: want(len(icmp))},
		{name: "protocol 4 explicit", enc: tun(func(e *ipip.Encapsulator) { e.Protocol = ipip.ProtoIPinIP }), inner: icmp, want: want(len(icmp))},
		{name: "TOS copied, ECT(0)", enc: tun(), inner: icmpPacket(t, 32, func(ip *layers.IPv4) { ip.TOS = tos(46, ipip.ECT0) }),
			want: want(len(icmp), func(f *outer6Fields) { f.TrafficClass = tos(46, ipip.ECT0) })},
		{name: "TOS copied, CE not reset", enc: tun(), inner: icmpPacket(t, 32, func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.CE) }),
			want: want(len(icmp), func(f *outer6Fields) { f.TrafficClass = tos(0, ipip.CE) })},
		{name: "hop limit fixed", enc: tun(func(e *ipip.Encapsulator) { e.TTL = 200 }), inner: icmp,
			want: want(len(icmp), func(f *outer6Fields) { f.HopLimit = 200 })},
		{name: "hop limit inherited", enc: tun(func(e *ipip.Encapsulator) { e.InheritTTL = true }), inner: icmpPacket(t, 32, func(ip *layers.IPv4) { ip.TTL = 3 }),
			want: want(len(icmp), func(f *outer6Fields) { f.HopLimit = 3 })},
		{name: "DF inner: nothing to copy", enc: tun(), inner: icmpPacket(t, 32, func(ip *layers.IPv4) { ip.Flags = layers.IPv4DontFragment }), want: want(len(icmp))},
		{name: "large headroom", enc: tun(), inner: icmp, off: 64, want: want(len(icmp))},
		{name: "link-local endpoints", enc: ipip.Encapsulator{Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("fe80::2")}, inner: icmp,
			want: want(len(icmp), func(f *outer6Fields) { f.SrcIP, f.DstIP = "fe80::1", "fe80::2" })},
		{name: "65535-byte inner", enc: tun(), inner: udpPacket(t, ipip.MaxPacketLen-28), want: want(ipip.MaxPacketLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off := tt.off
			if off == 0 {
				off = ipip.IPv6HeaderLen
			}
			buf := withHeadroom(tt.inner, off)
			enc := tt.enc
			out, err := enc.Encap(buf, off)
			if err != nil {
				t.Fatalf("Encap: %v", err)
			}
			checkInPlace(t, buf, out, off, ipip.IPv6HeaderLen, len(tt.inner))
			outer := decodeIPv6(t, out)
			if diff := cmp.Diff(tt.want, fields6Of(outer)); diff != "" {
				t.Errorf("outer header (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.inner, outer.Payload); diff != "" {
				t.Errorf("outer payload is not the inner packet (-want +got):\n%s", diff)
			}
			if outer.FlowLabel == 0 {
				t.Error("flow label 0, want a hash of the inner flow")
			}
			got, err := ipip.DecapIPv6(out, ipip.ProtoIPinIP)
			if err != nil || !bytes.Equal(got, tt.inner) {
				t.Errorf("DecapIPv6(Encap(inner)) = %d bytes, %v; want the inner packet", len(got), err)
			}
		})
	}
}

// TestEncapIPv6 is IPv6 in IPv4 (RFC 4213) and IPv6 in IPv6 (RFC 2473).
func TestEncapIPv6(t *testing.T) {
	udp := udp6Packet(t, 100)
	big := udp6Packet(t, ipip.IPv6MinMTU-48+1) // 1281 bytes
	for _, over := range []string{"IPv4", "IPv6"} {
		enc := ipip.Encapsulator{Src: tunSrc, Dst: tunDst}
		hl := ipip.IPv4MinLen
		if over == "IPv6" {
			enc = ipip.Encapsulator{Src: tun6Src, Dst: tun6Dst}
			hl = ipip.IPv6HeaderLen
		}
		tests := []struct {
			name   string
			mod    func(*ipip.Encapsulator)
			inner  []byte
			tos    uint8
			ttl    uint8
			df     bool
			protos []uint8 // Protocol values that must make no difference
		}{
			{name: "UDP", inner: udp, ttl: ipip.DefaultTTL, protos: []uint8{0, ipip.ProtoIPIP, ipip.ProtoIPinIP, 17}},
			{name: "traffic class copied", inner: udp6Packet(t, 10, func(ip *layers.IPv6) { ip.TrafficClass = tos(10, ipip.ECT1) }), tos: tos(10, ipip.ECT1), ttl: ipip.DefaultTTL},
			{name: "CE copied", inner: udp6Packet(t, 10, func(ip *layers.IPv6) { ip.TrafficClass = tos(0, ipip.CE) }), tos: tos(0, ipip.CE), ttl: ipip.DefaultTTL},
			{name: "TTL fixed", mod: func(e *ipip.Encapsulator) { e.TTL = 9 }, inner: udp, ttl: 9},
			{name: "hop limit inherited", mod: func(e *ipip.Encapsulator) { e.InheritTTL = true }, inner: udp6Packet(t, 10, func(ip *layers.IPv6) { ip.HopLimit = 1 }), ttl: 1},
			{name: "1280 bytes: no DF", inner: udp6Packet(t, ipip.IPv6MinMTU-48), ttl: ipip.DefaultTTL},
			{name: "1281 bytes: DF", inner: big, ttl: ipip.DefaultTTL, df: true},
			{name: "ICMPv6", inner: icmp6Packet(t, 128, 56), ttl: ipip.DefaultTTL},
			{name: "with extension headers", inner: raw6(t, layers.IPProtocolIPv6HopByHop, append(extHeader(layers.IPProtocolNoNextHeader, 1), 1, 2, 3)), ttl: ipip.DefaultTTL},
		}
		for _, tt := range tests {
			t.Run(over+"/"+tt.name, func(t *testing.T) {
				for _, proto := range append([]uint8{0}, tt.protos...) {
					e := enc
					e.Protocol = proto
					if tt.mod != nil {
						tt.mod(&e)
					}
					buf := withHeadroom(tt.inner, 64)
					out, err := e.EncapIPv6(buf, 64)
					if err != nil {
						t.Fatalf("EncapIPv6 (Protocol %d): %v", proto, err)
					}
					checkInPlace(t, buf, out, 64, hl, len(tt.inner))
					var payload []byte
					if over == "IPv4" {
						ip := decodeIPv4(t, out)
						var flags layers.IPv4Flag
						if tt.df {
							flags = layers.IPv4DontFragment
						}
						want := outerFields{Version: 4, IHL: 5, TOS: tt.tos, Length: uint16(len(out)), Flags: flags, TTL: tt.ttl,
							Protocol: layers.IPProtocolIPv6, SrcIP: tunSrc.String(), DstIP: tunDst.String()}
						if diff := cmp.Diff(want, fieldsOf(ip)); diff != "" {
							t.Errorf("outer header (-want +got):\n%s", diff)
						}
						if !gopacketChecksumOK(t, out) {
							t.Error("gopacket: outer checksum invalid")
						}
						if ip.Id != 1 {
							t.Errorf("first outer ID = %d, want 1", ip.Id)
						}
						payload = ip.Payload
					} else {
						ip := decodeIPv6(t, out)
						want := outer6Fields{Version: 6, TrafficClass: tt.tos, Length: uint16(len(tt.inner)), NextHeader: layers.IPProtocolIPv6,
							HopLimit: tt.ttl, SrcIP: tun6Src.String(), DstIP: tun6Dst.String()}
						if diff := cmp.Diff(want, fields6Of(ip)); diff != "" {
							t.Errorf("outer header (-want +got):\n%s", diff)
						}
						payload = ip.Payload
					}
					if diff := cmp.Diff(tt.inner, payload); diff != "" {
						t.Errorf("outer payload is not the inner packet (-want +got):\n%s", diff)
					}
					decap := ipip.Decap
					if over == "IPv6" {
						decap = ipip.DecapIPv6
					}
					if got, err := decap(out, ipip.ProtoIPv6); err != nil || !bytes.Equal(got, tt.inner) {
						t.Errorf("decapsulated: %d bytes, %v; want the inner packet", len(got), err)
					}
				}
			})
		}
	}
}

func TestEncapIPv6TrailingBytes(t *testing.T) {
	inner := udp6Packet(t, 20)
	for _, e := range []ipip.Encapsulator{{Src: tunSrc, Dst: tunDst}, {Src: tun6Src, Dst: tun6Dst}} {
		buf := withHeadroom(append(append([]byte(nil), inner...), 0xde, 0xad), 40)
		out, err := e.EncapIPv6(buf, 40)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(out, inner) {
			t.Errorf("over %v: the encapsulated packet does not end with the inner one (trailing bytes must not be sent)", e.Dst)
		}
	}
}

func TestEncapFamilyErrors(t *testing.T) {
	inner4, inner6 := icmpPacket(t, 8), udp6Packet(t, 8)
	mapped := netip.AddrFrom16(tunSrc.As16()) // ::ffff:192.0.2.1
	tests := []struct {
		name    string
		enc     ipip.Encapsulator
		want4   error // Encap
		want6   error // EncapIPv6
		headers int   // headroom given
	}{
		{name: "zero Encapsulator", enc: ipip.Encapsulator{}, want4: ipip.ErrEndpoints, want6: ipip.ErrEndpoints},
		{name: "no Src", enc: ipip.Encapsulator{Dst: tunDst}, want4: ipip.ErrEndpoints, want6: ipip.ErrEndpoints},
		{name: "IPv4 Src, IPv6 Dst", enc: ipip.Encapsulator{Src: tunSrc, Dst: tun6Dst}, want4: ipip.ErrEndpoints, want6: ipip.ErrEndpoints},
		{name: "IPv6 Src, IPv4 Dst", enc: ipip.Encapsulator{Src: tun6Src, Dst: tunDst}, want4: ipip.ErrEndpoints, want6: ipip.ErrEndpoints},
		{name: "IPv4-mapped Src", enc: ipip.Encapsulator{Src: mapped, Dst: tun6Dst}, want4: ipip.ErrEndpoints, want6: ipip.ErrEndpoints},
		{name: "protocol 94 over IPv6", enc: ipip.Encapsulator{Protocol: ipip.ProtoIPIP, Src: tun6Src, Dst: tun6Dst}, want4: ipip.ErrProtocolFamily},
		{name: "protocol 41 over IPv6 for IPv4", enc: ipip.Encapsulator{Protocol: ipip.ProtoIPv6, Src: tun6Src, Dst: tun6Dst}, want4: ipip.ErrProtocolFamily},
		{name: "39 bytes of headroom over IPv6", enc: ipip.Encapsulator{Src: tun6Src, Dst: tun6Dst}, headers: 39, want4: ipip.ErrHeadroom, want6: ipip.ErrHeadroom},
		{name: "20 bytes of headroom over IPv4", enc: ipip.Encapsulator{Src: tunSrc, Dst: tunDst}, headers: 20},
		{name: "19 bytes of headroom over IPv4", enc: ipip.Encapsulator{Src: tunSrc, Dst: tunDst}, headers: 19, want4: ipip.ErrHeadroom, want6: ipip.ErrHeadroom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off := tt.headers
			if off == 0 {
				off = 40
			}
			for _, c := range []struct {
				inner []byte
				want  error
				f     func(*ipip.Encapsulator, []byte, int) ([]byte, error)
			}{{inner4, tt.want4, (*ipip.Encapsulator).Encap}, {inner6, tt.want6, (*ipip.Encapsulator).EncapIPv6}} {
				buf := withHeadroom(c.inner, off)
				orig := append([]byte(nil), buf...)
				e := tt.enc
				out, err := c.f(&e, buf, off)
				if err != c.want {
					t.Fatalf("inner IPv%d: error %v, want %v", c.inner[0]>>4, err, c.want)
				}
				if err != nil && (out != nil || !bytes.Equal(buf, orig)) {
					t.Errorf("inner IPv%d: failed, but returned data or wrote into buf", c.inner[0]>>4)
				}
			}
		})
	}
}

func TestEncapIPv6Errors(t *testing.T) {
	valid := udp6Packet(t, 32)
	mutate := func(f func(b []byte)) []byte {
		b := append([]byte(nil), valid...)
		f(b)
		return b
	}
	// Over IPv4 the whole packet must fit in 65535 bytes, over IPv6 the
	// inner packet is the payload and may be 65535 bytes itself.
	max4 := udp6Packet(t, ipip.MaxPacketLen-ipip.IPv4MinLen-48)
	max6 := udp6Packet(t, ipip.MaxPacketLen-48)
	tests := []struct {
		name         string
		pkt          []byte
		want4, want6 error
	}{
		{name: "empty", pkt: []byte{}, want4: ipip.ErrInnerTruncated, want6: ipip.ErrInnerTruncated},
		{name: "39 bytes", pkt: valid[:39], want4: ipip.ErrInnerTruncated, want6: ipip.ErrInnerTruncated},
		{name: "version 4", pkt: mutate(func(b []byte) { b[0] = 0x40 }), want4: ipip.ErrInnerVersion, want6: ipip.ErrInnerVersion},
		{name: "payload past buffer", pkt: valid[:len(valid)-1], want4: ipip.ErrInnerTotalLen, want6: ipip.ErrInnerTotalLen},
		{name: "jumbogram", pkt: mutate(func(b []byte) { b[4], b[5], b[6] = 0, 0, 0 }), want4: ipip.ErrJumbogram, want6: ipip.ErrJumbogram},
		{name: "hop limit 0", pkt: udp6Packet(t, 8, func(ip *layers.IPv6) { ip.HopLimit = 0 }), want4: ipip.ErrInnerTTL, want6: ipip.ErrInnerTTL},
		{name: "largest over IPv4", pkt: max4},
		{name: "a byte more", pkt: udp6Packet(t, ipip.MaxPacketLen-ipip.IPv4MinLen-48+1), want4: ipip.ErrTooBig},
		{name: "largest over IPv6", pkt: max6, want4: ipip.ErrTooBig},
	}
	for _, tt := range tests {
		for _, e := range []ipip.Encapsulator{{Src: tunSrc, Dst: tunDst, InheritTTL: true}, {Src: tun6Src, Dst: tun6Dst, InheritTTL: true}} {
			want := tt.want4
			if e.Dst.Is6() {
				want = tt.want6
			}
			t.Run(fmt.Sprintf("%s/over %v", tt.name, e.Dst), func(t *testing.T) {
				buf := withHeadroom(tt.pkt, 40)
				orig := append([]byte(nil), buf...)
				out, err := e.EncapIPv6(buf, 40)
				if err != want {
					t.Fatalf("EncapIPv6 error = %v, want %v", err, want)
				}
				if err != nil {
					if out != nil || !bytes.Equal(buf, orig) {
						t.Error("failed EncapIPv6 returned data or modified buf")
					}
					return
				}
				if e.Dst.Is4() && ipip.IPv4(out).TotalLen() != uint16(len(out)) {
					t.Errorf("outer total length %d, want %d", ipip.IPv4(out).TotalLen(), len(out))
				}
				if e.Dst.Is6() && ipip.IPv6(out).Len() != len(out) {
					t.Errorf("outer length %d, want %d", ipip.IPv6(out).Len(), len(out))
				}
			})
		}
	}
}

// TestFlowLabel checks the RFC 6438 flow label of the outer IPv6 header:
// one per flow, different between flows, the same for all fragments of a
// datagram, and taken from the inner label when there is one.
func TestFlowLabel(t *testing.T) {
	e := ipip.Encapsulator{Src: tun6Src, Dst: tun6Dst}
	label := func(inner []byte) uint32 {
		t.Helper()
		buf := withHeadroom(inner, ipip.IPv6HeaderLen)
		var out []byte
		var err error
		if inner[0]>>4 == 4 {
			out, err = e.Encap(buf, ipip.IPv6HeaderLen)
		} else {
			out, err = e.EncapIPv6(buf, ipip.IPv6HeaderLen)
		}
		if err != nil {
			t.Fatal(err)
		}
		l := ipip.IPv6(out).FlowLabel()
		if l != decodeIPv6(t, out).FlowLabel || l > 0xfffff {
			t.Fatalf("flow label %#x, gopacket %#x", l, decodeIPv6(t, out).FlowLabel)
		}
		return l
	}
	udp4 := func(sport, dport uint16, mods ...func(*layers.IPv4)) []byte {
		ip := innerIP(append([]func(*layers.IPv4){func(ip *layers.IPv4) { ip.Protocol = layers.IPProtocolUDP }}, mods...)...)
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		_ = u.SetNetworkLayerForChecksum(ip)
		return serialize(t, ip, u, gopacketPayload(10))
	}
	udp6 := func(sport, dport uint16, mods ...func(*layers.IPv6)) []byte {
		ip := innerIP6(mods...)
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		_ = u.SetNetworkLayerForChecksum(ip)
		return serialize(t, ip, u, gopacketPayload(10))
	}

	// One flow, one label: TTL, ID, TOS and payload make no difference.
	if a, b := label(udp4(1, 2)), label(udp4(1, 2, func(ip *layers.IPv4) { ip.TTL, ip.Id, ip.TOS = 3, 99, 0xb8 })); a != b {
		t.Errorf("IPv4 flow: labels %#x and %#x", a, b)
	}
	if a, b := label(udp6(1, 2)), label(udp6(1, 2, func(ip *layers.IPv6) { ip.HopLimit, ip.TrafficClass = 3, 0xb8 })); a != b {
		t.Errorf("IPv6 flow: labels %#x and %#x", a, b)
	}
	// Fragments of an IPv4 datagram share a label, whatever their ports look like.
	first := udp4(1, 2, func(ip *layers.IPv4) { ip.Flags = layers.IPv4MoreFragments })
	later := rawInner(t, layers.IPProtocolUDP, pattern(16), func(ip *layers.IPv4) { ip.FragOffset = 2 })
	if a, b := label(first), label(later); a != b {
		t.Errorf("fragments: labels %#x and %#x", a, b)
	}
	// Different flows, different labels (with the odd collision: a
	// 20-bit hash of 400 flows has about a 7% chance of one).
	for _, c := range []struct {
		name string
		pkt  func(sport, dport uint16) []byte
	}{
		{"IPv4", func(s, d uint16) []byte { return udp4(s, d) }},
		{"IPv6", func(s, d uint16) []byte { return udp6(s, d) }},
	} {
		seen := map[uint32]bool{}
		for i := range 400 {
			seen[label(c.pkt(uint16(1000+i%20), uint16(2000+i/20)))] = true
		}
		if len(seen) < 398 {
			t.Errorf("%s: 400 flows got %d labels", c.name, len(seen))
		}
	}
	// An inner IPv6 label stands for the flow: ports are not looked at.
	withLabel := func(l uint32) func(*layers.IPv6) { return func(ip *layers.IPv6) { ip.FlowLabel = l } }
	if a, b := label(udp6(1, 2, withLabel(7))), label(udp6(3, 4, withLabel(7))); a != b {
		t.Errorf("inner label 7, other ports: labels %#x and %#x", a, b)
	}
	if a, b := label(udp6(1, 2, withLabel(7))), label(udp6(1, 2, withLabel(8))); a == b {
		t.Errorf("inner labels 7 and 8: both outer label %#x", a)
	}
	if a, b := label(udp6(1, 2)), label(udp4(1, 2)); a == b {
		t.Errorf("an IPv4 and an IPv6 flow: both label %#x", a)
	}
}
