//go:build linux

package main

// vif follows the host: changes made under a running daemon, as an
// operator (or another daemon) makes them.

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/nstest"
)

// daemonTunnel builds hosts a and b joined by a link of MTU linkMTU, each
// with a vif of MTU 1480 tunnelling to the other, served by background
// daemons as in production.
func daemonTunnel(t *testing.T, linkMTU int) (a, b *nstest.Host, aIf, bIf *nstest.Iface) {
	t.Helper()
	n := nstest.New(t)
	a, b = n.Host("a"), n.Host("b")
	aIf, bIf = n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24", nstest.WithMTU(linkMTU))
	for _, end := range []struct {
		h                 *nstest.Host
		slave             *nstest.Iface
		addr, peer, route string
	}{
		{a, aIf, "192.0.2.1", "198.18.0.2", "198.51.100.0/24"},
		{b, bIf, "198.51.100.1", "198.18.0.1", "192.0.2.0/24"},
	} {
		vifCmd(t, end.h, "up", "vif0", end.addr, "--slave", end.slave.Name(), "--peer", end.peer,
			"--route", end.route, "--no-arp-proxy", "--mtu", "1480", "--outer-fragments")
		t.Cleanup(func() { stopDaemon(end.h) })
	}
	return a, b, aIf, bIf
}

// The vif's MTU raised from outside on a jumbo-frame slave: packets up to
// the new MTU pass, and the vif stays (it used to delete itself after 100
// oversized reads).
func TestHostVifMTURaised(t *testing.T) {
	a, b, _, _ := daemonTunnel(t, 9000)
	pidA, logA := daemonPID(t, a)

	a.IP("link", "set", "vif0", "mtu", "8980")
	b.IP("link", "set", "vif0", "mtu", "8980")
	// The first big packet may meet buffers of the old size (it is
	// dropped and counted); every later one passes.
	a.Run("ping", "-c", "1", "-W", "1", "-s", "2000", "198.51.100.1")
	if out, err := a.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-s", "2000", "-M", "do", "198.51.100.1"); err != nil {
		t.Errorf("2000-byte pings after raising the MTU to 8980: %v\n%s", err, out)
	}
	if !a.LinkExists("vif0") || !alive(pidA) {
		t.Fatalf("after raising the MTU: vif0 exists %v, daemon alive %v", a.LinkExists("vif0"), alive(pidA))
	}
	if st := vifStatus(t, a, "vif0"); st.MTU != 8980 {
		t.Errorf("vif show says MTU %d, want 8980", st.MTU)
	}
	b2, _ := os.ReadFile(logA)
	if !strings.Contains(string(b2), "device MTU changed") || strings.Contains(string(b2), "went away") {
		t.Errorf("daemon log:\n%s", b2)
	}
}

// The vif's MTU raised by "vif set NAME mtu N": the first packet larger
// than the old MTU passes too. The packet loop used to wait for the TUN
// with buffers of the old size, so that one was lost (tx_read_error).
func TestSetMTURaised(t *testing.T) {
	a, b, _, _ := daemonTunnel(t, 9000)
	for _, h := range []*nstest.Host{b, a} {
		// Each loop waits in a read at once, as an idle vif does.
		vifCmd(t, h, "set", "vif0", "mtu", "8980")
	}
	for _, size := range []string{"4000", "8952"} {
		if out, err := a.Run("ping", "-n", "-c", "1", "-W", "2", "-s", size, "-M", "do", "198.51.100.1"); err != nil {
			t.Errorf("the first %s-byte ping after vif set mtu 8980: %v\n%s", size, err, out)
		}
	}
	for _, h := range []*nstest.Host{a, b} {
		if st := vifStatus(t, h, "vif0"); st.MTU != 8980 || st.Counters.Drops["tx_read_error"] != 0 {
			t.Errorf("vif0 on %v: MTU %d, drops %v; want 8980 and no tx_read_error", h, st.MTU, st.Counters.Drops)
		}
	}
}

