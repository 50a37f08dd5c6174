package vif_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/viftest"
)

var (
	own6   = netip.MustParseAddr("2001:db8:a::1")
	hostB6 = netip.MustParseAddr("2001:db8:b::5")
	hostC6 = netip.MustParseAddr("2001:db8:c::5")
	far6   = netip.MustParseAddr("2001:db8:99::7")
	localC = netip.MustParseAddr("198.18.0.3")
)

// sixCfg is a vif with an IPv6 address and two peers with IPv6 prefixes.
func sixCfg() vif.Config {
	return vif.Config{
		Addrs: hosts(addrA, own6),
		Local: localA,
		Peers: []vif.Peer{
			{Addr: localB, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:b::/64")}},
			{Addr: localC, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:c::/64")}},
		},
	}
}

// encap6 wraps the IPv6 packet inner in IPv4 from src to dst (6in4).
func encap6(t testing.TB, src, dst netip.Addr, inner []byte) []byte {
	t.Helper()
	buf := make([]byte, ipip.IPv4MinLen+len(inner))
	copy(buf[ipip.IPv4MinLen:], inner)
	e := &ipip.Encapsulator{Src: src, Dst: dst}
	out, err := e.EncapIPv6(buf, ipip.IPv4MinLen)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// recvICMPv6 waits for an ICMPv6 message written into the TUN, checks its
// checksum and decodes it.
func recvICMPv6(t *testing.T, tun *viftest.TUN) (*layers.IPv6, *layers.ICMPv6) {
	t.Helper()
	for {
		p, ok := tun.Recv(wait)
		if !ok {
			t.Fatal("no ICMPv6 error written into the TUN")
		}
		pkt := gopacket.NewPacket(p, layers.LayerTypeIPv6, gopacket.Default)
		ip, _ := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		icmp, _ := pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		if ip != nil && icmp != nil {
			h := ipip.IPv6(p)
			if ipip.ICMPv6Checksum(h.SrcBytes(), h.DstBytes(), p[ipip.IPv6HeaderLen:]) != 0 {
				t.Error("ICMPv6 checksum does not verify")
			}
			return ip, icmp
		}
	}
}

// An IPv6 packet to a peer's IPv6 prefix goes out in IPv4, protocol 41,
// from the local to the peer's underlay address, the inner packet intact
// (hop limit included: the tunnel is one hop, RFC 4213 section 3.3).
func TestEncapsulate6in4(t *testing.T) {
	r := newRig(t, sixCfg())
	for _, tt := range []struct {
		dst  netip.Addr
		peer netip.Addr
	}{{hostB6, localB}, {hostC6, localC}} {
		pkt := udp6(t, own6, tt.dst, "over the tunnel")
		r.tun.Inject(pkt)
		out, ok := r.under.Recv(wait)
		if !ok {
			t.Fatalf("nothing sent for %v", tt.dst)
		}
		p := gopacket.NewPacket(out, layers.LayerTypeIPv4, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || ip.Protocol != layers.IPProtocolIPv6 || !ip.SrcIP.Equal(localA.AsSlice()) || !ip.DstIP.Equal(tt.peer.AsSlice()) {
			t.Fatalf("outer header %+v; want protocol 41 from %v to %v", ip, localA, tt.peer)
		}
		if !ipip.IPv4(out).ChecksumValid() {
			t.Error("outer checksum")
		}
		if !bytes.Equal(out[20:], pkt) {
			t.Errorf("inner packet changed:\n got %x\nwant %x", out[20:], pkt)
		}
	}
	s := waitStats(t, r.ifc, "encapsulated", func(s vif.Stats) bool { return s.Encapsulated == 2 })
	if s.Dropped() != 0 {
		t.Errorf("drops %v", s.Drops)
	}
	for _, p := range r.ifc.Peers() {
		if p.Encapsulated != 1 {
			t.Errorf("peer %v: encapsulated %d, want 1", p.Addr, p.Encapsulated)
		}
	}
}

// An IPv6 destination no peer has is answered with an ICMPv6 Destination
// Unreachable from the vif's IPv6 address; without an IPv6 address the
// packet is dropped silently. The catch-all Peer is IPv4 only.
func TestNoPeerICMPv6Unreachable(t *testing.T) {
	cfg := sixCfg()
	cfg.Peer = netip.MustParseAddr("198.18.0.9") // 0.0.0.0/0, not ::/0
	r := newRig(t, cfg)
	r.tun.Inject(udp6(t, own6, far6, "nowhere"))
	ip, icmp := recvICMPv6(t, r.tun)
	if icmp.TypeCode.Type() != layers.ICMPv6TypeDestinationUnreachable || icmp.TypeCode.Code() != 0 {
		t.Errorf("ICMPv6 %v, want destination unreachable, no route", icmp.TypeCode)
	}
	if !ip.SrcIP.Equal(own6.AsSlice()) || !ip.DstIP.Equal(own6.AsSlice()) {
		t.Errorf("ICMPv6 %v -> %v, want %v -> %v", ip.SrcIP, ip.DstIP, own6, own6)
	}
	waitStats(t, r.ifc, "icmp", func(s vif.Stats) bool { return s.ICMPSent == 1 && s.Drops["tx_no_peer"] == 1 })

	cfg = sixCfg()
	cfg.Addrs = hosts(addrA)
	r = newRig(t, cfg)
	r.tun.Inject(udp6(t, hostB6, far6, "nowhere"))
	waitStats(t, r.ifc, "no peer", func(s vif.Stats) bool { return s.Drops["tx_no_peer"] == 1 })
	if p, ok := r.tun.Recv(50 * time.Millisecond); ok {
		t.Errorf("without an IPv6 address something was written: %x", p)
	}
}

// A packet larger than the tunnel MTU to its peer and than 1280 bytes is
// answered with a Packet Too Big carrying max(tunnel MTU, 1280); up to
// 1280 bytes it goes in outer fragments (RFC 4213 section 3.2.2).
func TestPacketTooBig6in4(t *testing.T) {
	for _, tt := range []struct {
		name    string
		path    int // the underlay path MTU
		size    int // inner payload
		wantMTU int // 0: sent in fragments
	}{
		{"over the tunnel MTU", 1420, 1420, 1400},
		{"tunnel MTU below 1280", 1220, 1300, 1280},
		{"1280 fragmented", 1220, 1200, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sixCfg()
			cfg.PathMTU = func(netip.Addr) (int, error) { return tt.path, nil }
			r := newRig(t, cfg)
			pkt := udp6(t, own6, hostB6, string(make([]byte, tt.size)))
			r.tun.Inject(pkt)
			if tt.wantMTU == 0 {
				var inner []byte
				for k := 0; k < 2; k++ {
					out, ok := r.under.Recv(wait)
					if !ok {
						t.Fatalf("fragment %d not sent", k)
					}
					if len(out) > tt.path || ipip.IPv4(out).Protocol() != ipip.ProtoIPv6 {
						t.Fatalf("fragment %d: %d bytes, protocol %d", k, len(out), ipip.IPv4(out).Protocol())
					}
					inner = append(inner, out[20:]...)
				}
				if !bytes.Equal(inner, pkt) {
					t.Error("the fragments do not carry the packet")
				}
				return
			}
			_, icmp := recvICMPv6(t, r.tun)
			if icmp.TypeCode.Type() != layers.ICMPv6TypePacketTooBig {
				t.Fatalf("ICMPv6 %v, want packet too big", icmp.TypeCode)
			}
			if mtu := int(binary.BigEndian.Uint32(icmp.Payload)); mtu != tt.wantMTU {
				t.Errorf("MTU %d, want %d", mtu, tt.wantMTU)
			}
			waitStats(t, r.ifc, "too big", func(s vif.Stats) bool { return s.Drops["tx_too_big"] == 1 && s.ICMPSent == 1 })
		})
	}
}

// A 6in4 packet from a peer, from its prefix to the vif's IPv6 address,
// is written into the TUN.
func TestDecapsulate6in4(t *testing.T) {
	r := newRig(t, sixCfg())
	inner := udp6(t, hostB6, own6, "from the peer")
	r.under.Inject(encap6(t, localB, localA, inner))
	got, ok := r.tun.Recv(wait)
	if !ok || !bytes.Equal(got, inner) {
		t.Fatalf("decapsulated %v: %x, want %x", ok, got, inner)
	}
	s := waitStats(t, r.ifc, "decapsulated", func(s vif.Stats) bool { return s.Decapsulated == 1 })
	if s.DecapsulatedBytes != uint64(len(inner)) || s.Dropped() != 0 {
		t.Errorf("%v", s)
	}
}

// Forwarded IPv6 prefixes are accepted as inner destinations.
func TestDecapsulate6in4Forward(t *testing.T) {
	cfg := sixCfg()
	cfg.Forward = []netip.Prefix{netip.MustParsePrefix("2001:db8:f::/48")}
	r := newRig(t, cfg)
	inner := udp6(t, hostB6, netip.MustParseAddr("2001:db8:f::9"), "forward me")
	r.under.Inject(encap6(t, localB, localA, inner))
	if got, ok := r.tun.Recv(wait); !ok || !bytes.Equal(got, inner) {
		t.Fatalf("forwarded packet: %v", ok)
	}
}

// Hostile 6in4 packets are dropped and counted.
func TestRxDrops6in4(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:192.0.2.9")
	for _, tt := range []struct {
		name, reason string
		pkt          func(t testing.TB) []byte
	}{
		{"outer source not a peer", "rx_not_peer", func(t testing.TB) []byte { return encap6(t, stray, localA, udp6(t, hostB6, own6, "x")) }},
		{"inner destination not ours", "rx_not_local", func(t testing.TB) []byte { return encap6(t, localB, localA, udp6(t, hostB6, hostC6, "x")) }},
		{"inner source another peer's", "rx_bad_source", func(t testing.TB) []byte { return encap6(t, localB, localA, udp6(t, hostC6, own6, "x")) }},
		{"inner source no peer's", "rx_bad_source", func(t testing.TB) []byte { return encap6(t, localB, localA, udp6(t, far6, own6, "x")) }},
		{"inner source link-local", "rx_bad_source", func(t testing.TB) []byte {
			return encap6(t, localB, localA, udp6(t, netip.MustParseAddr("fe80::1"), own6, "x"))
		}},
		{"inner source multicast", "rx_bad_source", func(t testing.TB) []byte {
			return encap6(t, localB, localA, udp6(t, netip.MustParseAddr("ff02::1"), own6, "x"))
		}},
		{"inner source ours", "rx_bad_source", func(t testing.TB) []byte { return encap6(t, localB, localA, udp6(t, own6, own6, "x")) }},
		{"inner source loopback", "rx_bad_source", func(t testing.TB) []byte { return encap6(t, localB, localA, udp6(t, netip.IPv6Loopback(), own6, "x")) }},
		{"inner source unspecified", "rx_bad_source", func(t testing.TB) []byte {
			return encap6(t, localB, localA, udp6(t, netip.IPv6Unspecified(), own6, "x"))
		}},
		{"inner source IPv4-mapped", "rx_bad_source", func(t testing.TB) []byte { return encap6(t, localB, localA, udp6(t, mapped, own6, "x")) }},
		{"nested 41 in 41", "rx_nested", func(t testing.TB) []byte {
			in := encap6(t, localB, localA, udp6(t, hostB6, own6, "x"))
			ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv4, SrcIP: hostB6.AsSlice(), DstIP: own6.AsSlice()}
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ip, gopacket.Payload(in)); err != nil {
				t.Fatal(err)
			}
			return encap6(t, localB, localA, buf.Bytes())
		}},
		{"hop limit 0", "rx_inner_ttl", func(t testing.TB) []byte {
			out := encap6(t, localB, localA, udp6(t, hostB6, own6, "x"))
			out[20+7] = 0
			return out
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, sixCfg())
			good := udp6(t, hostB6, own6, "good")
			r.under.Inject(tt.pkt(t))
			// A good packet after it: once it is through, the bad one
			// has been handled.
			r.under.Inject(encap6(t, localB, localA, good))
			got, ok := r.tun.Recv(wait)
			if !ok || !bytes.Equal(got, good) {
				t.Fatalf("the bad packet was delivered or the good one not: %v %x", ok, got)
			}
			s := waitStats(t, r.ifc, tt.reason, func(s vif.Stats) bool { return s.Decapsulated == 1 })
			if s.Drops[tt.reason] != 1 || s.Dropped() != 1 {
				t.Errorf("drops %v, want %s 1", s.Drops, tt.reason)
			}
		})
	}
}

