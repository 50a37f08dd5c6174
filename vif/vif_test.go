package vif_test

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/arpproxy"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/viftest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	addrA  = netip.MustParseAddr("192.0.2.1")
	addrB  = netip.MustParseAddr("198.51.100.1")
	other  = netip.MustParseAddr("203.0.113.7")
	localA = netip.MustParseAddr("198.18.0.1")
	localB = netip.MustParseAddr("198.18.0.2")
	stray  = netip.MustParseAddr("198.18.0.66")
)

const wait = 2 * time.Second

// udp builds an IPv4/UDP packet with gopacket, independently of ipip.
func udp(t testing.TB, src, dst netip.Addr, payload string) []byte {
	t.Helper()
	ip := &layers.IPv4{
		Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		Flags: layers.IPv4DontFragment,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
	}
	u := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, u, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// udp6 returns an IPv6 UDP packet from src to dst.
func udp6(t testing.TB, src, dst netip.Addr, payload string) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	u := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, u, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// IPv6 addresses: packets for them are looped back; IPv6 for others goes
// to the peer of its prefix, and without one (the catch-all Peer is IPv4
// only) is dropped, counted and answered.
func TestIPv6Addresses(t *testing.T) {
	own, other6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::99")
	r := newRig(t, tunnelCfg())
	if err := r.ifc.SetAddrs(hosts(addrA, own)); err != nil {
		t.Fatal(err)
	}
	pkt := udp6(t, other6, own, "for us")
	r.tun.Inject(pkt)
	got, ok := r.tun.Recv(wait)
	if !ok || !bytes.Equal(got, pkt) {
		t.Fatalf("IPv6 packet for the vif's address: looped %v, %x", ok, got)
	}
	r.tun.Inject(udp6(t, own, other6, "elsewhere"))
	recvICMPv6(t, r.tun)
	s := waitStats(t, r.ifc, "IPv6 drop", func(s vif.Stats) bool { return s.Drops["tx_no_peer"] == 1 })
	if s.Looped != 1 || s.Encapsulated != 0 {
		t.Errorf("looped %d, encapsulated %d; want 1, 0", s.Looped, s.Encapsulated)
	}
	if !vif.IsHostAddr(own) || vif.IsHostAddr(netip.MustParseAddr("fe80::1")) {
		t.Error("IsHostAddr of IPv6 addresses")
	}
	// A tunnel's peers are of its local address's family (IPv4 here).
	if err := r.ifc.SetPeer(vif.Peer{Addr: other6}); !errors.Is(err, vif.ErrFamily) {
		t.Errorf("an IPv6 peer: %v", err)
	}
}

// encap wraps inner in an outer header from src to dst with protocol proto.
func encap(t testing.TB, src, dst netip.Addr, proto uint8, inner []byte) []byte {
	t.Helper()
	buf := make([]byte, ipip.IPv4MinLen+len(inner))
	copy(buf[ipip.IPv4MinLen:], inner)
	e := &ipip.Encapsulator{Protocol: proto, Src: src, Dst: dst}
	out, err := e.Encap(buf, ipip.IPv4MinLen)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type rig struct {
	ifc   *vif.Interface
	tun   *viftest.TUN
	under *viftest.Underlay
}

func newRig(t *testing.T, cfg vif.Config) *rig {
	t.Helper()
	r := &rig{tun: viftest.NewTUN(8), under: viftest.NewUnderlay(8)}
	var under vif.Underlay
	if cfg.HasTunnel() {
		under = r.under
	}
	ifc, err := vif.New(r.tun, under, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.ifc = ifc
	t.Cleanup(func() {
		if err := ifc.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func tunnelCfg() vif.Config {
	return vif.Config{Addrs: hosts(addrA), Local: localA, Peer: localB}
}

// waitStats polls until cond holds for the interface's stats.
func waitStats(t *testing.T, ifc *vif.Interface, what string, cond func(vif.Stats) bool) vif.Stats {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		s := ifc.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stats: %+v", what, s)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLoopback(t *testing.T) {
	r := newRig(t, vif.Config{Addrs: hosts(addrA, addrB)})
	pkt := udp(t, other, addrB, "hello")
	r.tun.Inject(pkt)
	got, ok := r.tun.Recv(wait)
	if !ok {
		t.Fatal("looped packet not written back into the TUN")
	}
	if string(got) != string(pkt) {
		t.Fatalf("looped packet changed:\n got %x\nwant %x", got, pkt)
	}
	s := waitStats(t, r.ifc, "looped", func(s vif.Stats) bool { return s.Looped == 1 })
	if s.LoopedBytes != uint64(len(pkt)) {
		t.Errorf("LoopedBytes = %d, want %d", s.LoopedBytes, len(pkt))
	}
}

func TestEncapsulate(t *testing.T) {
	for _, proto := range []uint8{0, ipip.ProtoIPIP, ipip.ProtoIPinIP} {
		cfg := tunnelCfg()
		cfg.Protocol = proto
		r := newRig(t, cfg)
		pkt := udp(t, addrA, other, "through the tunnel")
		r.tun.Inject(pkt)
		out, ok := r.under.Recv(wait)
		if !ok {
			t.Fatalf("proto %d: nothing sent on the underlay", proto)
		}
		p := gopacket.NewPacket(out, layers.LayerTypeIPv4, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil {
			t.Fatalf("proto %d: underlay packet is not IPv4: %x", proto, out)
		}
		want := proto
		if want == 0 {
			want = ipip.ProtoIPIP
		}
		if uint8(ip.Protocol) != want || !ip.SrcIP.Equal(localA.AsSlice()) || !ip.DstIP.Equal(localB.AsSlice()) {
			t.Errorf("proto %d: outer = proto %d %v > %v, want %d %v > %v", proto, ip.Protocol, ip.SrcIP, ip.DstIP, want, localA, localB)
		}
		if ip.Flags&layers.IPv4DontFragment == 0 {
			t.Errorf("proto %d: outer DF not copied from inner", proto)
		}
		if string(out[ipip.IPv4MinLen:]) != string(pkt) {
			t.Errorf("proto %d: inner packet changed", proto)
		}
		s := waitStats(t, r.ifc, "encapsulated", func(s vif.Stats) bool { return s.Encapsulated == 1 })
		if s.EncapsulatedBytes != uint64(len(out)) {
			t.Errorf("EncapsulatedBytes = %d, want %d", s.EncapsulatedBytes, len(out))
		}
	}
}

func TestTxDrops(t *testing.T) {
	tests := []struct {
		name   string
		cfg    vif.Config
		pkt    func(t *testing.T) []byte
		reason string
	}{
		{"no peer", vif.Config{Addrs: hosts(addrA)}, func(t *testing.T) []byte { return udp(t, addrA, other, "x") }, "tx_no_peer"},
		{"destination is the peer", tunnelCfg(), func(t *testing.T) []byte { return udp(t, addrA, localB, "x") }, "tx_loop"},
		{"truncated", tunnelCfg(), func(t *testing.T) []byte { return udp(t, addrA, other, "x")[:12] }, "tx_inner_truncated"},
		{"IPv6", tunnelCfg(), func(t *testing.T) []byte {
			p := udp(t, addrA, other, "x")
			p[0] = 0x65
			return p
		}, "tx_inner_version"},
		{"total length past buffer", tunnelCfg(), func(t *testing.T) []byte {
			p := udp(t, addrA, other, "x")
			p[2], p[3] = 0x05, 0xdc
			return p
		}, "tx_inner_total_len"},
		{"IHL below 5", tunnelCfg(), func(t *testing.T) []byte {
			p := udp(t, addrA, other, "x")
			p[0] = 0x44
			return p
		}, "tx_inner_header_len"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.cfg)
			r.tun.Inject(tt.pkt(t))
			// A good packet after the bad one proves the loop goes on.
			alive := udp(t, other, addrA, "still alive")
			r.tun.Inject(alive)
			for {
				p, ok := r.tun.Recv(wait)
				if !ok {
					t.Fatal("loop stopped after a bad packet")
				}
				if string(p) == string(alive) {
					break // (an ICMP error may come first)
				}
			}
			s := waitStats(t, r.ifc, tt.reason, func(s vif.Stats) bool { return s.Drops[tt.reason] == 1 })
			if s.Dropped() != 1 || s.Encapsulated != 0 {
				t.Errorf("stats = %+v, want exactly one drop (%s)", s, tt.reason)
			}
			if _, ok := r.under.Recv(10 * time.Millisecond); ok {
				t.Error("a dropped packet reached the underlay")
			}
		})
	}
}

func TestDecapsulate(t *testing.T) {
	for _, proto := range []uint8{ipip.ProtoIPIP, ipip.ProtoIPinIP} {
		cfg := tunnelCfg()
		cfg.Protocol = proto
		r := newRig(t, cfg)
		inner := udp(t, other, addrA, "from the peer")
		r.under.Inject(encap(t, localB, localA, proto, inner))
		got, ok := r.tun.Recv(wait)
		if !ok {
			t.Fatalf("proto %d: decapsulated packet not delivered", proto)
		}
		if string(got) != string(inner) {
			t.Fatalf("proto %d: delivered %x, want %x", proto, got, inner)
		}
		s := waitStats(t, r.ifc, "decapsulated", func(s vif.Stats) bool { return s.Decapsulated == 1 })
		if s.DecapsulatedBytes != uint64(len(inner)) {
			t.Errorf("DecapsulatedBytes = %d, want %d", s.DecapsulatedBytes, len(inner))
		}
	}
}

func TestRxDrops(t *testing.T) {
	tests := []struct {
		name   string
		pkt    func(t *testing.T) []byte
		reason string
	}{
		{"not from the peer", func(t *testing.T) []byte {
			return encap(t, stray, localA, ipip.ProtoIPIP, udp(t, other, addrA, "x"))
		}, "rx_not_peer"},
		{"runt", func(t *testing.T) []byte { return []byte{0x45, 0} }, "rx_not_peer"},
		{"inner destination not ours (open relay)", func(t *testing.T) []byte {
			return encap(t, localB, localA, ipip.ProtoIPIP, udp(t, other, netip.MustParseAddr("203.0.113.99"), "x"))
		}, "rx_not_local"},
		{"inner source spoofs our address", func(t *testing.T) []byte {
			return encap(t, localB, localA, ipip.ProtoIPIP, udp(t, addrA, addrA, "x"))
		}, "rx_bad_source"},
		{"inner source loopback", func(t *testing.T) []byte {
			return encap(t, localB, localA, ipip.ProtoIPIP, udp(t, netip.MustParseAddr("127.0.0.1"), addrA, "x"))
		}, "rx_bad_source"},
		{"inner source multicast", func(t *testing.T) []byte {
			return encap(t, localB, localA, ipip.ProtoIPIP, udp(t, netip.MustParseAddr("224.0.0.1"), addrA, "x"))
		}, "rx_bad_source"},
		{"inner source broadcast", func(t *testing.T) []byte {
			return encap(t, localB, localA, ipip.ProtoIPIP, udp(t, netip.MustParseAddr("255.255.255.255"), addrA, "x"))
		}, "rx_bad_source"},
		{"wrong protocol", func(t *testing.T) []byte {
			return encap(t, localB, localA, ipip.ProtoIPinIP, udp(t, other, addrA, "x"))
		}, "rx_protocol"},
		{"bad outer checksum", func(t *testing.T) []byte {
			p := encap(t, localB, localA, ipip.ProtoIPIP, udp(t, other, addrA, "x"))
			p[10] ^= 0xff
			return p
		}, "rx_checksum"},
		{"nested", func(t *testing.T) []byte {
			in := encap(t, localB, localA, ipip.ProtoIPIP, udp(t, other, addrA, "x"))
			return encap(t, localB, localA, ipip.ProtoIPIP, in)
		}, "rx_nested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tunnelCfg())
			r.under.Inject(tt.pkt(t))
			good := udp(t, other, addrA, "legit")
			r.under.Inject(encap(t, localB, localA, ipip.ProtoIPIP, good))
			got, ok := r.tun.Recv(wait)
			if !ok || string(got) != string(good) {
				t.Fatalf("legitimate packet after the bad one not delivered (got %x)", got)
			}
			// The delivery is counted just after the write into the TUN.
			s := waitStats(t, r.ifc, tt.reason, func(s vif.Stats) bool { return s.Drops[tt.reason] == 1 && s.Decapsulated == 1 })
			if s.Dropped() != 1 || s.Decapsulated != 1 {
				t.Errorf("stats = %+v, want one drop (%s) and one delivery", s, tt.reason)
			}
			if p, ok := r.tun.Recv(10 * time.Millisecond); ok {
				t.Errorf("dropped packet delivered: %x", p)
			}
		})
	}
}

func TestNoPeerNoDecap(t *testing.T) {
	// Without a peer there is no underlay at all, so nothing can be
	// decapsulated: New must refuse a peer without an underlay, and accept
	// a nil underlay without a peer.
	if _, err := vif.New(viftest.NewTUN(1), nil, &vif.Config{Addrs: hosts(addrA), Local: localA, Peer: localB}); err == nil {
		t.Fatal("New accepted a peer without an underlay")
	}
}

func TestTunnelPair(t *testing.T) {
	ua, ub := viftest.Pair(16)
	ta, tb := viftest.NewTUN(16), viftest.NewTUN(16)
	a, err := vif.New(ta, ua, &vif.Config{Addrs: hosts(addrA), Local: localA, Peer: localB})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := vif.New(tb, ub, &vif.Config{Addrs: hosts(addrB), Local: localB, Peer: localA})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	const n = 500
	for k := 0; k < n; k++ {
		ta.Inject(udp(t, addrA, addrB, "ping"))
	}
	for k := 0; k < n; k++ {
		got, ok := tb.Recv(wait)
		if !ok {
			t.Fatalf("only %d of %d packets crossed the tunnel", k, n)
		}
		if ipip.IPv4(got).Dst() != addrB {
			t.Fatalf("B received a packet for %v", ipip.IPv4(got).Dst())
		}
	}
	tb.Inject(udp(t, addrB, addrA, "pong"))
	if _, ok := ta.Recv(wait); !ok {
		t.Fatal("reply did not cross the tunnel")
	}
	sa := waitStats(t, a, "a counters", func(s vif.Stats) bool { return s.Encapsulated == n && s.Decapsulated == 1 })
	sb := waitStats(t, b, "b counters", func(s vif.Stats) bool { return s.Decapsulated == n && s.Encapsulated == 1 })
	if sa.Dropped()+sb.Dropped() != 0 {
		t.Errorf("drops: a %v, b %v", sa.Drops, sb.Drops)
	}
}

func TestWriteErrorsAreCounted(t *testing.T) {
	r := newRig(t, tunnelCfg())
	r.under.FailWrites(syscall.ENOBUFS, syscall.EHOSTUNREACH)
	for k := 0; k < 3; k++ {
		r.tun.Inject(udp(t, addrA, other, "x"))
	}
	if _, ok := r.under.Recv(wait); !ok {
		t.Fatal("the loop stopped sending after write errors")
	}
	waitStats(t, r.ifc, "write errors", func(s vif.Stats) bool {
		return s.Drops["tx_write_error"] == 2 && s.Encapsulated == 1
	})

	r.tun.SetWriteErr(errors.New("device busy"))
	r.under.Inject(encap(t, localB, localA, ipip.ProtoIPIP, udp(t, other, addrA, "1")))
	waitStats(t, r.ifc, "tun write error", func(s vif.Stats) bool { return s.Drops["rx_write_error"] == 1 })
	r.under.Inject(encap(t, localB, localA, ipip.ProtoIPIP, udp(t, other, addrA, "2")))
	if _, ok := r.tun.Recv(wait); !ok {
		t.Fatal("the loop stopped delivering after a TUN write error")
	}
}

func TestSetAddrs(t *testing.T) {
	r := newRig(t, tunnelCfg())
	if err := r.ifc.SetAddrs(hosts(addrA, addrB)); err != nil {
		t.Fatal(err)
	}
	if got := r.ifc.Addrs(); len(got) != 2 {
		t.Fatalf("Addrs = %v", got)
	}
	r.tun.Inject(udp(t, other, addrB, "now ours"))
	if _, ok := r.tun.Recv(wait); !ok {
		t.Fatal("packet for the added address not looped back")
	}
	for _, bad := range []netip.Addr{{}, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("224.0.0.5"), netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("::"), netip.MustParseAddr("::1"), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::1"), netip.MustParseAddr("::ffff:192.0.2.1")} {
		if err := r.ifc.SetAddrs(hosts(bad)); !errors.Is(err, vif.ErrBadAddress) {
			t.Errorf("SetAddrs(%v) = %v, want ErrBadAddress", bad, err)
		}
	}
	// No address left (another tool removed them all from the device):
	// nothing is decapsulated to the old ones any more.
	if err := r.ifc.SetAddrs(nil); err != nil {
		t.Fatalf("SetAddrs(nil) = %v", err)
	}
	r.under.Inject(encap(t, localB, localA, ipip.ProtoIPIP, udp(t, other, addrA, "no longer ours")))
	waitStats(t, r.ifc, "rx_not_local after SetAddrs(nil)", func(s vif.Stats) bool { return s.Drops["rx_not_local"] == 1 })
	if p, ok := r.tun.Recv(50 * time.Millisecond); ok {
		t.Errorf("a packet for a removed address was delivered: %x", p)
	}
}

func TestManyAddrs(t *testing.T) {
	var addrs []netip.Addr
	for k := 1; k <= 250; k++ {
		addrs = append(addrs, netip.AddrFrom4([4]byte{203, 0, 113, byte(k)}))
	}
	r := newRig(t, vif.Config{Addrs: hosts(append(addrs, addrA)...)})
	r.tun.Inject(udp(t, other, addrA, "x"))
	if _, ok := r.tun.Recv(wait); !ok {
		t.Fatal("not looped with a large address set")
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  *vif.Config
		want error
	}{
		{"nil config", nil, vif.ErrNoAddress},
		{"no address", &vif.Config{}, vif.ErrNoAddress},
		{"bad protocol", &vif.Config{Addrs: hosts(addrA), Protocol: 17}, vif.ErrBadProtocol},
		{"peer without local", &vif.Config{Addrs: hosts(addrA), Peer: localB}, vif.ErrNoLocal},
		{"multicast peer", &vif.Config{Addrs: hosts(addrA), Local: localA, Peer: netip.MustParseAddr("224.1.1.1")}, vif.ErrBadAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := vif.New(viftest.NewTUN(1), viftest.NewUnderlay(1), tt.cfg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("New = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCloseIdempotentAndDone(t *testing.T) {
	r := newRig(t, tunnelCfg())
	if err := r.ifc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.ifc.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.ifc.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}

func TestDeviceGoneStopsLoop(t *testing.T) {
	r := newRig(t, tunnelCfg())
	r.tun.Close() // as if `ip link del` removed the interface
	select {
	case <-r.ifc.Done():
	case <-time.After(wait):
		t.Fatal("loop did not stop when its device went away")
	}
	if _, err := r.under.Write([][]byte{make([]byte, 1)}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("underlay Write after the loop stopped = %v, want os.ErrClosed", err)
	}
}

// recvICMP waits for an ICMP error written into the TUN and decodes it.
func recvICMP(t *testing.T, tun *viftest.TUN) (*layers.IPv4, *layers.ICMPv4) {
	t.Helper()
	for {
		p, ok := tun.Recv(wait)
		if !ok {
			t.Fatal("no ICMP error written into the TUN")
		}
		pkt := gopacket.NewPacket(p, layers.LayerTypeIPv4, gopacket.Default)
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		icmp, _ := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if ip != nil && icmp != nil {
			return ip, icmp
		}
	}
}

func TestNoPeerICMPUnreachable(t *testing.T) {
	r := newRig(t, vif.Config{Addrs: hosts(addrA)})
	r.tun.Inject(udp(t, addrA, other, "nowhere to go"))
	ip, icmp := recvICMP(t, r.tun)
	if icmp.TypeCode != layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeHost) {
		t.Errorf("ICMP %v, want host unreachable", icmp.TypeCode)
	}
	if !ip.SrcIP.Equal(other.AsSlice()) || !ip.DstIP.Equal(addrA.AsSlice()) {
		t.Errorf("ICMP %v -> %v, want %v -> %v", ip.SrcIP, ip.DstIP, other, addrA)
	}
	waitStats(t, r.ifc, "icmp", func(s vif.Stats) bool { return s.ICMPSent == 1 && s.Drops["tx_no_peer"] == 1 })
}

func TestPathMTU(t *testing.T) {
	cfg := tunnelCfg()
	var pathMTU atomic.Int32
	pathMTU.Store(1500)
	cfg.PathMTU = func(netip.Addr) (int, error) { return int(pathMTU.Load()), nil }
	r := newRig(t, cfg)
	big := func(df bool) []byte {
		p := udp(t, addrA, other, string(make([]byte, 1400)))
		if !df {
			p[6] &^= 0x40
			ipip.IPv4(p).SetChecksum()
		}
		return p
	}

	// A router on the way has MTU 1200: the kernel learns it from its
	// ICMP error and refuses the next big packet. The loop adopts
	// 1200-20 and tells the sender.
	pathMTU.Store(1200)
	r.under.FailWrites(syscall.EMSGSIZE)
	r.tun.Inject(big(true))
	_, icmp := recvICMP(t, r.tun)
	if icmp.TypeCode != layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded) || icmp.Seq != 1180 {
		t.Fatalf("ICMP %v mtu %d, want fragmentation needed, mtu 1180", icmp.TypeCode, icmp.Seq)
	}
	// Now a DF packet over the tunnel MTU is answered before it is sent,
	r.tun.Inject(big(true))
	if _, icmp := recvICMP(t, r.tun); icmp.Seq != 1180 {
		t.Errorf("second ICMP mtu %d, want 1180", icmp.Seq)
	}
	// one without DF goes out in two outer fragments of at most 1200
	// bytes (RFC 2003 section 5.1), and a DF packet that fits goes whole.
	r.tun.Inject(big(false))
	r.tun.Inject(udp(t, addrA, other, "fits"))
	var payload []byte
	for k := 0; k < 3; k++ {
		p, ok := r.under.Recv(wait)
		if !ok {
			t.Fatalf("packet %d not sent to the peer", k)
		}
		if h := ipip.IPv4(p); k < 2 {
			if len(p) > 1200 || !h.ChecksumValid() || int(h.FragmentOffset())*8 != len(payload) || h.MF() != (k == 0) {
				t.Fatalf("fragment %d: %d bytes, offset %d, MF %v", k, len(p), h.FragmentOffset(), h.MF())
			}
			payload = append(payload, p[20:]...)
		}
	}
	if want := big(false); !bytes.Equal(payload, want) {
		t.Errorf("the fragments carry %d bytes, not the %d-byte packet", len(payload), len(want))
	}
	waitStats(t, r.ifc, "too big", func(s vif.Stats) bool {
		return s.Drops["tx_too_big"] == 2 && s.ICMPSent == 2 && s.Encapsulated == 3 && s.Fragmented == 1
	})
}

// hosts returns the host prefixes (/32) of addrs.
func hosts(addrs ...netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, len(addrs))
	for k, a := range addrs {
		out[k] = netip.PrefixFrom(a, a.BitLen())
	}
	return out
}

// The packet loop and the ARP proxy agree on which IPv4 addresses a host
// may own: what vif refuses, the proxy never answers for.
func TestHostAddrAgreesWithARPProxy(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "0.1.2.3", "0.0.0.0", "127.0.0.2", "224.0.0.5", "240.0.0.1",
		"255.255.255.255", "223.1.2.3"} {
		a := netip.MustParseAddr(s)
		if vif.IsHostAddr(a) != arpproxy.NewAddrSet(a).Contains(a) {
			t.Errorf("%s: vif.IsHostAddr %v, the ARP proxy would own it: %v", s, vif.IsHostAddr(a), !vif.IsHostAddr(a))
		}
	}
}

// The device's MTU raised from outside ("ip link set vif0 mtu 9000") is
// carried: packets up to the new MTU are looped back whole, and the loop
// does not stop.
func TestMTURaised(t *testing.T) {
	r := newRig(t, vif.Config{Addrs: hosts(addrA)})
	big := udp(t, other, addrA, strings.Repeat("x", 4000))
	r.tun.SetMTU(9000)
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The first read after the change may still use the old
		// buffers; a small packet moves the loop on.
		r.tun.Inject(udp(t, other, addrA, "x"))
		r.tun.Recv(wait)
		r.tun.Inject(big)
		if got, ok := r.tun.Recv(100 * time.Millisecond); ok {
			if len(got) != len(big) {
				t.Fatalf("looped %d bytes of %d", len(got), len(big))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a %d-byte packet never passed after the MTU was raised to 9000; stats %v", len(big), r.ifc.Stats())
		}
	}
	select {
	case <-r.ifc.Done():
		t.Fatal("the loop stopped")
	default:
	}
}

// TestSetLocal checks that a new local address becomes the outer source
// at once, that without one the tunnel pauses loudly (counted, ICMP
// unreachable to the sender) and resumes, and what SetLocal refuses.
func TestSetLocal(t *testing.T) {
	r := newRig(t, tunnelCfg())
	srcOf := func(what string) netip.Addr {
		t.Helper()
		r.tun.Inject(udp(t, addrA, other, what))
		out, ok := r.under.Recv(wait)
		if !ok {
			t.Fatalf("%s: nothing sent on the underlay", what)
		}
		return ipip.IPv4(out).Src()
	}
	if got := srcOf("before"); got != localA {
		t.Fatalf("outer source %v, want %v", got, localA)
	}
	if err := r.ifc.SetLocal(stray); err != nil {
		t.Fatalf("SetLocal(%v): %v", stray, err)
	}
	if got := srcOf("renumbered"); got != stray {
		t.Errorf("after SetLocal(%v): outer source %v", stray, got)
	}
	if l := r.ifc.Link().Local; l != stray || r.ifc.Local() != stray {
		t.Errorf("Link().Local = %v, Local() = %v, want %v", l, r.ifc.Local(), stray)
	}

	if err := r.ifc.SetLocal(netip.Addr{}); err != nil {
		t.Fatalf("SetLocal(zero): %v", err)
	}
	r.tun.Inject(udp(t, addrA, other, "paused"))
	_, icmp := recvICMP(t, r.tun)
	if icmp.TypeCode != layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeHost) {
		t.Errorf("paused: ICMP %v, want host unreachable", icmp.TypeCode)
	}
	waitStats(t, r.ifc, "tx_no_local", func(s vif.Stats) bool { return s.Drops["tx_no_local"] == 1 })
	if _, ok := r.under.Recv(50 * time.Millisecond); ok {
		t.Error("a packet was sent while the tunnel had no local address")
	}
	if r.ifc.Local().IsValid() || r.ifc.Link().Local != stray {
		t.Errorf("paused: Local() = %v, Link().Local = %v, want none and the last one (%v)", r.ifc.Local(), r.ifc.Link().Local, stray)
	}
	if err := r.ifc.SetLocal(localA); err != nil {
		t.Fatalf("SetLocal(%v): %v", localA, err)
	}
	if got := srcOf("resumed"); got != localA {
		t.Errorf("resumed: outer source %v, want %v", got, localA)
	}

	if err := r.ifc.SetLocal(netip.MustParseAddr("224.0.0.1")); !errors.Is(err, vif.ErrBadAddress) {
		t.Errorf("SetLocal(224.0.0.1): %v, want ErrBadAddress", err)
	}
	noPeer := newRig(t, vif.Config{Addrs: hosts(addrA)})
	if err := noPeer.ifc.SetLocal(localA); err == nil {
		t.Error("SetLocal without a peer succeeded")
	}
}

// Several peers on one interface: each packet goes to the peer with the
// longest prefix holding its destination; a peer's packets are delivered
// only with a source in its prefixes, and for a destination of ours or
// one forwarded; peers change while the loop runs.
func TestPeers(t *testing.T) {
	peerB, peerC := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
	pfx := netip.MustParsePrefix
	cfg := vif.Config{Addrs: hosts(addrA), Local: localA, Peers: []vif.Peer{
		{Addr: peerB, Prefixes: []netip.Prefix{pfx("198.51.100.0/24")}},
		{Addr: peerC, Prefixes: []netip.Prefix{pfx("198.51.100.128/25"), pfx("203.0.113.0/24")}},
	}, Forward: []netip.Prefix{pfx("192.0.2.128/25")}}
	r := newRig(t, cfg)
	to := func(dst string) netip.Addr {
		t.Helper()
		r.tun.Inject(udp(t, addrA, netip.MustParseAddr(dst), "out"))
		out, ok := r.under.Recv(wait)
		if !ok {
			t.Fatalf("to %s: nothing sent", dst)
		}
		return ipip.IPv4(out).Dst()
	}
	for dst, want := range map[string]netip.Addr{"198.51.100.1": peerB, "198.51.100.200": peerC, "203.0.113.5": peerC} {
		if got := to(dst); got != want {
			t.Errorf("a packet for %s went to %v, want %v", dst, got, want)
		}
	}
	r.tun.Inject(udp(t, addrA, netip.MustParseAddr("192.0.2.99"), "nobody's"))
	waitStats(t, r.ifc, "tx_no_peer", func(s vif.Stats) bool { return s.Drops["tx_no_peer"] == 1 })

	deliver := func(from netip.Addr, src, dst string) {
		t.Helper()
		r.under.Inject(encap(t, from, localA, ipip.ProtoIPIP, udp(t, netip.MustParseAddr(src), netip.MustParseAddr(dst), "in")))
	}
	deliver(peerB, "198.51.100.7", addrA.String())                                                                 // ours, from B's prefix
	deliver(peerB, "203.0.113.9", addrA.String())                                                                  // C's prefix, from B
	deliver(peerC, "203.0.113.9", "192.0.2.200")                                                                   // forwarded
	deliver(peerC, "203.0.113.9", "192.0.2.20")                                                                    // neither ours nor forwarded
	s := waitStats(t, r.ifc, "decapsulation", func(s vif.Stats) bool { return s.Decapsulated+s.Dropped() >= 4+1 }) // and tx_no_peer
	if s.Decapsulated != 2 || s.Drops["rx_bad_source"] != 1 || s.Drops["rx_not_local"] != 1 {
		t.Errorf("decapsulated %d, drops %v; want 2, rx_bad_source 1, rx_not_local 1", s.Decapsulated, s.Drops)
	}
	ps := r.ifc.Peers()
	if len(ps) != 2 || ps[0].Addr != peerB || ps[0].Encapsulated != 1 || ps[0].Decapsulated != 1 || ps[1].Encapsulated != 2 || ps[1].Decapsulated != 1 {
		t.Errorf("per-peer counters: %+v", ps)
	}

	// C gives up 203.0.113.0/24 to a new peer D; B goes.
	peerD := netip.MustParseAddr("198.18.0.4")
	if err := r.ifc.SetPeer(vif.Peer{Addr: peerC, Prefixes: []netip.Prefix{pfx("198.51.100.128/25")}}); err != nil {
		t.Fatal(err)
	}
	if err := r.ifc.SetPeer(vif.Peer{Addr: peerD, Prefixes: []netip.Prefix{pfx("203.0.113.0/24")}}); err != nil {
		t.Fatal(err)
	}
	if err := r.ifc.RemovePeer(peerB); err != nil {
		t.Fatal(err)
	}
	if got := to("203.0.113.5"); got != peerD {
		t.Errorf("after the change, 203.0.113.5 goes to %v, want %v", got, peerD)
	}
	if ps := r.ifc.Peers(); len(ps) != 2 || ps[0].Addr != peerC || ps[0].Encapsulated != 2 {
		t.Errorf("after the change: %+v (C keeps its counters)", ps)
	}
	if err := r.ifc.SetPeer(vif.Peer{Addr: peerB, Prefixes: []netip.Prefix{pfx("203.0.113.0/24")}}); !errors.Is(err, vif.ErrBadPeer) {
		t.Errorf("a prefix D has, for B: %v", err)
	}
	if err := r.ifc.RemovePeer(peerB); !errors.Is(err, vif.ErrNoPeer) {
		t.Errorf("removing a removed peer: %v", err)
	}
	// A catch-all peer cannot speak for another's networks.
	peerE := netip.MustParseAddr("198.18.0.5")
	if err := r.ifc.SetPeer(vif.Peer{Addr: peerE, Prefixes: []netip.Prefix{pfx("0.0.0.0/0")}}); err != nil {
		t.Fatal(err)
	}
	before := r.ifc.Stats().Drops["rx_bad_source"]
	deliver(peerE, "198.51.100.200", addrA.String()) // C's
	deliver(peerE, "192.0.2.50", addrA.String())     // nobody's: E's
	waitStats(t, r.ifc, "catch-all", func(s vif.Stats) bool { return s.Drops["rx_bad_source"] == before+1 && s.Decapsulated == 3 })
	noTunnel := newRig(t, vif.Config{Addrs: hosts(addrA)})
	if err := noTunnel.ifc.SetPeer(vif.Peer{Addr: peerB}); !errors.Is(err, vif.ErrNoTunnel) {
		t.Errorf("SetPeer without a tunnel: %v", err)
	}
}

// A range is the interface's, address by address, but the excluded ones.
func TestRanges(t *testing.T) {
	r := newRig(t, vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
		Exclude: []netip.Addr{netip.MustParseAddr("203.0.113.9")}})
	pkt := udp(t, addrA, netip.MustParseAddr("203.0.113.5"), "in the range")
	r.tun.Inject(pkt)
	if got, ok := r.tun.Recv(wait); !ok || string(got) != string(pkt) {
		t.Fatal("a packet for an address of the range was not looped back")
	}
	r.tun.Inject(udp(t, addrA, netip.MustParseAddr("203.0.113.9"), "excluded"))
	waitStats(t, r.ifc, "tx_no_peer", func(s vif.Stats) bool { return s.Drops["tx_no_peer"] == 1 && s.Looped == 1 })
	rng := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	for name, peer := range map[string]vif.Peer{
		"a prefix in the range":   {Addr: localB, Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.64/26")}},
		"a prefix over the range": {Addr: localB, Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.0.0/16")}},
		"a peer in the range":     {Addr: netip.MustParseAddr("203.0.113.9"), Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}},
	} {
		if _, err := vif.New(viftest.NewTUN(1), viftest.NewUnderlay(1), &vif.Config{Ranges: rng, Local: localA, Peers: []vif.Peer{peer}}); !errors.Is(err, vif.ErrBadPeer) {
			t.Errorf("%s: %v, want ErrBadPeer", name, err)
		}
	}
	for _, bad := range []string{"203.0.113.1/24", "10.0.0.0/7", "127.0.0.0/8"} {
		if _, err := vif.New(viftest.NewTUN(1), nil, &vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix(bad)}}); !errors.Is(err, vif.ErrBadRange) {
			t.Errorf("range %s: %v, want ErrBadRange", bad, err)
		}
	}
}

// The kernel's ICMP redirects for senders behind a peer stay out of the
// tunnel.
func TestRedirectsNotTunnelled(t *testing.T) {
	r := newRig(t, tunnelCfg())
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: addrA.AsSlice(), DstIP: other.AsSlice()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeRedirect, 1)}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, icmp, gopacket.Payload(make([]byte, 28))); err != nil {
		t.Fatal(err)
	}
	r.tun.Inject(buf.Bytes())
	r.tun.Inject(udp(t, addrA, other, "still tunnelled"))
	if _, ok := r.under.Recv(wait); !ok {
		t.Fatal("nothing tunnelled")
	}
	s := waitStats(t, r.ifc, "tx_icmp_redirect", func(s vif.Stats) bool { return s.Drops["tx_icmp_redirect"] == 1 })
	if s.Encapsulated != 1 {
		t.Errorf("encapsulated %d, want only the UDP packet", s.Encapsulated)
	}
}

