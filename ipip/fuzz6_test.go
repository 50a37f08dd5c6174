package ipip_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/ipip"
)

// seeds6 are the seed files of the IPv6 encapsulations: IPv4 or IPv6 in
// IPv6 ("ipv6_" files, DecapIPv6) and IPv6 in IPv4 ("proto41_" files,
// Decap with ProtoIPv6).
func seeds6(tb testing.TB) []seed {
	inner6 := udp6Packet(tb, 8)
	inner4 := icmpPacket(tb, 8)
	good := outer6Packet(tb, ipip.ProtoIPv6, inner6)
	ce := func(ip *layers.IPv6) { ip.TrafficClass = tos(0, ipip.CE) }
	jumbo := outer6Packet(tb, 0, append(extHeader(layers.IPProtocolIPv6, 0), inner6...))
	jumbo[4], jumbo[5] = 0, 0
	d6, d4 := ipip.DecapIPv6, ipip.Decap
	return []seed{
		{"ipv6_proto41_udp.bin", good, ipip.ProtoIPv6, nil, d6},
		{"ipv6_proto4_icmp.bin", outer6Packet(tb, ipip.ProtoIPinIP, inner4), ipip.ProtoIPinIP, nil, d6},
		{"ipv6_trailing_padding.bin", append(outer6Packet(tb, ipip.ProtoIPv6, append(append([]byte(nil), inner6...), 0, 0)), 0, 0, 0), ipip.ProtoIPv6, nil, d6},
		{"ipv6_inner_extension_headers.bin", outer6Packet(tb, ipip.ProtoIPv6, raw6(tb, layers.IPProtocolIPv6HopByHop,
			append(append(extHeader(layers.IPProtocolIPv6Fragment, 0), fragHeader(layers.IPProtocolUDP, 0, true)...), pattern(16)...))), ipip.ProtoIPv6, nil, d6},
		{"ipv6_ecn_ce_over_ect0.bin", outer6Packet(tb, ipip.ProtoIPv6, udp6Packet(tb, 8, func(ip *layers.IPv6) { ip.TrafficClass = tos(0, ipip.ECT0) }), ce), ipip.ProtoIPv6, nil, d6},
		{"ipv6_ecn_ce_over_notect.bin", outer6Packet(tb, ipip.ProtoIPv6, inner6, ce), ipip.ProtoIPv6, ipip.ErrECN, d6},
		{"ipv6_nested_41_in_41.bin", outer6Packet(tb, ipip.ProtoIPv6, raw6(tb, layers.IPProtocolIPv6, inner6)), ipip.ProtoIPv6, ipip.ErrNested, d6},
		{"ipv6_nested_behind_options.bin", outer6Packet(tb, ipip.ProtoIPv6, raw6(tb, layers.IPProtocolIPv6Destination,
			append(extHeader(layers.IPProtocolIPv4, 1), inner4...))), ipip.ProtoIPv6, ipip.ErrNested, d6},
		{"ipv6_nested_41_in_4.bin", outer6Packet(tb, ipip.ProtoIPinIP, rawInner(tb, layers.IPProtocolIPv6, inner6)), ipip.ProtoIPinIP, ipip.ErrNested, d6},
		{"ipv6_fragment.bin", outer6Packet(tb, 44, append(fragHeader(layers.IPProtocolIPv6, 0, true), inner6...)), ipip.ProtoIPv6, ipip.ErrFragment, d6},
		{"ipv6_hop_by_hop.bin", outer6Packet(tb, 0, append(extHeader(layers.IPProtocolIPv6, 0), inner6...)), ipip.ProtoIPv6, ipip.ErrExtensionHeader, d6},
		{"ipv6_jumbogram.bin", jumbo, ipip.ProtoIPv6, ipip.ErrJumbogram, d6},
		{"ipv6_proto94.bin", outer6Packet(tb, ipip.ProtoIPIP, inner4), ipip.ProtoIPIP, ipip.ErrProtocolFamily, d6},
		{"ipv6_inner_hop_limit0.bin", outer6Packet(tb, ipip.ProtoIPv6, udp6Packet(tb, 8, func(ip *layers.IPv6) { ip.HopLimit = 0 })), ipip.ProtoIPv6, ipip.ErrInnerTTL, d6},
		{"ipv6_truncated.bin", good[:36], ipip.ProtoIPv6, ipip.ErrTruncated, d6},
		{"proto41_udp.bin", outerPacket(tb, ipip.ProtoIPv6, inner6), ipip.ProtoIPv6, nil, d4},
		{"proto41_icmpv6_error.bin", outerPacket(tb, ipip.ProtoIPv6, icmp6Packet(tb, 1, 48)), ipip.ProtoIPv6, nil, d4},
		{"proto41_inner_options_cut.bin", outerPacket(tb, ipip.ProtoIPv6, raw6(tb, layers.IPProtocolIPv6Routing, extHeader(layers.IPProtocolUDP, 1)[:12])), ipip.ProtoIPv6, ipip.ErrInnerTruncated, d4},
		{"proto41_nested_4.bin", outerPacket(tb, ipip.ProtoIPv6, raw6(tb, layers.IPProtocolIPv4, inner4)), ipip.ProtoIPv6, ipip.ErrNested, d4},
		{"proto41_inner_ipv4.bin", outerPacket(tb, ipip.ProtoIPv6, icmpPacket(tb, 40)), ipip.ProtoIPv6, ipip.ErrInnerVersion, d4},
	}
}

