package vif_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/nstest"
	"golang.org/x/sys/unix"
)

var (
	xdpA = netip.MustParseAddr("198.18.0.1")
	xdpB = netip.MustParseAddr("198.18.0.2")
)

// xdpPair opens XDP underlays in two namespaces joined by a veth, a
// sending to b and b to a, once the neighbours are resolved.
func xdpPair(tb testing.TB) (a, b *vif.XDPUnderlay) {
	return xdpPairMTU(tb, nil)
}

// openXDP opens the XDP underlay of the vif name on slave of h, for the
// protocol proto from local to peers; the test's cleanup closes it.
func openXDP(tb testing.TB, h *nstest.Host, name, slave string, proto uint8, local netip.Addr, pathMTU func(netip.Addr) (int, error), peers ...netip.Addr) *vif.XDPUnderlay {
	tb.Helper()
	var x *vif.XDPUnderlay
	if err := h.Do(func() error {
		ru, err := vif.ListenUnderlay(slave, proto, local)
		if err != nil {
			return err
		}
		x, err = vif.ListenXDP(name, slave, ru, proto, local, peers, pathMTU, nil)
		if err != nil {
			ru.Close()
		}
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { x.Close() })
	return x
}

// xdpPairMTU is xdpPair with the path MTU a's underlay is told.
func xdpPairMTU(tb testing.TB, pathMTU func(netip.Addr) (int, error)) (a, b *vif.XDPUnderlay) {
	tb.Helper()
	n := nstest.New(tb)
	ha, hb := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
	if err := ha.Ping("198.18.0.2", 1); err != nil {
		tb.Fatal(err)
	}
	return openXDP(tb, ha, "test", aIf.Name(), ipip.ProtoIPIP, xdpA, pathMTU, xdpB), openXDP(tb, hb, "test", bIf.Name(), ipip.ProtoIPIP, xdpB, nil, xdpA)
}

// xdpRoundTrip writes pkts (IPv4 outer packets) from a and reads them
// all at b.
func xdpRoundTrip(tb testing.TB, a, b vif.Underlay, pkts, rbufs [][]byte, sizes []int) {
	tb.Helper()
	roundTripAt(tb, a, b, pkts, rbufs, sizes, vif.Headroom-ipip.IPv4MinLen)
}

// roundTripAt writes pkts, their outer packets at offset, from a and
// reads them all at b.
func roundTripAt(tb testing.TB, a, b vif.Underlay, pkts, rbufs [][]byte, sizes []int, offset int) {
	tb.Helper()
	if k, err := a.Write(pkts, offset); err != nil || k != len(pkts) {
		tb.Fatalf("Write = %d, %v; want %d", k, err, len(pkts))
	}
	for got := 0; got < len(pkts); {
		k, err := b.Read(rbufs[got:], sizes[got:], vif.Headroom)
		if err != nil {
			tb.Fatal(err)
		}
		got += k
	}
}

// TestXDPUnderlay sends packets both ways through AF_XDP, checks they
// arrive whole, through AF_XDP and not the raw sockets, and that moving
// them does not allocate.
func TestXDPUnderlay(t *testing.T) {
	a, b := xdpPair(t)
	pkts, rbufs, sizes := underlayBatch(t, 32, 1400)
	xdpRoundTrip(t, a, b, pkts, rbufs, sizes)
	for k := range pkts {
		want := pkts[k][vif.Headroom-ipip.IPv4MinLen:]
		if got := rbufs[k][vif.Headroom : vif.Headroom+sizes[k]]; !bytes.Equal(got, want) {
			t.Fatalf("packet %d: got %d bytes, want %d, differing", k, len(got), len(want))
		}
	}
	if allocs := testing.AllocsPerRun(50, func() { xdpRoundTrip(t, a, b, pkts, rbufs, sizes) }); allocs != 0 {
		t.Errorf("%v allocations per batch of 32 packets, want 0", allocs)
	}
	sa, sb := a.Stats(), b.Stats()
	const want = (1 + 1 + 50) * 32 // AllocsPerRun warms up once
	if sa.TxXDP != want || sa.TxRaw != 0 || sb.RxXDP != want {
		t.Errorf("a sent %d through AF_XDP, %d raw; b received %d through AF_XDP; want %d, 0, %d", sa.TxXDP, sa.TxRaw, sb.RxXDP, want, want)
	}
	// An outer fragment goes through the kernel both ways.
	frags := make([][]byte, 2)
	for k := range frags {
		frags[k] = make([]byte, vif.Headroom+2048)
	}
	whole := ipip.IPv4(pkts[0][vif.Headroom-ipip.IPv4MinLen:])
	whole[6] &^= 0x40 // DF off
	whole.SetChecksum()
	n, err := ipip.Fragment(whole, 800, frags, vif.Headroom-ipip.IPv4MinLen)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := a.Write(frags[:n], vif.Headroom-ipip.IPv4MinLen); err != nil || k != n {
		t.Fatalf("Write of %d fragments = %d, %v", n, k, err)
	}
	if k, err := b.Read(rbufs[:1], sizes[:1], vif.Headroom); err != nil || k != 1 {
		t.Fatalf("Read of the reassembled packet = %d, %v", k, err)
	}
	if got := a.Stats().TxRaw; got != uint64(n) {
		t.Errorf("%d fragments through the raw socket, want %d", got, n)
	}
	if got := ipip.IPv4(rbufs[0][vif.Headroom : vif.Headroom+sizes[0]]); !bytes.Equal(got[20:], whole[20:]) || got.Src() != xdpA {
		t.Errorf("reassembled packet differs")
	}
	if d := b.Drops(); d != 0 {
		t.Errorf("drops %d", d)
	}
}

// TestXDPUnderlayPathMTU checks that Write refuses a packet larger than
// the kernel's path MTU with EMSGSIZE, as the raw socket does, after the
// packets before it.
func TestXDPUnderlayPathMTU(t *testing.T) {
	a, _ := xdpPairMTU(t, func(netip.Addr) (int, error) { return 1000, nil })
	pkts, _, _ := underlayBatch(t, 3, 1400)
	small, _, _ := underlayBatch(t, 1, 500)
	k, err := a.Write(append(small, pkts...), vif.Headroom-ipip.IPv4MinLen)
	if k != 1 || !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("Write = %d, %v; want 1, EMSGSIZE", k, err)
	}
}

