package craft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/ip4defrag"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/ipip"
)

var (
	srcA = netip.MustParseAddr("198.18.0.1")
	dstB = netip.MustParseAddr("198.18.0.2")
	vifA = netip.MustParseAddr("192.0.2.1")
	vifB = netip.MustParseAddr("198.51.100.1")
)

// decodeIPv4 decodes b with gopacket, independently of this package.
func decodeIPv4(t *testing.T, b []byte) *layers.IPv4 {
	t.Helper()
	var ip layers.IPv4
	if err := ip.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		t.Fatalf("gopacket cannot decode the packet: %v", err)
	}
	return &ip
}

func TestChecksumRFC1071(t *testing.T) {
	// The example of RFC 1071 section 3: the sum of these words is ddf2,
	// so the checksum is its complement.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got, want := Checksum(b), ^uint16(0xddf2); got != want {
		t.Errorf("Checksum = %#04x, want %#04x", got, want)
	}
	// Odd length: the last byte is padded with zero.
	if got, want := Checksum([]byte{0x01}), ^uint16(0x0100); got != want {
		t.Errorf("Checksum(odd) = %#04x, want %#04x", got, want)
	}
}

func TestIPv4PacketAgainstGopacket(t *testing.T) {
	payload := []byte("hello, tunnel")
	tests := []struct {
		name string
		h    IPv4
	}{
		{"plain", IPv4{Protocol: ProtoUDP, Src: srcA, Dst: dstB}},
		{"all fields", IPv4{TOS: 0xb8 | CE, ID: 0xbeef, DF: true, TTL: 7, Protocol: ProtoIPIP, Src: srcA, Dst: dstB}},
		{"fragment", IPv4{ID: 9, MF: true, FragOff: 185, Protocol: ProtoICMP, Src: srcA, Dst: dstB}},
		{"zero TTL", IPv4{ZeroTTL: true, Protocol: ProtoICMP, Src: srcA, Dst: dstB}},
		{"options", IPv4{Options: []byte{1, 1, 1}, Protocol: ProtoIPinIP, Src: srcA, Dst: dstB}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.h.Packet(payload)
			ip := decodeIPv4(t, b)
			wantTTL := tt.h.TTL
			switch {
			case tt.h.ZeroTTL:
				wantTTL = 0
			case wantTTL == 0:
				wantTTL = 64
			}
			var flags layers.IPv4Flag
			if tt.h.DF {
				flags |= layers.IPv4DontFragment
			}
			if tt.h.MF {
				flags |= layers.IPv4MoreFragments
			}
			hl := 20 + (len(tt.h.Options)+3)&^3
			got := []any{ip.Version, int(ip.IHL) * 4, ip.TOS, int(ip.Length), ip.Id, ip.Flags, ip.FragOffset,
				ip.TTL, uint8(ip.Protocol), ip.SrcIP.String(), ip.DstIP.String(), string(ip.Payload)}
			want := []any{uint8(4), hl, tt.h.TOS, hl + len(payload), tt.h.ID, flags, tt.h.FragOff,
				wantTTL, tt.h.Protocol, tt.h.Src.String(), tt.h.Dst.String(), string(payload)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decoded header (-want +got):\n%s", diff)
			}
			if !ChecksumValid(b) {
				t.Errorf("checksum %#04x is not valid", ip.Checksum)
			}
			// gopacket computes the checksum itself when serializing: it
			// must agree.
			buf := gopacket.NewSerializeBuffer()
			ip.Checksum = 0
			if err := ip.SerializeTo(buf, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
				t.Fatal(err)
			}
			if want := binary.BigEndian.Uint16(buf.Bytes()[10:]); binary.BigEndian.Uint16(b[10:]) != want {
				t.Errorf("checksum %#04x, gopacket computes %#04x", binary.BigEndian.Uint16(b[10:]), want)
			}
		})
	}
}