// upper6 finds the upper-layer protocol of the IPv6 packet b, independently
// of the codec: it follows the walkable extension headers recursively.
// later is true for a fragment other than the first.
func upper6(nh byte, b []byte) (proto byte, later, ok bool) {
	need := func(n int) bool { return len(b) >= n }
	switch nh {
	case 0, 43, 60:
		if !need(2) || !need(8*(int(b[1])+1)) {
			return 0, false, false
		}
		return upper6(b[0], b[8*(int(b[1])+1):])
	case 51:
		if !need(2) || 4*(int(b[1])+2) < 8 || !need(4*(int(b[1])+2)) {
			return 0, false, false
		}
		return upper6(b[0], b[4*(int(b[1])+2):])
	case 44:
		if !need(8) {
			return 0, false, false
		}
		if binary.BigEndian.Uint16(b[2:])>>3 != 0 {
			return b[0], true, true
		}
		return upper6(b[0], b[8:])
	}
	return nh, false, true
}

// checkInner checks the inner packet res that decap returned for the outer
// packet pkt (a copy of the argument before the call), whose payload starts
// at off and is pl bytes long, and whose ECN field is outerECN: res is
// where the inner packet is, has the version family says, passes the
// checks a decapsulator must make, and differs from what was sent only in
// the ECN bits (and an IPv4 checksum).
func checkInner(t *testing.T, name string, pkt, arg, res []byte, off, pl int, family int, outerECN ipip.ECN) {
	t.Helper()
	if o, ok := subSliceOf(res, arg); !ok || o != off {
		t.Fatalf("%s: result at %d (sub-slice %v), want at %d", name, o, ok, off)
	}
	orig := pkt[off : off+len(res)]
	var innerECN ipip.ECN
	switch family {
	case 4:
		h := ipip.IPv4(res)
		if h.Valid() != nil || int(h.TotalLen()) != len(res) || len(res) > pl || !rfc1071OK(res) || h.TTL() == 0 || isNested(h.Protocol()) {
			t.Fatalf("%s: accepted a bad inner IPv4 packet % x", name, orig[:min(len(orig), 60)])
		}
		innerECN = ipip.IPv4(orig).ECN()
	case 6:
		if len(res) < 40 || res[0]>>4 != 6 || 40+int(binary.BigEndian.Uint16(res[4:])) != len(res) || len(res) > pl || res[7] == 0 {
			t.Fatalf("%s: accepted a bad inner IPv6 packet % x", name, orig[:min(len(orig), 60)])
		}
		if res[4] == 0 && res[5] == 0 && res[6] == 0 {
			t.Fatalf("%s: accepted an inner jumbogram", name)
		}
		proto, _, ok := upper6(res[6], res[40:])
		if !ok || isNested(proto) {
			t.Fatalf("%s: accepted an inner packet whose headers run past it or that is nested (%d)", name, proto)
		}
		innerECN = ipip.ECN(orig[1]>>4) & 3
		var ip layers.IPv6
		if ip.DecodeFromBytes(res, gopacket.NilDecodeFeedback) == nil && int(ip.Length)+40 != len(res) {
			t.Fatalf("%s: gopacket sees %d bytes of payload, the result has %d", name, ip.Length, len(res)-40)
		}
	default:
		t.Fatalf("bad family %d", family)
	}
	wantECN, ok := ipip.DecapECN(outerECN, innerECN)
	if !ok {
		t.Fatalf("%s: accepted CE over Not-ECT", name)
	}
	want := append([]byte(nil), orig...)
	if family == 4 {
		want[1] = want[1]&^3 | uint8(wantECN)
		if wantECN != innerECN {
			fixChecksum(t, want)
			gopacketAgrees(t, res, true)
		}
		if !bytes.Equal(want[:10], res[:10]) || !bytes.Equal(want[12:], res[12:]) || !rfc1071OK(res) {
			t.Fatalf("%s: inner IPv4 changed beyond its ECN field and checksum", name)
		}
	} else {
		want[1] = want[1]&^0x30 | uint8(wantECN)<<4
		if diff := cmp.Diff(want, res); diff != "" {
			t.Fatalf("%s: inner IPv6 changed beyond its ECN field (-want +got):\n%s", name, diff)
		}
	}
	if !bytes.Equal(pkt[:off], arg[:off]) || !bytes.Equal(pkt[off+len(res):], arg[off+len(res):]) {
		t.Fatalf("%s: changed bytes outside the inner packet", name)
	}
}