// Interfaces renamed under the daemon: the slave's responder stays with
// the interface (not its old name), an interface that takes the old name
// is a new slave with its own responder, and vif show and vif down follow
// the kernel's names.
func TestHostRenamed(t *testing.T) {
	n := nstest.New(t)
	a, c, d := n.Host("a"), n.Host("c"), n.Host("d")
	aC, cIf := n.Link(a, c, "198.18.1.1/24", "198.18.1.3/24", nstest.WithNames("sa", ""))
	aD, dIf := n.Link(a, d, "198.18.2.1/24", "198.18.2.4/24", nstest.WithNames("sb", ""))
	a.Sysctl("net.ipv4.conf.all.arp_ignore", "1") // only the proxy answers for vif addresses
	c.AddRoute("192.0.2.0/24", "dev", cIf.Name())
	d.AddRoute("192.0.2.0/24", "dev", dIf.Name())
	vifCmd(t, a, "up", "vif0", "192.0.2.1", "--slave", aC.Name())
	t.Cleanup(func() { stopDaemon(a) })

	rename := func(h *nstest.Host, from, to string) {
		h.IP("link", "set", from, "down")
		h.IP("link", "set", from, "name", to)
		h.IP("link", "set", to, "up")
	}
	rename(a, "sa", "sx") // the slave of vif0
	rename(a, "sb", "sa") // another segment's interface takes its name
	a.Sysctl("net.ipv4.conf.sx.arp_ignore", "1")
	a.Sysctl("net.ipv4.conf.sa.arp_ignore", "1")
	vifCmd(t, a, "up", "vif1", "192.0.2.2", "--slave", "sa")

	if mac, ok := arping(d, dIf.Name(), "192.0.2.2"); !ok || mac.String() != aD.MAC().String() {
		t.Errorf("d's segment (a's interface now named sa): 192.0.2.2 answered %v by %v, want by %v", ok, mac, aD.MAC())
	}
	if mac, ok := arping(c, cIf.Name(), "192.0.2.2"); ok {
		t.Errorf("c's segment got an answer for 192.0.2.2 (published on the other segment) from %v", mac)
	}
	if mac, ok := arping(c, cIf.Name(), "192.0.2.1"); !ok || mac.String() != aC.MAC().String() {
		t.Errorf("c's segment: 192.0.2.1 answered %v by %v, want by %v", ok, mac, aC.MAC())
	}
	if st := vifStatus(t, a, "vif0"); st.Slave != "sx" {
		t.Errorf("vif show: vif0's slave is %q, want its new name sx", st.Slave)
	}

	rename(a, "vif0", "vifx")
	// The old name is free at once (no vif show needed to notice), and
	// is not an alias of the renamed vif.
	if _, ok := waitFor(5*time.Second, func() bool {
		_, err := a.Run(vifBin, "up", "vif0", "192.0.2.3", "--slave", "sa")
		return err == nil
	}); !ok {
		t.Error("vif up of a renamed vif's old name is refused")
	}
	vifCmd(t, a, "down", "vif0")
	if !a.LinkExists("vifx") {
		t.Error("vif down vif0 removed the vif renamed from vif0 to vifx")
	}
	if st := vifStatus(t, a, "vifx"); st.Name != "vifx" {
		t.Errorf("vif show after renaming vif0: %+v", st)
	}
	vifCmd(t, a, "down", "vifx")
	if a.LinkExists("vifx") {
		t.Error("vif down vifx left the interface")
	}
}

// The vif's MTU is larger than its slave can carry: packets without DF
// are sent in outer fragments (RFC 2003 section 5.1), the first one too;
// DF packets get "fragmentation needed" with the tunnel MTU.
func TestHostFragmentsWithoutDF(t *testing.T) {
	a, _, _, bIf := daemonTunnel(t, 1400)
	wire := bIf.Capture("ip proto 94")

	// 1452 bytes of ICMP payload: 1480-byte packets, over a 1380 tunnel.
	if out, err := a.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-M", "dont", "-s", "1452", "198.51.100.1"); err != nil {
		t.Errorf("pings without DF over the path MTU, the first included: %v\n%s", err, out)
	}
	out, _ := a.Run("ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1452", "198.51.100.1")
	if !strings.Contains(out, "mtu = 1380") {
		t.Errorf("a DF ping over the tunnel MTU: want \"Frag needed ... mtu = 1380\", got:\n%s", out)
	}
	frags := 0
	for _, p := range wire.Stop() {
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && (ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0) {
			frags++
			if int(ip.Length) > 1400 {
				t.Errorf("an outer fragment of %d bytes on a 1400-byte link", ip.Length)
			}
		}
	}
	if frags < 6 {
		t.Errorf("%d outer fragments on the wire, want at least 6 (two per ping, both ways)", frags)
	}
	if st := vifStatus(t, a, "vif0"); st.Counters.Drops["tx_too_big"] != 1 {
		t.Errorf("drops %v, want tx_too_big 1 (the DF ping)", st.Counters.Drops)
	}
}

