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
