package ipip_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/ipip"
)

func TestDecapRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		enc   ipip.Encapsulator
		inner []byte
	}{
		{name: "ICMP over 94", inner: icmpPacket(t, 56)},
		{name: "ICMP over 4", enc: ipip.Encapsulator{Protocol: ipip.ProtoIPinIP}, inner: icmpPacket(t, 56)},
		{name: "UDP over 94", inner: udpPacket(t, 200)},
		{name: "UDP 1400 bytes over 4", enc: ipip.Encapsulator{Protocol: ipip.ProtoIPinIP}, inner: udpPacket(t, 1400-28)},
		{name: "DF and DSCP", inner: udpPacket(t, 10, func(ip *layers.IPv4) {
			ip.Flags = layers.IPv4DontFragment
			ip.TOS = tos(46, ipip.NotECT)
		})},
		{name: "inner ECT(0)", inner: udpPacket(t, 10, func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.ECT0) })},
		{name: "inner ECT(1)", inner: udpPacket(t, 10, func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.ECT1) })},
		{name: "inner CE", inner: udpPacket(t, 10, func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.CE) })},
		{name: "inner TTL 1 left alone", inner: udpPacket(t, 10, func(ip *layers.IPv4) { ip.TTL = 1 })},
		{name: "inner TTL 1 inherited", enc: ipip.Encapsulator{InheritTTL: true}, inner: udpPacket(t, 10, func(ip *layers.IPv4) { ip.TTL = 1 })},
		{name: "inner fragment", inner: udpPacket(t, 64, func(ip *layers.IPv4) { ip.Flags = layers.IPv4MoreFragments })},
		{name: "inner with options", inner: icmpPacket(t, 8, func(ip *layers.IPv4) { ip.Options = []layers.IPv4Option{routerAlert} })},
		{name: "inner header only", inner: rawInner(t, layers.IPProtocolNoNextHeader, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.enc
			e.Src, e.Dst = tunSrc, tunDst
			proto := e.Protocol
			if proto == 0 {
				proto = ipip.ProtoIPIP
			}
			out, err := e.Encap(withHeadroom(tt.inner, ipip.IPv4MinLen), ipip.IPv4MinLen)
			if err != nil {
				t.Fatalf("Encap: %v", err)
			}
			got, err := ipip.Decap(out, proto)
			if err != nil {
				t.Fatalf("Decap: %v", err)
			}
			if diff := cmp.Diff(tt.inner, got); diff != "" {
				t.Errorf("Decap(Encap(inner)) (-want +got):\n%s", diff)
			}
			if !sameMemory(got, out[ipip.IPv4MinLen:]) {
				t.Error("Decap result does not alias its argument")
			}
			other := ipip.ProtoIPinIP
			if proto == other {
				other = ipip.ProtoIPIP
			}
			if _, err := ipip.Decap(out, other); err != ipip.ErrProtocol {
				t.Errorf("Decap with protocol %d: error %v, want %v", other, err, ipip.ErrProtocol)
			}
		})
	}
}

