//go:build linux

package main

// IPv4 and IPv6 over an IPv6 underlay (RFC 2473; issue 14 item 3): two
// hosts on a veth with IPv6 underlay addresses (2001:db8:ffff:1::/64),
// each vif with an IPv4 and an IPv6 address and the other side's
// networks behind its IPv6 peer. Both tunnel ends are vif: this kernel
// has no ip6tnl module.

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif/nstest"
	"golang.org/x/sys/unix"
)

// The underlay addresses of over6Pair.
var (
	under6A = netip.MustParseAddr("2001:db8:ffff:1::1")
	under6B = netip.MustParseAddr("2001:db8:ffff:1::2")
)

// over6Pair builds hosts a and b joined by a veth with IPv6 underlay
// addresses only, a's vif0 holding 192.0.2.1 and 2001:db8:a::1, b's
// 198.51.100.1 and 2001:db8:b::1. The local addresses are left to vif:
// the slave's first global IPv6 address.
func over6Pair(t *testing.T, opts ...nstest.LinkOption) (a, b *nstest.Host, aIf, bIf *nstest.Iface) {
	t.Helper()
	n := nstest.New(t)
	a, b = n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, bIf = n.Link(a, b, under6A.String()+"/64", under6B.String()+"/64", opts...)
	startVif(t, a, "vif0", "192.0.2.1", "2001:db8:a::1", "--slave", aIf.Name(),
		"--peer", under6B.String()+"=198.51.100.0/24,2001:db8:b::/64", "--no-arp-proxy")
	startVif(t, b, "vif0", "198.51.100.1", "2001:db8:b::1", "--slave", bIf.Name(),
		"--peer", under6A.String()+"=192.0.2.0/24,2001:db8:a::/64", "--no-arp-proxy")
	return a, b, aIf, bIf
}

// Ping both ways over IPv4 and IPv6 and a TCP transfer of each, checked by
// hash, cross the tunnel; on the wire at b's slave they are IPv6 packets
// between the underlay addresses, next header 4 and 41, and nothing else.
// They take AF_XDP (the underlay vif chose over IPv6): b's own packet taps
// on its slave, which AF_XDP bypasses, see none of them but the first,
// sent through the kernel while the next hop was not resolved.
func TestFourAndSixInSix(t *testing.T) {
	a, b, _, bIf := over6Pair(t)
	wire := bIf.Capture("ip6")
	host := bIf.CaptureHost("ip6 and (ip6[6] == 4 or ip6[6] == 41)")
	for _, p := range []struct {
		from   *nstest.Host
		to, v6 string
	}{{a, "198.51.100.1", "2001:db8:b::1"}, {b, "192.0.2.1", "2001:db8:a::1"}} {
		if err := p.from.Ping(p.to, 3); err != nil {
			t.Fatalf("ping %s from %v: %v\n%s", p.to, p.from, err, p.from.IP("route"))
		}
		if out, err := p.from.Run("ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", p.v6); err != nil {
			t.Fatalf("ping -6 %s from %v: %v\n%s\n%s", p.v6, p.from, err, out, p.from.IP("-6", "route"))
		}
	}
	echoTCP(t, a, b, "198.51.100.1", 4<<20)
	echoTCP6(t, a, b, "2001:db8:b::1", 4<<20)

	var four, six, other int
	for _, p := range wire.Stop() {
		ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if !ok || ip.NextHeader == layers.IPProtocolICMPv6 || ip.DstIP.IsMulticast() { // neighbour discovery, MLD
			continue
		}
		between := ip.SrcIP.Equal(under6A.AsSlice()) && ip.DstIP.Equal(under6B.AsSlice()) ||
			ip.SrcIP.Equal(under6B.AsSlice()) && ip.DstIP.Equal(under6A.AsSlice())
		switch {
		case between && ip.NextHeader == layers.IPProtocolIPv4:
			four++
		case between && ip.NextHeader == layers.IPProtocolIPv6:
			six++
		default:
			other++
			t.Logf("unexpected on the underlay: %v -> %v next header %v", ip.SrcIP, ip.DstIP, ip.NextHeader)
		}
	}
	if four < 100 || six < 100 || other != 0 {
		t.Errorf("on the underlay: %d 4in6 (next header 4), %d 6in6 (41), %d others; want 100+, 100+, none", four, six, other)
	}
	if seen := len(host.Stop()); seen > 10 {
		t.Errorf("b's packet taps saw %d of the %d tunnel packets on the wire: want them through AF_XDP", seen, four+six)
	}
	for _, h := range []*nstest.Host{a, b} {
		st := vifStatus(t, h, "vif0")
		if st.Underlay.Kind != "xdp" {
			t.Errorf("%v: underlay %+v, want xdp", h, st.Underlay)
		}
		if st.Protocol != 4 || !st.Local.Is6() || st.MTU != 1460 {
			t.Errorf("%v: protocol %d, local %v, MTU %d; want 4, the slave's IPv6 address, 1500 - 40", h, st.Protocol, st.Local, st.MTU)
		}
		if st.Counters.EncapsulatedPackets == 0 || st.Counters.DecapsulatedPackets == 0 || st.Counters.Dropped != 0 {
			t.Errorf("counters on %v: %+v", h, st.Counters)
		}
	}
}

