package vif_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/nstest"
)

// The AF_XDP underlay over IPv6 (RFC 2473): 4in6 and 6in6.

var (
	xdp6A = netip.MustParseAddr("2001:db8:ffff:1::1")
	xdp6B = netip.MustParseAddr("2001:db8:ffff:1::2")
)

// xdpPair6 opens XDP underlays over IPv6 in two namespaces joined by a
// link, a sending to b and b to a, once the neighbours are resolved; a's
// underlay is told the path MTU pathMTU gives (nil: none).
func xdpPair6(tb testing.TB, pathMTU func(netip.Addr) (int, error)) (a, b *vif.XDPUnderlay, aIf, bIf *nstest.Iface) {
	tb.Helper()
	n := nstest.New(tb)
	ha, hb := n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, bIf = n.Link(ha, hb, xdp6A.String()+"/64", xdp6B.String()+"/64")
	ping6Until(tb, ha, xdp6B.String())
	return openXDP(tb, ha, "test", aIf.Name(), ipip.ProtoIPinIP, xdp6A, pathMTU, xdp6B), openXDP(tb, hb, "test", bIf.Name(), ipip.ProtoIPinIP, xdp6B, nil, xdp6A), aIf, bIf
}

// underlayBatch6 returns n packets from xdp6A to xdp6B, 4in6 and 6in6 in
// turn, with a traffic class, a flow label and a hop limit of 33, each
// size bytes inside, and buffers to read them into.
func underlayBatch6(tb testing.TB, n, size int) (pkts, rbufs [][]byte, sizes []int) {
	tb.Helper()
	e := &ipip.Encapsulator{Src: xdp6A, Dst: xdp6B, TTL: 33}
	for k := range n {
		inner := benchUDP(tb, addrA, addrB, size)
		inner[1] = 0xb8 | byte(ipip.ECT0) // DSCP 46, ECT(0)
		ipip.IPv4(inner).SetChecksum()
		if k%2 == 1 {
			inner = benchUDP6(tb, own6, hostB6, size)
		}
		buf := make([]byte, vif.Headroom+len(inner))
		copy(buf[vif.Headroom:], inner)
		var err error
		if k%2 == 1 {
			_, err = e.EncapIPv6(buf, vif.Headroom)
		} else {
			_, err = e.Encap(buf, vif.Headroom)
		}
		if err != nil {
			tb.Fatal(err)
		}
		// A flow label of our own, so that it is seen to cross.
		buf[vif.Headroom-ipip.IPv6HeaderLen+3] = byte(k + 1)
		pkts = append(pkts, buf)
		rbufs = append(rbufs, make([]byte, vif.Headroom+2048))
	}
	return pkts, rbufs, make([]int, n)
}

// xdpRoundTrip6 writes pkts from a and reads them all at b.
func xdpRoundTrip6(tb testing.TB, a, b vif.Underlay, pkts, rbufs [][]byte, sizes []int) {
	tb.Helper()
	roundTripAt(tb, a, b, pkts, rbufs, sizes, vif.Headroom-ipip.IPv6HeaderLen)
}

