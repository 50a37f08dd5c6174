package ipip_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/ipip"
)

// Fragments of an encapsulated packet are what a router would make: gopacket
// reassembles them into the original, each fits the MTU, each checksum is
// valid, and all but the last carry a multiple of 8 bytes.
func TestFragment(t *testing.T) {
	e := &ipip.Encapsulator{Src: tunSrc, Dst: tunDst}
	for _, size := range []int{100, 1400, 1480, 1481, 4000, 8980} {
		for _, mtu := range []int{576, 1280, 1400, 1500} {
			inner := udpPacket(t, size-28, noDF)
			outer, err := e.Encap(withHeadroom(inner, ipip.IPv4MinLen), ipip.IPv4MinLen)
			if err != nil {
				t.Fatal(err)
			}
			bufs := make([][]byte, 32)
			for k := range bufs {
				bufs[k] = make([]byte, 16+mtu)
			}
			n, err := ipip.Fragment(outer, mtu, bufs, 16)
			if err != nil {
				t.Fatalf("size %d mtu %d: %v", size, mtu, err)
			}
			// Reassemble as a receiver does (RFC 791 section 3.2): by
			// offset, until the fragment without More Fragments.
			var whole []byte
			for k := range n {
				f := bufs[k][16:]
				p := gopacket.NewPacket(f, layers.LayerTypeIPv4, gopacket.Default)
				ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if !ok || len(f) > mtu || !ipip.IPv4(f).ChecksumValid() {
					t.Fatalf("size %d mtu %d: fragment %d (%d bytes) undecodable, too long or with a bad checksum", size, mtu, k, len(f))
				}
				if int(ip.FragOffset)*8 != len(whole) {
					t.Fatalf("size %d mtu %d: fragment %d at offset %d, want %d", size, mtu, k, int(ip.FragOffset)*8, len(whole))
				}
				if more := ip.Flags&layers.IPv4MoreFragments != 0; more != (k < n-1) {
					t.Fatalf("size %d mtu %d: fragment %d of %d has MF %v", size, mtu, k, n, more)
				}
				if k < n-1 && len(ip.Payload)%8 != 0 {
					t.Fatalf("fragment %d carries %d bytes, not a multiple of 8", k, len(ip.Payload))
				}
				if ip.Id != ipip.IPv4(outer).ID() || ip.Protocol != 94 {
					t.Fatalf("fragment %d: id %#x protocol %d", k, ip.Id, ip.Protocol)
				}
				whole = append(whole, ip.Payload...)
			}
			if !bytes.Equal(whole, inner) {
				t.Fatalf("size %d mtu %d: reassembled %d bytes, not the %d of the packet", size, mtu, len(whole), len(inner))
			}
		}
	}
}

func TestFragmentRefuses(t *testing.T) {
	e := &ipip.Encapsulator{Src: tunSrc, Dst: tunDst}
	df, _ := e.Encap(withHeadroom(udpPacket(t, 2000, func(ip *layers.IPv4) { ip.Flags = layers.IPv4DontFragment }), ipip.IPv4MinLen), ipip.IPv4MinLen)
	bufs := [][]byte{make([]byte, 1500), make([]byte, 1500)}
	if _, err := ipip.Fragment(df, 1400, bufs, 0); !errors.Is(err, ipip.ErrTooBig) {
		t.Errorf("a DF packet: %v", err)
	}
	inner := udpPacket(t, 4000, noDF)
	big, _ := e.Encap(withHeadroom(inner, ipip.IPv4MinLen), ipip.IPv4MinLen)
	if _, err := ipip.Fragment(big, 1400, bufs, 0); !errors.Is(err, ipip.ErrTooBig) {
		t.Errorf("too few buffers: %v", err)
	}
	if _, err := ipip.Fragment(big, 27, bufs, 0); !errors.Is(err, ipip.ErrTooBig) {
		t.Errorf("an MTU with no room: %v", err)
	}
}

func noDF(ip *layers.IPv4) { ip.Flags = 0 }