// Addresses change on a running interface; routes and the MTU need one
// made by Up.
func TestChangeAddrs(t *testing.T) {
	r := newRig(t, vif.Config{Addrs: hosts(addrA)})
	if err := r.ifc.AddAddr(netip.PrefixFrom(addrB, 32)); err != nil {
		t.Fatal(err)
	}
	pkt := udp(t, other, addrB, "to the new address")
	r.tun.Inject(pkt)
	if got, ok := r.tun.Recv(wait); !ok || string(got) != string(pkt) {
		t.Fatal("the added address is not looped back")
	}
	if err := r.ifc.RemoveAddr(netip.PrefixFrom(addrB, 32)); err != nil {
		t.Fatal(err)
	}
	if err := r.ifc.RemoveAddr(netip.PrefixFrom(addrA, 32)); !errors.Is(err, vif.ErrNoAddress) {
		t.Errorf("removing the last address: %v", err)
	}
	if err := r.ifc.AddAddr(netip.MustParsePrefix("224.0.0.1/32")); !errors.Is(err, vif.ErrBadAddress) {
		t.Errorf("adding a multicast address: %v", err)
	}
	if err := r.ifc.AddRoute(netip.MustParsePrefix("198.51.100.0/24")); !errors.Is(err, vif.ErrNoHost) {
		t.Errorf("AddRoute on New's interface: %v", err)
	}
	if err := r.ifc.SetMTU(20); !errors.Is(err, vif.ErrBadMTU) {
		t.Errorf("SetMTU(20): %v", err)
	}
	if got := r.ifc.Addrs(); len(got) != 1 || got[0].Addr() != addrA {
		t.Errorf("Addrs() = %v", got)
	}
}