// TestXDPUnderlayIPv6 sends 4in6 and 6in6 packets through AF_XDP and
// checks that they arrive byte for byte, outer IPv6 header included
// (traffic class, flow label, hop limit), through AF_XDP and not the raw
// sockets, framed on the wire as IPv6 (EtherType 0x86dd) between the
// slaves' MACs, without allocating. An outer fragment goes through the
// raw sockets both ways, and the packet the kernel reassembles reaches
// the loop with the same bytes as one through AF_XDP would; so does one
// behind an extension header, which the kernel processes.
func TestXDPUnderlayIPv6(t *testing.T) {
	a, b, aIf, bIf := xdpPair6(t, nil)
	wire := aIf.Capture("ip6 and (ip6[6] == 4 or ip6[6] == 41 or ip6[6] == 44 or ip6[6] == 60)")
	pkts, rbufs, sizes := underlayBatch6(t, 32, 1400)
	xdpRoundTrip6(t, a, b, pkts, rbufs, sizes)
	for k := range pkts {
		want := pkts[k][vif.Headroom-ipip.IPv6HeaderLen:]
		if got := rbufs[k][vif.Headroom : vif.Headroom+sizes[k]]; !bytes.Equal(got, want) {
			t.Fatalf("packet %d: got %d bytes, want %d, differing:\n got %x\nwant %x", k, len(got), len(want), got[:40], want[:40])
		}
	}
	// An outer fragment (RFC 2473 section 7) goes through the kernel
	// both ways; the reassembled packet reads as the whole one.
	frags := make([][]byte, 3)
	for k := range frags {
		frags[k] = make([]byte, vif.Headroom+2048)
	}
	whole := ipip.IPv6(pkts[1][vif.Headroom-ipip.IPv6HeaderLen:])
	n, err := ipip.FragmentIPv6(whole, 800, 7, frags, vif.Headroom-ipip.IPv6HeaderLen)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := a.Write(frags[:n], vif.Headroom-ipip.IPv6HeaderLen); err != nil || k != n {
		t.Fatalf("Write of %d fragments = %d, %v", n, k, err)
	}
	if k, err := b.Read(rbufs[:1], sizes[:1], vif.Headroom); err != nil || k != 1 {
		t.Fatalf("Read of the reassembled packet = %d, %v", k, err)
	}
	if got := a.Stats().TxRaw; got != uint64(n) {
		t.Errorf("%d fragments through the raw socket, want %d", got, n)
	}
	if got := b.Stats().RxRaw; got != 1 {
		t.Errorf("%d packets from the raw sockets, want the reassembled one", got)
	}
	if got := rbufs[0][vif.Headroom : vif.Headroom+sizes[0]]; !bytes.Equal(got, whole) {
		t.Errorf("reassembled packet through the raw socket differs from the whole one:\n got %x\nwant %x", got[:40], whole[:40])
	}

	// An extension header (Destination Options) before 41: Write sends
	// it through the raw socket, the program passes it to b's kernel,
	// which processes it; the raw socket reads the 6in6 packet behind it.
	opts := make([]byte, vif.Headroom+2048)
	copy(opts[vif.Headroom-ipip.IPv6HeaderLen:], whole[:ipip.IPv6HeaderLen])
	copy(opts[vif.Headroom:], []byte{ipip.ProtoIPv6, 0, 1, 4, 0, 0, 0, 0}) // PadN
	payload := whole[ipip.IPv6HeaderLen:whole.Len()]
	opts = opts[:vif.Headroom+8+copy(opts[vif.Headroom+8:], payload)]
	oh := ipip.IPv6(opts[vif.Headroom-ipip.IPv6HeaderLen:])
	oh[6] = 60
	oh[4], oh[5] = byte((len(payload)+8)>>8), byte(len(payload)+8)
	if k, err := a.Write([][]byte{opts}, vif.Headroom-ipip.IPv6HeaderLen); err != nil || k != 1 {
		t.Fatalf("Write with a destination options header = %d, %v", k, err)
	}
	if k, err := b.Read(rbufs[:1], sizes[:1], vif.Headroom); err != nil || k != 1 {
		t.Fatalf("Read of the packet with a destination options header = %d, %v", k, err)
	}
	if got := rbufs[0][vif.Headroom : vif.Headroom+sizes[0]]; !bytes.Equal(got, whole) || b.Stats().RxRaw != 2 || a.Stats().TxRaw != uint64(n)+1 {
		t.Errorf("packet behind a destination options header: raw %+v, %+v; read\n %x\nwant\n %x", a.Stats(), b.Stats(), got[:40], whole[:40])
	}
	n++ // its frame is on the wire with the fragments

	if d := b.Drops(); d != 0 {
		t.Errorf("drops %d", d)
	}

	// On the wire: IPv6 frames between the slaves' MACs.
	var xdpFrames, fragFrames int
	for _, p := range wire.Stop() {
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if eth == nil || ip == nil || eth.EthernetType != layers.EthernetTypeIPv6 {
			t.Errorf("unexpected frame on the wire: %v", p)
			continue
		}
		if !bytes.Equal(eth.SrcMAC, aIf.MAC()) || !bytes.Equal(eth.DstMAC, bIf.MAC()) || !ip.SrcIP.Equal(xdp6A.AsSlice()) || !ip.DstIP.Equal(xdp6B.AsSlice()) {
			t.Errorf("frame %v -> %v, %v -> %v; want %v -> %v, %v -> %v", eth.SrcMAC, eth.DstMAC, ip.SrcIP, ip.DstIP, aIf.MAC(), bIf.MAC(), xdp6A, xdp6B)
		}
		switch ip.NextHeader {
		case layers.IPProtocolIPv4, layers.IPProtocolIPv6:
			if ip.HopLimit != 33 || ip.TrafficClass&0xfc != 0xb8 && ip.NextHeader == layers.IPProtocolIPv4 {
				t.Errorf("hop limit %d, traffic class %#x; want 33, 0xb8", ip.HopLimit, ip.TrafficClass)
			}
			xdpFrames++
		case layers.IPProtocolIPv6Fragment, layers.IPProtocolIPv6Destination:
			fragFrames++
		}
	}
	if xdpFrames != len(pkts) || fragFrames != n {
		t.Errorf("on the wire: %d 4in6/6in6 frames, %d fragments and extension headers; want %d, %d", xdpFrames, fragFrames, len(pkts), n)
	}

	if allocs := testing.AllocsPerRun(50, func() { xdpRoundTrip6(t, a, b, pkts, rbufs, sizes) }); allocs != 0 {
		t.Errorf("%v allocations per batch of 32 packets, want 0", allocs)
	}
	sa, sb := a.Stats(), b.Stats()
	const want = (1 + 1 + 50) * 32 // AllocsPerRun warms up once
	if sa.TxXDP != want || sa.TxRaw != uint64(n) || sb.RxXDP != want || sb.RxRaw != 2 {
		t.Errorf("a sent %d through AF_XDP, %d raw; b received %d through AF_XDP, %d raw; want %d, %d, %d, 2", sa.TxXDP, sa.TxRaw, sb.RxXDP, sb.RxRaw, want, n, want)
	}
}

