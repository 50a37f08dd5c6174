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

// headerView is every accessor of IPv4, compared with what gopacket
// decodes from the same bytes.
type headerView struct {
	Version        uint8
	HeaderLen      int
	TOS            uint8
	ECN            ipip.ECN
	TotalLen       uint16
	ID             uint16
	DF, MF         bool
	FragmentOffset uint16
	IsFragment     bool
	TTL            uint8
	Protocol       uint8
	Checksum       uint16
	Src, Dst       netip.Addr
	SrcBytes       [4]byte
	DstBytes       [4]byte
}

func viewOf(h ipip.IPv4) headerView {
	return headerView{
		Version:        h.Version(),
		HeaderLen:      h.HeaderLen(),
		TOS:            h.TOS(),
		ECN:            h.ECN(),
		TotalLen:       h.TotalLen(),
		ID:             h.ID(),
		DF:             h.DF(),
		MF:             h.MF(),
		FragmentOffset: h.FragmentOffset(),
		IsFragment:     h.IsFragment(),
		TTL:            h.TTL(),
		Protocol:       h.Protocol(),
		Checksum:       h.Checksum(),
		Src:            h.Src(),
		Dst:            h.Dst(),
		SrcBytes:       h.SrcBytes(),
		DstBytes:       h.DstBytes(),
	}
}

func gopacketView(ip *layers.IPv4) headerView {
	src, _ := netip.AddrFromSlice(ip.SrcIP)
	dst, _ := netip.AddrFromSlice(ip.DstIP)
	return headerView{
		Version:        ip.Version,
		HeaderLen:      int(ip.IHL) * 4,
		TOS:            ip.TOS,
		ECN:            ipip.ECN(ip.TOS & 3),
		TotalLen:       ip.Length,
		ID:             ip.Id,
		DF:             ip.Flags&layers.IPv4DontFragment != 0,
		MF:             ip.Flags&layers.IPv4MoreFragments != 0,
		FragmentOffset: ip.FragOffset,
		IsFragment:     ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0,
		TTL:            ip.TTL,
		Protocol:       uint8(ip.Protocol),
		Checksum:       ip.Checksum,
		Src:            src,
		Dst:            dst,
		SrcBytes:       [4]byte(ip.SrcIP),
		DstBytes:       [4]byte(ip.DstIP),
	}
}

// randomHeader builds a random valid IPv4 packet with gopacket.
func randomHeader(tb testing.TB, r *rand.Rand) []byte {
	tb.Helper()
	ip := &layers.IPv4{
		Version:    4,
		TOS:        uint8(r.Uint32()),
		Id:         uint16(r.Uint32()),
		Flags:      layers.IPv4Flag(r.IntN(8)), // evil bit included
		FragOffset: uint16(r.IntN(1 << 13)),
		TTL:        uint8(r.Uint32()),
		Protocol:   layers.IPProtocol(r.Uint32()),
		SrcIP:      net.IP(binary.BigEndian.AppendUint32(nil, r.Uint32())),
		DstIP:      net.IP(binary.BigEndian.AppendUint32(nil, r.Uint32())),
	}
	for range r.IntN(11) {
		ip.Options = append(ip.Options, routerAlert)
	}
	payload := make([]byte, r.IntN(64))
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	return serialize(tb, ip, gopacket.Payload(payload))
}

func TestHeaderAccessors(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		pkt := randomHeader(t, r)
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			h := ipip.IPv4(pkt)
			if err := h.Valid(); err != nil {
				t.Fatalf("Valid: %v", err)
			}
			ip := decodeIPv4(t, pkt)
			if diff := cmp.Diff(gopacketView(ip), viewOf(h), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("accessors vs gopacket (-want +got):\n%s", diff)
			}
			if !h.ChecksumValid() {
				t.Error("ChecksumValid = false on a gopacket-built header")
			}
			if got, want := h.CalculateChecksum(), ip.Checksum; got != want {
				t.Errorf("CalculateChecksum = %#04x, want %#04x", got, want)
			}
			// SetChecksum restores a zeroed checksum.
			binary.BigEndian.PutUint16(pkt[10:], 0)
			if h.ChecksumValid() {
				t.Error("ChecksumValid = true with the checksum zeroed")
			}
			h.SetChecksum()
			if got := h.Checksum(); got != ip.Checksum {
				t.Errorf("SetChecksum stored %#04x, want %#04x", got, ip.Checksum)
			}
			// SetECN: only the ECN bits change and the checksum stays right.
			for _, e := range []ipip.ECN{ipip.NotECT, ipip.ECT0, ipip.ECT1, ipip.CE} {
				h.SetECN(e)
				if h.ECN() != e || h.TOS()>>2 != ip.TOS>>2 {
					t.Errorf("after SetECN(%v): TOS %#02x", e, h.TOS())
				}
				if !h.ChecksumValid() || !gopacketChecksumOK(t, pkt) {
					t.Errorf("after SetECN(%v): checksum %#04x invalid", e, h.Checksum())
				}
				want := append([]byte(nil), pkt...)
				fixChecksum(t, want)
				if diff := cmp.Diff(want, []byte(pkt)); diff != "" {
					t.Errorf("after SetECN(%v): incremental update differs from a full recompute (-want +got):\n%s", e, diff)
				}
			}
		})
	}
}