// sendRaw6 sends the IPv6 packets pkts, outer header included, from h
// through a raw IPv6 socket (IPV6_HDRINCL) to their destinations.
func sendRaw6(t *testing.T, h *nstest.Host, pkts ...[]byte) {
	t.Helper()
	if err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL, 1); err != nil {
			return err
		}
		for _, p := range pkts {
			if err := unix.Sendto(fd, p, 0, &unix.SockaddrInet6{Addr: ipip.IPv6(p).DstBytes()}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("sending raw IPv6 from %v: %v", h, err)
	}
}

// over6 encapsulates inner (IPv4 or IPv6) in IPv6 from src to dst.
func over6(t *testing.T, src, dst netip.Addr, inner []byte) []byte {
	t.Helper()
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
		t.Fatal(err)
	}
	return out
}

// Hostile packets on the IPv6 underlay are dropped and counted: from an
// address that is not a peer's; from the peer with inner sources that are
// not its own (an address of a's, another network's), for a destination
// not a's, nested (a tunnel packet inside), or with an inner hop limit of
// 0. Legitimate traffic still flows.
func TestHostileOverIPv6(t *testing.T) {
	a, b, _, bIf := over6Pair(t)
	stranger := netip.MustParseAddr("2001:db8:ffff:1::66")
	b.AddAddr(bIf.Name(), stranger.String()+"/64")
	before := vifStatus(t, a, "vif0").Counters
	const n = 20
	var pkts [][]byte
	for range n {
		pkts = append(pkts,
			over6(t, stranger, under6A, udpPacket(t, netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("192.0.2.1"))),
			over6(t, under6B, under6A, udpPacket(t, netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("192.0.2.1"))),
			over6(t, under6B, under6A, udpPacket(t, netip.MustParseAddr("2001:db8:a::1"), netip.MustParseAddr("2001:db8:a::1"))),
			over6(t, under6B, under6A, udpPacket(t, netip.MustParseAddr("2001:db8:b::1"), netip.MustParseAddr("2001:db8:99::1"))),
			over6(t, under6B, under6A, over6(t, netip.MustParseAddr("2001:db8:b::1"), netip.MustParseAddr("2001:db8:a::1"),
				udpPacket(t, netip.MustParseAddr("2001:db8:b::1"), netip.MustParseAddr("2001:db8:a::1")))))
		hop0 := over6(t, under6B, under6A, udpPacket(t, netip.MustParseAddr("2001:db8:b::1"), netip.MustParseAddr("2001:db8:a::1")))
		hop0[ipip.IPv6HeaderLen+7] = 0
		pkts = append(pkts, hop0)
	}
	sendRaw6(t, b, pkts...)
	if _, ok := waitFor(3*time.Second, func() bool {
		c := vifStatus(t, a, "vif0").Counters
		return c.Drops["rx_not_peer"]-before.Drops["rx_not_peer"] == n && c.Drops["rx_bad_source"]-before.Drops["rx_bad_source"] == 2*n &&
			c.Drops["rx_not_local"]-before.Drops["rx_not_local"] == n && c.Drops["rx_nested"]-before.Drops["rx_nested"] == n &&
			c.Drops["rx_inner_ttl"]-before.Drops["rx_inner_ttl"] == n
	}); !ok {
		t.Errorf("hostile packets not all counted: %+v", vifStatus(t, a, "vif0").Counters.Drops)
	}
	if c := vifStatus(t, a, "vif0").Counters; c.DecapsulatedPackets != before.DecapsulatedPackets {
		t.Errorf("%d hostile packets delivered", c.DecapsulatedPackets-before.DecapsulatedPackets)
	}
	if !pingOnce6(a, "2001:db8:b::1", 3*time.Second) || a.Ping("198.51.100.1", 1) != nil {
		t.Error("the tunnel no longer works after the attack")
	}
}