// TestDecapErrors produces every reason Decap can give with a crafted
// packet; each packet has exactly one defect.
func TestDecapErrors(t *testing.T) {
	inner := icmpPacket(t, 16)
	good := outerPacket(t, ipip.ProtoIPIP, inner)
	// mod copies pkt, applies f and, if fix, recomputes the outer checksum
	// with gopacket so that f's change is the only defect.
	mod := func(pkt []byte, fix bool, f func(b []byte)) []byte {
		b := append([]byte(nil), pkt...)
		f(b)
		if fix {
			fixChecksum(t, b)
		}
		return b
	}
	// in wraps a (possibly broken) inner packet in a valid outer header.
	in := func(f func(b []byte)) []byte {
		b := append([]byte(nil), inner...)
		f(b)
		return outerPacket(t, ipip.ProtoIPIP, b)
	}
	innerWith := func(mods ...func(*layers.IPv4)) []byte {
		return outerPacket(t, ipip.ProtoIPIP, icmpPacket(t, 16, mods...))
	}

	tests := []struct {
		name    string
		pkt     []byte
		proto   uint8
		wantErr ipip.Error
	}{
		{name: "empty", pkt: nil, wantErr: ipip.ErrTruncated},
		{name: "outer truncated to 19 bytes", pkt: good[:19], wantErr: ipip.ErrTruncated},
		{name: "outer version 6", pkt: mod(good, true, func(b []byte) { b[0] = 0x65 }), wantErr: ipip.ErrVersion},
		{name: "outer version 0", pkt: mod(good, true, func(b []byte) { b[0] = 0x05 }), wantErr: ipip.ErrVersion},
		{name: "outer IHL 4", pkt: mod(good, false, func(b []byte) { b[0] = 0x44 }), wantErr: ipip.ErrHeaderLen},
		{name: "outer IHL 0", pkt: mod(good, false, func(b []byte) { b[0] = 0x40 }), wantErr: ipip.ErrHeaderLen},
		{name: "outer IHL 15 past buffer", pkt: mod(good, false, func(b []byte) { b[0] = 0x4f })[:59], wantErr: ipip.ErrTruncated},
		{name: "outer total length < IHL", pkt: mod(good, true, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 19) }), wantErr: ipip.ErrTotalLen},
		{name: "outer total length 0", pkt: mod(good, true, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 0) }), wantErr: ipip.ErrTotalLen},
		{name: "outer total length > buffer", pkt: good[:len(good)-1], wantErr: ipip.ErrTotalLen},
		{name: "outer bad checksum", pkt: mod(good, false, func(b []byte) { b[11] ^= 0x01 }), wantErr: ipip.ErrChecksum},
		{name: "outer TTL changed without checksum fix", pkt: mod(good, false, func(b []byte) { b[8]-- }), wantErr: ipip.ErrChecksum},
		{name: "outer MF set", pkt: outerPacket(t, ipip.ProtoIPIP, inner, func(ip *layers.IPv4) { ip.Flags = layers.IPv4MoreFragments }), wantErr: ipip.ErrFragment},
		{name: "outer fragment offset set", pkt: outerPacket(t, ipip.ProtoIPIP, inner, func(ip *layers.IPv4) { ip.FragOffset = 185 }), wantErr: ipip.ErrFragment},
		{name: "outer last fragment (MF clear, offset set, DF set)", pkt: outerPacket(t, ipip.ProtoIPIP, inner, func(ip *layers.IPv4) {
			ip.Flags = layers.IPv4DontFragment
			ip.FragOffset = 1
		}), wantErr: ipip.ErrFragment},
		{name: "protocol 4 on a 94 tunnel", pkt: outerPacket(t, ipip.ProtoIPinIP, inner), wantErr: ipip.ErrProtocol},
		{name: "protocol 94 on a 4 tunnel", pkt: good, proto: ipip.ProtoIPinIP, wantErr: ipip.ErrProtocol},
		{name: "protocol UDP", pkt: outerPacket(t, uint8(layers.IPProtocolUDP), inner), wantErr: ipip.ErrProtocol},
		{name: "inner empty", pkt: outerPacket(t, ipip.ProtoIPIP, nil), wantErr: ipip.ErrInnerTruncated},
		{name: "inner truncated to 19 bytes", pkt: outerPacket(t, ipip.ProtoIPIP, inner[:19]), wantErr: ipip.ErrInnerTruncated},
		{name: "inner cut by outer total length", pkt: mod(good, true, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 20+19) }), wantErr: ipip.ErrInnerTruncated},
		{name: "inner version 6", pkt: in(func(b []byte) { b[0] = 0x65 }), wantErr: ipip.ErrInnerVersion},
		{name: "inner IHL 4", pkt: in(func(b []byte) { b[0] = 0x44 }), wantErr: ipip.ErrInnerHeaderLen},
		{name: "inner IHL 15 past outer payload", pkt: in(func(b []byte) { b[0] = 0x4f }), wantErr: ipip.ErrInnerTruncated},
		{name: "inner total length < IHL", pkt: in(func(b []byte) { binary.BigEndian.PutUint16(b[2:], 16) }), wantErr: ipip.ErrInnerTotalLen},
		{name: "inner total length > outer payload", pkt: in(func(b []byte) { binary.BigEndian.PutUint16(b[2:], uint16(len(inner)+1)) }), wantErr: ipip.ErrInnerTotalLen},
		{name: "inner total length > outer total length but within buffer", pkt: append(mod(good, true, func(b []byte) { binary.BigEndian.PutUint16(b[2:], uint16(len(good)-1)) }), 0), wantErr: ipip.ErrInnerTotalLen},
		{name: "inner bad checksum", pkt: in(func(b []byte) { b[10] ^= 0x80 }), wantErr: ipip.ErrInnerChecksum},
		{name: "inner TTL changed without checksum fix", pkt: in(func(b []byte) { b[8]-- }), wantErr: ipip.ErrInnerChecksum},
		{name: "inner TTL 0", pkt: innerWith(func(ip *layers.IPv4) { ip.TTL = 0 }), wantErr: ipip.ErrInnerTTL},
		{name: "nested IPIP 94", pkt: outerPacket(t, ipip.ProtoIPIP, rawInner(t, layers.IPProtocol(ipip.ProtoIPIP), inner)), wantErr: ipip.ErrNested},
		{name: "nested IPIP 4", pkt: outerPacket(t, ipip.ProtoIPIP, rawInner(t, layers.IPProtocolIPv4, inner)), wantErr: ipip.ErrNested},
		{name: "nested 94 in 4", pkt: outerPacket(t, ipip.ProtoIPinIP, rawInner(t, layers.IPProtocol(ipip.ProtoIPIP), inner)), proto: ipip.ProtoIPinIP, wantErr: ipip.ErrNested},
		{name: "nested 6in4 in 94", pkt: outerPacket(t, ipip.ProtoIPIP, rawInner(t, layers.IPProtocolIPv6, udp6Packet(t, 8))), wantErr: ipip.ErrNested},
		{name: "ECN CE over Not-ECT", pkt: outerPacket(t, ipip.ProtoIPIP, inner, func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.CE) }), wantErr: ipip.ErrECN},
	}

	seen := make(map[ipip.Error]bool)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proto := tt.proto
			if proto == 0 {
				proto = ipip.ProtoIPIP
			}
			orig := append([]byte(nil), tt.pkt...)
			got, err := ipip.Decap(tt.pkt, proto)
			if err != tt.wantErr {
				t.Fatalf("Decap error = %v, want %v", err, tt.wantErr)
			}
			seen[tt.wantErr] = true
			if got != nil {
				t.Errorf("Decap returned %d bytes with error %v", len(got), err)
			}
			if diff := cmp.Diff(orig, tt.pkt); diff != "" {
				t.Errorf("failed Decap modified its argument (-want +got):\n%s", diff)
			}
		})
	}
	for e := ipip.Error(1); e < ipip.NumErrors; e++ {
		switch e {
		case ipip.ErrHeadroom, ipip.ErrTooBig, ipip.ErrEndpoints, // Encap only
			ipip.ErrExtensionHeader, ipip.ErrJumbogram, ipip.ErrProtocolFamily: // IPv6 only (TestDecapIPv6Errors)
			continue
		}
		if !seen[e] {
			t.Errorf("no test case produces %v", e)
		}
	}
}