// BenchmarkXDPUnderlay is BenchmarkRawUnderlay through AF_XDP.
func BenchmarkXDPUnderlay(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(map[int]string{64: "size=64", 1400: "size=1400"}[size], func(b *testing.B) {
			ua, ub := xdpPair(b)
			pkts, rbufs, sizes := underlayBatch(b, 64, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for done := 0; done < b.N; done += len(pkts) {
				n := min(len(pkts), b.N-done)
				xdpRoundTrip(b, ua, ub, pkts[:n], rbufs[:n], sizes[:n])
			}
		})
	}
}

// xdpTunnel brings up vifs on a and b tunnelling to each other over the
// link between them, with the underlay u.
func xdpTunnel(t *testing.T, u string, mtu int) (ha, hb *nstest.Host, ia, ib *vif.Interface) {
	t.Helper()
	n := nstest.New(t)
	ha, hb = n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
	ia = upIn(t, ha, vif.LinkConfig{Name: "vif0", Slave: aIf.Name(), Underlay: u, MTU: mtu,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: xdpB},
		Routes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	ib = upIn(t, hb, vif.LinkConfig{Name: "vif0", Slave: bIf.Name(), Underlay: u,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32")}, Peer: xdpA},
		Routes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	return ha, hb, ia, ib
}

// upIn brings a vif up in h; Close at cleanup.
func upIn(t *testing.T, h *nstest.Host, cfg vif.LinkConfig) *vif.Interface {
	t.Helper()
	ifc, err := upErr(h, cfg)
	if err != nil {
		t.Fatalf("vif on %v: %v", h, err)
	}
	t.Cleanup(func() { ifc.Close() })
	return ifc
}

func upErr(h *nstest.Host, cfg vif.LinkConfig) (ifc *vif.Interface, err error) {
	err = h.Do(func() (err error) {
		ifc, err = vif.Up(&cfg)
		return err
	})
	return ifc, err
}

// TestXDPTunnel pings and moves a TCP stream through a tunnel whose both
// ends are on AF_XDP, checks by the counters that the packets took it,
// and that Close leaves no program, socket or map behind.
func TestXDPTunnel(t *testing.T) {
	ha, hb, ia, ib := xdpTunnel(t, vif.UnderlayXDP, 0)
	for _, i := range []*vif.Interface{ia, ib} {
		if got := i.Underlay(); got != (vif.UnderlayInfo{Kind: vif.UnderlayXDP}) {
			t.Fatalf("underlay %+v, want xdp", got)
		}
	}
	if err := ha.Ping("198.51.100.1", 3); err != nil {
		t.Fatalf("ping through the tunnel: %v", err)
	}

	// A TCP stream from a to b, checked by its hash.
	const size = 8 << 20
	var ln net.Listener
	if err := hb.Do(func() (err error) {
		ln, err = net.Listen("tcp4", "198.51.100.1:5001")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	var conn net.Conn
	if err := ha.Do(func() (err error) {
		conn, err = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP{192, 0, 2, 1}}, Timeout: 5 * time.Second}).Dial("tcp4", "198.51.100.1:5001")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	rand.Read(data)
	if _, err := conn.Write(data); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case h := <-got:
		if h != sha256.Sum256(data) {
			t.Fatal("the stream arrived changed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not arrive")
	}

	sa, _ := vif.XDPStatsOf(ia)
	sb, _ := vif.XDPStatsOf(ib)
	t.Logf("a: %+v", sa)
	t.Logf("b: %+v", sb)
	// 8 MB are some 6000 segments; what the kernel carried instead is the
	// first packet, while the neighbour was unknown, and a nudge now and
	// then to keep its entry fresh.
	if sa.TxXDP < 5000 || sb.RxXDP < 5000 || sb.TxXDP < 20 || sa.RxXDP < 20 { // b sends ACKs, few with GRO
		t.Errorf("too little through AF_XDP: a %+v, b %+v", sa, sb)
	}
	if sa.TxRaw > 10 || sb.TxRaw > 10 {
		t.Errorf("too much through the raw sockets: a %d, b %d", sa.TxRaw, sb.TxRaw)
	}
	if s := ib.Stats(); s.Dropped() != 0 {
		t.Errorf("b dropped %v", s.Drops)
	}

	// The steering follows the peers: removed, a's packets are not b's
	// (nor steered); set again, they take AF_XDP again.
	if err := ib.RemovePeer(xdpA); err != nil {
		t.Fatal(err)
	}
	if err := ib.SetPeer(vif.Peer{Addr: xdpA, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}); err != nil {
		t.Fatal(err)
	}
	before, _ := vif.XDPStatsOf(ib)
	if err := ha.Ping("198.51.100.1", 3); err != nil {
		t.Fatalf("ping after the peer was set again: %v", err)
	}
	after, _ := vif.XDPStatsOf(ib)
	if after.RxXDP-before.RxXDP < 3 || after.RxRaw != before.RxRaw {
		t.Errorf("b received %d through AF_XDP, %d raw after SetPeer; want 3, 0", after.RxXDP-before.RxXDP, after.RxRaw-before.RxRaw)
	}

	ia.Close()
	ib.Close()
	checkNoXDP(t, ha, hb)
}

// checkNoXDP checks that the hosts' interfaces have no XDP program, that
// this process has no AF_XDP socket, and no BPF map, program or link
// open.
func checkNoXDP(t *testing.T, hosts ...*nstest.Host) {
	t.Helper()
	for _, h := range hosts {
		if out := h.MustRun("ip", "-d", "link", "show"); strings.Contains(out, "xdp") {
			t.Errorf("%v: an XDP program is left:\n%s", h, out)
		}
	}
	// ss -f xdp needs the xsk_diag module: look at this process's
	// descriptors instead.
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil && d == unix.AF_XDP {
			t.Errorf("an AF_XDP socket is left open (descriptor %d)", fd)
		}
	}
	// The kernel's maps and programs are shared by every process of the
	// machine (go test runs packages in parallel): look at this
	// process's descriptors, which hold all it made.
	if n := bpfObjects(); n != 0 {
		t.Errorf("%d BPF maps, programs or links are left open", n)
	}
}

// bpfObjects counts this process's descriptors of BPF maps, programs and
// links.
func bpfObjects() int {
	n := 0
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, e := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "anon_inode:bpf-") {
			n++
		}
	}
	return n
}

// TestXDPFallback forces each reason the XDP underlay cannot carry a
// tunnel, or some of its packets, and checks that UnderlayAuto falls back
// to the raw sockets and says why, that UnderlayXDP fails, and that the
// packets still arrive.
func TestXDPFallback(t *testing.T) {
	t.Run("another XDP program", func(t *testing.T) {
		n := nstest.New(t)
		ha, hb := n.Host("a"), n.Host("b")
		aIf, _ := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "MIT",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		var l link.Link
		if err := ha.Do(func() (err error) {
			l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifIndexIn(t, ha, aIf.Name())})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		cfg := vif.LinkConfig{Name: "vif0", Slave: aIf.Name(),
			Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: xdpB}}
		ifc := upIn(t, ha, cfg)
		if u := ifc.Underlay(); u.Kind != vif.UnderlayRaw || !strings.Contains(u.Fallback, "another XDP program") {
			t.Errorf("underlay %+v, want raw because of another XDP program", u)
		}
		ifc.Close()
		cfg.Underlay = vif.UnderlayXDP
		if _, err := upErr(ha, cfg); !errors.Is(err, vif.ErrBadUnderlay) || !strings.Contains(err.Error(), "another XDP program") {
			t.Errorf("Up with xdp forced: %v, want ErrBadUnderlay, another XDP program", err)
		}
	})

	t.Run("peer not resolvable", func(t *testing.T) {
		n := nstest.New(t)
		ha, hb := n.Host("a"), n.Host("b")
		aIf, _ := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
		nobody := netip.MustParseAddr("198.18.0.99")
		ifc := upIn(t, ha, vif.LinkConfig{Name: "vif0", Slave: aIf.Name(), Underlay: vif.UnderlayXDP,
			Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: nobody},
			Routes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
		ha.Run("ping", "-c", "2", "-i", "0.2", "-W", "1", "198.51.100.1") // nobody answers
		s, _ := vif.XDPStatsOf(ifc)
		if s.TxRaw == 0 || s.TxXDP != 0 {
			t.Errorf("%+v: want the packets through the raw socket", s)
		}
		if why := vif.XDPHopOf(ifc, nobody.As4()); !strings.Contains(why, "not resolved") {
			t.Errorf("next hop: %q, want not resolved", why)
		}
	})

	t.Run("peer on this host", func(t *testing.T) {
		n := nstest.New(t)
		ha, hb := n.Host("a"), n.Host("b")
		aIf, _ := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
		ha.AddAddr("lo", "198.18.1.1/32")
		self := netip.MustParseAddr("198.18.1.1")
		ifc := upIn(t, ha, vif.LinkConfig{Name: "vif0", Slave: aIf.Name(), Underlay: vif.UnderlayXDP,
			Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: self},
			Routes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
		ha.Run("ping", "-c", "2", "-i", "0.2", "-W", "1", "198.51.100.1")
		s, _ := vif.XDPStatsOf(ifc)
		if s.TxRaw == 0 || s.TxXDP != 0 {
			t.Errorf("%+v: want the packets through the raw socket", s)
		}
		if why := vif.XDPHopOf(ifc, self.As4()); why != "peer is an address of this host" {
			t.Errorf("next hop: %q, want the peer is an address of this host", why)
		}
	})

	t.Run("peer behind another interface", func(t *testing.T) {
		n := nstest.New(t)
		ha, hb, hc := n.Host("a"), n.Host("b"), n.Host("c")
		aIf, _ := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
		n.Link(ha, hc, "198.18.2.1/24", "198.18.2.2/24")
		other := netip.MustParseAddr("198.18.2.2")
		ifc := upIn(t, ha, vif.LinkConfig{Name: "vif0", Slave: aIf.Name(), Underlay: vif.UnderlayXDP,
			Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: other},
			Routes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
		if why := vif.XDPHopOf(ifc, other.As4()); why != "peer is reached through another interface" {
			t.Errorf("next hop: %q, want the peer is reached through another interface", why)
		}
	})

	t.Run("fragments", func(t *testing.T) {
		ha, _, ia, ib := xdpTunnel(t, vif.UnderlayAuto, 3000)
		ha.MustRun("ping", "-c", "1", "-W", "2", "198.51.100.1") // resolves the next hops
		before, _ := vif.XDPStatsOf(ia)
		// 2500 bytes without DF through a vif of MTU 3000 on a path
		// of 1500: the loop sends outer fragments,
		// through the raw socket; b's kernel reassembles them for its
		// raw socket (the program passes fragments on).
		if out, err := ha.Run("ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "dont", "-s", "2500", "198.51.100.1"); err != nil {
			t.Fatalf("large ping: %v\n%s", err, out)
		}
		after, _ := vif.XDPStatsOf(ia)
		if after.TxRaw-before.TxRaw < 4 {
			t.Errorf("%d fragments through the raw socket, want 4 or more", after.TxRaw-before.TxRaw)
		}
		if s := ia.Stats(); s.Fragmented < 2 {
			t.Errorf("a fragmented %d packets, want 2", s.Fragmented)
		}
		_ = ib
	})
}

// ifIndexIn returns the index of interface name in h.
func ifIndexIn(t *testing.T, h *nstest.Host, name string) int {
	t.Helper()
	l, err := h.Netlink().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// TestXDPPathMTU sends a packet too large for a router on the way
// through AF_XDP: the router's "fragmentation needed" reaches the kernel
// (the program passes ICMP on), the tunnel adopts the path MTU and tells
// the sender, as on raw sockets; smaller packets still take AF_XDP, through
// a next hop that is a router.
func TestXDPPathMTU(t *testing.T) {
	n := nstest.New(t)
	ha, hr, hb := n.Host("a"), n.Host("r"), n.Host("b")
	aIf, _ := n.Link(ha, hr, "198.18.0.1/24", "198.18.0.254/24")
	_, bIf := n.Link(hr, hb, "198.18.1.254/24", "198.18.1.2/24", nstest.WithMTU(1200))
	hr.Sysctl("net.ipv4.ip_forward", "1")
	ha.AddRoute("198.18.1.0/24", "via", "198.18.0.254")
	hb.AddRoute("198.18.0.0/24", "via", "198.18.1.254")
	peerB := netip.MustParseAddr("198.18.1.2")
	ia := upIn(t, ha, vif.LinkConfig{Name: "vif0", Slave: aIf.Name(), Underlay: vif.UnderlayXDP,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: peerB},
		Routes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	upIn(t, hb, vif.LinkConfig{Name: "vif0", Slave: bIf.Name(), Underlay: vif.UnderlayXDP,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32")}, Peer: xdpA},
		Routes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err := ha.Ping("198.51.100.1", 1); err != nil { // resolves the router
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for vif.XDPHopOf(ia, peerB.As4()) != "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if why := vif.XDPHopOf(ia, peerB.As4()); why != "" {
		t.Fatalf("next hop towards b through the router: %q", why)
	}
	before, _ := vif.XDPStatsOf(ia)
	out, _ := ha.Run("ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1400", "198.51.100.1")
	if !strings.Contains(out, "mtu = 1180") {
		t.Fatalf("a DF packet too big for the path: want fragmentation needed, mtu = 1180; ping says\n%s", out)
	}
	after, _ := vif.XDPStatsOf(ia)
	if after.TxXDP == before.TxXDP {
		t.Errorf("the big packet did not leave through AF_XDP: %+v", after)
	}
	if out, err := ha.Run("ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1100", "198.51.100.1"); err != nil {
		t.Errorf("ping under the path MTU: %v\n%s", err, out)
	}
	// (The sender's kernel learnt 1180 too: it fragments the inner
	// packets itself.)
	if out, err := ha.Run("ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "dont", "-s", "1400", "198.51.100.1"); err != nil {
		t.Errorf("ping over the path MTU without DF: %v\n%s", err, out)
	}
}

// TestXDPSetLocal renumbers b's end of the tunnel: the steering follows
// the new local address, and the packets keep taking AF_XDP.
func TestXDPSetLocal(t *testing.T) {
	ha, hb, ia, ib := xdpTunnel(t, vif.UnderlayXDP, 0)
	if err := ha.Ping("198.51.100.1", 1); err != nil {
		t.Fatal(err)
	}
	newB := netip.MustParseAddr("198.18.0.12")
	hb.AddAddr(ib.Link().Slave, "198.18.0.12/24")
	if err := hb.Do(func() error { return ib.SetLocal(newB) }); err != nil {
		t.Fatal(err)
	}
	if err := ia.RemovePeer(xdpB); err != nil {
		t.Fatal(err)
	}
	if err := ia.SetPeer(vif.Peer{Addr: newB, Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}); err != nil {
		t.Fatal(err)
	}
	before, _ := vif.XDPStatsOf(ib)
	if err := ha.Ping("198.51.100.1", 3); err != nil {
		t.Fatalf("ping after b was renumbered: %v", err)
	}
	after, _ := vif.XDPStatsOf(ib)
	if after.RxXDP-before.RxXDP < 3 || after.RxRaw != before.RxRaw {
		t.Errorf("b received %d through AF_XDP, %d raw after SetLocal; want 3, 0", after.RxXDP-before.RxXDP, after.RxRaw-before.RxRaw)
	}
}

// TestXDPOnTheWire looks at what the AF_XDP underlay puts on the wire
// from the bridge of a segment (tcpdump on a slave does not see AF_XDP
// traffic): IPIP frames between the slaves' MACs, the Ethernet header
// built from the neighbour table.
func TestXDPOnTheWire(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("needs tcpdump")
	}
	n := nstest.New(t)
	seg := n.Segment()
	ha, hb := n.Host("a"), n.Host("b")
	aIf := seg.Attach(ha, "198.18.0.1/24")
	bIf := seg.Attach(hb, "198.18.0.2/24")
	ia := upIn(t, ha, vif.LinkConfig{Name: "vif0", Slave: aIf.Name(), Underlay: vif.UnderlayXDP,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: xdpB},
		Routes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	ib := upIn(t, hb, vif.LinkConfig{Name: "vif0", Slave: bIf.Name(), Underlay: vif.UnderlayXDP,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32")}, Peer: xdpA},
		Routes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err := ha.Ping("198.51.100.1", 1); err != nil { // resolves the neighbours
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the next hops followed

	aMAC := aIf.MAC()
	wireCheck(t, seg, ha, ia, aMAC, bIf.MAC())

	// The slave's MAC changes: the frames follow it.
	aMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01}
	ha.MustRun("ip", "link", "set", "dev", aIf.Name(), "address", aMAC.String())
	hb.MustRun("ip", "neigh", "replace", "198.18.0.1", "lladdr", aMAC.String(), "dev", bIf.Name())
	// The kernel flushes the slave's neighbours with its MAC: the first
	// packet goes through the kernel, which resolves b again.
	if err := ha.Ping("198.51.100.1", 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	wireCheck(t, seg, ha, ia, aMAC, bIf.MAC())
	_ = ib
}

// wireCheck pings through the tunnel from ha, whose vif is ia, and checks
// on the segment's bridge that three echo requests went from aMAC to
// bMAC in IPIP, and three replies back, all through AF_XDP.
func wireCheck(t *testing.T, seg *nstest.Segment, ha *nstest.Host, ia *vif.Interface, aMAC, bMAC net.HardwareAddr) {
	t.Helper()
	file := t.TempDir() + "/wire.pcap"
	cmd := exec.Command("ip", "netns", "exec", seg.Netns(), "tcpdump", "-i", "br0", "-n", "-U", "--immediate-mode", "-Z", "root", "-w", file, "ip proto 94")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ready := make(chan struct{})
	go func() {
		buf := make([]byte, 512)
		var seen []byte
		for {
			k, err := stderr.Read(buf)
			seen = append(seen, buf[:k]...)
			if bytes.Contains(seen, []byte("listening on")) {
				close(ready)
				io.Copy(io.Discard, stderr)
				return
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump on the segment did not start")
	}
	before, _ := vif.XDPStatsOf(ia)
	if err := ha.Ping("198.51.100.1", 3); err != nil {
		t.Fatalf("ping through the tunnel: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	after, _ := vif.XDPStatsOf(ia)
	if after.TxXDP-before.TxXDP != 3 || after.RxXDP-before.RxXDP != 3 {
		t.Errorf("a sent %d and received %d through AF_XDP, want 3 and 3", after.TxXDP-before.TxXDP, after.RxXDP-before.RxXDP)
	}

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out, back int
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if eth == nil || ip == nil {
			continue
		}
		switch {
		case bytes.Equal(eth.SrcMAC, aMAC) && bytes.Equal(eth.DstMAC, bMAC) && ip.SrcIP.Equal(xdpA.AsSlice()) && ip.DstIP.Equal(xdpB.AsSlice()):
			out++
		case bytes.Equal(eth.SrcMAC, bMAC) && bytes.Equal(eth.DstMAC, aMAC) && ip.SrcIP.Equal(xdpB.AsSlice()) && ip.DstIP.Equal(xdpA.AsSlice()):
			back++
		default:
			t.Errorf("unexpected frame on the wire: %v", p)
		}
	}
	if out != 3 || back != 3 {
		t.Errorf("on the wire: %d IPIP frames a→b and %d b→a, want 3 and 3", out, back)
	}
}

// TestXDPKilled kills a process with a vif on AF_XDP (SIGKILL: no Close)
// and checks that the kernel took the program off the slave with the
// process's descriptors: nothing is pinned, nothing stays attached.
func TestXDPKilled(t *testing.T) {
	n := nstest.New(t)
	ha, hb := n.Host("a"), n.Host("b")
	aIf, _ := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
	cmd := exec.Command("ip", "netns", "exec", ha.Netns(), os.Args[0], "-test.run=^TestXDPKilledHelper$")
	cmd.Env = append(os.Environ(), "VIF_XDP_HELPER_SLAVE="+aIf.Name())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	up := make(chan bool, 1)
	go func() {
		buf := make([]byte, 4096)
		var seen []byte
		for {
			k, err := out.Read(buf)
			seen = append(seen, buf[:k]...)
			if bytes.Contains(seen, []byte("vif up on xdp\n")) {
				up <- true
				io.Copy(io.Discard, out)
				return
			}
			if err != nil {
				t.Logf("helper: %s", seen)
				up <- false
				return
			}
		}
	}()
	select {
	case ok := <-up:
		if !ok {
			t.Fatal("the helper did not bring its vif up on AF_XDP")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the helper did not bring its vif up")
	}
	if got := ha.MustRun("ip", "-d", "link", "show", aIf.Name()); !strings.Contains(got, "prog/xdp") {
		t.Fatalf("no XDP program on the slave while the vif runs:\n%s", got)
	}
	cmd.Process.Kill() // SIGKILL: no Close
	cmd.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := ha.MustRun("ip", "-d", "link", "show", aIf.Name())
		if !strings.Contains(got, "xdp") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an XDP program is left on the slave after SIGKILL:\n%s", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestXDPKilledHelper is the process TestXDPKilled kills.
func TestXDPKilledHelper(t *testing.T) {
	slave := os.Getenv("VIF_XDP_HELPER_SLAVE")
	if slave == "" {
		t.Skip("run by TestXDPKilled")
	}
	ifc, err := vif.Up(&vif.LinkConfig{Name: "vif0", Slave: slave, Underlay: vif.UnderlayXDP,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: xdpB}})
	if err != nil {
		t.Fatal(err)
	}
	defer ifc.Close()
	os.Stdout.WriteString("vif up on xdp\n")
	time.Sleep(time.Minute)
}

// BenchmarkUnderlayPingPong measures one packet's round trip between two
// namespaces, a to b and back, on each underlay: the latency a ping
// through the tunnel adds, without the TUN.
func BenchmarkUnderlayPingPong(b *testing.B) {
	for _, kind := range []string{"raw", "xdp"} {
		b.Run(kind, func(b *testing.B) {
			var ua, ub vif.Underlay
			if kind == "raw" {
				ua, ub = underlayPair(b)
			} else {
				ua, ub = xdpPair(b)
			}
			ping, rbufs, sizes := underlayBatch(b, 1, 64)
			e := &ipip.Encapsulator{Src: xdpB, Dst: xdpA}
			pong := make([]byte, len(ping[0]))
			copy(pong[vif.Headroom:], ping[0][vif.Headroom:])
			if _, err := e.Encap(pong, vif.Headroom); err != nil {
				b.Fatal(err)
			}
			pongs := [][]byte{pong}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				xdpRoundTrip(b, ua, ub, ping, rbufs, sizes)
				xdpRoundTrip(b, ub, ua, pongs, rbufs, sizes)
			}
		})
	}
}

// TestXDPJumbo pings with packets larger than an AF_XDP frame through a
// tunnel over a slave of MTU 9000, both ends on AF_XDP: the program
// passes them to the kernel, where the raw sockets receive them, instead
// of steering them to the socket, which would drop them. Small packets
// still take AF_XDP.
func TestXDPJumbo(t *testing.T) {
	n := nstest.New(t)
	ha, hb := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24", nstest.WithMTU(9000))
	ia := upIn(t, ha, vif.LinkConfig{Name: "vif0", Slave: aIf.Name(), Underlay: vif.UnderlayXDP,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: xdpB},
		Routes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	ib := upIn(t, hb, vif.LinkConfig{Name: "vif0", Slave: bIf.Name(), Underlay: vif.UnderlayXDP,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32")}, Peer: xdpA},
		Routes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err := ha.Ping("198.51.100.1", 3); err != nil {
		t.Fatalf("small ping through the tunnel: %v", err)
	}
	small, _ := vif.XDPStatsOf(ib)
	if small.RxXDP < 2 {
		t.Errorf("b received %+v after small pings: want them through AF_XDP", small)
	}
	out, err := ha.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-M", "do", "-s", "8000", "198.51.100.1")
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping -s 8000 through the tunnel: %v\n%s", err, out)
	}
	sa, _ := vif.XDPStatsOf(ia)
	sb, _ := vif.XDPStatsOf(ib)
	t.Logf("a: %+v", sa)
	t.Logf("b: %+v", sb)
	if sb.RxRaw-small.RxRaw < 3 || sa.RxRaw < 3 {
		t.Errorf("the large packets did not come through the raw sockets: a %+v, b %+v", sa, sb)
	}
	if sa.Dropped != 0 || sb.Dropped != 0 {
		t.Errorf("AF_XDP sockets dropped packets: a %d, b %d", sa.Dropped, sb.Dropped)
	}
	// Small packets still take AF_XDP.
	if err := ha.Ping("198.51.100.1", 3); err != nil {
		t.Fatalf("small ping after the large ones: %v", err)
	}
	after, _ := vif.XDPStatsOf(ib)
	if after.RxXDP-sb.RxXDP < 3 {
		t.Errorf("b received %d small packets through AF_XDP, want 3 (%+v)", after.RxXDP-sb.RxXDP, after)
	}
}

// TestXDPSharedPeer brings up two vifs on each end of a link, with the
// same peer, local address and protocol, both on the slave's AF_XDP port.
// The program must leave the shared peer's packets to the kernel, where
// both vifs' raw sockets get them, or one vif receives nothing; and it
// must follow either vif's peers, and their coming and going.
func TestXDPSharedPeer(t *testing.T) {
	n := nstest.New(t)
	ha, hb := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
	pfx := netip.MustParsePrefix
	up := func(h *nstest.Host, name, slave, addr string, peer netip.Addr, behind string) *vif.Interface {
		return upIn(t, h, vif.LinkConfig{Name: name, Slave: slave,
			Config: vif.Config{Addrs: []netip.Prefix{pfx(addr + "/32")},
				Peers: []vif.Peer{{Addr: peer, Prefixes: []netip.Prefix{pfx(behind + "/32")}}}}})
	}
	vv := up(ha, "vv", aIf.Name(), "192.0.2.50", xdpB, "192.0.2.60")
	vw := up(ha, "vw", aIf.Name(), "192.0.2.51", xdpB, "192.0.2.61")
	up(hb, "vv", bIf.Name(), "192.0.2.60", xdpA, "192.0.2.50")
	up(hb, "vw", bIf.Name(), "192.0.2.61", xdpA, "192.0.2.51")
	if u := vv.Underlay(); u.Kind != vif.UnderlayXDP || !strings.Contains(u.Shared, "198.18.0.2") || !strings.Contains(u.Shared, "vw") {
		t.Errorf("first vif's underlay %+v: want xdp, 198.18.0.2 shared with vw", u)
	}
	if u := vw.Underlay(); u.Kind != vif.UnderlayXDP || u.Fallback != "" || !strings.Contains(u.Shared, "vv") {
		t.Errorf("second vif's underlay %+v: want xdp, 198.18.0.2 shared with vv", u)
	}
	ping := func(what, addr string) {
		t.Helper()
		if err := ha.Ping(addr, 3); err != nil {
			t.Fatalf("%s: ping %s: %v", what, addr, err)
		}
	}
	ping("shared peer", "192.0.2.61")
	ping("shared peer", "192.0.2.60")

	// The second vif drops the peer: the first steers its packets to
	// AF_XDP again.
	if err := vw.RemovePeer(xdpB); err != nil {
		t.Fatal(err)
	}
	if u := vv.Underlay(); u.Shared != "" {
		t.Errorf("after the other vif removed the peer: shared %q, want none", u.Shared)
	}
	before, _ := vif.XDPStatsOf(vv)
	ping("peer not shared", "192.0.2.60")
	after, _ := vif.XDPStatsOf(vv)
	if after.RxXDP-before.RxXDP < 3 {
		t.Errorf("the first vif received %d packets through AF_XDP, want 3 (%+v)", after.RxXDP-before.RxXDP, after)
	}
	// Set again, shared again.
	if err := vw.SetPeer(vif.Peer{Addr: xdpB, Prefixes: []netip.Prefix{pfx("192.0.2.61/32")}}); err != nil {
		t.Fatal(err)
	}
	if u := vv.Underlay(); !strings.Contains(u.Shared, "vw") {
		t.Errorf("after the other vif set the peer again: shared %q, want with vw", u.Shared)
	}
	ping("peer shared again", "192.0.2.61")

	// The first goes: the other has the peer alone, steered to it
	// through AF_XDP; a new vif shares it again, and both leave it to
	// the kernel.
	vv.Close()
	if u := vw.Underlay(); u.Kind != vif.UnderlayXDP || u.Shared != "" {
		t.Errorf("after the first vif closed: %+v, want xdp, nothing shared", u)
	}
	before, _ = vif.XDPStatsOf(vw)
	ping("after the first closed", "192.0.2.61")
	after, _ = vif.XDPStatsOf(vw)
	if after.RxXDP-before.RxXDP < 3 {
		t.Errorf("the other vif received %d packets through AF_XDP after the first closed, want 3 (%+v)", after.RxXDP-before.RxXDP, after)
	}
	vx := up(ha, "vx", aIf.Name(), "192.0.2.50", xdpB, "192.0.2.60")
	if u := vx.Underlay(); u.Kind != vif.UnderlayXDP || !strings.Contains(u.Shared, "vw") {
		t.Errorf("new vif's underlay %+v: want xdp, shared with vw", u)
	}
	if u := vw.Underlay(); !strings.Contains(u.Shared, "vx") {
		t.Errorf("other vif's underlay %+v: want shared with vx", u)
	}
	ping("with a new vif", "192.0.2.61")
	ping("with a new vif", "192.0.2.60")

	// The other vif goes: the new one steers the peer's packets.
	vw.Close()
	if u := vx.Underlay(); u.Shared != "" {
		t.Errorf("after the other vif closed: shared %q, want none", u.Shared)
	}
	before, _ = vif.XDPStatsOf(vx)
	ping("alone", "192.0.2.60")
	after, _ = vif.XDPStatsOf(vx)
	if after.RxXDP-before.RxXDP < 3 {
		t.Errorf("the remaining vif received %d packets through AF_XDP, want 3 (%+v)", after.RxXDP-before.RxXDP, after)
	}
}

// TestXDPSharedPeerRaw is TestXDPSharedPeer with the second vif on raw
// sockets by choice (UnderlayRaw), brought up before the one on AF_XDP: the
// program leaves their shared peer to the kernel all the same.
func TestXDPSharedPeerRaw(t *testing.T) {
	n := nstest.New(t)
	ha, hb := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
	pfx := netip.MustParsePrefix
	up := func(h *nstest.Host, name, slave, u, addr string, peer netip.Addr, behind string) *vif.Interface {
		return upIn(t, h, vif.LinkConfig{Name: name, Slave: slave, Underlay: u,
			Config: vif.Config{Addrs: []netip.Prefix{pfx(addr + "/32")},
				Peers: []vif.Peer{{Addr: peer, Prefixes: []netip.Prefix{pfx(behind + "/32")}}}}})
	}
	vr := up(ha, "vr", aIf.Name(), vif.UnderlayRaw, "192.0.2.51", xdpB, "192.0.2.61")
	vv := up(ha, "vv", aIf.Name(), vif.UnderlayXDP, "192.0.2.50", xdpB, "192.0.2.60")
	up(hb, "vv", bIf.Name(), vif.UnderlayXDP, "192.0.2.60", xdpA, "192.0.2.50")
	up(hb, "vr", bIf.Name(), vif.UnderlayRaw, "192.0.2.61", xdpA, "192.0.2.51")
	if u := vv.Underlay(); u.Kind != vif.UnderlayXDP || !strings.Contains(u.Shared, "vr") {
		t.Errorf("the AF_XDP vif's underlay %+v: want xdp, shared with vr", u)
	}
	for _, addr := range []string{"192.0.2.61", "192.0.2.60"} {
		if err := ha.Ping(addr, 3); err != nil {
			t.Fatalf("ping %s: %v", addr, err)
		}
	}
	// The steering follows either's local address.
	ha.AddAddr(aIf.Name(), "198.18.0.5/24")
	other := netip.MustParseAddr("198.18.0.5")
	if err := ha.Do(func() error { return vr.SetLocal(other) }); err != nil {
		t.Fatal(err)
	}
	if u := vv.Underlay(); u.Shared != "" {
		t.Errorf("after the other vif moved to %s: shared %q, want none", other, u.Shared)
	}
	if err := ha.Do(func() error { return vv.SetLocal(other) }); err != nil {
		t.Fatal(err)
	}
	if u := vv.Underlay(); !strings.Contains(u.Shared, "vr") {
		t.Errorf("after the AF_XDP vif moved to %s too: shared %q, want with vr", other, u.Shared)
	}
}