// When the underlay link's MTU shrinks, the vif learns the path MTU as the
// kernel refuses the next big outer packet and tells the senders the
// tunnel MTU, the path MTU less 40: a Packet Too Big for IPv6, a
// "fragmentation needed" for IPv4 with DF; TCP then completes at the
// smaller size.
func TestPacketTooBigOverIPv6(t *testing.T) {
	a, b, aIf, _ := over6Pair(t)
	a.IP("link", "set", aIf.Name(), "mtu", "1400")
	out, _ := a.Run("ping", "-6", "-n", "-c", "3", "-i", "0.3", "-W", "2", "-s", "1400", "2001:db8:b::1")
	if !strings.Contains(out, "mtu=1360") && !strings.Contains(out, "mtu: 1360") {
		t.Errorf("ping -6 over the path MTU: want a Packet Too Big with mtu 1360, got:\n%s", out)
	}
	out, _ = a.Run("ping", "-n", "-c", "3", "-i", "0.3", "-W", "2", "-M", "do", "-s", "1400", "198.51.100.1")
	if !strings.Contains(out, "mtu = 1360") {
		t.Errorf("ping -M do over the path MTU: want fragmentation needed with mtu 1360, got:\n%s", out)
	}
	echoTCP(t, a, b, "198.51.100.1", 1<<20)
	echoTCP6(t, a, b, "2001:db8:b::1", 1<<20)
	if st := vifStatus(t, a, "vif0"); st.Counters.Drops["tx_too_big"] == 0 || st.Counters.ICMPSent == 0 {
		t.Errorf("counters %+v: want tx_too_big and ICMP sent", st.Counters)
	}
	if p := vifStatus(t, a, "vif0").Peers; len(p) != 1 || p[0].PathMTU != 1360 {
		t.Errorf("peers %+v: want one with path MTU 1360", p)
	}
}

// Protocol 94 over IPv6 is refused in one line that says what to use, and
// so is a peer of the other family.
func TestProtocol94OverIPv6Refused(t *testing.T) {
	n := nstest.New(t)
	a, b := n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, _ := n.Link(a, b, under6A.String()+"/64", under6B.String()+"/64")
	out, err := a.Run(vifBin, "up", "vif0", "192.0.2.1", "--slave", aIf.Name(), "--peer", under6B.String(), "--proto", "94", "--foreground")
	if err == nil || !strings.Contains(out, "--proto 4") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("--proto 94 with an IPv6 peer: %v\n%s", err, out)
	}
	out, err = a.Run(vifBin, "up", "vif0", "192.0.2.1", "--slave", aIf.Name(), "--peer", under6B.String(), "--peer", "198.18.0.2=203.0.113.0/24", "--foreground")
	if err == nil || !strings.Contains(out, "one family") {
		t.Errorf("an IPv4 and an IPv6 peer: %v\n%s", err, out)
	}
}