// TestXDPUnderlayIPv6PathMTU checks that Write refuses an IPv6 packet
// larger than the kernel's path MTU with EMSGSIZE, as the raw socket
// does, after the packets before it.
func TestXDPUnderlayIPv6PathMTU(t *testing.T) {
	a, _, _, _ := xdpPair6(t, func(netip.Addr) (int, error) { return 1300, nil })
	small, _, _ := underlayBatch6(t, 1, 500)
	big, _, _ := underlayBatch6(t, 3, 1400)
	deadline := time.Now().Add(3 * time.Second)
	for {
		// The first packet may go through the kernel while the next
		// hop is looked up: wait for AF_XDP.
		if _, err := a.Write(small, vif.Headroom-ipip.IPv6HeaderLen); err != nil {
			t.Fatal(err)
		}
		if a.Stats().TxXDP > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	k, err := a.Write(append(small, big...), vif.Headroom-ipip.IPv6HeaderLen)
	if k != 1 || !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("Write = %d, %v; want 1, EMSGSIZE", k, err)
	}
}

// BenchmarkXDPUnderlayIPv6 is BenchmarkXDPUnderlay over IPv6 (4in6 and
// 6in6 in turn), beside BenchmarkRawUnderlayIPv6.
func BenchmarkXDPUnderlayIPv6(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(map[int]string{64: "size=64", 1400: "size=1400"}[size], func(b *testing.B) {
			ua, ub, _, _ := xdpPair6(b, nil)
			pkts, rbufs, sizes := underlayBatch6(b, 64, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for done := 0; done < b.N; done += len(pkts) {
				n := min(len(pkts), b.N-done)
				xdpRoundTrip6(b, ua, ub, pkts[:n], rbufs[:n], sizes[:n])
			}
		})
	}
}