// Peers and forwarding take IPv6 prefixes with IPv6 rules.
func TestPeerIPv6Prefixes(t *testing.T) {
	r := newRig(t, sixCfg())
	for _, tt := range []struct {
		pfx string
		ok  bool
	}{
		{"::/0", true},
		{"2001:db8:d::/48", true},
		{"2001:db8:d::9/128", true},
		{"ff00::/8", false},
		{"ff02::/16", false},
		{"fe80::/10", false},
		{"fe80::/64", false},
		{"::1/128", false},
		{"::ffff:0:0/96", false},
		{"2001:db8:b::/64", false}, // peer B's
	} {
		err := r.ifc.SetPeer(vif.Peer{Addr: netip.MustParseAddr("198.18.0.4"), Prefixes: []netip.Prefix{netip.MustParsePrefix(tt.pfx)}})
		if (err == nil) != tt.ok {
			t.Errorf("prefix %s: %v, want ok %v", tt.pfx, err, tt.ok)
		}
	}
	cfg := sixCfg()
	cfg.Forward = []netip.Prefix{netip.MustParsePrefix("2001:db8:f::/48")}
	ifc, err := vif.New(viftest.NewTUN(1), viftest.NewUnderlay(1), &cfg)
	if err != nil {
		t.Fatalf("IPv6 forward prefix refused: %v", err)
	}
	ifc.Close()
}