func TestDecapLayout(t *testing.T) {
	inner := udpPacket(t, 40)
	tests := []struct {
		name string
		pkt  []byte
		off  int // where the inner packet starts in pkt
	}{
		{
			name: "outer with IP options (IHL 6)",
			pkt:  outerPacket(t, ipip.ProtoIPIP, inner, func(ip *layers.IPv4) { ip.Options = []layers.IPv4Option{routerAlert} }),
			off:  24,
		},
		{
			name: "outer with 40 bytes of options (IHL 15)",
			pkt: outerPacket(t, ipip.ProtoIPIP, inner, func(ip *layers.IPv4) {
				for range 10 {
					ip.Options = append(ip.Options, routerAlert)
				}
			}),
			off: 60,
		},
		{
			name: "trailing bytes past the outer total length ignored",
			pkt:  append(outerPacket(t, ipip.ProtoIPIP, inner), 0x45, 0, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8),
			off:  20,
		},
		{
			name: "inner shorter than the outer payload is trimmed",
			pkt:  outerPacket(t, ipip.ProtoIPIP, append(append([]byte(nil), inner...), make([]byte, 6)...)),
			off:  20,
		},
		{
			name: "inner shorter than payload, trailing bytes too",
			pkt:  append(outerPacket(t, ipip.ProtoIPIP, append(append([]byte(nil), inner...), 0xff, 0xff)), 0xee),
			off:  20,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !gopacketChecksumOK(t, tt.pkt) {
				t.Fatal("test packet has a bad outer checksum")
			}
			got, err := ipip.Decap(tt.pkt, ipip.ProtoIPIP)
			if err != nil {
				t.Fatalf("Decap: %v", err)
			}
			if diff := cmp.Diff(inner, got); diff != "" {
				t.Errorf("Decap (-want +got):\n%s", diff)
			}
			if off, ok := subSliceOf(got, tt.pkt); !ok || off != tt.off {
				t.Errorf("Decap result is at offset %d (sub-slice: %v), want an alias of pkt[%d:]", off, ok, tt.off)
			}
		})
	}
}

