package ipip_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/ipip"
)

// header6View is every accessor of IPv6, compared with what gopacket
// decodes from the same bytes.
type header6View struct {
	Version      uint8
	TrafficClass uint8
	ECN          ipip.ECN
	FlowLabel    uint32
	PayloadLen   uint16
	Len          int
	NextHeader   uint8
	HopLimit     uint8
	Src, Dst     netip.Addr
	SrcBytes     [16]byte
	DstBytes     [16]byte
}

func view6Of(h ipip.IPv6) header6View {
	return header6View{
		Version:      h.Version(),
		TrafficClass: h.TrafficClass(),
		ECN:          h.ECN(),
		FlowLabel:    h.FlowLabel(),
		PayloadLen:   h.PayloadLen(),
		Len:          h.Len(),
		NextHeader:   h.NextHeader(),
		HopLimit:     h.HopLimit(),
		Src:          h.Src(),
		Dst:          h.Dst(),
		SrcBytes:     h.SrcBytes(),
		DstBytes:     h.DstBytes(),
	}
}

func gopacket6View(ip *layers.IPv6) header6View {
	src, _ := netip.AddrFromSlice(ip.SrcIP)
	dst, _ := netip.AddrFromSlice(ip.DstIP)
	return header6View{
		Version:      ip.Version,
		TrafficClass: ip.TrafficClass,
		ECN:          ipip.ECN(ip.TrafficClass & 3),
		FlowLabel:    ip.FlowLabel,
		PayloadLen:   ip.Length,
		Len:          ipip.IPv6HeaderLen + int(ip.Length),
		NextHeader:   uint8(ip.NextHeader),
		HopLimit:     ip.HopLimit,
		Src:          src,
		Dst:          dst,
		SrcBytes:     [16]byte(ip.SrcIP),
		DstBytes:     [16]byte(ip.DstIP),
	}
}

var addrEqual = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// randomHeader6 builds a random valid IPv6 packet with gopacket.
func randomHeader6(tb testing.TB, r *rand.Rand) []byte {
	tb.Helper()
	addr := func() net.IP {
		b := make(net.IP, 16)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	nh := layers.IPProtocol(r.Uint32())
	if nh == layers.IPProtocolIPv6HopByHop {
		nh = layers.IPProtocolNoNextHeader // gopacket would parse it
	}
	ip := &layers.IPv6{
		Version:      6,
		TrafficClass: uint8(r.Uint32()),
		FlowLabel:    r.Uint32() & 0xfffff,
		NextHeader:   nh,
		HopLimit:     uint8(r.Uint32()),
		SrcIP:        addr(),
		DstIP:        addr(),
	}
	payload := make([]byte, 1+r.IntN(64)) // gopacket refuses a payload length of 0
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	return serialize(tb, ip, gopacket.Payload(payload))
}

func TestIPv6Accessors(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 500 {
		pkt := randomHeader6(t, r)
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			h := ipip.IPv6(pkt)
			if err := h.Valid(); err != nil {
				t.Fatalf("Valid: %v", err)
			}
			ip := decodeIPv6(t, pkt)
			if diff := cmp.Diff(gopacket6View(ip), view6Of(h), addrEqual); diff != "" {
				t.Errorf("accessors vs gopacket (-want +got):\n%s", diff)
			}

			// Encode of what was read writes the same header.
			got := make([]byte, ipip.IPv6HeaderLen)
			ipip.IPv6(got).Encode(&ipip.IPv6Fields{
				TrafficClass: h.TrafficClass(),
				FlowLabel:    h.FlowLabel(),
				PayloadLen:   h.PayloadLen(),
				NextHeader:   h.NextHeader(),
				HopLimit:     h.HopLimit(),
				Src:          h.SrcBytes(),
				Dst:          h.DstBytes(),
			})
			if diff := cmp.Diff(pkt[:ipip.IPv6HeaderLen], got); diff != "" {
				t.Errorf("Encode (-want +got):\n%s", diff)
			}

			// SetECN: only the ECN bits change.
			for _, e := range []ipip.ECN{ipip.NotECT, ipip.ECT0, ipip.ECT1, ipip.CE} {
				want := decodeIPv6(t, pkt)
				want.TrafficClass = want.TrafficClass&^3 | uint8(e)
				h.SetECN(e)
				if diff := cmp.Diff(gopacket6View(want), view6Of(h), addrEqual); diff != "" {
					t.Errorf("after SetECN(%v) (-want +got):\n%s", e, diff)
				}
			}
		})
	}
}