// roundTrip encapsulates the decapsulated inner packet res again with e
// and decapsulates the result: it must come back the same, in place.
func roundTrip(t *testing.T, name string, res []byte, e ipip.Encapsulator, decap decapFunc, proto uint8) {
	t.Helper()
	buf := withHeadroom(res, 48)
	var out []byte
	var err error
	if res[0]>>4 == 6 {
		out, err = e.EncapIPv6(buf, 48)
	} else {
		out, err = e.Encap(buf, 48)
	}
	if err != nil {
		t.Fatalf("%s: encapsulating a decapsulated packet: %v", name, err)
	}
	again, err := decap(out, proto)
	if err != nil {
		t.Fatalf("%s: decapsulating it again: %v", name, err)
	}
	if !bytes.Equal(again, res) || !sameMemory(again, buf[48:]) {
		t.Fatalf("%s: decap(encap(inner)) != inner", name)
	}
}

// checkFailed checks a failed decapsulation: a reason among allowed, no
// result, the argument untouched.
func checkFailed(t *testing.T, name string, err error, res, pkt, arg []byte, allowed func(ipip.Error) bool) {
	t.Helper()
	e, ok := err.(ipip.Error)
	if !ok || e == 0 || e >= ipip.NumErrors || !allowed(e) {
		t.Fatalf("%s: error %#v is not one it may give", name, err)
	}
	if res != nil {
		t.Fatalf("%s: %d bytes returned with error %v", name, len(res), err)
	}
	if !bytes.Equal(pkt, arg) {
		t.Fatalf("%s failed with %v but modified its argument", name, err)
	}
}

func FuzzDecapIPv6(f *testing.F) {
	addSeedFiles(f, func(pkt []byte) { f.Add(pkt) })
	f.Add(udp6Packet(f, 0))
	f.Add(outer6Packet(f, 41, raw6(f, layers.IPProtocolIPv6Fragment, append(fragHeader(layers.IPProtocolIPv6, 4, false), pattern(8)...))))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, proto := range []uint8{ipip.ProtoIPinIP, ipip.ProtoIPv6, ipip.ProtoIPIP} {
			arg := append([]byte(nil), pkt...)
			res, err := ipip.DecapIPv6(arg, proto)
			if err != nil {
				checkFailed(t, "DecapIPv6", err, res, pkt, arg, func(e ipip.Error) bool {
					switch e {
					case ipip.ErrHeaderLen, ipip.ErrChecksum, ipip.ErrHeadroom, ipip.ErrTooBig, ipip.ErrEndpoints:
						return false
					case ipip.ErrProtocolFamily:
						return proto == ipip.ProtoIPIP
					}
					return proto != ipip.ProtoIPIP
				})
				continue
			}
			if proto == ipip.ProtoIPIP {
				t.Fatal("DecapIPv6 accepted protocol 94")
			}
			// The outer header really was acceptable.
			pl := int(binary.BigEndian.Uint16(pkt[4:]))
			if len(pkt) < 40 || pkt[0]>>4 != 6 || pkt[6] != proto || 40+pl > len(pkt) {
				t.Fatalf("DecapIPv6(proto %d) accepted a bad outer header % x", proto, pkt[:min(len(pkt), 40)])
			}
			family := 4
			if proto == ipip.ProtoIPv6 {
				family = 6
			}
			checkInner(t, "DecapIPv6", pkt, arg, res, 40, pl, family, ipip.ECN(pkt[1]>>4)&3)
			roundTrip(t, "DecapIPv6", res, ipip.Encapsulator{Src: tun6Src, Dst: tun6Dst}, ipip.DecapIPv6, proto)
		}
	})
}