// A vif renamed from outside is still followed by index: its MTU raised
// afterwards is carried and shown, and IPv6, which the kernel turns back
// on when an MTU comes back from below 1280, is turned off again.
func TestHostRenamedVifMTU(t *testing.T) {
	a, b, _, _ := daemonTunnel(t, 9000)
	a.IP("link", "set", "vif0", "down")
	a.IP("link", "set", "vif0", "name", "vifr")
	a.IP("link", "set", "vifr", "up")
	// The kernel removed the route with the link down; vif puts it back.
	if _, ok := waitFor(5*time.Second, func() bool { return a.HasRoute("198.51.100.0/24") }); !ok {
		t.Fatal("the route through the renamed vif did not come back when it was set up")
	}
	a.IP("link", "set", "vifr", "mtu", "1000")
	a.IP("link", "set", "vifr", "mtu", "8980")
	b.IP("link", "set", "vif0", "mtu", "8980")
	a.Run("ping", "-c", "1", "-W", "1", "-s", "2000", "198.51.100.1")
	if out, err := a.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-s", "2000", "-M", "do", "198.51.100.1"); err != nil {
		t.Errorf("2000-byte pings from the renamed vif after raising its MTU: %v\n%s", err, out)
	}
	if st := vifStatus(t, a, "vifr"); st.MTU != 8980 {
		t.Errorf("vif show: the renamed vif's MTU is %d, want 8980", st.MTU)
	}
	_, log := daemonPID(t, a)
	// The loop reads the MTU when it handles the event: the two changes
	// may come as one, from 1480 or 1000.
	if b, _ := os.ReadFile(log); !regexp.MustCompile(`msg="device MTU changed" from=(1000|1480) to=8980 vif=vifr`).Match(b) {
		t.Errorf("the MTU change is not logged under the vif's new name:\n%s", b)
	}
	if _, ok := waitFor(5*time.Second, func() bool { return a.ReadSysctl("net/ipv6/conf/vifr/disable_ipv6") == "1" }); !ok {
		t.Error("IPv6 is back on the vif after its MTU went below 1280 and back")
	}
}

// The slave's link goes down and comes back: the vif addresses are
// announced again (gratuitous ARP), so neighbours with stale caches learn
// them anew.
func TestHostLinkFlapAnnounces(t *testing.T) {
	s := newSegment(t)
	vifCmd(t, s.a, "up", "vif0", "192.0.2.1", "--slave", s.aIf.Name())
	t.Cleanup(func() { stopDaemon(s.a) })
	time.Sleep(3 * time.Second) // the announcements of "up" are over (2, 2 s apart)
	capture := s.cIf.Capture("arp")
	s.a.IP("link", "set", s.aIf.Name(), "down")
	time.Sleep(200 * time.Millisecond)
	s.a.IP("link", "set", s.aIf.Name(), "up")
	announced := func(p gopacket.Packet) bool {
		arp := arpLayer(p)
		return arp != nil && isAnnouncement(p, s.aIf.MAC()) && net.IP(arp.DstProtAddress).String() == "192.0.2.1"
	}
	if !capture.Wait(1, announced, 8*time.Second) {
		t.Errorf("no gratuitous ARP for 192.0.2.1 after the slave's link came back")
	}
	if mac, ok := arping(s.c, s.cIf.Name(), "192.0.2.1"); !ok || mac.String() != s.aIf.MAC().String() {
		t.Errorf("after the flap: 192.0.2.1 answered %v by %v", ok, mac)
	}
}

