package vif_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/viftest"
)

// Tunnels over an IPv6 underlay (RFC 2473): IPv4 inside as next header 4
// ("4in6"), IPv6 inside as 41 ("6in6").

var (
	local6A = netip.MustParseAddr("2001:db8:ffff:1::1")
	peer6B  = netip.MustParseAddr("2001:db8:ffff:1::2")
	peer6C  = netip.MustParseAddr("2001:db8:ffff:2::3")
	stray6  = netip.MustParseAddr("2001:db8:ffff:1::66")
)

// over6Cfg is a vif with an IPv4 and an IPv6 address over an IPv6
// underlay: peer6B has every IPv4 destination and 2001:db8:b::/64,
// peer6C 2001:db8:c::/64.
func over6Cfg() *vif.Config {
	return &vif.Config{
		Addrs: hosts(addrA, own6),
		Local: local6A,
		Peers: []vif.Peer{
			{Addr: peer6B, Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("2001:db8:b::/64")}},
			{Addr: peer6C, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:c::/64")}},
		},
	}
}

// encapOver6 wraps inner (IPv4 or IPv6) in IPv6 from src to dst, as
// RFC 2473 says: next header 4 or 41.
func encapOver6(tb testing.TB, src, dst netip.Addr, inner []byte) []byte {
	tb.Helper()
	buf := make([]byte, ipip.IPv6HeaderLen+len(inner))
	copy(buf[ipip.IPv6HeaderLen:], inner)
	e := &ipip.Encapsulator{Src: src, Dst: dst}
	var out []byte
	var err error
	if inner[0]>>4 == 6 {
		out, err = e.EncapIPv6(buf, ipip.IPv6HeaderLen)
	} else {
		out, err = e.Encap(buf, ipip.IPv6HeaderLen)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Packets to the peers go out in IPv6 from the local to the peer's
// underlay address, next header 4 for IPv4 and 41 for IPv6, hop limit 64
// (RFC 2473 section 6.3), the inner Traffic Class or TOS copied (ECN, RFC
// 6040 section 4.1), the inner packet intact.
func TestEncapsulateOverIPv6(t *testing.T) {
	r := newRig(t, *over6Cfg())
	for _, tt := range []struct {
		name  string
		pkt   []byte
		peer  netip.Addr
		proto layers.IPProtocol
	}{
		{"4in6", udp(t, addrA, other, "four in six"), peer6B, layers.IPProtocolIPv4},
		{"6in6", udp6(t, own6, hostB6, "six in six"), peer6B, layers.IPProtocolIPv6},
		{"6in6 to another peer", udp6(t, own6, hostC6, "six in six"), peer6C, layers.IPProtocolIPv6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.pkt[0]>>4 == 4 {
				tt.pkt[1] = 0xb9 // DSCP 46, ECT(1)
				ipip.IPv4(tt.pkt).SetChecksum()
			}
			r.tun.Inject(tt.pkt)
			out, ok := r.under.Recv(wait)
			if !ok {
				t.Fatal("nothing sent")
			}
			ip := gopacket.NewPacket(out, layers.LayerTypeIPv6, gopacket.Default).Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			if ip.NextHeader != tt.proto || !ip.SrcIP.Equal(local6A.AsSlice()) || !ip.DstIP.Equal(tt.peer.AsSlice()) || ip.HopLimit != 64 {
				t.Fatalf("outer header %v %v -> %v hop limit %d; want %v %v -> %v, 64", ip.NextHeader, ip.SrcIP, ip.DstIP, ip.HopLimit, tt.proto, local6A, tt.peer)
			}
			if tt.pkt[0]>>4 == 4 && ip.TrafficClass != 0xb9 {
				t.Errorf("traffic class %#x, want the inner TOS 0xb9", ip.TrafficClass)
			}
			if !bytes.Equal(out[ipip.IPv6HeaderLen:], tt.pkt) || int(ip.Length) != len(tt.pkt) {
				t.Errorf("inner packet changed:\n got %x\nwant %x", out[40:], tt.pkt)
			}
		})
	}
	s := waitStats(t, r.ifc, "encapsulated", func(s vif.Stats) bool { return s.Encapsulated == 3 })
	if s.Dropped() != 0 {
		t.Errorf("drops %v", s.Drops)
	}
	if l := r.ifc.Link(); l.Protocol != ipip.ProtoIPinIP {
		t.Errorf("protocol %d over IPv6, want 4", l.Protocol)
	}
}

// Packets from a peer over IPv6 are delivered as they were sent, but for
// the ECN field (RFC 6040 section 4.2: outer CE over inner ECT(0) is CE).
func TestDecapsulateOverIPv6(t *testing.T) {
	r := newRig(t, *over6Cfg())
	four := udp(t, other, addrA, "four")
	six := udp6(t, hostB6, own6, "six")
	for _, inner := range [][]byte{four, six} {
		r.under.Inject(encapOver6(t, peer6B, local6A, inner))
		got, ok := r.tun.Recv(wait)
		if !ok || !bytes.Equal(got, inner) {
			t.Fatalf("delivered %v %x, want %x", ok, got, inner)
		}
	}
	// ECN: inner ECT(0), outer CE.
	ect := udp6(t, hostB6, own6, "congested")
	ipip.IPv6(ect).SetECN(ipip.ECT0)
	pkt := encapOver6(t, peer6B, local6A, ect)
	ipip.IPv6(pkt).SetECN(ipip.CE)
	r.under.Inject(pkt)
	got, ok := r.tun.Recv(wait)
	if !ok || ipip.IPv6(got).ECN() != ipip.CE {
		t.Fatalf("outer CE over inner ECT(0): delivered %v with ECN %v, want CE", ok, ipip.IPv6(got).ECN())
	}
	s := waitStats(t, r.ifc, "decapsulated", func(s vif.Stats) bool { return s.Decapsulated == 3 })
	if s.Dropped() != 0 {
		t.Errorf("drops %v", s.Drops)
	}
}

// Hostile or broken packets from an IPv6 underlay are dropped and counted
// by reason, as over IPv4; a good packet after each still goes through.
func TestRxDropsOverIPv6(t *testing.T) {
	tests := []struct {
		name   string
		pkt    func(t *testing.T) []byte
		reason string
	}{
		{"not from a peer", func(t *testing.T) []byte {
			return encapOver6(t, stray6, local6A, udp(t, other, addrA, "x"))
		}, "rx_not_peer"},
		{"runt", func(t *testing.T) []byte { return []byte{0x60, 0, 0, 0} }, "rx_not_peer"},
		{"inner IPv4 destination not ours (open relay)", func(t *testing.T) []byte {
			return encapOver6(t, peer6B, local6A, udp(t, other, netip.MustParseAddr("203.0.113.99"), "x"))
		}, "rx_not_local"},
		{"inner IPv6 destination not ours", func(t *testing.T) []byte {
			return encapOver6(t, peer6B, local6A, udp6(t, hostB6, far6, "x"))
		}, "rx_not_local"},
		{"inner IPv4 source spoofs ours", func(t *testing.T) []byte {
			return encapOver6(t, peer6B, local6A, udp(t, addrA, addrA, "x"))
		}, "rx_bad_source"},
		{"inner IPv6 source another peer's", func(t *testing.T) []byte {
			return encapOver6(t, peer6B, local6A, udp6(t, hostC6, own6, "x"))
		}, "rx_bad_source"},
		{"inner IPv6 source link-local", func(t *testing.T) []byte {
			return encapOver6(t, peer6B, local6A, udp6(t, netip.MustParseAddr("fe80::1"), own6, "x"))
		}, "rx_bad_source"},
		{"inner IPv4 source no prefix of the peer", func(t *testing.T) []byte {
			return encapOver6(t, peer6C, local6A, udp(t, other, addrA, "x"))
		}, "rx_bad_source"},
		{"nested", func(t *testing.T) []byte {
			return encapOver6(t, peer6B, local6A, encapOver6(t, hostB6, own6, udp6(t, hostB6, own6, "x")))
		}, "rx_nested"},
		{"protocol 94 over IPv6", func(t *testing.T) []byte {
			p := encapOver6(t, peer6B, local6A, udp(t, other, addrA, "x"))
			p[6] = ipip.ProtoIPIP
			return p
		}, "rx_protocol"},
		{"payload length past the packet", func(t *testing.T) []byte {
			p := encapOver6(t, peer6B, local6A, udp(t, other, addrA, "x"))
			p[4], p[5] = 0xff, 0xff
			return p
		}, "rx_total_len"},
		{"inner total length past the packet", func(t *testing.T) []byte {
			p := encapOver6(t, peer6B, local6A, udp(t, other, addrA, "x"))
			p[40+3] += 9
			ipip.IPv4(p[40:]).SetChecksum()
			return p
		}, "rx_inner_total_len"},
		{"inner hop limit 0", func(t *testing.T) []byte {
			p := encapOver6(t, peer6B, local6A, udp6(t, hostB6, own6, "x"))
			p[40+7] = 0
			return p
		}, "rx_inner_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, *over6Cfg())
			r.under.Inject(tt.pkt(t))
			good := udp(t, other, addrA, "legit")
			r.under.Inject(encapOver6(t, peer6B, local6A, good))
			got, ok := r.tun.Recv(wait)
			if !ok || !bytes.Equal(got, good) {
				t.Fatalf("legitimate packet after the bad one not delivered (got %x)", got)
			}
			s := waitStats(t, r.ifc, tt.reason, func(s vif.Stats) bool { return s.Drops[tt.reason] == 1 && s.Decapsulated == 1 })
			if s.Dropped() != 1 {
				t.Errorf("drops %v, want one (%s)", s.Drops, tt.reason)
			}
		})
	}
}

