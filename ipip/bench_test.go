package ipip_test

import (
	"errors"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/ipip"
)

const benchInnerLen = 1400

var errUnexpected = errors.New("unexpected result")

func benchInner(tb testing.TB, mods ...func(*layers.IPv4)) []byte {
	return udpPacket(tb, benchInnerLen-28, mods...)
}

func BenchmarkEncap(b *testing.B) {
	buf := withHeadroom(benchInner(b), ipip.IPv4MinLen)
	e := ipip.Encapsulator{Src: tunSrc, Dst: tunDst}
	b.ReportAllocs()
	b.SetBytes(benchInnerLen)
	for b.Loop() {
		if _, err := e.Encap(buf, ipip.IPv4MinLen); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecap(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		e := ipip.Encapsulator{Src: tunSrc, Dst: tunDst}
		pkt, err := e.Encap(withHeadroom(benchInner(b), ipip.IPv4MinLen), ipip.IPv4MinLen)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(benchInnerLen)
		for b.Loop() {
			if _, err := ipip.Decap(pkt, ipip.ProtoIPIP); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ecn-rewrite", func(b *testing.B) {
		// Outer CE over inner ECT(0): the inner ECN field and checksum are
		// rewritten on every packet (the two bytes are restored each time).
		pkt := outerPacket(b, ipip.ProtoIPIP, benchInner(b, func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.ECT0) }),
			func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.CE) })
		tosByte, csum := pkt[21], [2]byte{pkt[30], pkt[31]}
		b.ReportAllocs()
		b.SetBytes(benchInnerLen)
		for b.Loop() {
			pkt[21], pkt[30], pkt[31] = tosByte, csum[0], csum[1]
			if _, err := ipip.Decap(pkt, ipip.ProtoIPIP); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestZeroAllocs(t *testing.T) {
	inner := benchInner(t)
	buf := withHeadroom(inner, ipip.IPv4MinLen)
	e := ipip.Encapsulator{Src: tunSrc, Dst: tunDst}
	pkt, err := e.Encap(append([]byte(nil), buf...), ipip.IPv4MinLen)
	if err != nil {
		t.Fatal(err)
	}
	ecnPkt := outerPacket(t, ipip.ProtoIPIP, benchInner(t, func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.ECT1) }),
		func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.CE) })
	tosByte, c0, c1 := ecnPkt[21], ecnPkt[30], ecnPkt[31]
	bad := append([]byte(nil), pkt...)
	bad[11] ^= 1

	tests := []struct {
		name string
		f    func() error
	}{
		{"Encap", func() error {
			_, err := e.Encap(buf, ipip.IPv4MinLen)
			return err
		}},
		{"Encap error", func() error {
			if _, err := e.Encap(buf, 3); err != ipip.ErrHeadroom {
				return errUnexpected
			}
			return nil
		}},
		{"Decap", func() error {
			_, err := ipip.Decap(pkt, ipip.ProtoIPIP)
			return err
		}},
		{"Decap ECN rewrite", func() error {
			ecnPkt[21], ecnPkt[30], ecnPkt[31] = tosByte, c0, c1
			out, err := ipip.Decap(ecnPkt, ipip.ProtoIPIP)
			if err == nil && ipip.IPv4(out).ECN() != ipip.CE {
				return errUnexpected
			}
			return err
		}},
		{"Decap error", func() error {
			if _, err := ipip.Decap(bad, ipip.ProtoIPIP); err != ipip.ErrChecksum {
				return errUnexpected
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			n := testing.AllocsPerRun(1000, func() {
				if e := tt.f(); e != nil {
					err = e
				}
			})
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if n != 0 {
				t.Errorf("%s: %v allocs per run, want 0", tt.name, n)
			}
		})
	}
}

func benchInner6(tb testing.TB, mods ...func(*layers.IPv6)) []byte {
	return udp6Packet(tb, benchInnerLen-48, mods...)
}

