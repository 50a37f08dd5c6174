package ipip_test

import (
	"bytes"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/ipip"
)

func testPacket(t *testing.T, proto layers.IPProtocol, payload []byte, flags layers.IPv4Flag, fragOff uint16) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, Flags: flags, FragOffset: fragOff,
		SrcIP: []byte{192, 0, 2, 7}, DstIP: []byte{198, 51, 100, 9}}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnreachable(t *testing.T) {
	orig := testPacket(t, layers.IPProtocolUDP, bytes.Repeat([]byte{0xab}, 1400), layers.IPv4DontFragment, 0)
	buf := make([]byte, ipip.ICMPMaxErrorLen)
	for _, tc := range []struct {
		code uint8
		mtu  int
	}{{ipip.ICMPFragNeeded, 1280}, {ipip.ICMPHostUnreach, 0}} {
		msg := ipip.Unreachable(buf, [4]byte{192, 0, 2, 1}, ipip.IPv4(orig), tc.code, tc.mtu)
		if len(msg) > 576 {
			t.Errorf("error message is %d bytes, more than 576", len(msg))
		}
		p := gopacket.NewPacket(msg, layers.LayerTypeIPv4, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("gopacket: %v", el.Error())
		}
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if !ip.SrcIP.Equal([]byte{192, 0, 2, 1}) || !ip.DstIP.Equal([]byte{192, 0, 2, 7}) {
			t.Errorf("error goes %v -> %v, want 192.0.2.1 -> 192.0.2.7", ip.SrcIP, ip.DstIP)
		}
		if icmp.TypeCode != layers.CreateICMPv4TypeCode(3, tc.code) {
			t.Errorf("type/code = %v", icmp.TypeCode)
		}
		if !ipip.IPv4(msg).ChecksumValid() {
			t.Error("bad IP checksum")
		}
		if ipip.Checksum(msg[20:]) != 0 {
			t.Error("bad ICMP checksum")
		}
		if tc.code == ipip.ICMPFragNeeded && int(icmp.Seq) != tc.mtu { // next-hop MTU is the low 16 bits
			t.Errorf("next-hop MTU = %d, want %d", icmp.Seq, tc.mtu)
		}
		if !bytes.Equal(msg[28:48], orig[:20]) {
			t.Error("the offending header is not quoted")
		}
	}
}

func TestErrorAllowed(t *testing.T) {
	echo := testPacket(t, layers.IPProtocolICMPv4, []byte{8, 0, 0, 0, 0, 0, 0, 0}, 0, 0)
	unreach := testPacket(t, layers.IPProtocolICMPv4, []byte{3, 1, 0, 0, 0, 0, 0, 0}, 0, 0)
	frag := testPacket(t, layers.IPProtocolUDP, make([]byte, 16), 0, 10)
	udp := testPacket(t, layers.IPProtocolUDP, make([]byte, 16), 0, 0)
	mcastSrc := testPacket(t, layers.IPProtocolUDP, make([]byte, 16), 0, 0)
	copy(mcastSrc[12:16], []byte{224, 0, 0, 1})
	for name, tc := range map[string]struct {
		pkt  []byte
		want bool
	}{
		"echo": {echo, true}, "udp": {udp, true},
		"an ICMP error": {unreach, false}, "a later fragment": {frag, false}, "multicast source": {mcastSrc, false},
	} {
		if got := ipip.ErrorAllowed(ipip.IPv4(tc.pkt)); got != tc.want {
			t.Errorf("%s: ErrorAllowed = %v, want %v", name, got, tc.want)
		}
	}
}

// Checksum is RFC 1071's sum, the same as gopacket's for every length.
func TestChecksum(t *testing.T) {
	b := make([]byte, 64)
	for k := range b {
		b[k] = byte(k*37 + 11)
	}
	for n := range len(b) {
		var sum uint32
		for i := 0; i < n; i += 2 {
			w := uint32(b[i]) << 8
			if i+1 < n {
				w |= uint32(b[i+1])
			}
			sum += w
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		if got, want := ipip.Checksum(b[:n]), ^uint16(sum); got != want {
			t.Errorf("Checksum of %d bytes = %#04x, want %#04x", n, got, want)
		}
	}
}