// Another tool removes an address and a route the vif installed: vif
// follows the kernel — the address is no longer decapsulated to (packets
// for it count as rx_not_local, not as delivered), vif show lists what is
// missing, and the log says so.
func TestHostAddrRouteRemoved(t *testing.T) {
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
	vifCmd(t, a, "up", "vif0", "192.0.2.1", "192.0.2.2", "--slave", aIf.Name(), "--peer", "198.18.0.2",
		"--route", "198.51.100.0/24", "--no-arp-proxy")
	t.Cleanup(func() { stopDaemon(a) })
	vifCmd(t, b, "up", "vif0", "198.51.100.1", "--slave", bIf.Name(), "--peer", "198.18.0.1",
		"--route", "192.0.2.0/24", "--no-arp-proxy")
	t.Cleanup(func() { stopDaemon(b) })
	_, log := daemonPID(t, a)

	a.IP("addr", "del", "192.0.2.2/32", "dev", "vif0")
	a.IP("route", "del", "198.51.100.0/24", "dev", "vif0")
	var st daemon.VifStatus
	if _, ok := waitFor(5*time.Second, func() bool {
		st = vifStatus(t, a, "vif0")
		return len(st.AddrsMissing) == 1 && len(st.RoutesMissing) == 1
	}); !ok {
		t.Fatalf("vif show after the removals: addrs %v (missing %v), routes %v (missing %v)", st.Addrs, st.AddrsMissing, st.Routes, st.RoutesMissing)
	}
	if len(st.Addrs) != 1 || st.Addrs[0].String() != "192.0.2.1/32" || len(st.Routes) != 0 {
		t.Errorf("vif show: addrs %v, routes %v; want 192.0.2.1/32 and none", st.Addrs, st.Routes)
	}
	before := st.Counters.DecapsulatedPackets
	b.Run("ping", "-c", "3", "-i", "0.2", "-W", "1", "192.0.2.2")
	if _, ok := waitFor(5*time.Second, func() bool {
		st = vifStatus(t, a, "vif0")
		return st.Counters.Drops["rx_not_local"] >= 3
	}); !ok || st.Counters.DecapsulatedPackets != before {
		t.Errorf("pings to the removed address: decapsulated %d -> %d, drops %v; want them dropped as rx_not_local", before, st.Counters.DecapsulatedPackets, st.Counters.Drops)
	}
	// The remaining address is still served (a's answers find no route
	// back: that route was removed too).
	b.Run("ping", "-c", "2", "-i", "0.2", "-W", "1", "192.0.2.1")
	if _, ok := waitFor(5*time.Second, func() bool {
		return vifStatus(t, a, "vif0").Counters.DecapsulatedPackets >= before+2
	}); !ok {
		t.Errorf("pings to the remaining address 192.0.2.1 were not decapsulated: %+v", vifStatus(t, a, "vif0").Counters)
	}
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "address removed from the vif from outside") || !strings.Contains(string(b), "route removed from the vif from outside") {
		t.Errorf("daemon log:\n%s", b)
	}
}

// A flood of 20 000 ARP requests a second from random hardware addresses
// for an owned address must not starve the neighbours: at least 9 of 10
// fresh resolutions (the neighbour's kernel, cache flushed) succeed during
// it. Replies are unicast and no larger than requests, so answering the
// flood amplifies nothing.
func TestHostARPFloodFair(t *testing.T) {
	n := nstest.New(t)
	a, c, f := n.Host("a"), n.Host("c"), n.Host("f")
	seg := n.Segment()
	aIf := seg.Attach(a, "198.18.1.1/24")
	cIf := seg.Attach(c, "198.18.1.3/24")
	fIf := seg.Attach(f, "198.18.1.6/24")
	a.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
	a.Sysctl("net.ipv4.conf."+aIf.Name()+".arp_ignore", "1")
	c.AddRoute("192.0.2.0/24", "dev", cIf.Name())
	vifCmd(t, a, "up", "vif0", "192.0.2.1", "--slave", aIf.Name())
	t.Cleanup(func() { stopDaemon(a) })

	const rate, seconds = 20000, 12
	flood := make(chan int, 1)
	go func() { flood <- arpBurst(t, f, fIf.Name(), net.IP{192, 0, 2, 1}, aIf.MAC(), rate*seconds, rate) }()
	time.Sleep(time.Second) // the flood is on
	ok := 0
	for k := 0; k < 10; k++ {
		c.IP("neigh", "flush", "dev", cIf.Name())
		if _, err := c.Run("ping", "-c", "1", "-W", "1", "192.0.2.1"); err == nil {
			ok++
		}
	}
	answered := <-flood
	st := vifStatus(t, a, "vif0")
	t.Logf("during a %d/s flood: %d of 10 resolutions; %d of %d flood requests answered; responder: %d requests, %d replies, %d rate limited, %d lost in the socket",
		rate, ok, answered, rate*seconds, st.ARP.Requests, st.ARP.Replies, st.ARP.RateLimited, st.ARP.SocketDrops)
	if ok < 9 {
		t.Errorf("%d of 10 fresh resolutions of 192.0.2.1 succeeded during the flood, want at least 9", ok)
	}
}