// BenchmarkEncap4in6 is Encap of an IPv4 packet over IPv6 (RFC 2473).
func BenchmarkEncap4in6(b *testing.B) {
	buf := withHeadroom(benchInner(b), ipip.IPv6HeaderLen)
	e := ipip.Encapsulator{Src: tun6Src, Dst: tun6Dst}
	b.ReportAllocs()
	b.SetBytes(benchInnerLen)
	for b.Loop() {
		if _, err := e.Encap(buf, ipip.IPv6HeaderLen); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncapIPv6(b *testing.B) {
	for _, c := range []struct {
		name string
		e    ipip.Encapsulator
	}{
		{"6in4", ipip.Encapsulator{Src: tunSrc, Dst: tunDst}},
		{"6in6", ipip.Encapsulator{Src: tun6Src, Dst: tun6Dst}},
	} {
		b.Run(c.name, func(b *testing.B) {
			buf := withHeadroom(benchInner6(b), ipip.IPv6HeaderLen)
			b.ReportAllocs()
			b.SetBytes(benchInnerLen)
			for b.Loop() {
				if _, err := c.e.EncapIPv6(buf, ipip.IPv6HeaderLen); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecapIPv6(b *testing.B) {
	for _, c := range []struct {
		name  string
		pkt   []byte
		decap func([]byte, uint8) ([]byte, error)
		proto uint8
	}{
		{"6in4", outerPacket(b, ipip.ProtoIPv6, benchInner6(b)), ipip.Decap, ipip.ProtoIPv6},
		{"4in6", outer6Packet(b, ipip.ProtoIPinIP, benchInner(b)), ipip.DecapIPv6, ipip.ProtoIPinIP},
		{"6in6", outer6Packet(b, ipip.ProtoIPv6, benchInner6(b)), ipip.DecapIPv6, ipip.ProtoIPv6},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(benchInnerLen)
			for b.Loop() {
				if _, err := c.decap(c.pkt, c.proto); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("6in6-ecn-rewrite", func(b *testing.B) {
		// Outer CE over inner ECT(0): the inner ECN field is rewritten on
		// every packet (and restored each time).
		pkt := outer6Packet(b, ipip.ProtoIPv6, benchInner6(b, func(ip *layers.IPv6) { ip.TrafficClass = tos(0, ipip.ECT0) }),
			func(ip *layers.IPv6) { ip.TrafficClass = tos(0, ipip.CE) })
		tc := pkt[41]
		b.ReportAllocs()
		b.SetBytes(benchInnerLen)
		for b.Loop() {
			pkt[41] = tc
			if _, err := ipip.DecapIPv6(pkt, ipip.ProtoIPv6); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkPacketTooBig(b *testing.B) {
	pkt := ipip.IPv6(benchInner6(b))
	buf := make([]byte, ipip.ICMPv6MaxErrorLen)
	src := tun6Src.As16()
	b.ReportAllocs()
	for b.Loop() {
		if !ipip.ErrorAllowedIPv6(pkt, ipip.ICMPv6PacketTooBig) {
			b.Fatal(errUnexpected)
		}
		ipip.PacketTooBig(buf, src, pkt, 1280)
	}
}

func TestZeroAllocsIPv6(t *testing.T) {
	e4 := ipip.Encapsulator{Src: tunSrc, Dst: tunDst}
	e6 := ipip.Encapsulator{Src: tun6Src, Dst: tun6Dst}
	buf4 := withHeadroom(benchInner(t), ipip.IPv6HeaderLen)
	buf6 := withHeadroom(benchInner6(t), ipip.IPv6HeaderLen)
	six4 := outerPacket(t, ipip.ProtoIPv6, benchInner6(t))
	four6 := outer6Packet(t, ipip.ProtoIPinIP, benchInner(t))
	six6 := outer6Packet(t, ipip.ProtoIPv6, benchInner6(t))
	ecn := outer6Packet(t, ipip.ProtoIPv6, benchInner6(t, func(ip *layers.IPv6) { ip.TrafficClass = tos(0, ipip.ECT1) }),
		func(ip *layers.IPv6) { ip.TrafficClass = tos(0, ipip.CE) })
	ecn4 := outer6Packet(t, ipip.ProtoIPinIP, benchInner(t, func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.ECT1) }),
		func(ip *layers.IPv6) { ip.TrafficClass = tos(0, ipip.CE) })
	tc, tos4, c0, c1 := ecn[41], ecn4[41], ecn4[50], ecn4[51]
	frag := outer6Packet(t, 44, append(fragHeader(layers.IPProtocolIPv6, 0, true), benchInner6(t)...))
	ok := func(_ []byte, err error) error { return err }
	fails := func(want error) func([]byte, error) error {
		return func(_ []byte, err error) error {
			if err != want {
				return errUnexpected
			}
			return nil
		}
	}
	tests := []struct {
		name string
		f    func() error
	}{
		{"Encap 4in6", func() error { return ok(e6.Encap(buf4, ipip.IPv6HeaderLen)) }},
		{"EncapIPv6 6in4", func() error { return ok(e4.EncapIPv6(buf6, ipip.IPv6HeaderLen)) }},
		{"EncapIPv6 6in6", func() error { return ok(e6.EncapIPv6(buf6, ipip.IPv6HeaderLen)) }},
		{"EncapIPv6 error", func() error { return fails(ipip.ErrHeadroom)(e6.EncapIPv6(buf6, 39)) }},
		{"Encap endpoints error", func() error {
			e := ipip.Encapsulator{Src: tunSrc, Dst: tun6Dst}
			return fails(ipip.ErrEndpoints)(e.Encap(buf4, ipip.IPv6HeaderLen))
		}},
		{"Decap 6in4", func() error { return ok(ipip.Decap(six4, ipip.ProtoIPv6)) }},
		{"DecapIPv6 4in6", func() error { return ok(ipip.DecapIPv6(four6, ipip.ProtoIPinIP)) }},
		{"DecapIPv6 6in6", func() error { return ok(ipip.DecapIPv6(six6, ipip.ProtoIPv6)) }},
		{"DecapIPv6 ECN rewrite", func() error {
			ecn[41] = tc
			return ok(ipip.DecapIPv6(ecn, ipip.ProtoIPv6))
		}},
		{"DecapIPv6 4in6 ECN rewrite", func() error {
			ecn4[41], ecn4[50], ecn4[51] = tos4, c0, c1
			return ok(ipip.DecapIPv6(ecn4, ipip.ProtoIPinIP))
		}},
		{"DecapIPv6 error", func() error { return fails(ipip.ErrFragment)(ipip.DecapIPv6(frag, ipip.ProtoIPv6)) }},
		{"DecapIPv6 protocol 94", func() error { return fails(ipip.ErrProtocolFamily)(ipip.DecapIPv6(six6, ipip.ProtoIPIP)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			n := testing.AllocsPerRun(1000, func() {
				if e := tt.f(); e != nil {
					err = e
				}
			})
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if n != 0 {
				t.Errorf("%s: %v allocs per run, want 0", tt.name, n)
			}
		})
	}
}
