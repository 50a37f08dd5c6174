package ipip_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/ipip"
)

// gopacketICMPv6 decodes an ICMPv6 error with gopacket, and checks its
// checksum by having gopacket compute it again over the same message.
func gopacketICMPv6(t *testing.T, msg []byte) (*layers.IPv6, *layers.ICMPv6) {
	t.Helper()
	p := gopacket.NewPacket(msg, layers.LayerTypeIPv6, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if ip == nil || icmp == nil {
		t.Fatalf("gopacket finds no IPv6 and ICMPv6 layers in % x", msg[:min(len(msg), 64)])
	}
	again := &layers.ICMPv6{TypeCode: icmp.TypeCode}
	if err := again.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	b := serialize(t, again, gopacket.Payload(icmp.Payload))
	if want := binary.BigEndian.Uint16(b[2:]); icmp.Checksum != want {
		t.Errorf("ICMPv6 checksum %#04x, gopacket computes %#04x", icmp.Checksum, want)
	}
	return ip, icmp
}

func TestPacketTooBig(t *testing.T) {
	src := [16]byte(tun6Src.AsSlice())
	big := udp6Packet(t, 1400)
	small := udp6Packet(t, 17) // odd length
	buf := make([]byte, ipip.ICMPv6MaxErrorLen)
	for _, tc := range []struct {
		name    string
		pkt     []byte
		mtu     int
		wantMTU uint32
	}{
		{"big packet, MTU 1400", big, 1400, 1400},
		{"big packet, MTU 1280", big, 1280, 1280},
		{"MTU below 1280 is reported as 1280", big, 1000, 1280},
		{"MTU 0", big, 0, 1280},
		{"small packet, quoted whole", small, 1500, 1500},
		{"trailing bytes not quoted", append(append([]byte(nil), small...), 9, 9, 9), 1500, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range buf {
				buf[i] = 0xa5
			}
			msg := ipip.PacketTooBig(buf, src, ipip.IPv6(tc.pkt), tc.mtu)
			if !sameMemory(msg, buf) {
				t.Error("the message is not at the start of buf")
			}
			quote := min(len(tc.pkt), ipip.IPv6(tc.pkt).Len(), ipip.ICMPv6QuoteLen)
			if len(msg) > ipip.IPv6MinMTU || len(msg) != 48+quote {
				t.Errorf("message is %d bytes, want %d (at most %d)", len(msg), 48+quote, ipip.IPv6MinMTU)
			}
			ip, icmp := gopacketICMPv6(t, msg)
			want := outer6Fields{Version: 6, TrafficClass: 0xc0, Length: uint16(len(msg) - 40), NextHeader: layers.IPProtocolICMPv6,
				HopLimit: ipip.DefaultTTL, SrcIP: tun6Src.String(), DstIP: inner6Src.String()}
			if diff := cmp.Diff(want, fields6Of(ip)); diff != "" {
				t.Errorf("IPv6 header (-want +got):\n%s", diff)
			}
			if icmp.TypeCode != layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0) {
				t.Errorf("type/code %v", icmp.TypeCode)
			}
			if got := binary.BigEndian.Uint32(icmp.Payload); got != tc.wantMTU {
				t.Errorf("MTU %d, want %d", got, tc.wantMTU)
			}
			if !bytes.Equal(icmp.Payload[4:], tc.pkt[:quote]) {
				t.Error("the quote is not the start of the offending packet")
			}
			if ipip.ICMPv6Checksum(ip6Bytes(ip.SrcIP), ip6Bytes(ip.DstIP), msg[40:]) != 0 {
				t.Error("ICMPv6Checksum of the message is not 0")
			}
		})
	}
}

func ip6Bytes(b []byte) [16]byte { return [16]byte(b) }

func TestUnreachableIPv6(t *testing.T) {
	src := [16]byte(tun6Src.AsSlice())
	pkt := icmp6Packet(t, 128, 2000)
	buf := make([]byte, ipip.ICMPv6MaxErrorLen)
	for _, code := range []uint8{ipip.ICMPv6NoRoute, ipip.ICMPv6AddrUnreach} {
		msg := ipip.UnreachableIPv6(buf, src, ipip.IPv6(pkt), code)
		if len(msg) != ipip.IPv6MinMTU {
			t.Errorf("code %d: message is %d bytes, want %d", code, len(msg), ipip.IPv6MinMTU)
		}
		ip, icmp := gopacketICMPv6(t, msg)
		if icmp.TypeCode != layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, code) {
			t.Errorf("type/code %v", icmp.TypeCode)
		}
		if !ip.DstIP.Equal(inner6Src) || !ip.SrcIP.Equal(tun6Src.AsSlice()) {
			t.Errorf("error goes %v -> %v", ip.SrcIP, ip.DstIP)
		}
		if got := binary.BigEndian.Uint32(icmp.Payload); got != 0 {
			t.Errorf("unused word %#x, want 0", got)
		}
		if !bytes.Equal(icmp.Payload[4:], pkt[:ipip.ICMPv6QuoteLen]) {
			t.Error("the quote is not the start of the offending packet")
		}
	}
}