// With a strict reverse-path filter and nothing routed into the vif, the
// kernel drops what the vif decapsulates: the log says so, once, with
// the fix.
func TestHostRPFilterHint(t *testing.T) {
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, _ := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
	a.Sysctl("net.ipv4.conf.all.rp_filter", "1")
	vifCmd(t, a, "up", "vif0", "192.0.2.1", "--slave", aIf.Name(), "--peer", "198.18.0.2", "--no-arp-proxy")
	vifCmd(t, a, "up", "vif1", "192.0.2.2", "--slave", aIf.Name(), "--peer", "198.18.0.2", "--no-arp-proxy",
		"--route", "198.51.100.0/24")
	t.Cleanup(func() { stopDaemon(a) })
	_, log := daemonPID(t, a)
	b2, _ := os.ReadFile(log)
	if strings.Count(string(b2), "rp_filter is strict") != 1 || !strings.Contains(string(b2), "--route") {
		t.Errorf("want one rp_filter hint (for vif0, not vif1, which has a route):\n%s", b2)
	}
}

// The slave renamed and renumbered (DHCP, an operator) under a tunnel
// whose local address vif chose: while the slave has no address the
// tunnel is paused and vif show says so; then it sends from, and receives
// on, the new address (which the peer is told to use), through the
// renamed slave, not the interface that took its old name.
func TestHostSlaveRenumbered(t *testing.T) {
	a, b, aIf, bIf := daemonTunnel(t, 1500)
	_, log := daemonPID(t, a)
	if !pingOnce(a, "198.51.100.1", 2*time.Second) {
		t.Fatal("the tunnel does not work before renumbering")
	}
	// Renamed first: the tunnel is rebound to the interface, not to its
	// old name, which another interface then takes.
	a.IP("link", "set", aIf.Name(), "down")
	a.IP("link", "set", aIf.Name(), "name", "wan0")
	a.IP("link", "set", "wan0", "up")
	a.IP("link", "add", aIf.Name(), "type", "veth", "peer", "name", "decoy")
	a.IP("link", "set", aIf.Name(), "up")
	a.IP("addr", "del", "198.18.0.1/24", "dev", "wan0")
	if _, ok := waitFor(5*time.Second, func() bool { return vifStatus(t, a, "vif0").LocalMissing }); !ok {
		t.Errorf("slave without an address: vif show does not say local_missing: %+v", vifStatus(t, a, "vif0"))
	}
	a.IP("addr", "add", "198.18.0.11/24", "dev", "wan0")
	var st daemon.VifStatus
	if _, ok := waitFor(5*time.Second, func() bool {
		st = vifStatus(t, a, "vif0")
		return st.Local.String() == "198.18.0.11" && !st.LocalMissing
	}); !ok {
		t.Fatalf("after renumbering, vif show: local %v, local_missing %v; want 198.18.0.11", st.Local, st.LocalMissing)
	}
	// The peer learns the new address from its operator.
	vifCmd(t, b, "down", "vif0")
	vifCmd(t, b, "up", "vif0", "198.51.100.1", "--slave", bIf.Name(), "--peer", "198.18.0.11",
		"--route", "192.0.2.0/24", "--no-arp-proxy", "--mtu", "1480", "--outer-fragments")
	capture := bIf.Capture("ip proto 94")
	if out, err := a.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.1"); err != nil {
		t.Errorf("pings through the tunnel after renumbering: %v\n%s", err, out)
	}
	fromNew := func(p gopacket.Packet) bool {
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		return ip != nil && ip.SrcIP.String() == "198.18.0.11"
	}
	if !capture.Wait(3, fromNew, 5*time.Second) {
		t.Errorf("no encapsulated packets from the new address 198.18.0.11 on the wire")
	}
	if b2, _ := os.ReadFile(log); !strings.Contains(string(b2), "slave renumbered") || !strings.Contains(string(b2), "slave has no IPv4 address left") {
		t.Errorf("daemon log:\n%s", b2)
	}
}