// xdpTunnel6 brings up vifs on a and b tunnelling to each other over an
// IPv6 underlay on the link between them, with the underlay u: a's vif
// holds 192.0.2.1 and 2001:db8:a::1, b's 198.51.100.1 and 2001:db8:b::1.
func xdpTunnel6(t *testing.T, u string) (ha, hb *nstest.Host, aIf, bIf *nstest.Iface, ia, ib *vif.Interface) {
	t.Helper()
	n := nstest.New(t)
	ha, hb = n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, bIf = n.Link(ha, hb, xdp6A.String()+"/64", xdp6B.String()+"/64")
	pfx := netip.MustParsePrefix
	ia = upIn(t, ha, vif.LinkConfig{Name: "vif0", Slave: aIf.Name(), Underlay: u,
		Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32"), pfx("2001:db8:a::1/128")},
			Peers: []vif.Peer{{Addr: xdp6B, Prefixes: []netip.Prefix{pfx("198.51.100.0/24"), pfx("2001:db8:b::/64")}}}}})
	ib = upIn(t, hb, vif.LinkConfig{Name: "vif0", Slave: bIf.Name(), Underlay: u,
		Config: vif.Config{Addrs: []netip.Prefix{pfx("198.51.100.1/32"), pfx("2001:db8:b::1/128")},
			Peers: []vif.Peer{{Addr: xdp6A, Prefixes: []netip.Prefix{pfx("192.0.2.0/24"), pfx("2001:db8:a::/64")}}}}})
	return ha, hb, aIf, bIf, ia, ib
}

// TestXDPTunnelIPv6 pings 4in6 and 6in6 through a tunnel over IPv6 whose
// both ends are on AF_XDP (forced, and chosen by UnderlayAuto), and
// checks by the counters and on the wire that the packets took it:
// the wire carries them, the slaves' own packet taps do not see them.
func TestXDPTunnelIPv6(t *testing.T) {
	for _, u := range []string{vif.UnderlayXDP, vif.UnderlayAuto} {
		t.Run("underlay="+u, func(t *testing.T) {
			ha, hb, aIf, bIf, ia, ib := xdpTunnel6(t, u)
			for _, i := range []*vif.Interface{ia, ib} {
				if got := i.Underlay(); got != (vif.UnderlayInfo{Kind: vif.UnderlayXDP}) {
					t.Fatalf("underlay %+v, want xdp", got)
				}
			}
			ping6 := func(addr string, n int) {
				t.Helper()
				if out, err := ha.Run("ping", "-6", "-n", "-c", strconv.Itoa(n), "-i", "0.2", "-W", "2", addr); err != nil {
					t.Fatalf("ping -6 %s: %v\n%s", addr, err, out)
				}
			}
			// Resolves the next hops (the first packets through the
			// kernel).
			ping6Until(t, ha, "2001:db8:b::1")
			if err := ha.Ping("198.51.100.1", 1); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(3 * time.Second)
			for (vif.XDPHop6Of(ia, xdp6B.As16()) != "" || vif.XDPHop6Of(ib, xdp6A.As16()) != "") && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if why := vif.XDPHop6Of(ia, xdp6B.As16()); why != "" {
				t.Fatalf("a's next hop towards b: %q", why)
			}
			wire := aIf.Capture("ip6 and (ip6[6] == 4 or ip6[6] == 41)")
			host := bIf.CaptureHost("ip6 and (ip6[6] == 4 or ip6[6] == 41)")
			ba, _ := vif.XDPStatsOf(ia)
			bb, _ := vif.XDPStatsOf(ib)
			ping6("2001:db8:b::1", 5)
			if err := ha.Ping("198.51.100.1", 5); err != nil {
				t.Fatal(err)
			}
			echoOver(t, ha, hb, "[2001:db8:b::1]:5001", "2001:db8:a::1", 2<<20)
			echoOver(t, ha, hb, "198.51.100.1:5002", "192.0.2.1", 2<<20)
			time.Sleep(200 * time.Millisecond)
			sa, _ := vif.XDPStatsOf(ia)
			sb, _ := vif.XDPStatsOf(ib)
			t.Logf("a: %+v", sa)
			t.Logf("b: %+v", sb)
			if sa.TxXDP-ba.TxXDP < 1000 || sb.RxXDP-bb.RxXDP < 1000 || sb.TxXDP-bb.TxXDP < 10 || sa.RxXDP-ba.RxXDP < 10 {
				t.Errorf("too little through AF_XDP: a %+v, b %+v", sa, sb)
			}
			if sa.TxRaw-ba.TxRaw > 5 || sb.TxRaw-bb.TxRaw > 5 {
				t.Errorf("too much through the raw sockets: a %d, b %d", sa.TxRaw-ba.TxRaw, sb.TxRaw-bb.TxRaw)
			}
			var four, six int
			for _, p := range wire.Stop() {
				eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
				ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				if eth == nil || ip == nil || eth.EthernetType != layers.EthernetTypeIPv6 {
					continue
				}
				fromA := bytes.Equal(eth.SrcMAC, aIf.MAC()) && bytes.Equal(eth.DstMAC, bIf.MAC()) && ip.SrcIP.Equal(xdp6A.AsSlice()) && ip.DstIP.Equal(xdp6B.AsSlice())
				fromB := bytes.Equal(eth.SrcMAC, bIf.MAC()) && bytes.Equal(eth.DstMAC, aIf.MAC()) && ip.SrcIP.Equal(xdp6B.AsSlice()) && ip.DstIP.Equal(xdp6A.AsSlice())
				switch {
				case !fromA && !fromB:
					t.Errorf("unexpected frame on the wire: %v", p)
				case ip.NextHeader == layers.IPProtocolIPv4:
					four++
				case ip.NextHeader == layers.IPProtocolIPv6:
					six++
				}
			}
			seen := len(host.Stop())
			t.Logf("on the wire: %d 4in6, %d 6in6; b's packet taps saw %d", four, six, seen)
			if four < 500 || six < 500 {
				t.Errorf("on the wire: %d 4in6 and %d 6in6 frames, want 500+ each", four, six)
			}
			if seen > 10 {
				t.Errorf("b's packet taps saw %d tunnel packets: want them past the stack, through AF_XDP", seen)
			}
			if s := ib.Stats(); s.Dropped() != 0 {
				t.Errorf("b dropped %v", s.Drops)
			}
			ia.Close()
			ib.Close()
			checkNoXDP(t, ha, hb)
		})
	}
}

