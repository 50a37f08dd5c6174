package ipip_test

import (
	"bytes"
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