// The address given with --local leaves the host: the tunnel pauses
// loudly (counted, shown, logged) and resumes when it returns.
func TestHostLocalGone(t *testing.T) {
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
	a.IP("addr", "add", "198.18.0.21/24", "dev", aIf.Name())
	vifCmd(t, a, "up", "vif0", "192.0.2.1", "--slave", aIf.Name(), "--peer", "198.18.0.2", "--local", "198.18.0.21",
		"--route", "198.51.100.0/24", "--no-arp-proxy")
	t.Cleanup(func() { stopDaemon(a) })
	vifCmd(t, b, "up", "vif0", "198.51.100.1", "--slave", bIf.Name(), "--peer", "198.18.0.21",
		"--route", "192.0.2.0/24", "--no-arp-proxy")
	t.Cleanup(func() { stopDaemon(b) })
	_, log := daemonPID(t, a)
	if !pingOnce(a, "198.51.100.1", 2*time.Second) {
		t.Fatal("the tunnel does not work")
	}

	a.IP("addr", "del", "198.18.0.21/24", "dev", aIf.Name())
	if _, ok := waitFor(5*time.Second, func() bool { return vifStatus(t, a, "vif0").LocalMissing }); !ok {
		t.Fatalf("--local gone: vif show does not say local_missing")
	}
	if pingOnce(a, "198.51.100.1", time.Second) {
		t.Error("a ping passed while the local address was gone")
	}
	if st := vifStatus(t, a, "vif0"); st.Counters.Drops["tx_no_local"] == 0 || st.Local.String() != "198.18.0.21" {
		t.Errorf("while paused: local %v, drops %v; want 198.18.0.21 and tx_no_local counted", st.Local, st.Counters.Drops)
	}
	a.IP("addr", "add", "198.18.0.21/24", "dev", aIf.Name())
	if _, ok := waitFor(5*time.Second, func() bool { return !vifStatus(t, a, "vif0").LocalMissing }); !ok {
		t.Fatalf("--local back: vif show still says local_missing")
	}
	if out, err := a.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.1"); err != nil {
		t.Errorf("pings after the local address came back: %v\n%s", err, out)
	}
	if b2, _ := os.ReadFile(log); !strings.Contains(string(b2), "local address gone from the host") || !strings.Contains(string(b2), "tunnel resumed") {
		t.Errorf("daemon log:\n%s", b2)
	}
}

// The slave's hardware address changes (a bond fails over): the proxy
// answers with the new one and announces every address with it.
func TestHostSlaveMACChanged(t *testing.T) {
	s := newSegment(t)
	vifCmd(t, s.a, "up", "vif0", "192.0.2.1", "--slave", s.aIf.Name())
	t.Cleanup(func() { stopDaemon(s.a) })
	const newMAC = "02:00:5e:00:53:99"
	capture := s.cIf.Capture("arp")
	s.a.IP("link", "set", "dev", s.aIf.Name(), "address", newMAC)
	mac, _ := net.ParseMAC(newMAC)
	announced := func(p gopacket.Packet) bool {
		arp := arpLayer(p)
		return arp != nil && isAnnouncement(p, mac) && net.IP(arp.DstProtAddress).String() == "192.0.2.1"
	}
	if !capture.Wait(1, announced, 8*time.Second) {
		t.Errorf("no announcement of 192.0.2.1 with the new hardware address %s", newMAC)
	}
	if got, ok := arping(s.c, s.cIf.Name(), "192.0.2.1"); !ok || got.String() != newMAC {
		t.Errorf("after the change: 192.0.2.1 answered %v by %v, want by %s", ok, got, newMAC)
	}
}