func FuzzDecap6in4(f *testing.F) {
	addSeedFiles(f, func(pkt []byte) { f.Add(pkt) })
	f.Fuzz(func(t *testing.T, pkt []byte) {
		arg := append([]byte(nil), pkt...)
		res, err := ipip.Decap(arg, ipip.ProtoIPv6)
		if err != nil {
			checkFailed(t, "Decap(41)", err, res, pkt, arg, func(e ipip.Error) bool {
				switch e {
				case ipip.ErrHeadroom, ipip.ErrTooBig, ipip.ErrEndpoints, ipip.ErrExtensionHeader, ipip.ErrProtocolFamily, ipip.ErrInnerHeaderLen, ipip.ErrInnerChecksum:
					return false
				}
				return true
			})
			return
		}
		outer := ipip.IPv4(pkt)
		if outer.Valid() != nil || !rfc1071OK(pkt) || outer.IsFragment() || outer.Protocol() != ipip.ProtoIPv6 {
			t.Fatalf("Decap(41) accepted a bad outer header % x", pkt[:min(len(pkt), 60)])
		}
		checkInner(t, "Decap(41)", pkt, arg, res, outer.HeaderLen(), int(outer.TotalLen())-outer.HeaderLen(), 6, outer.ECN())
		roundTrip(t, "Decap(41)", res, ipip.Encapsulator{Src: tunSrc, Dst: tunDst}, ipip.Decap, ipip.ProtoIPv6)
	})
}

// FuzzEncapIPv6 encapsulates its input, as an IPv6 packet with EncapIPv6
// and, when it starts like one, as an IPv4 packet with Encap over IPv6,
// checks the outer header against a prediction, and decapsulates it.
func FuzzEncapIPv6(f *testing.F) {
	addSeedFiles(f, func(pkt []byte) {
		f.Add(pkt, uint8(40), uint8(0), uint8(0))
		if len(pkt) > 40 { // the inner packet of an IPv6 outer seed
			f.Add(pkt[40:], uint8(48), uint8(7), uint8(1|2))
		}
	})
	f.Add(udp6Packet(f, 1300), uint8(20), uint8(0), uint8(4))
	f.Fuzz(func(t *testing.T, inner []byte, headroom, ttl, flags uint8) {
		inner = append([]byte(nil), inner...)
		if flags&4 != 0 && len(inner) >= 40 && len(inner) < 1<<16+40 {
			// Steer towards the success path: make the payload length right.
			binary.BigEndian.PutUint16(inner[4:], uint16(len(inner)-40))
		}
		e := ipip.Encapsulator{Src: tunSrc, Dst: tunDst, TTL: ttl, InheritTTL: flags&1 != 0}
		if flags&2 != 0 {
			e.Src, e.Dst = tun6Src, tun6Dst
		}
		checkEncapIPv6(t, inner, int(headroom), e)
		if flags&2 != 0 && len(inner) > 0 && inner[0]>>4 == 4 {
			checkEncap4in6(t, inner, int(headroom), e)
		}
	})
}

