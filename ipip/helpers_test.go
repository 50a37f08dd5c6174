package ipip_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/ipip"
)

// Test packets are built with gopacket, independently of the codec, so the
// codec's header writing and checksumming are checked against a second
// implementation.

var (
	innerSrc = net.IPv4(10, 0, 0, 1).To4()
	innerDst = net.IPv4(10, 0, 0, 2).To4()
	tunSrc   = netip.MustParseAddr("192.0.2.1")
	tunDst   = netip.MustParseAddr("198.51.100.7")
)

// routerAlert is the RFC 2113 Router Alert option: 4 bytes, so a header
// carrying it has IHL 6.
var routerAlert = layers.IPv4Option{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}

// serialize serializes ls with lengths and checksums fixed by gopacket.
func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("gopacket.SerializeLayers: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// innerIP returns the IPv4 layer of a default inner packet; mods adjust it.
func innerIP(mods ...func(*layers.IPv4)) *layers.IPv4 {
	ip := &layers.IPv4{
		Version:  4,
		IHL:      5,
		TTL:      64,
		Id:       0x1234,
		Protocol: layers.IPProtocolICMPv4,
		SrcIP:    innerSrc,
		DstIP:    innerDst,
	}
	for _, m := range mods {
		m(ip)
	}
	return ip
}

// icmpPacket builds an IPv4 ICMP echo request carrying n payload bytes.
func icmpPacket(tb testing.TB, n int, mods ...func(*layers.IPv4)) []byte {
	tb.Helper()
	ip := innerIP(mods...)
	icmp := &layers.ICMPv4{
		TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0),
		Id:       7,
		Seq:      1,
	}
	return serialize(tb, ip, icmp, gopacket.Payload(pattern(n)))
}

// udpPacket builds an IPv4 UDP packet carrying n payload bytes.
func udpPacket(tb testing.TB, n int, mods ...func(*layers.IPv4)) []byte {
	tb.Helper()
	ip := innerIP(append([]func(*layers.IPv4){func(ip *layers.IPv4) { ip.Protocol = layers.IPProtocolUDP }}, mods...)...)
	udp := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, ip, udp, gopacket.Payload(pattern(n)))
}

// rawInner builds an IPv4 packet of protocol proto whose payload is the
// given bytes (for nesting, or for inner packets that are not ICMP/UDP).
func rawInner(tb testing.TB, proto layers.IPProtocol, payload []byte, mods ...func(*layers.IPv4)) []byte {
	tb.Helper()
	ip := innerIP(append([]func(*layers.IPv4){func(ip *layers.IPv4) { ip.Protocol = proto }}, mods...)...)
	return serialize(tb, ip, gopacket.Payload(payload))
}

// outerPacket builds, with gopacket, an outer IPv4 header of protocol proto
// from tunSrc to tunDst around payload.
func outerPacket(tb testing.TB, proto uint8, payload []byte, mods ...func(*layers.IPv4)) []byte {
	tb.Helper()
	ip := &layers.IPv4{
		Version:  4,
		IHL:      5,
		TTL:      64,
		Id:       0xbeef,
		Protocol: layers.IPProtocol(proto),
		SrcIP:    tunSrc.AsSlice(),
		DstIP:    tunDst.AsSlice(),
	}
	for _, m := range mods {
		m(ip)
	}
	return serialize(tb, ip, gopacket.Payload(payload))
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	return p
}

// withHeadroom returns a buffer holding pkt at offset off.
func withHeadroom(pkt []byte, off int) []byte {
	buf := make([]byte, off+len(pkt))
	for i := range off {
		buf[i] = 0xa5 // recognisable junk the codec must overwrite or leave
	}
	copy(buf[off:], pkt)
	return buf
}

// decodeIPv4 decodes the IPv4 header at the start of b with gopacket.
func decodeIPv4(tb testing.TB, b []byte) *layers.IPv4 {
	tb.Helper()
	var ip layers.IPv4
	if err := ip.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		tb.Fatalf("gopacket cannot decode IPv4 header % x: %v", b[:min(len(b), 60)], err)
	}
	return &ip
}

// gopacketChecksumOK reports whether gopacket agrees that the IPv4 header at
// the start of b carries the right checksum: it re-serializes the decoded
// header with ComputeChecksums and compares the result with the received
// field.
func gopacketChecksumOK(tb testing.TB, b []byte) bool {
	tb.Helper()
	ip := decodeIPv4(tb, b)
	got := ip.Checksum
	buf := gopacket.NewSerializeBuffer()
	if err := ip.SerializeTo(buf, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
		tb.Fatalf("gopacket re-serialize: %v", err)
	}
	want := binary.BigEndian.Uint16(buf.Bytes()[10:])
	if got != want {
		tb.Logf("checksum %#04x, gopacket computes %#04x", got, want)
	}
	return got == want
}

// fixChecksum recomputes the header checksum of b (IHL taken from b[0])
// with a straightforward RFC 1071 sum, independent of the codec; it works
// on headers gopacket refuses to decode (bad lengths, versions).
func fixChecksum(tb testing.TB, b []byte) {
	tb.Helper()
	n := int(b[0]&0x0f) * 4
	if n < 20 || n > len(b) {
		tb.Fatalf("fixChecksum: IHL %d does not fit %d bytes", n, len(b))
	}
	binary.BigEndian.PutUint16(b[10:], 0)
	var sum uint32
	for i := 0; i < n; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
}

// sameMemory reports whether a and b start at the same address.
func sameMemory(a, b []byte) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }

// subSliceOf reports whether s is pkt[i:i+len(s)] for some i, and returns i.
func subSliceOf(s, pkt []byte) (int, bool) {
	if len(s) == 0 || cap(s) > cap(pkt) {
		return 0, false
	}
	i := cap(pkt) - cap(s)
	if i+len(s) > len(pkt) || &pkt[i] != &s[0] {
		return 0, false
	}
	return i, true
}

// tos makes a TOS byte from a DSCP and an ECN field.
func tos(dscp uint8, e ipip.ECN) uint8 { return dscp<<2 | uint8(e) }