// An address another host on the segment already uses is refused by vif
// up (RFC 5227 probe), in one line and leaving nothing behind; --force
// takes it anyway.
func TestHostProbeRefusesAddressInUse(t *testing.T) {
	s := newSegment(t)
	s.c.IP("addr", "add", "192.0.2.9/32", "dev", s.cIf.Name()) // c's kernel answers for it
	t.Cleanup(func() { stopDaemon(s.a) })
	out, err := s.a.Run(vifBin, "up", "vif0", "192.0.2.8", "192.0.2.9", "--slave", s.aIf.Name())
	if err == nil {
		t.Fatalf("vif up of an address in use succeeded:\n%s", out)
	}
	oneLine(t, "vif up of an address in use", out, "192.0.2.9 is in use", s.cIf.MAC().String(), "--force")
	if s.a.LinkExists("vif0") {
		t.Error("the refused vif0 exists")
	}
	vifCmd(t, s.a, "up", "vif0", "192.0.2.8", "--slave", s.aIf.Name()) // a free address is taken
	vifCmd(t, s.a, "up", "vif1", "192.0.2.9", "--slave", s.aIf.Name(), "--force")
	if !s.a.LinkExists("vif1") {
		t.Error("vif up --force did not take the address")
	}
}

// Packets the kernel drops before vif reads them (its queues full while
// the daemon is stopped) are counted in vif show, by where they were lost.
func TestHostKernelDropsCounted(t *testing.T) {
	a, b, _, _ := daemonTunnel(t, 1500)
	pid, _ := daemonPID(t, a)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	// Into the underlay socket's queue (7 MiB, doubled by the kernel:
	// 20 000 packets of 1420 bytes exceed it) and the TUN's (500
	// packets), with nobody reading either.
	if res := attack(t, b, nil, "ipipflood", "198.18.0.1", "20000"); res.Connected < 10000 {
		t.Fatalf("the flood sent %d packets (%s)", res.Connected, res.Err)
	}
	a.Run("ping", "-n", "-q", "-c", "1500", "-l", "1500", "-w", "2", "198.51.100.1")
	syscall.Kill(pid, syscall.SIGCONT)
	stopped = false
	st := vifStatus(t, a, "vif0")
	if st.Counters.Drops[vif.DropSocketOverflow] == 0 || st.Counters.Drops[vif.DropTUNOverflow] == 0 {
		t.Errorf("after floods against a stopped daemon: drops %v; want %s and %s counted", st.Counters.Drops,
			vif.DropSocketOverflow, vif.DropTUNOverflow)
	}
	t.Logf("drops: %v", st.Counters.Drops)
}

// The kernel flushes the routes through a link that goes down, and tells
// nobody: vif notices, reports them missing and logs it; when the link
// comes up again, vif puts them back (--route and the peers' prefixes,
// IPv4 and IPv6).
func TestHostRoutesFlushedByKernel(t *testing.T) {
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, _ := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
	// --route and the peer's prefixes, IPv4 and IPv6.
	vifCmd(t, a, "up", "vif0", "192.0.2.1", "--slave", aIf.Name(), "--peer", "198.18.0.2=198.51.101.0/26,2001:db8:b::/64",
		"--route", "198.51.100.0/24", "--no-arp-proxy")
	t.Cleanup(func() { stopDaemon(a) })
	_, log := daemonPID(t, a)
	a.IP("link", "set", "vif0", "down")
	var st daemon.VifStatus
	if _, ok := waitFor(5*time.Second, func() bool {
		st = vifStatus(t, a, "vif0")
		return len(st.RoutesMissing) == 3
	}); !ok || len(st.Routes) != 0 {
		t.Errorf("with the link down: routes %v, missing %v; want the 3 routes missing", st.Routes, st.RoutesMissing)
	}
	a.IP("link", "set", "vif0", "up")
	if _, ok := waitFor(5*time.Second, func() bool {
		st = vifStatus(t, a, "vif0")
		return len(st.RoutesMissing) == 0 && len(st.Routes) == 3
	}); !ok {
		t.Errorf("with the link up again: routes %v, missing %v; want the 3 routes back", st.Routes, st.RoutesMissing)
	}
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "route removed from the vif from outside") || !strings.Contains(string(b), "its routes are back") {
		t.Errorf("daemon log:\n%s", b)
	}
}