// udpPacket builds a UDP packet from src to dst, IPv4 or IPv6, with
// gopacket.
func udpPacket(t *testing.T, src, dst netip.Addr) []byte {
	t.Helper()
	u := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	var ip gopacket.SerializableLayer
	if src.Is4() {
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		u.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		u.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, u, gopacket.Payload("hostile")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestPathMTUDiscoveryOverIPv6 puts a router with a 1280-byte link between
// the tunnel's ends (a's vif has 1460, b's 1280 though its slave carries
// 1240 inside a tunnel: a tunnel carrying IPv6 never offers less than
// 1280, RFC 2473 section 7.1): the router's Packet Too Big
// about a's outer packets reaches a's relay, which adopts the path MTU
// (1280, tunnel MTU 1240) and tells the inner sender: Packet Too Big with
// 1280 for IPv6 (never less, RFC 2473 section 7.1), fragmentation needed
// with 1240 for IPv4. IPv6 packets of up to 1280 bytes then cross in outer
// IPv6 fragments, which b's kernel reassembles, and TCP completes.
func TestPathMTUDiscoveryOverIPv6(t *testing.T) {
	n := nstest.New(t)
	a, r, b := n.Host("a", nstest.WithIPv6()), n.Host("r", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, _ := n.Link(a, r, "2001:db8:ffff:10::1/64", "2001:db8:ffff:10::fe/64")
	bIf, _ := n.Link(b, r, "2001:db8:ffff:11::2/64", "2001:db8:ffff:11::fe/64", nstest.WithMTU(1280))
	r.Sysctl("net.ipv6.conf.all.forwarding", "1")
	a.AddRoute("2001:db8:ffff:11::/64", "via", "2001:db8:ffff:10::fe")
	b.AddRoute("2001:db8:ffff:10::/64", "via", "2001:db8:ffff:11::fe")
	startVif(t, a, "vif0", "192.0.2.1", "2001:db8:a::1", "--slave", aIf.Name(),
		"--peer", "2001:db8:ffff:11::2=198.51.100.0/24,2001:db8:b::/64", "--no-arp-proxy")
	startVif(t, b, "vif0", "198.51.100.1", "2001:db8:b::1", "--slave", bIf.Name(),
		"--peer", "2001:db8:ffff:10::1=192.0.2.0/24,2001:db8:a::/64", "--no-arp-proxy")
	if st := vifStatus(t, b, "vif0"); st.MTU != 1280 {
		t.Errorf("b's vif over a 1280-byte slave has MTU %d, want 1280", st.MTU)
	}
	for _, h := range []*nstest.Host{a, b} {
		if st := vifStatus(t, h, "vif0"); st.Underlay.Kind != "xdp" {
			t.Errorf("%v: underlay %+v, want xdp (AF_XDP over IPv6, through a router)", h, st.Underlay)
		}
	}
	if !pingOnce6(a, "2001:db8:b::1", 3*time.Second) {
		t.Fatal("the tunnel does not work")
	}

	out, _ := a.Run("ping", "-6", "-n", "-c", "3", "-i", "0.3", "-W", "2", "-s", "1400", "2001:db8:b::1")
	if !strings.Contains(out, "mtu=1280") && !strings.Contains(out, "mtu: 1280") {
		t.Errorf("ping -6 over the path: want a Packet Too Big with mtu 1280, got:\n%s", out)
	}
	// 1232 + 48 = 1280 bytes: more than the tunnel MTU, never refused.
	if out, err := a.Run("ping", "-6", "-n", "-c", "2", "-W", "2", "-M", "do", "-s", "1232", "2001:db8:b::1"); err != nil {
		t.Errorf("a 1280-byte IPv6 packet through the 1240-byte tunnel: %v\n%s", err, out)
	}
	out, _ = a.Run("ping", "-n", "-c", "2", "-i", "0.3", "-W", "2", "-M", "do", "-s", "1400", "198.51.100.1")
	if !strings.Contains(out, "mtu = 1240") {
		t.Errorf("ping -M do over the path: want fragmentation needed with mtu 1240, got:\n%s", out)
	}
	echoTCP6(t, a, b, "2001:db8:b::1", 2<<20)
	echoTCP(t, a, b, "198.51.100.1", 2<<20)
	if st := vifStatus(t, a, "vif0"); st.Counters.ICMPSent == 0 || st.Counters.FragmentedPackets == 0 {
		t.Errorf("a's counters %+v: want ICMP sent and outer fragments", st.Counters)
	}
}

// The slave is renumbered: the tunnel over IPv6, whose local address vif
// chose, moves to the slave's new global IPv6 address (not its link-local
// one), and carries traffic from there once the peer knows it.
func TestSlaveRenumberedOverIPv6(t *testing.T) {
	a, b, aIf, bIf := over6Pair(t)
	if !pingOnce6(a, "2001:db8:b::1", 3*time.Second) {
		t.Fatal("the tunnel does not work before renumbering")
	}
	renumbered := netip.MustParseAddr("2001:db8:ffff:1::11")
	a.AddAddr(aIf.Name(), renumbered.String()+"/64")
	a.IP("addr", "del", under6A.String()+"/64", "dev", aIf.Name())
	if _, ok := waitFor(5*time.Second, func() bool {
		st := vifStatus(t, a, "vif0")
		return st.Local == renumbered && !st.LocalMissing
	}); !ok {
		st := vifStatus(t, a, "vif0")
		t.Fatalf("after renumbering: local %v, local_missing %v; want %v", st.Local, st.LocalMissing, renumbered)
	}
	vifCmd(t, b, "set", "vif0", "peer", under6A.String(), "remove")
	vifCmd(t, b, "set", "vif0", "peer", renumbered.String(), "allowed-ips", "192.0.2.0/24,2001:db8:a::/64")
	wire := bIf.Capture("ip6")
	// The first packets may wait for neighbour discovery of the new
	// address: try for a while.
	if _, ok := waitFor(8*time.Second, func() bool {
		return pingOnce6(a, "2001:db8:b::1", time.Second) && pingOnce(a, "198.51.100.1", time.Second)
	}); !ok {
		out, _ := a.Run("ping", "-6", "-n", "-c", "1", "-W", "1", "2001:db8:b::1")
		t.Fatalf("the tunnel does not work after renumbering: a %+v, b %+v\n%s",
			vifStatus(t, a, "vif0").Counters, vifStatus(t, b, "vif0").Counters, out)
	}
	from := 0
	for _, p := range wire.Stop() {
		if ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok && ip.SrcIP.Equal(renumbered.AsSlice()) &&
			(ip.NextHeader == layers.IPProtocolIPv4 || ip.NextHeader == layers.IPProtocolIPv6) {
			from++
		}
	}
	if from == 0 {
		t.Error("no tunnel packets from the new address on the wire")
	}
}
