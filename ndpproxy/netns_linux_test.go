//go:build linux

package ndpproxy_test

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"

	"github.com/vif-project/vif/ndpproxy"
	"github.com/vif-project/vif/vif/nstest"
)

// TestNamespace runs a Responder (Listen) on one end of a veth pair
// between two fresh network namespaces, a (the responder's host) and b (a
// neighbour), and checks from b, with the kernel's own neighbour
// resolution, ping and a packet socket, what RFC 4861 asks of it.
//
// a serves 2001:db8::10, which is configured on a TUN device of a (as a
// vif address is), and 2001:db8::20, which is
// configured nowhere. Linux answers solicitations only for addresses of
// the interface they arrive on, so the kernel of a never answers for
// either on its veth: the test shows it before the Responder starts.
// Every advertisement for them on the wire must come from the Responder
// (source: a's link-local address, the Responder's counters).
func TestNamespace(t *testing.T) {
	n := nstest.New(t) // skips unless root
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		t.Skip("requires IPv6 in the kernel")
	}
	a, b := n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	for _, h := range []*nstest.Host{a, b} {
		// Addresses usable at once, not tentative for a second.
		h.Sysctl("net.ipv6.conf.default.accept_dad", "0")
		h.Sysctl("net.ipv6.conf.all.accept_dad", "0")
	}
	aIf, bIf := n.Link(a, b, "", "2001:db8::2/64")
	// Neighbour resolution gives up after 3 solicitations 100 ms apart.
	b.Sysctl("net.ipv6.neigh."+bIf.Name()+".retrans_time_ms", "100")
	// A TUN device with no process behind it, as a vif's would be.
	a.MustRun("ip", "tuntap", "add", "dev", "vif0", "mode", "tun")
	a.MustRun("ip", "link", "set", "vif0", "up")
	a.AddAddr("vif0", "2001:db8::10/128")
	a.AddRoute("2001:db8::/64", "dev", aIf.Name())
	vifAddr := netip.MustParseAddr("2001:db8::10")
	published := netip.MustParseAddr("2001:db8::20")
	bAddr := bIf.Addr()

	capture := bIf.Capture("icmp6")

	// Without the Responder, nobody answers for the vif address.
	if err := b.Ping(vifAddr.String(), 1); err == nil {
		t.Fatalf("ping %v answered before the Responder publishes it: the kernel answers for it", vifAddr)
	}
	if mac := b.NeighborMAC(vifAddr.String()); mac != nil {
		t.Fatalf("b resolved %v to %v before the Responder publishes it", vifAddr, mac)
	}
	b.MustRun("ip", "-6", "neigh", "flush", "dev", bIf.Name())

	var (
		r    *ndpproxy.Responder
		aLL  netip.Addr
		rErr error
	)
	if err := a.Do(func() error {
		ifi, err := net.InterfaceByName(aIf.Name())
		if err != nil {
			return err
		}
		r, rErr = ndpproxy.Listen(ifi, &ndpproxy.Config{
			AnnounceInterval: 100 * time.Millisecond,
			Logger:           slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		return rErr
	}); err != nil {
		t.Fatalf("Listen in %v: %v", a, err)
	}
	t.Cleanup(func() { r.Close() })
	aLL = r.SourceAddr()
	if !aLL.IsLinkLocalUnicast() || !slices.ContainsFunc(a.Addrs(aIf.Name()), func(s string) bool { return strings.HasPrefix(s, aLL.String()+"/") }) {
		t.Fatalf("advertisements sent from %v, not a link-local address of %v (%v)", aLL, aIf, a.Addrs(aIf.Name()))
	}
	for _, addr := range []netip.Addr{vifAddr, published} {
		if err := r.Add(addr); err != nil {
			t.Fatalf("Add(%v): %v", addr, err)
		}
	}

	t.Run("groups joined", func(t *testing.T) {
		out := a.MustRun("ip", "-6", "maddr", "show", "dev", aIf.Name())
		for _, addr := range []netip.Addr{vifAddr, published} {
			if g := ndpproxy.SolicitedNode(addr).String(); !strings.Contains(out, g) {
				t.Errorf("%v has not joined %v:\n%s", aIf, g, out)
			}
		}
		if s := r.Stats(); s.Groups != 2 {
			t.Errorf("Stats.Groups = %d, want 2", s.Groups)
		}
	})

	t.Run("announcements", func(t *testing.T) {
		isAnnouncement := func(addr netip.Addr) func(gopacket.Packet) bool {
			return func(p gopacket.Packet) bool {
				ip, na := ipNA(p)
				return na != nil && ip.DstIP.Equal(net.ParseIP("ff02::1")) && bytes.Equal(na.TargetAddress, addr.AsSlice())
			}
		}
		for _, addr := range []netip.Addr{vifAddr, published} {
			if !capture.Wait(ndpproxy.DefaultAnnounceCount, isAnnouncement(addr), 5*time.Second) {
				t.Errorf("%d announcements of %v captured, want %d", capture.Count(isAnnouncement(addr)), addr, ndpproxy.DefaultAnnounceCount)
			}
		}
		for _, p := range capture.Packets() {
			if isAnnouncement(vifAddr)(p) || isAnnouncement(published)(p) {
				checkReplyFrom(t, p.Data(), ndpSpec{src: unspec, target: targetOf(p)}, aIf.MAC(), aLL, 0x20)
			}
		}
	})

	t.Run("kernel resolves and pings the vif address", func(t *testing.T) {
		if err := b.Ping(vifAddr.String(), 2); err != nil {
			t.Fatalf("ping %v: %v", vifAddr, err)
		}
		if mac := b.NeighborMAC(vifAddr.String()); !bytes.Equal(mac, aIf.MAC()) {
			t.Errorf("b resolved %v to %v, want %v", vifAddr, mac, aIf.MAC())
		}
	})

	// A packet socket in b sends solicitations the kernel would not, and
	// reads the advertisements.
	var sock *packet.Conn
	if err := b.Do(func() error {
		ifi, err := net.InterfaceByName(bIf.Name())
		if err != nil {
			return err
		}
		sock, err = packet.Listen(ifi, packet.Raw, ndpproxy.EtherTypeIPv6, &packet.Config{Filter: ndpproxy.Filter()})
		return err
	}); err != nil {
		t.Fatalf("packet socket in %v: %v", b, err)
	}
	defer sock.Close()
	bMAC := bIf.MAC()
	// ask sends the solicitation and returns the advertisements for its
	// target from a that arrive within wait.
	ask := func(t *testing.T, req ndpSpec, wait time.Duration) [][]byte {
		t.Helper()
		// Forget what came before, such as announcements.
		buf := make([]byte, 1600)
		sock.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		for {
			if _, _, err := sock.ReadFrom(buf); err != nil {
				break
			}
		}
		frame := req.bytes(t)
		if _, err := sock.WriteTo(frame, &packet.Addr{HardwareAddr: req.ethDst}); err != nil {
			t.Fatalf("send: %v", err)
		}
		var got [][]byte
		for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
			sock.SetReadDeadline(deadline)
			n, _, err := sock.ReadFrom(buf)
			if err != nil {
				break
			}
			f := ndpproxy.Frame(buf[:n])
			if f.Validate() == nil && f.Type() == ndpproxy.TypeNeighborAdvertisement && f.Target() == req.target &&
				bytes.Equal(f.EthernetSrc(), aIf.MAC()) {
				got = append(got, bytes.Clone(f))
			}
		}
		return got
	}
	answered := func(t *testing.T, req ndpSpec) {
		t.Helper()
		got := ask(t, req, 300*time.Millisecond)
		if len(got) != 1 {
			t.Fatalf("%d advertisements, want 1", len(got))
		}
		checkReplyFrom(t, got[0], req, aIf.MAC(), aLL, 0x20)
	}
	unanswered := func(t *testing.T, req ndpSpec) {
		t.Helper()
		if got := ask(t, req, 300*time.Millisecond); len(got) != 0 {
			t.Fatalf("%d advertisements, want none: % x", len(got), got[0])
		}
	}

	t.Run("solicitation for a published address", func(t *testing.T) {
		answered(t, solicit(bMAC, bAddr, published))
	})
	t.Run("solicitation from a link-local source", func(t *testing.T) {
		answered(t, solicit(bMAC, netip.MustParseAddr("fe80::beef"), published))
	})
	t.Run("unicast solicitation (NUD) for an address the kernel lacks", func(t *testing.T) {
		// No ICMPv6 socket would see this one: 2001:db8::20 is not an
		// address of a.
		answered(t, unicastSolicit(bMAC, bAddr, published, aIf.MAC()))
	})
	t.Run("why a packet socket", func(t *testing.T) {
		// An ICMPv6 socket in a, as mdlayher/ndp opens, sees the multicast
		// solicitation for the published address (a joined its group) but
		// not the unicast one: the kernel does not deliver locally a
		// packet for an address it does not have.
		var c *ndp.Conn
		if err := a.Do(func() error {
			ifi, err := net.InterfaceByName(aIf.Name())
			if err != nil {
				return err
			}
			c, _, err = ndp.Listen(ifi, ndp.Unspecified)
			if err != nil {
				return err
			}
			var f ipv6.ICMPFilter
			f.SetAll(true)
			f.Accept(ipv6.ICMPTypeNeighborSolicitation)
			return c.SetICMPFilter(&f)
		}); err != nil {
			t.Fatalf("ndp.Listen in %v: %v", a, err)
		}
		defer c.Close()
		heard := func() []netip.Addr {
			var srcs []netip.Addr
			for {
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				m, _, src, err := c.ReadFrom()
				if err != nil {
					return srcs
				}
				if ns, ok := m.(*ndp.NeighborSolicitation); ok && ns.TargetAddress == published {
					srcs = append(srcs, src.WithZone(""))
				}
			}
		}
		answered(t, solicit(bMAC, bAddr, published))
		if got := heard(); len(got) != 1 || got[0] != bAddr {
			t.Errorf("ICMPv6 socket heard multicast solicitations from %v, want [%v]", got, bAddr)
		}
		answered(t, unicastSolicit(bMAC, bAddr, published, aIf.MAC()))
		if got := heard(); len(got) != 0 {
			t.Errorf("ICMPv6 socket heard a unicast solicitation for %v from %v: a packet socket is not needed", published, got)
		}
	})
	t.Run("DAD probe", func(t *testing.T) {
		before := r.Stats().DADAnswered
		answered(t, dadProbe(bMAC, published))
		waitStats(t, r, func(s ndpproxy.Stats) bool { return s.DADAnswered == before+1 })
	})
	t.Run("not owned", func(t *testing.T) {
		before := r.Stats().NotOwned
		unanswered(t, solicit(bMAC, bAddr, netip.MustParseAddr("2001:db8::11")))
		waitStats(t, r, func(s ndpproxy.Stats) bool { return s.NotOwned == before+1 })
	})
	t.Run("hop limit 254", func(t *testing.T) {
		before := r.Stats().Drops[ndpproxy.DropHopLimit.Name()]
		unanswered(t, solicit(bMAC, bAddr, published).with(func(s *ndpSpec) { s.hop = 254 }))
		waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Drops[ndpproxy.DropHopLimit.Name()] == before+1 })
	})
	t.Run("bad checksum", func(t *testing.T) {
		before := r.Stats().Drops[ndpproxy.DropChecksum.Name()]
		unanswered(t, solicit(bMAC, bAddr, published).with(func(s *ndpSpec) {
			s.raw, s.keepChecksum = func(b []byte) []byte { b[57] ^= 1; return b }, true
		}))
		waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Drops[ndpproxy.DropChecksum.Name()] == before+1 })
	})

	t.Run("link returns", func(t *testing.T) {
		// The kernel leaves the groups while the link is down and joins
		// them again when it comes back; the sockets stay bound.
		a.MustRun("ip", "link", "set", aIf.Name(), "down")
		a.MustRun("ip", "link", "set", aIf.Name(), "up")
		waitCarrier(t, a, aIf.Name())
		waitCarrier(t, b, bIf.Name())
		if out := a.MustRun("ip", "-6", "maddr", "show", "dev", aIf.Name()); !strings.Contains(out, ndpproxy.SolicitedNode(published).String()) {
			t.Errorf("group of %v not joined after the link came back:\n%s", published, out)
		}
		before := r.Stats().Announcements
		if err := r.Announce(published); err != nil {
			t.Fatal(err)
		}
		waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Announcements == before+ndpproxy.DefaultAnnounceCount })
		answered(t, solicit(bMAC, bAddr, published))
	})

	t.Run("removed", func(t *testing.T) {
		r.Remove(vifAddr)
		unanswered(t, solicit(bMAC, bAddr, vifAddr))
		out := a.MustRun("ip", "-6", "maddr", "show", "dev", aIf.Name())
		if strings.Contains(out, ndpproxy.SolicitedNode(vifAddr).String()) || !strings.Contains(out, ndpproxy.SolicitedNode(published).String()) {
			t.Errorf("groups after Remove(%v):\n%s", vifAddr, out)
		}
	})

	// The kernel never answered: every advertisement for our addresses on
	// the wire is the Responder's, sent from a's link-local address.
	pkts := capture.Stop()
	solicited := 0
	for _, p := range pkts {
		ip, na := ipNA(p)
		if na == nil {
			continue
		}
		target, _ := netip.AddrFromSlice(na.TargetAddress)
		if target != vifAddr && target != published {
			continue
		}
		if src, _ := netip.AddrFromSlice(ip.SrcIP); src != aLL {
			t.Errorf("advertisement for %v from %v, not from the Responder's %v", target, src, aLL)
		}
		if na.Solicited() {
			solicited++
		}
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	s := r.Stats()
	t.Logf("stats: %+v", s)
	// The solicited advertisements on the wire are the Responder's
	// replies to unicast sources: all replies but the one DAD answer.
	if want := int(s.Replies - s.DADAnswered); solicited != want || capture.Dropped() > 0 {
		t.Errorf("%d solicited advertisements captured (%d lost by the capture), the Responder sent %d", solicited, capture.Dropped(), want)
	}
	if s.Drops[ndpproxy.DropFromSelf.Name()] != 0 || s.Conflicts != 0 {
		t.Errorf("from_self drops %d, conflicts %d; want 0, 0 (own frames are filtered by the kernel)",
			s.Drops[ndpproxy.DropFromSelf.Name()], s.Conflicts)
	}
	if out := a.MustRun("ip", "-6", "maddr", "show", "dev", aIf.Name()); strings.Contains(out, ndpproxy.SolicitedNode(published).String()) {
		t.Errorf("group of %v still joined after Close:\n%s", published, out)
	}
}

// ipNA returns the IPv6 header and Neighbor Advertisement of p, or nils.
func ipNA(p gopacket.Packet) (*layers.IPv6, *layers.ICMPv6NeighborAdvertisement) {
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if ip == nil || na == nil {
		return nil, nil
	}
	return ip, na
}

func targetOf(p gopacket.Packet) netip.Addr {
	_, na := ipNA(p)
	a, _ := netip.AddrFromSlice(na.TargetAddress)
	return a
}

// waitCarrier waits until dev in h has carrier.
func waitCarrier(t *testing.T, h *nstest.Host, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := h.Run("ip", "link", "show", dev)
		if err == nil && strings.Contains(out, "LOWER_UP") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %v has no carrier: %s %v", dev, h, out, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tWriter writes log lines to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