// A running vif changed in place (vif set addr/route/mtu) while a ping
// flood runs to its first address: not one packet of it is lost, and each
// change shows on the host and in vif show.
func TestHostChangeInPlace(t *testing.T) {
	s := newSegment(t)
	vifCmd(t, s.a, "up", "vif0", "192.0.2.1", "--slave", s.aIf.Name())
	t.Cleanup(func() { stopDaemon(s.a) })
	flood := s.c.Start("ping", "-n", "-q", "-c", "1500", "-i", "0.002", "-W", "2", "192.0.2.1")

	vifCmd(t, s.a, "set", "vif0", "addr", "add", "192.0.2.2")
	if !pingOnce(s.c, "192.0.2.2", 2*time.Second) {
		t.Error("the added address does not answer")
	}
	vifCmd(t, s.a, "set", "vif0", "route", "add", "198.51.100.0/24")
	if !s.a.HasRoute("198.51.100.0/24") {
		t.Errorf("the added route is missing: %v", s.a.Routes())
	}
	vifCmd(t, s.a, "set", "vif0", "mtu", "1400")
	if st := vifStatus(t, s.a, "vif0"); st.MTU != 1400 || len(st.Addrs) != 2 || len(st.Routes) != 1 {
		t.Errorf("vif show after the changes: mtu %d, addrs %v, routes %v", st.MTU, st.Addrs, st.Routes)
	}
	vifCmd(t, s.a, "set", "vif0", "addr", "del", "192.0.2.2")
	vifCmd(t, s.a, "set", "vif0", "route", "del", "198.51.100.0/24")
	s.c.IP("neigh", "flush", "dev", s.cIf.Name())
	if pingOnce(s.c, "192.0.2.2", time.Second) {
		t.Error("the removed address still answers")
	}
	if s.a.HasRoute("198.51.100.0/24") {
		t.Error("the removed route is still there")
	}
	if err := flood.Wait(30 * time.Second); err != nil || !strings.Contains(flood.Output(), " 0% packet loss") {
		t.Errorf("ping flood to 192.0.2.1 during the changes: %v\n%s", err, flood.Output())
	}
	// The host's own address is refused, as at vif up, before any probe.
	var ee *exec.ExitError
	if out, err := s.a.Run(vifBin, "set", "vif0", "addr", "add", s.aIf.Addr().String()); !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(out, "already an address of "+s.aIf.Name()) {
		t.Errorf("vif set addr add of the slave's own address: %v, %q", err, out)
	}
	if out, err := s.a.Run(vifBin, "set", "vif0", "addr", "del", "192.0.2.1"); err == nil || !strings.Contains(out, "last address") {
		t.Errorf("removing the last address: %v, %q", err, out)
	}
}

// Removing a vif's address makes the kernel flush the routes through it,
// silently and after it announces the address gone: vif show must say
// they are missing, and "vif set NAME route add" must put one back.
func TestRoutesFlushedWithAddress(t *testing.T) {
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, _ := n.Link(a, b, "198.18.0.2/24", "198.18.0.1/24")
	vifCmd(t, a, "up", "rt", "192.0.2.100", "--slave", aIf.Name(), "--peer", "198.18.0.1=198.51.100.0/26",
		"--route", "198.51.100.64/26", "--force", "--no-arp-proxy")
	t.Cleanup(func() { stopDaemon(a) })
	a.IP("addr", "del", "192.0.2.100/32", "dev", "rt")
	deadline := time.Now().Add(3 * time.Second)
	for !slices.Contains(vifStatus(t, a, "rt").RoutesMissing, netip.MustParsePrefix("198.51.100.64/26")) {
		if time.Now().After(deadline) {
			t.Fatalf("vif show does not list the flushed route as missing: %+v", vifStatus(t, a, "rt"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.IP("addr", "add", "192.0.2.100/32", "dev", "rt")
	vifCmd(t, a, "set", "rt", "route", "add", "198.51.100.64/26")
	if out := a.IP("route", "show", "198.51.100.64/26"); !strings.Contains(out, "dev rt") {
		t.Errorf("vif set route add did not put the route back: %q", out)
	}
	if st := vifStatus(t, a, "rt"); slices.Contains(st.RoutesMissing, netip.MustParsePrefix("198.51.100.64/26")) {
		t.Errorf("the route is back but vif show lists it missing: %+v", st.RoutesMissing)
	}
}