func TestDecapECN(t *testing.T) {
	ecns := []ipip.ECN{ipip.NotECT, ipip.ECT0, ipip.ECT1, ipip.CE}
	// RFC 6040 section 4.2, Figure 4: rows are the arriving inner header,
	// columns the arriving outer header (Not-ECT, ECT(0), ECT(1), CE).
	// drop is marked by -1.
	const drop = -1
	table := map[ipip.ECN][4]int{
		ipip.NotECT: {int(ipip.NotECT), int(ipip.NotECT), int(ipip.NotECT), drop},
		ipip.ECT0:   {int(ipip.ECT0), int(ipip.ECT0), int(ipip.ECT1), int(ipip.CE)},
		ipip.ECT1:   {int(ipip.ECT1), int(ipip.ECT1), int(ipip.ECT1), int(ipip.CE)},
		ipip.CE:     {int(ipip.CE), int(ipip.CE), int(ipip.CE), int(ipip.CE)},
	}
	for _, innerECN := range ecns {
		for col, outerECN := range ecns {
			want := table[innerECN][col]
			t.Run(fmt.Sprintf("inner=%v/outer=%v", innerECN, outerECN), func(t *testing.T) {
				got, ok := ipip.DecapECN(outerECN, innerECN)
				if want == drop {
					if ok {
						t.Errorf("DecapECN = %v, true; want drop", got)
					}
				} else if !ok || got != ipip.ECN(want) {
					t.Errorf("DecapECN = %v, %v; want %v, true", got, ok, ipip.ECN(want))
				}
				// High bits of the arguments are ignored.
				got2, ok2 := ipip.DecapECN(outerECN|0xb8, innerECN|0x04)
				if got2 != got || ok2 != ok {
					t.Errorf("DecapECN with DSCP bits set = %v, %v; want %v, %v", got2, ok2, got, ok)
				}

				// Through Decap: the inner ECN field and checksum are
				// rewritten in place and nothing else changes. The expected
				// inner packet is built by gopacket with the expected TOS.
				const dscp = 46
				mkInner := func(e ipip.ECN) []byte {
					return udpPacket(t, 30, func(ip *layers.IPv4) { ip.TOS = tos(dscp, e) })
				}
				pkt := outerPacket(t, ipip.ProtoIPIP, mkInner(innerECN), func(ip *layers.IPv4) { ip.TOS = tos(10, outerECN) })
				res, err := ipip.Decap(pkt, ipip.ProtoIPIP)
				if want == drop {
					if err != ipip.ErrECN {
						t.Errorf("Decap error = %v, want %v", err, ipip.ErrECN)
					}
					return
				}
				if err != nil {
					t.Fatalf("Decap: %v", err)
				}
				if diff := cmp.Diff(mkInner(ipip.ECN(want)), res); diff != "" {
					t.Errorf("inner packet (-want +got):\n%s", diff)
				}
				if !gopacketChecksumOK(t, res) {
					t.Error("gopacket: inner checksum invalid after ECN rewrite")
				}
				if !ipip.IPv4(res).ChecksumValid() {
					t.Error("Header.ChecksumValid: inner checksum invalid after ECN rewrite")
				}
				if got := decodeIPv4(t, res).TOS; got != tos(dscp, ipip.ECN(want)) {
					t.Errorf("inner TOS = %#02x, want %#02x", got, tos(dscp, ipip.ECN(want)))
				}
			})
		}
	}
}

// TestDecapErrorValue checks the error's dynamic type, which callers use as
// a counter index.
func TestDecapErrorValue(t *testing.T) {
	_, err := ipip.Decap([]byte{0x45}, ipip.ProtoIPIP)
	var e ipip.Error
	if !errors.As(err, &e) || e != ipip.ErrTruncated {
		t.Fatalf("errors.As(%v) = %v, want ErrTruncated", err, e)
	}
	var drops [ipip.NumErrors]int
	drops[err.(ipip.Error)]++
	if drops[ipip.ErrTruncated] != 1 {
		t.Error("counting by reason does not work")
	}
}