// Two vifs over an in-memory IPv6 underlay reach each other both ways.
func TestTunnelPairOverIPv6(t *testing.T) {
	cfgA := over6Cfg()
	cfgA.Peers = []vif.Peer{{Addr: peer6B, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:b::/64")}}}
	cfgB := &vif.Config{Addrs: hosts(addrB, hostB6), Local: peer6B,
		Peers: []vif.Peer{{Addr: local6A, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:a::/64")}}}}
	ra, rb := newPair(t, cfgA, cfgB)
	for _, pkt := range [][]byte{udp(t, addrA, addrB, "ping"), udp6(t, own6, hostB6, "ping6")} {
		ra.tun.Inject(pkt)
		if got, ok := rb.tun.Recv(wait); !ok || !bytes.Equal(got, pkt) {
			t.Fatalf("a -> b: %v %x", ok, got)
		}
	}
	for _, pkt := range [][]byte{udp(t, addrB, addrA, "pong"), udp6(t, hostB6, own6, "pong6")} {
		rb.tun.Inject(pkt)
		if got, ok := ra.tun.Recv(wait); !ok || !bytes.Equal(got, pkt) {
			t.Fatalf("b -> a: %v %x", ok, got)
		}
	}
}

// The path MTU over IPv6 is 40 bytes more than the tunnel's (RFC 2473
// section 6.7); an IPv6 tunnel never offers IPv6 less than 1280 bytes:
// a packet of up to 1280 goes in outer IPv6 fragments, a larger one gets
// a Packet Too Big of at least 1280 (section 7.1); an IPv4 packet with DF
// gets "fragmentation needed" with the tunnel MTU, one without DF outer
// fragments (section 7.2).
func TestPathMTUOverIPv6(t *testing.T) {
	cfg := over6Cfg()
	cfg.PathMTU = func(netip.Addr) (int, error) { return 1280, nil } // tunnel MTU 1240
	r := newRig(t, *cfg)
	if p := r.ifc.Peers()[0]; p.PathMTU != 1240 {
		t.Fatalf("tunnel MTU %d, want 1280 - 40", p.PathMTU)
	}
	r.tun.Inject(udp6(t, own6, hostB6, string(make([]byte, 1400))))
	_, icmp := recvICMPv6(t, r.tun)
	if icmp.TypeCode.Type() != layers.ICMPv6TypePacketTooBig || ptbMTU(icmp) != 1280 {
		t.Fatalf("ICMPv6 %v MTU %d, want Packet Too Big, MTU 1280", icmp.TypeCode, ptbMTU(icmp))
	}
	for _, inner := range [][]byte{udp6(t, own6, hostB6, string(make([]byte, 1280-48))), noDF(udp(t, addrA, other, string(make([]byte, 1400))))} {
		r.tun.Inject(inner)
		var whole []byte
		for k := 0; ; k++ {
			p, ok := r.under.Recv(wait)
			if !ok {
				t.Fatalf("fragment %d not sent", k)
			}
			fh := gopacket.NewPacket(p, layers.LayerTypeIPv6, gopacket.Default).Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
			if len(p) > 1280 || int(fh.FragmentOffset)*8 != len(whole) {
				t.Fatalf("fragment %d: %d bytes at %d", k, len(p), fh.FragmentOffset)
			}
			whole = append(whole, fh.Payload...)
			if !fh.MoreFragments {
				break
			}
		}
		if !bytes.Equal(whole, inner) {
			t.Errorf("the fragments carry %d bytes, not the %d-byte packet", len(whole), len(inner))
		}
	}
	r.tun.Inject(udp(t, addrA, other, string(make([]byte, 1400))))
	if _, icmp := recvICMP(t, r.tun); icmp.Seq != 1240 {
		t.Errorf("fragmentation needed with MTU %d, want 1240", icmp.Seq)
	}
	waitStats(t, r.ifc, "too big", func(s vif.Stats) bool {
		return s.Drops["tx_too_big"] == 2 && s.Fragmented == 2
	})
}

// The underlay refusing a packet as too big (EMSGSIZE: the kernel's path
// MTU shrank) makes the loop adopt the path MTU and answer the sender.
func TestEMSGSIZEOverIPv6(t *testing.T) {
	cfg := over6Cfg()
	mtu := 1500
	cfg.PathMTU = func(netip.Addr) (int, error) { return mtu, nil }
	r := newRig(t, *cfg)
	mtu = 1300
	r.under.FailWrites(syscall.EMSGSIZE)
	r.tun.Inject(udp6(t, own6, hostB6, string(make([]byte, 1400))))
	_, icmp := recvICMPv6(t, r.tun)
	if icmp.TypeCode.Type() != layers.ICMPv6TypePacketTooBig || ptbMTU(icmp) != 1280 {
		t.Fatalf("ICMPv6 %v MTU %d, want Packet Too Big, MTU 1280", icmp.TypeCode, ptbMTU(icmp))
	}
	if p := r.ifc.Peers()[0]; p.PathMTU != 1260 {
		t.Errorf("tunnel MTU %d, want 1300 - 40", p.PathMTU)
	}
}

// A tunnel runs over one IP family: mixing is refused, and protocol 94,
// an IPv4 encapsulation, is refused over IPv6 with a message that says to
// use protocol 4.
func TestUnderlayFamily(t *testing.T) {
	cfg := over6Cfg()
	cfg.Peers = append(cfg.Peers, vif.Peer{Addr: localB, Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	if _, err := vif.New(newTUN(), newUnder(), cfg); !errors.Is(err, vif.ErrFamily) {
		t.Errorf("an IPv4 peer over an IPv6 local address: %v", err)
	}
	cfg = over6Cfg()
	cfg.Protocol = ipip.ProtoIPIP
	_, err := vif.New(newTUN(), newUnder(), cfg)
	if !errors.Is(err, vif.ErrProtocolFamily) || !strings.Contains(err.Error(), "--proto 4") {
		t.Errorf("protocol 94 over IPv6: %v", err)
	}
	cfg = &vif.Config{Addrs: hosts(addrA), Local: localA, Peer: peer6B}
	if _, err := vif.New(newTUN(), newUnder(), cfg); !errors.Is(err, vif.ErrFamily) {
		t.Errorf("an IPv6 peer over an IPv4 local address: %v", err)
	}
	r := newRig(t, *over6Cfg())
	if err := r.ifc.SetPeer(vif.Peer{Addr: localB}); !errors.Is(err, vif.ErrFamily) {
		t.Errorf("SetPeer with an IPv4 peer: %v", err)
	}
	if err := r.ifc.SetLocal(localA); !errors.Is(err, vif.ErrBadAddress) {
		t.Errorf("SetLocal to an IPv4 address: %v", err)
	}
	if err := r.ifc.SetPeer(vif.Peer{Addr: stray6, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:99::/48")}}); err != nil {
		t.Fatal(err)
	}
	r.tun.Inject(udp6(t, own6, far6, "to the new peer"))
	out, ok := r.under.Recv(wait)
	if !ok || ipip.IPv6(out).Dst() != stray6 {
		t.Fatalf("packet for the new IPv6 peer: %v %x", ok, out)
	}
	if err := r.ifc.RemovePeer(stray6); err != nil {
		t.Fatal(err)
	}
	if err := r.ifc.SetPeer(vif.Peer{Addr: hostB6, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:99::/48")}}); err == nil {
		t.Error("a peer inside another peer's prefix was accepted")
	}
}

// A peer's own underlay address routed into a 6in6 tunnel would loop.
func TestNoLoopOverIPv6(t *testing.T) {
	cfg := over6Cfg()
	cfg.Peers[1].Prefixes = append(cfg.Peers[1].Prefixes, netip.MustParsePrefix("2001:db8:ffff:1::/120"))
	if _, err := vif.New(newTUN(), newUnder(), cfg); err == nil {
		t.Fatal("a prefix holding the local and a peer's address was accepted")
	}
}

// ptbMTU returns the MTU of a Packet Too Big (RFC 4443 section 3.2).
func ptbMTU(icmp *layers.ICMPv6) int {
	if len(icmp.Payload) < 4 {
		return -1
	}
	return int(binary.BigEndian.Uint32(icmp.Payload))
}

func newTUN() *viftest.TUN        { return viftest.NewTUN(8) }
func newUnder() *viftest.Underlay { return viftest.NewUnderlay(8) }

// noDF clears the Don't Fragment bit of the IPv4 packet p and returns it.
func noDF(p []byte) []byte {
	p[6] &^= 0x40
	ipip.IPv4(p).SetChecksum()
	return p
}

// newPair starts two interfaces joined by an in-memory underlay.
func newPair(t *testing.T, a, b *vif.Config) (*rig, *rig) {
	t.Helper()
	ua, ub := viftest.Pair(8)
	ra := &rig{tun: viftest.NewTUN(8), under: ua}
	rb := &rig{tun: viftest.NewTUN(8), under: ub}
	for _, x := range []struct {
		r   *rig
		cfg *vif.Config
	}{{ra, a}, {rb, b}} {
		ifc, err := vif.New(x.r.tun, x.r.under, x.cfg)
		if err != nil {
			t.Fatal(err)
		}
		x.r.ifc = ifc
		t.Cleanup(func() { ifc.Close() })
	}
	return ra, rb
}

// The default MTU is the slave's less 20 bytes over IPv4 and 40 over IPv6,
// but 1280 at least for a tunnel that carries IPv6.
func TestDefaultMTU(t *testing.T) {
	six := []vif.Peer{{Addr: peer6B, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:b::/64")}}}
	four := []vif.Peer{{Addr: peer6B, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}}
	for _, tt := range []struct {
		name  string
		c     vif.LinkConfig
		slave int
		want  int
	}{
		{"no tunnel", vif.LinkConfig{Config: vif.Config{Addrs: hosts(addrA)}}, 1500, 1480},
		{"over IPv4", vif.LinkConfig{Config: vif.Config{Addrs: hosts(addrA), Local: localA, Peer: localB}}, 1500, 1480},
		{"over IPv6", vif.LinkConfig{Config: vif.Config{Addrs: hosts(addrA), Local: local6A, Peers: four}}, 1500, 1460},
		{"IPv4 over a small IPv6 path", vif.LinkConfig{Config: vif.Config{Addrs: hosts(addrA), Local: local6A, Peers: four}}, 1280, 1240},
		{"IPv6 over a small IPv6 path", vif.LinkConfig{Config: vif.Config{Addrs: hosts(addrA), Local: local6A, Peers: six}}, 1280, 1280},
		{"6in4 over a small IPv4 path", vif.LinkConfig{Config: vif.Config{Addrs: hosts(addrA, own6), Local: localA, Peer: localB}}, 1290, 1280},
	} {
		if got := tt.c.DefaultMTU(tt.slave); got != tt.want {
			t.Errorf("%s: DefaultMTU(%d) = %d, want %d", tt.name, tt.slave, got, tt.want)
		}
	}
}