func TestPacketPanicsOnMistakes(t *testing.T) {
	for name, f := range map[string]func(){
		"IPv6 address": func() { IPv4{Src: netip.IPv6Loopback(), Dst: dstB}.Packet(nil) },
		"long options": func() { IPv4{Src: srcA, Dst: dstB, Options: make([]byte, 41)}.Packet(nil) },
		"too long":     func() { IPv4{Src: srcA, Dst: dstB}.Packet(make([]byte, 65535)) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

func TestPingAndUDPChecksums(t *testing.T) {
	p := Ping(vifB, vifA, ECT0, 0x1234, 7)
	pkt := gopacket.NewPacket(p, layers.LayerTypeIPv4, gopacket.Default)
	icmp, ok := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if !ok {
		t.Fatalf("no ICMP layer in %v", pkt)
	}
	if icmp.TypeCode.Type() != layers.ICMPv4TypeEchoRequest || icmp.Id != 0x1234 || icmp.Seq != 7 {
		t.Errorf("ICMP = %v id %d seq %d, want echo request id 0x1234 seq 7", icmp.TypeCode, icmp.Id, icmp.Seq)
	}
	if Checksum(p[20:]) != 0 {
		t.Error("ICMP checksum invalid")
	}
	if p[1] != ECT0 || !ChecksumValid(p) {
		t.Errorf("TOS %#02x, checksum valid %v", p[1], ChecksumValid(p))
	}

	u := UDP(vifB, vifA, 1000, 2000, []byte("odd"))
	udp, ok := gopacket.NewPacket(u, layers.LayerTypeIPv4, gopacket.Default).Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok || udp.SrcPort != 1000 || udp.DstPort != 2000 || string(udp.Payload) != "odd" {
		t.Fatalf("UDP layer = %+v", udp)
	}
	// Verify the UDP checksum over the pseudo-header, with gopacket's own
	// computation.
	ip := decodeIPv4(t, u)
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, udp, gopacket.Payload(udp.Payload)); err != nil {
		t.Fatal(err)
	}
	if want := binary.BigEndian.Uint16(buf.Bytes()[6:]); udp.Checksum != want {
		t.Errorf("UDP checksum %#04x, gopacket computes %#04x", udp.Checksum, want)
	}
}

func TestMutators(t *testing.T) {
	p := Ping(vifB, vifA, 0, 1, 1)
	SetTOS(p, CE)
	if p[1] != CE || !ChecksumValid(p) {
		t.Errorf("SetTOS: TOS %#x, checksum valid %v", p[1], ChecksumValid(p))
	}
	SetTotalLen(p, 1000)
	if binary.BigEndian.Uint16(p[2:]) != 1000 || !ChecksumValid(p) {
		t.Errorf("SetTotalLen: %d, checksum valid %v", binary.BigEndian.Uint16(p[2:]), ChecksumValid(p))
	}
	SetHeaderLen(p, 3)
	if p[0] != 0x43 {
		t.Errorf("SetHeaderLen(3): first byte %#02x, want 0x43", p[0])
	}
	if ChecksumValid(p) {
		t.Error("ChecksumValid accepts an IHL below 5")
	}
	if Checksum(p[:20]) != 0 {
		t.Error("SetHeaderLen(3) did not fix the checksum over the first 20 bytes")
	}
	SetHeaderLen(p, 15) // 60 bytes: exactly the length of the ping
	if !ChecksumValid(p) {
		t.Error("SetHeaderLen(15): checksum over 60 bytes invalid")
	}
}

// TestEncapAgainstCodec cross-checks the builders with the ipip codec, in
// both directions: what craft encapsulates, ipip decapsulates, and the
// nested and malformed packets are refused for the reason the tests
// expect on the wire.
func TestEncapAgainstCodec(t *testing.T) {
	inner := Ping(vifB, vifA, ECT0, 1, 2)
	for _, proto := range []uint8{ProtoIPIP, ProtoIPinIP} {
		outer := Encap(proto, dstB, srcA, 0, inner)
		got, err := ipip.Decap(bytes.Clone(outer), proto)
		if err != nil {
			t.Fatalf("proto %d: Decap: %v", proto, err)
		}
		if !bytes.Equal(got, inner) {
			t.Errorf("proto %d: Decap returned %x, want %x", proto, got, inner)
		}
	}

	bad := func(f func(in []byte) []byte) []byte { return Encap(ProtoIPIP, dstB, srcA, 0, f(bytes.Clone(inner))) }
	tests := []struct {
		name string
		pkt  []byte
		want ipip.Error
	}{
		{"nested 100", Nest(100, ProtoIPIP, dstB, srcA, inner), ipip.ErrNested},
		{"nested other protocol", Encap(ProtoIPIP, dstB, srcA, 0, Encap(ProtoIPinIP, dstB, srcA, 0, inner)), ipip.ErrNested},
		{"inner TTL 0", Encap(ProtoIPIP, dstB, srcA, 0, IPv4{ZeroTTL: true, Protocol: ProtoICMP, Src: vifB, Dst: vifA}.Packet(ICMPEcho(1, 1, nil))), ipip.ErrInnerTTL},
		{"inner truncated", bad(func(in []byte) []byte { return in[:12] }), ipip.ErrInnerTruncated},
		{"inner IHL 4", bad(func(in []byte) []byte { SetHeaderLen(in, 4); return in }), ipip.ErrInnerHeaderLen},
		{"inner IHL 15", bad(func(in []byte) []byte { SetHeaderLen(in, 15); return in[:40] }), ipip.ErrInnerTruncated},
		{"inner checksum", bad(func(in []byte) []byte { in[10] ^= 0xff; return in }), ipip.ErrInnerChecksum},
		{"inner total length long", bad(func(in []byte) []byte { SetTotalLen(in, uint16(len(in)+1)); return in }), ipip.ErrInnerTotalLen},
		{"inner total length short", bad(func(in []byte) []byte { SetTotalLen(in, 19); return in }), ipip.ErrInnerTotalLen},
		{"inner version 6", bad(func(in []byte) []byte { in[0] = 0x65; SetChecksum(in); return in }), ipip.ErrInnerVersion},
		{"ECN CE over Not-ECT", Encap(ProtoIPIP, dstB, srcA, CE, Ping(vifB, vifA, NotECT, 1, 1)), ipip.ErrECN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !ChecksumValid(tt.pkt) {
				t.Fatal("outer checksum invalid")
			}
			_, err := ipip.Decap(tt.pkt, ProtoIPIP)
			if !errors.Is(err, tt.want) {
				t.Errorf("Decap error %v, want %v", err, tt.want)
			}
		})
	}
	if n := len(Nest(100, ProtoIPIP, dstB, srcA, inner)); n != 100*20+len(inner) {
		t.Errorf("Nest(100) is %d bytes, want %d", n, 100*20+len(inner))
	}
}

func TestFragmentReassemblesWithGopacket(t *testing.T) {
	big := Nest(100, ProtoIPIP, dstB, srcA, Ping(vifB, vifA, 0, 1, 1))
	binary.BigEndian.PutUint16(big[4:], 0x4242) // the ID the fragments share
	SetChecksum(big)
	frags, err := Fragment(big, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if len(frags) != 2 {
		t.Fatalf("%d fragments of %d bytes, want 2", len(frags), len(big))
	}
	d := ip4defrag.NewIPv4Defragmenter()
	var whole *layers.IPv4
	for k, f := range frags {
		if len(f) > 1500 || !ChecksumValid(f) {
			t.Errorf("fragment %d: %d bytes, checksum valid %v", k, len(f), ChecksumValid(f))
		}
		ip := decodeIPv4(t, f)
		if mf := ip.Flags&layers.IPv4MoreFragments != 0; mf != (k < len(frags)-1) {
			t.Errorf("fragment %d: MF %v", k, mf)
		}
		if whole, err = d.DefragIPv4(ip); err != nil {
			t.Fatal(err)
		}
	}
	if whole == nil {
		t.Fatal("gopacket did not reassemble the fragments")
	}
	if !bytes.Equal(whole.Payload, big[20:]) {
		t.Errorf("reassembled payload differs (%d bytes, want %d)", len(whole.Payload), len(big)-20)
	}

	if f, err := Fragment(big[:100], 1500); err == nil {
		t.Errorf("Fragment of a cut packet = %d fragments, want an error", len(f))
	}
	if f, err := Fragment(big, 20); !errors.Is(err, ErrFragment) {
		t.Errorf("Fragment with MTU 20 = %d fragments, %v; want ErrFragment", len(f), err)
	}
	small := Ping(vifB, vifA, 0, 1, 1)
	if f, err := Fragment(small, 1500); err != nil || len(f) != 1 || !bytes.Equal(f[0], small) {
		t.Errorf("Fragment of a small packet = %v, %v; want it alone", f, err)
	}
}

func TestARPFrameAgainstGopacket(t *testing.T) {
	sha := net.HardwareAddr{0x02, 1, 2, 3, 4, 5}
	f := ARPRequestFrame(sha, netip.MustParseAddr("198.18.0.3"), vifA)
	pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || arp == nil {
		t.Fatalf("gopacket decoded %v", pkt)
	}
	got := []string{eth.DstMAC.String(), eth.SrcMAC.String(), eth.EthernetType.String(),
		arp.AddrType.String(), arp.Protocol.String(), net.HardwareAddr(arp.SourceHwAddress).String(),
		net.IP(arp.SourceProtAddress).String(), net.HardwareAddr(arp.DstHwAddress).String(), net.IP(arp.DstProtAddress).String()}
	want := []string{"ff:ff:ff:ff:ff:ff", sha.String(), "ARP", "Ethernet", "IPv4", sha.String(),
		"198.18.0.3", "00:00:00:00:00:00", "192.0.2.1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded ARP (-want +got):\n%s", diff)
	}
	if arp.Operation != layers.ARPRequest || arp.HwAddressSize != 6 || arp.ProtAddressSize != 4 {
		t.Errorf("ARP op %d, sizes %d/%d", arp.Operation, arp.HwAddressSize, arp.ProtAddressSize)
	}
}