// ping6Until pings addr from h until it answers, for up to 10 seconds:
// the first packets wait for neighbour discovery, and duplicate address
// detection may hold a new address a moment.
func ping6Until(t testing.TB, h *nstest.Host, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := h.Run("ping", "-6", "-n", "-c", "1", "-W", "1", addr)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping -6 %s from %v: %v\n%s", addr, h, err, out)
		}
	}
}

// echoOver sends n random bytes over TCP from h's address src to addr in
// hb, and checks that they arrive.
func echoOver(t *testing.T, ha, hb *nstest.Host, addr, src string, n int) {
	t.Helper()
	var ln net.Listener
	if err := hb.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		total := 0
		for {
			k, err := c.Read(buf)
			total += k
			if err != nil {
				break
			}
		}
		got <- total
	}()
	var conn net.Conn
	if err := ha.Do(func() (err error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		conn, err = d.Dial("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case k := <-got:
		if k != n {
			t.Fatalf("%s: %d bytes arrived, want %d", addr, k, n)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: the stream did not arrive", addr)
	}
}

// TestXDPPathMTUIPv6 puts a router whose link to b carries 1280 bytes
// between the tunnel's ends, both on AF_XDP: a's packets go through the
// router as next hop (its MAC from the neighbour discovery table); the
// router's Packet Too Big about a's outer packets reaches a's kernel (the
// program passes ICMPv6), the tunnel adopts the path MTU and tells the
// inner senders (Packet Too Big with 1280 for IPv6, never less, RFC 2473
// section 7.1; fragmentation needed with 1240 for IPv4); IPv6 packets of
// up to 1280 bytes then cross in outer fragments, which take the raw
// socket and which b's kernel reassembles; smaller packets keep taking
// AF_XDP.
func TestXDPPathMTUIPv6(t *testing.T) {
	n := nstest.New(t)
	ha, hr, hb := n.Host("a", nstest.WithIPv6()), n.Host("r", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, _ := n.Link(ha, hr, "2001:db8:ffff:10::1/64", "2001:db8:ffff:10::fe/64")
	bIf, _ := n.Link(hb, hr, "2001:db8:ffff:11::2/64", "2001:db8:ffff:11::fe/64", nstest.WithMTU(1280))
	hr.Sysctl("net.ipv6.conf.all.forwarding", "1")
	ha.AddRoute("2001:db8:ffff:11::/64", "via", "2001:db8:ffff:10::fe")
	hb.AddRoute("2001:db8:ffff:10::/64", "via", "2001:db8:ffff:11::fe")
	pfx := netip.MustParsePrefix
	peerB, peerA := netip.MustParseAddr("2001:db8:ffff:11::2"), netip.MustParseAddr("2001:db8:ffff:10::1")
	ia := upIn(t, ha, vif.LinkConfig{Name: "vif0", Slave: aIf.Name(), Underlay: vif.UnderlayXDP,
		Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32"), pfx("2001:db8:a::1/128")},
			Peers: []vif.Peer{{Addr: peerB, Prefixes: []netip.Prefix{pfx("198.51.100.0/24"), pfx("2001:db8:b::/64")}}}}})
	ib := upIn(t, hb, vif.LinkConfig{Name: "vif0", Slave: bIf.Name(), Underlay: vif.UnderlayXDP,
		Config: vif.Config{Addrs: []netip.Prefix{pfx("198.51.100.1/32"), pfx("2001:db8:b::1/128")},
			Peers: []vif.Peer{{Addr: peerA, Prefixes: []netip.Prefix{pfx("192.0.2.0/24"), pfx("2001:db8:a::/64")}}}}})
	ping6Until(t, ha, "2001:db8:b::1") // resolves the router
	deadline := time.Now().Add(3 * time.Second)
	for vif.XDPHop6Of(ia, peerB.As16()) != "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if why := vif.XDPHop6Of(ia, peerB.As16()); why != "" {
		t.Fatalf("next hop towards b through the router: %q", why)
	}
	before, _ := vif.XDPStatsOf(ia)
	out, _ := ha.Run("ping", "-6", "-n", "-c", "3", "-i", "0.3", "-W", "2", "-s", "1400", "2001:db8:b::1")
	if !strings.Contains(out, "mtu=1280") && !strings.Contains(out, "mtu: 1280") {
		t.Errorf("ping -6 over the path: want a Packet Too Big with mtu 1280, got:\n%s", out)
	}
	if after, _ := vif.XDPStatsOf(ia); after.TxXDP == before.TxXDP {
		t.Errorf("the big packet did not leave through AF_XDP: %+v", after)
	}
	if p := ia.Peers(); len(p) != 1 || p[0].PathMTU != 1240 {
		t.Errorf("peers %+v: want one with path MTU 1240", p)
	}
	// 1232 + 48 = 1280 bytes: more than the tunnel MTU, never refused:
	// outer fragments, through the raw socket.
	before, _ = vif.XDPStatsOf(ia)
	fragBefore := ia.Stats().Fragmented
	if out, err := ha.Run("ping", "-6", "-n", "-c", "2", "-i", "0.3", "-W", "2", "-M", "do", "-s", "1232", "2001:db8:b::1"); err != nil {
		t.Errorf("a 1280-byte IPv6 packet through the 1240-byte tunnel: %v\n%s", err, out)
	}
	after, _ := vif.XDPStatsOf(ia)
	if f := ia.Stats().Fragmented - fragBefore; f < 2 || after.TxRaw-before.TxRaw < 4 {
		t.Errorf("%d packets fragmented, %d through the raw socket; want 2 and 4 or more", f, after.TxRaw-before.TxRaw)
	}
	out, _ = ha.Run("ping", "-n", "-c", "2", "-i", "0.3", "-W", "2", "-M", "do", "-s", "1400", "198.51.100.1")
	if !strings.Contains(out, "mtu = 1240") {
		t.Errorf("ping -M do over the path: want fragmentation needed with mtu 1240, got:\n%s", out)
	}
	// Under the path MTU: AF_XDP, both ways.
	before, _ = vif.XDPStatsOf(ia)
	beforeB, _ := vif.XDPStatsOf(ib)
	if out, err := ha.Run("ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-s", "1100", "2001:db8:b::1"); err != nil {
		t.Errorf("ping under the path MTU: %v\n%s", err, out)
	}
	after, _ = vif.XDPStatsOf(ia)
	afterB, _ := vif.XDPStatsOf(ib)
	if after.TxXDP-before.TxXDP < 3 || afterB.RxXDP-beforeB.RxXDP < 3 {
		t.Errorf("a sent %d, b received %d through AF_XDP; want 3", after.TxXDP-before.TxXDP, afterB.RxXDP-beforeB.RxXDP)
	}
}

// TestXDPSharedPeerIPv6 is TestXDPSharedPeer over IPv6: two vifs on each
// end with the same IPv6 peer and local address, both on the slave's
// AF_XDP port, which leaves the shared peer's packets to the kernel,
// where both vifs' raw sockets get them, and steers them again once the
// other vif is gone.
func TestXDPSharedPeerIPv6(t *testing.T) {
	n := nstest.New(t)
	ha, hb := n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, bIf := n.Link(ha, hb, xdp6A.String()+"/64", xdp6B.String()+"/64")
	pfx := netip.MustParsePrefix
	up := func(h *nstest.Host, name, slave, addr string, peer netip.Addr, behind string) *vif.Interface {
		return upIn(t, h, vif.LinkConfig{Name: name, Slave: slave,
			Config: vif.Config{Addrs: []netip.Prefix{pfx(addr + "/32")},
				Peers: []vif.Peer{{Addr: peer, Prefixes: []netip.Prefix{pfx(behind + "/32")}}}}})
	}
	vv := up(ha, "vv", aIf.Name(), "192.0.2.50", xdp6B, "192.0.2.60")
	vw := up(ha, "vw", aIf.Name(), "192.0.2.51", xdp6B, "192.0.2.61")
	up(hb, "vv", bIf.Name(), "192.0.2.60", xdp6A, "192.0.2.50")
	up(hb, "vw", bIf.Name(), "192.0.2.61", xdp6A, "192.0.2.51")
	if u := vv.Underlay(); u.Kind != vif.UnderlayXDP || !strings.Contains(u.Shared, xdp6B.String()) || !strings.Contains(u.Shared, "vw") {
		t.Errorf("first vif's underlay %+v: want xdp, %s shared with vw", u, xdp6B)
	}
	if u := vw.Underlay(); u.Kind != vif.UnderlayXDP || u.Fallback != "" || !strings.Contains(u.Shared, "vv") {
		t.Errorf("second vif's underlay %+v: want xdp, %s shared with vv", u, xdp6B)
	}
	ping6Until(t, ha, xdp6B.String())
	for _, addr := range []string{"192.0.2.61", "192.0.2.60"} {
		if err := ha.Ping(addr, 3); err != nil {
			t.Fatalf("shared peer: ping %s: %v", addr, err)
		}
	}
	vw.Close()
	if u := vv.Underlay(); u.Shared != "" {
		t.Errorf("after the other vif closed: shared %q, want none", u.Shared)
	}
	before, _ := vif.XDPStatsOf(vv)
	if err := ha.Ping("192.0.2.60", 3); err != nil {
		t.Fatal(err)
	}
	after, _ := vif.XDPStatsOf(vv)
	if after.RxXDP-before.RxXDP < 3 {
		t.Errorf("the first vif received %d packets through AF_XDP, want 3 (%+v)", after.RxXDP-before.RxXDP, after)
	}
}