// TestSetECNChecksumEdges covers the RFC 1624 corner: a header whose
// correct checksum is 0x0000 (one's complement sum 0xffff), reached or left
// by an incremental update. RFC 1624 equation 3 must be used, not 2.
func TestSetECNChecksumEdges(t *testing.T) {
	for _, from := range []ipip.ECN{ipip.NotECT, ipip.ECT0, ipip.ECT1, ipip.CE} {
		for _, to := range []ipip.ECN{ipip.NotECT, ipip.ECT0, ipip.ECT1, ipip.CE} {
			t.Run(fmt.Sprintf("%v->%v", from, to), func(t *testing.T) {
				pkt := udpPacket(t, 8, func(ip *layers.IPv4) { ip.TOS = tos(46, to) })
				// Choose the ID so that, with ECN "to", the checksum is 0.
				binary.BigEndian.PutUint16(pkt[4:], 0)
				fixChecksum(t, pkt)
				binary.BigEndian.PutUint16(pkt[4:], binary.BigEndian.Uint16(pkt[10:]))
				fixChecksum(t, pkt)
				if c := binary.BigEndian.Uint16(pkt[10:]); c != 0 {
					t.Fatalf("setup: checksum %#04x, want 0", c)
				}
				zero := append([]byte(nil), pkt...)

				// Arrive at checksum 0.
				h := ipip.IPv4(pkt)
				h.SetECN(from)
				fixChecksum(t, pkt)
				h.SetECN(to)
				if diff := cmp.Diff(zero, []byte(pkt)); diff != "" {
					t.Errorf("SetECN into checksum 0 (-want +got):\n%s", diff)
				}
				// Leave checksum 0.
				h.SetECN(from)
				want := append([]byte(nil), pkt...)
				fixChecksum(t, want)
				if diff := cmp.Diff(want, []byte(pkt)); diff != "" {
					t.Errorf("SetECN out of checksum 0 (-want +got):\n%s", diff)
				}
				if !gopacketChecksumOK(t, pkt) {
					t.Error("gopacket: checksum invalid")
				}
			})
		}
	}
}

func TestHeaderValid(t *testing.T) {
	good := udpPacket(t, 8)
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
		{name: "valid header only", h: mod(func(b []byte) { b[3] = 20 })[:20], want: nil},
		{name: "nil", h: nil, want: ipip.ErrTruncated},
		{name: "19 bytes", h: good[:19], want: ipip.ErrTruncated},
		{name: "version 6", h: mod(func(b []byte) { b[0] = 0x65 }), want: ipip.ErrVersion},
		{name: "version 15", h: mod(func(b []byte) { b[0] = 0xf5 }), want: ipip.ErrVersion},
		{name: "IHL 4", h: mod(func(b []byte) { b[0] = 0x44 }), want: ipip.ErrHeaderLen},
		{name: "IHL 9 past buffer", h: mod(func(b []byte) { b[0] = 0x49 })[:35], want: ipip.ErrTruncated},
		{name: "total length 19", h: mod(func(b []byte) { b[2], b[3] = 0, 19 }), want: ipip.ErrTotalLen},
		{name: "total length < IHL 6", h: mod(func(b []byte) { b[0], b[2], b[3] = 0x46, 0, 23 }), want: ipip.ErrTotalLen},
		{name: "total length past buffer", h: good[:len(good)-1], want: ipip.ErrTotalLen},
		{name: "total length 65535", h: mod(func(b []byte) { b[2], b[3] = 0xff, 0xff }), want: ipip.ErrTotalLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ipip.IPv4(tt.h).Valid(); got != tt.want {
				t.Errorf("Valid() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestECNString(t *testing.T) {
	got := []string{ipip.NotECT.String(), ipip.ECT1.String(), ipip.ECT0.String(), ipip.CE.String()}
	want := []string{"Not-ECT", "ECT(1)", "ECT(0)", "CE"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ECN.String (-want +got):\n%s", diff)
	}
	// The codepoints are those of RFC 3168 section 5.
	if diff := cmp.Diff([]ipip.ECN{0, 1, 2, 3}, []ipip.ECN{ipip.NotECT, ipip.ECT1, ipip.ECT0, ipip.CE}); diff != "" {
		t.Errorf("ECN codepoints (-want +got):\n%s", diff)
	}
}