// checkEncapIPv6 is checkEncapDecap for EncapIPv6.
func checkEncapIPv6(t *testing.T, inner []byte, off int, e ipip.Encapsulator) {
	t.Helper()
	buf := withHeadroom(inner, off)
	orig := append([]byte(nil), buf...)
	hl := 20
	if e.Dst.Is6() {
		hl = 40
	}
	var wantErr error
	var pl int
	if len(inner) >= 40 {
		pl = int(binary.BigEndian.Uint16(inner[4:]))
	}
	switch {
	case off < hl:
		wantErr = ipip.ErrHeadroom
	case len(inner) < 40:
		wantErr = ipip.ErrInnerTruncated
	case inner[0]>>4 != 6:
		wantErr = ipip.ErrInnerVersion
	case pl == 0 && inner[6] == 0:
		wantErr = ipip.ErrJumbogram
	case 40+pl > len(inner):
		wantErr = ipip.ErrInnerTotalLen
	case inner[7] == 0:
		wantErr = ipip.ErrInnerTTL
	case hl == 20 && 20+40+pl > 65535:
		wantErr = ipip.ErrTooBig
	}
	out, err := e.EncapIPv6(buf, off)
	if err != wantErr {
		t.Fatalf("EncapIPv6 error = %v, want %v", err, wantErr)
	}
	if err != nil {
		if out != nil || !bytes.Equal(orig, buf) {
			t.Fatal("failed EncapIPv6 returned data or modified buf")
		}
		return
	}
	n := 40 + pl
	if len(out) != hl+n || !sameMemory(out, buf[off-hl:]) {
		t.Fatalf("EncapIPv6 result is not buf[off-%d : off+%d]", hl, n)
	}
	if !bytes.Equal(orig[:off-hl], buf[:off-hl]) || !bytes.Equal(orig[off:], buf[off:]) {
		t.Fatal("EncapIPv6 wrote outside the outer header")
	}
	ttl := e.TTL
	switch {
	case e.InheritTTL:
		ttl = inner[7]
	case ttl == 0:
		ttl = ipip.DefaultTTL
	}
	tclass := inner[0]<<4 | inner[1]>>4
	decap := ipip.Decap
	if hl == 20 {
		var flags byte
		if n > 1280 {
			flags = 0x40
		}
		want := []byte{0x45, tclass, byte((20 + n) >> 8), byte(20 + n), 0, 0, flags, 0, ttl, 41, 0, 0}
		want = append(append(want, tunSrc.AsSlice()...), tunDst.AsSlice()...)
		got := append([]byte(nil), out[:20]...)
		got[4], got[5], got[10], got[11] = 0, 0, 0, 0
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("outer IPv4 header (-want +got):\n%s", diff)
		}
		if !rfc1071OK(out) {
			t.Fatal("outer checksum invalid")
		}
		gopacketAgrees(t, out, true)
	} else {
		decap = ipip.DecapIPv6
		want := []byte{0x60 | tclass>>4, tclass << 4, 0, 0, byte(n >> 8), byte(n), 41, ttl}
		want = append(append(want, tun6Src.AsSlice()...), tun6Dst.AsSlice()...)
		got := append([]byte(nil), out[:40]...)
		got[1] &= 0xf0
		got[2], got[3] = 0, 0 // the flow label, a hash
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("outer IPv6 header (-want +got):\n%s", diff)
		}
	}
	res, err := decap(out, ipip.ProtoIPv6)
	proto, _, ok := upper6(inner[6], inner[40:n])
	var wantDecapErr error
	switch {
	case !ok:
		wantDecapErr = ipip.ErrInnerTruncated
	case isNested(proto):
		wantDecapErr = ipip.ErrNested
	}
	if err != wantDecapErr {
		t.Fatalf("decapsulating EncapIPv6's packet: error %v, want %v", err, wantDecapErr)
	}
	if err == nil && (!bytes.Equal(res, inner[:n]) || !sameMemory(res, buf[off:])) {
		t.Fatalf("decap(EncapIPv6(inner)) != inner[:%d]", n)
	}
}

// checkEncap4in6 checks Encap over IPv6 of the IPv4 packet inner: as
// Encap over IPv4 would fail, or an outer IPv6 header, and back.
func checkEncap4in6(t *testing.T, inner []byte, off int, e ipip.Encapsulator) {
	t.Helper()
	buf := withHeadroom(inner, off)
	orig := append([]byte(nil), buf...)
	var wantErr error
	ih := ipip.IPv4(inner)
	switch {
	case off < 40:
		wantErr = ipip.ErrHeadroom
	case ih.Valid() != nil:
		wantErr = innerTwin[ih.Valid()]
	case ih.TTL() == 0:
		wantErr = ipip.ErrInnerTTL
	}
	out, err := e.Encap(buf, off)
	if err != wantErr {
		t.Fatalf("Encap over IPv6: error %v, want %v", err, wantErr)
	}
	if err != nil {
		if out != nil || !bytes.Equal(orig, buf) {
			t.Fatal("failed Encap returned data or modified buf")
		}
		return
	}
	n := int(ih.TotalLen())
	if len(out) != 40+n || !sameMemory(out, buf[off-40:]) || !bytes.Equal(orig[off:], buf[off:]) {
		t.Fatal("Encap over IPv6 did not write in place")
	}
	o := ipip.IPv6(out)
	if o.Version() != 6 || o.TrafficClass() != ih.TOS() || o.Len() != len(out) || o.NextHeader() != ipip.ProtoIPinIP || o.Src() != tun6Src || o.Dst() != tun6Dst {
		t.Fatalf("outer IPv6 header % x", out[:40])
	}
	res, err := ipip.DecapIPv6(out, ipip.ProtoIPinIP)
	var wantDecapErr error
	switch {
	case !rfc1071OK(inner):
		wantDecapErr = ipip.ErrInnerChecksum
	case isNested(ih.Protocol()):
		wantDecapErr = ipip.ErrNested
	}
	if err != wantDecapErr {
		t.Fatalf("DecapIPv6(Encap(inner)) error = %v, want %v", err, wantDecapErr)
	}
	if err == nil && !bytes.Equal(res, inner[:n]) {
		t.Fatalf("DecapIPv6(Encap(inner)) != inner[:%d]", n)
	}
}
