package vif

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

func TestBuildUnreach(t *testing.T) {
	orig := testPacket(t, layers.IPProtocolUDP, bytes.Repeat([]byte{0xab}, 1400), layers.IPv4DontFragment, 0)
	buf := make([]byte, icmpMaxLen)
	for _, tc := range []struct {
		code uint8
		mtu  int
	}{{codeFragNeeded, 1280}, {codeHostUnreach, 0}} {
		msg := buildUnreach(buf, [4]byte{192, 0, 2, 1}, ipip.Header(orig), tc.code, tc.mtu)
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
		if !ipip.Header(msg).ChecksumValid() {
			t.Error("bad IP checksum")
		}
		if checksum(msg[20:]) != 0 {
			t.Error("bad ICMP checksum")
		}
		if tc.code == codeFragNeeded && int(icmp.Seq) != tc.mtu { // next-hop MTU is the low 16 bits
			t.Errorf("next-hop MTU = %d, want %d", icmp.Seq, tc.mtu)
		}
		if !bytes.Equal(msg[28:48], orig[:20]) {
			t.Error("the offending header is not quoted")
		}
	}
}

func TestICMPWorthy(t *testing.T) {
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
		if got := icmpWorthy(ipip.Header(tc.pkt)); got != tc.want {
			t.Errorf("%s: icmpWorthy = %v, want %v", name, got, tc.want)
		}
	}
}

func TestICMPLimiter(t *testing.T) {
	var l icmpLimiter
	now := int64(1e9)
	n := 0
	for k := 0; k < 1000; k++ {
		if l.allow(now) {
			n++
		}
	}
	if n != icmpBurst {
		t.Errorf("burst allowed %d, want %d", n, icmpBurst)
	}
	now += 1e9 // one second later: icmpRate more
	n = 0
	for k := 0; k < 1000; k++ {
		if l.allow(now) {
			n++
		}
	}
	if n != icmpBurst && n != icmpRate { // capped by the burst
		t.Errorf("after a second allowed %d", n)
	}
}