// Fragments of an IPv6 tunnel packet (RFC 2473 section 7) are what RFC
// 8200 section 4.5 describes: gopacket decodes each, with a Fragment
// header that names the tunnel's protocol; each fits the MTU; all but the
// last carry a multiple of 8 bytes and the M flag; the pieces, put back
// by offset, are the original payload.
func TestFragmentIPv6(t *testing.T) {
	e := &ipip.Encapsulator{Src: tun6Src, Dst: tun6Dst}
	for _, size := range []int{100, 1240, 1280, 1400, 4000, 8980} {
		for _, mtu := range []int{1280, 1300, 1500} {
			inner := udp6Packet(t, size-48)
			outer, err := e.EncapIPv6(withHeadroom(inner, ipip.IPv6HeaderLen), ipip.IPv6HeaderLen)
			if err != nil {
				t.Fatal(err)
			}
			bufs := make([][]byte, 32)
			for k := range bufs {
				bufs[k] = make([]byte, 24+mtu)
			}
			const id = 0xdecafbad
			n, err := ipip.FragmentIPv6(outer, mtu, id, bufs, 24)
			if err != nil {
				t.Fatalf("size %d mtu %d: %v", size, mtu, err)
			}
			if len(outer) <= mtu {
				if n != 1 || !bytes.Equal(bufs[0][24:], outer) {
					t.Fatalf("size %d mtu %d: a packet that fits is not sent as it is", size, mtu)
				}
				continue
			}
			var whole []byte
			for k := range n {
				f := bufs[k][24:]
				p := gopacket.NewPacket(f, layers.LayerTypeIPv6, gopacket.Default)
				fh, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
				if !ok || len(f) > mtu || ipip.IPv6(f).Valid() != nil || ipip.IPv6(f).Len() != len(f) {
					t.Fatalf("size %d mtu %d: fragment %d (%d bytes) undecodable or too long", size, mtu, k, len(f))
				}
				if int(fh.FragmentOffset)*8 != len(whole) || fh.MoreFragments != (k < n-1) || fh.Identification != id || fh.NextHeader != layers.IPProtocolIPv6 {
					t.Fatalf("size %d mtu %d: fragment %d: %+v", size, mtu, k, fh)
				}
				if k < n-1 && len(fh.Payload)%8 != 0 {
					t.Fatalf("fragment %d carries %d bytes, not a multiple of 8", k, len(fh.Payload))
				}
				whole = append(whole, fh.Payload...)
			}
			if !bytes.Equal(whole, inner) {
				t.Fatalf("size %d mtu %d: reassembled %d bytes, not the %d of the packet", size, mtu, len(whole), len(inner))
			}
		}
	}
	if _, err := ipip.FragmentIPv6(ipip.IPv6(udp6Packet(t, 100)), 50, 1, make([][]byte, 4), 0); !errors.Is(err, ipip.ErrTooBig) {
		t.Errorf("an MTU without room for 8 bytes: %v", err)
	}
}

// FuzzFragmentIPv6 cuts arbitrary packets at arbitrary MTUs: FragmentIPv6
// never panics, refuses what is no tunnel packet or leaves no room, and
// otherwise writes fragments within the MTU whose pieces, put back by
// offset, are the payload.
func FuzzFragmentIPv6(f *testing.F) {
	e := &ipip.Encapsulator{Src: tun6Src, Dst: tun6Dst}
	for _, size := range []int{100, 1280, 1400, 9000} {
		inner := udp6Packet(f, size-48)
		out, err := e.EncapIPv6(withHeadroom(inner, ipip.IPv6HeaderLen), ipip.IPv6HeaderLen)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(out), uint16(1280))
		f.Add([]byte(out), uint16(57))
	}
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 44, 64}, uint16(1280))
	f.Fuzz(func(t *testing.T, pkt []byte, mtu uint16) {
		bufs := make([][]byte, min(ipip.FragmentCountIPv6(len(pkt), int(mtu))+1, 64))
		for k := range bufs {
			bufs[k] = make([]byte, 8+int(mtu))
		}
		n, err := ipip.FragmentIPv6(ipip.IPv6(pkt), int(mtu), 7, bufs, 8)
		if err != nil {
			return
		}
		h := ipip.IPv6(pkt)
		whole := h[:h.Len()]
		if n == 1 {
			if !bytes.Equal(bufs[0][8:], whole) {
				t.Fatal("one fragment is not the packet")
			}
			return
		}
		var payload []byte
		for k := range n {
			fr := ipip.IPv6(bufs[k][8:])
			if len(fr) > int(mtu) || fr.Valid() != nil || fr.Len() != len(fr) || fr.NextHeader() != 44 {
				t.Fatalf("fragment %d: %d bytes, mtu %d", k, len(fr), mtu)
			}
			fh := fr[ipip.IPv6HeaderLen:]
			if off := int(binary.BigEndian.Uint16(fh[2:]) &^ 7); off != len(payload) || fh[0] != h.NextHeader() || (binary.BigEndian.Uint16(fh[2:])&1 == 1) != (k < n-1) {
				t.Fatalf("fragment %d: offset %d, want %d", k, off, len(payload))
			}
			payload = append(payload, fh[ipip.FragmentHeaderLen:]...)
		}
		if !bytes.Equal(payload, whole[ipip.IPv6HeaderLen:]) {
			t.Fatal("the fragments do not carry the payload")
		}
	})
}