// TestIPv6Encode checks Encode against gopacket's decoding, for field
// values at their edges: a flow label wider than 20 bits is cut.
func TestIPv6Encode(t *testing.T) {
	src, dst := tun6Src.As16(), tun6Dst.As16()
	for _, f := range []ipip.IPv6Fields{
		{PayloadLen: 1, NextHeader: 59}, // gopacket refuses a payload length of 0
		{TrafficClass: 0xff, FlowLabel: 0xfffff, PayloadLen: 0xffff, NextHeader: 0xff, HopLimit: 0xff, Src: src, Dst: dst},
		{TrafficClass: 0xb9, FlowLabel: 0x12345, PayloadLen: 8, NextHeader: 41, HopLimit: 1, Src: dst, Dst: src},
		{FlowLabel: 0xfff00001, PayloadLen: 1, NextHeader: 59},
	} {
		b := make([]byte, ipip.IPv6HeaderLen+int(f.PayloadLen))
		for i := range b {
			b[i] = 0xa5 // Encode must overwrite all of the header
		}
		ipip.IPv6(b).Encode(&f)
		ip := decodeIPv6(t, b)
		want := header6View{
			Version: 6, TrafficClass: f.TrafficClass, ECN: ipip.ECN(f.TrafficClass & 3), FlowLabel: f.FlowLabel & 0xfffff,
			PayloadLen: f.PayloadLen, Len: ipip.IPv6HeaderLen + int(f.PayloadLen), NextHeader: f.NextHeader, HopLimit: f.HopLimit,
			Src: netip.AddrFrom16(f.Src), Dst: netip.AddrFrom16(f.Dst), SrcBytes: f.Src, DstBytes: f.Dst,
		}
		if diff := cmp.Diff(want, gopacket6View(ip), addrEqual); diff != "" {
			t.Errorf("Encode(%+v), decoded by gopacket (-want +got):\n%s", f, diff)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		b := ipip.IPv6(make([]byte, ipip.IPv6HeaderLen))
		_ = b.Src()
		_ = b.Dst()
	}); n > 1 { // the make
		t.Errorf("Src and Dst allocate: %v allocs", n)
	}
}

func TestIPv6Valid(t *testing.T) {
	good := udp6Packet(t, 8)
	mod := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	tests := []struct {
		name string
		h    []byte
		want error
	}{
		{name: "valid", h: good, want: nil},
		{name: "valid, trailing bytes", h: append(append([]byte(nil), good...), 1, 2, 3), want: nil},
		{name: "header only, payload length 0", h: mod(func(b []byte) { b[4], b[5], b[6] = 0, 0, 59 })[:40], want: nil},
		{name: "nil", h: nil, want: ipip.ErrTruncated},
		{name: "39 bytes", h: good[:39], want: ipip.ErrTruncated},
		{name: "version 4", h: mod(func(b []byte) { b[0] = 0x40 }), want: ipip.ErrVersion},
		{name: "version 0", h: mod(func(b []byte) { b[0] &= 0x0f }), want: ipip.ErrVersion},
		{name: "payload past buffer", h: good[:len(good)-1], want: ipip.ErrTotalLen},
		{name: "payload length 65535", h: mod(func(b []byte) { b[4], b[5] = 0xff, 0xff }), want: ipip.ErrTotalLen},
		{name: "jumbogram (length 0, Hop-by-Hop)", h: mod(func(b []byte) { b[4], b[5], b[6] = 0, 0, 0 }), want: ipip.ErrJumbogram},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ipip.IPv6(tt.h).Valid(); got != tt.want {
				t.Errorf("Valid() = %v, want %v", got, tt.want)
			}
		})
	}
	if binary.BigEndian.Uint16(good[4:]) != uint16(len(good)-40) {
		t.Fatal("gopacket wrote an unexpected payload length")
	}
}