func TestErrorAllowedIPv6(t *testing.T) {
	src := func(a string) func(*layers.IPv6) {
		return func(ip *layers.IPv6) { ip.SrcIP = parseIP6(a) }
	}
	dst := func(a string) func(*layers.IPv6) {
		return func(ip *layers.IPv6) { ip.DstIP = parseIP6(a) }
	}
	hbh := func(nh layers.IPProtocol, rest []byte) []byte { return append(extHeader(nh, 0), rest...) }
	icmpMsg := func(typ uint8) []byte { return []byte{typ, 0, 0, 0, 0, 0, 0, 0} }
	const any, ptb = ipip.ICMPv6DestUnreach, ipip.ICMPv6PacketTooBig
	tests := []struct {
		name string
		pkt  []byte
		typ  uint8
		want bool
	}{
		{"UDP", udp6Packet(t, 8), any, true},
		{"UDP, Packet Too Big", udp6Packet(t, 8), ptb, true},
		{"echo request", icmp6Packet(t, 128, 8), any, true},
		{"echo reply", icmp6Packet(t, 129, 8), any, true},
		{"neighbor solicitation", icmp6Packet(t, 135, 8), any, true},
		{"e.1 destination unreachable", icmp6Packet(t, 1, 8), ptb, false},
		{"e.1 packet too big", icmp6Packet(t, 2, 8), any, false},
		{"e.1 time exceeded", icmp6Packet(t, 3, 8), any, false},
		{"e.1 parameter problem", icmp6Packet(t, 4, 8), any, false},
		{"e.1 error behind a hop-by-hop header", raw6(t, layers.IPProtocolIPv6HopByHop, hbh(layers.IPProtocolICMPv6, icmpMsg(1))), any, false},
		{"echo behind a hop-by-hop header", raw6(t, layers.IPProtocolIPv6HopByHop, hbh(layers.IPProtocolICMPv6, icmpMsg(128))), any, true},
		{"e.2 redirect", icmp6Packet(t, 137, 8), any, false},
		{"ICMPv6 with no type byte", raw6(t, layers.IPProtocolIPv6HopByHop, hbh(layers.IPProtocolICMPv6, nil)), any, false},
		{"e.3 to multicast", udp6Packet(t, 8, dst("ff02::1")), any, false},
		{"e.3 to multicast, Packet Too Big", udp6Packet(t, 8, dst("ff0e::1:2")), ptb, true},
		{"e.6 from unspecified", udp6Packet(t, 8, src("::")), any, false},
		{"e.6 from unspecified, Packet Too Big", udp6Packet(t, 8, src("::")), ptb, false},
		{"e.6 from multicast", udp6Packet(t, 8, src("ff02::2")), ptb, false},
		{"from loopback", udp6Packet(t, 8, src("::1")), any, false},
		{"first fragment", raw6(t, layers.IPProtocolIPv6Fragment, append(fragHeader(layers.IPProtocolUDP, 0, true), pattern(16)...)), any, true},
		{"later fragment", raw6(t, layers.IPProtocolIPv6Fragment, append(fragHeader(layers.IPProtocolUDP, 2, true), pattern(16)...)), any, false},
		{"extension header past the packet", raw6(t, layers.IPProtocolIPv6Destination, extHeader(layers.IPProtocolUDP, 2)[:16]), any, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ipip.IPv6(tt.pkt).Valid(); err != nil {
				t.Fatalf("test packet invalid: %v", err)
			}
			if got := ipip.ErrorAllowedIPv6(ipip.IPv6(tt.pkt), tt.typ); got != tt.want {
				t.Errorf("ErrorAllowedIPv6(type %d) = %v, want %v", tt.typ, got, tt.want)
			}
		})
	}
}

// ICMPv6Checksum is gopacket's checksum, for messages of every length
// between 0 and 64 bytes and for random addresses.
func TestICMPv6Checksum(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := 4; n < 70; n++ {
		var src, dst [16]byte
		for i := range src {
			src[i], dst[i] = byte(r.Uint32()), byte(r.Uint32())
		}
		body := make([]byte, n-4)
		for i := range body {
			body[i] = byte(r.Uint32())
		}
		ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 1, SrcIP: src[:], DstIP: dst[:]}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(uint8(r.Uint32()), uint8(r.Uint32()))}
		if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		msg := serialize(t, icmp, gopacket.Payload(body))
		want := binary.BigEndian.Uint16(msg[2:])
		if got := ipip.ICMPv6Checksum(src, dst, msg); got != 0 {
			t.Errorf("%d bytes: checksum over a checksummed message = %#04x, want 0", n, got)
		}
		msg[2], msg[3] = 0, 0
		if got := ipip.ICMPv6Checksum(src, dst, msg); got != want && !(got == 0 && want == 0xffff) {
			t.Errorf("%d bytes: ICMPv6Checksum = %#04x, gopacket %#04x", n, got, want)
		}
	}
}

func TestICMPv6ZeroAllocs(t *testing.T) {
	src := [16]byte(tun6Src.AsSlice())
	pkt := ipip.IPv6(udp6Packet(t, 1400))
	buf := make([]byte, ipip.ICMPv6MaxErrorLen)
	n := testing.AllocsPerRun(100, func() {
		if ipip.ErrorAllowedIPv6(pkt, ipip.ICMPv6PacketTooBig) {
			ipip.PacketTooBig(buf, src, pkt, 1300)
			ipip.UnreachableIPv6(buf, src, pkt, ipip.ICMPv6NoRoute)
		}
	})
	if n != 0 {
		t.Errorf("%v allocs per run, want 0", n)
	}
}
