//go:build linux

package main

// Routed tunnels and many peers per vif: site-to-site gateways with
// hosts behind them, a hub with spokes, peers changed under traffic.

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/vif/nstest"
)

// peerOf returns the status of the peer addr in st, or fails the test.
func peerOf(t *testing.T, st daemon.VifStatus, addr string) daemon.PeerStatus {
	t.Helper()
	for _, p := range st.Peers {
		if p.Addr.String() == addr {
			return p
		}
	}
	t.Fatalf("%s has no peer %s: %+v", st.Name, addr, st.Peers)
	return daemon.PeerStatus{}
}

// sitesLab builds two sites: gateway ga with host ha behind it
// (192.0.2.0/24), gateway gb with host hb behind it (198.51.100.0/24), the
// gateways joined by an underlay link and forwarding.
func sitesLab(t *testing.T) (ga, gb, ha, hb *nstest.Host, gaU, gbU *nstest.Iface) {
	n := nstest.New(t)
	ga, gb, ha, hb = n.Host("ga"), n.Host("gb"), n.Host("ha"), n.Host("hb")
	gaU, gbU = n.Link(ga, gb, "198.18.0.1/24", "198.18.0.2/24")
	n.Link(ga, ha, "192.0.2.1/24", "192.0.2.10/24")
	n.Link(gb, hb, "198.51.100.1/24", "198.51.100.10/24")
	ha.AddRoute("default", "via", "192.0.2.1")
	hb.AddRoute("default", "via", "198.51.100.1")
	for _, g := range []*nstest.Host{ga, gb} {
		g.Sysctl("net.ipv4.ip_forward", "1")
		t.Cleanup(func() { stopDaemon(g) })
	}
	return ga, gb, ha, hb, gaU, gbU
}

// Site to site: each gateway's peer holds the other site's network, and
// decapsulated packets for its own site are forwarded with --forward; the
// hosts behind reach each other (ping and TCP), a peer cannot pass a
// source outside its prefixes nor reach a destination not forwarded, and
// without --forward nothing is relayed.
func TestPeersSiteToSite(t *testing.T) {
	ga, gb, ha, hb, gaU, gbU := sitesLab(t)
	vifCmd(t, ga, "up", "vif0", "203.0.113.1", "--slave", gaU.Name(), "--no-arp-proxy",
		"--peer", "198.18.0.2=198.51.100.0/24,203.0.113.2/32", "--forward", "192.0.2.0/24")
	vifCmd(t, gb, "up", "vif0", "203.0.113.2", "--slave", gbU.Name(), "--no-arp-proxy",
		"--peer", "198.18.0.1=192.0.2.0/24,203.0.113.1/32", "--forward", "198.51.100.0/24")

	if out, err := ha.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.10"); err != nil {
		t.Fatalf("the host behind ga cannot ping the host behind gb: %v\n%s", err, out)
	}
	echoTCP(t, ha, hb, "198.51.100.10", 256<<10)
	st := vifStatus(t, ga, "vif0")
	if p := peerOf(t, st, "198.18.0.2"); p.EncapsulatedPackets == 0 || p.DecapsulatedPackets == 0 {
		t.Errorf("ga's peer counters: %+v", p)
	}
	if len(st.Forward) != 1 || st.Forward[0].String() != "192.0.2.0/24" {
		t.Errorf("ga's forward prefixes: %v", st.Forward)
	}

	// gb's underlay sends what its prefixes do not allow.
	before := vifStatus(t, ga, "vif0").Counters.Drops
	attack(t, gb, nil, "ipipecho", "198.18.0.1", "10.9.9.9", "192.0.2.10")      // source not behind gb
	attack(t, gb, nil, "ipipecho", "198.18.0.1", "198.51.100.10", "198.18.0.1") // destination not forwarded
	if _, ok := waitFor(5*time.Second, func() bool {
		d := vifStatus(t, ga, "vif0").Counters.Drops
		return d["rx_bad_source"] == before["rx_bad_source"]+1 && d["rx_not_local"] == before["rx_not_local"]+1
	}); !ok {
		t.Errorf("spoofed source and unforwarded destination: drops %v, before %v", vifStatus(t, ga, "vif0").Counters.Drops, before)
	}

	// Without --forward, ga relays nothing to its site.
	vifCmd(t, ga, "down", "vif0")
	vifCmd(t, ga, "up", "vif0", "203.0.113.1", "--slave", gaU.Name(), "--no-arp-proxy",
		"--peer", "198.18.0.2=198.51.100.0/24,203.0.113.2/32")
	if out, err := hb.Run("ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "192.0.2.10"); err == nil {
		t.Errorf("ga relayed to its site without --forward:\n%s", out)
	}
	if d := vifStatus(t, ga, "vif0").Counters.Drops; d["rx_not_local"] < 2 {
		t.Errorf("without --forward: drops %v, want the pings counted as rx_not_local", d)
	}
	if out, err := gb.Run("ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "203.0.113.1"); err != nil {
		t.Errorf("gb cannot reach ga's own vif address: %v\n%s", err, out)
	}
}

// hubLab builds a hub and three spokes on one segment. The hub's vif has
// a peer per spoke, each holding the spoke's vif address, and forwards
// between spokes 1 and 2 only; each spoke's one peer is the hub, for the
// hub's network and the spokes'.
func hubLab(t *testing.T) (hub *nstest.Host, spokes []*nstest.Host) {
	n := nstest.New(t)
	seg := n.Segment()
	hub = n.Host("hub")
	hubIf := seg.Attach(hub, "198.18.0.1/24")
	hub.Sysctl("net.ipv4.ip_forward", "1")
	args := []string{"up", "vif0", "192.0.2.1", "--slave", hubIf.Name(), "--no-arp-proxy",
		"--forward", "198.51.100.1/32", "--forward", "198.51.100.2/32"}
	for k := 1; k <= 3; k++ {
		s := n.Host(fmt.Sprintf("s%d", k))
		sIf := seg.Attach(s, fmt.Sprintf("198.18.0.1%d/24", k))
		spokes = append(spokes, s)
		args = append(args, "--peer", fmt.Sprintf("198.18.0.1%d=198.51.100.%d/32", k, k))
		vifCmd(t, s, "up", "vif0", fmt.Sprintf("198.51.100.%d", k), "--slave", sIf.Name(), "--no-arp-proxy",
			"--peer", "198.18.0.1=192.0.2.0/24,198.51.100.0/24")
		t.Cleanup(func() { stopDaemon(s) })
	}
	vifCmd(t, hub, args...)
	t.Cleanup(func() { stopDaemon(hub) })
	return hub, spokes
}

// A hub with three spokes on one vif: each spoke reaches the hub; through
// it, spoke 1 reaches spoke 2 (forwarded) but not spoke 3 (not); a spoke
// that spoofs another spoke's address is dropped; vif show counts per
// peer.
func TestPeersHubAndSpokes(t *testing.T) {
	hub, s := hubLab(t)
	for k, sp := range s {
		if out, err := sp.Run("ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "192.0.2.1"); err != nil {
			t.Errorf("spoke %d cannot ping the hub: %v\n%s", k+1, err, out)
		}
	}
	if out, err := s[0].Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.2"); err != nil {
		t.Errorf("spoke 1 cannot reach spoke 2 through the hub: %v\n%s", err, out)
	}
	// The hub's kernel, forwarding back out of vif0, redirects spoke 1;
	// such redirects stay out of the tunnel.
	if d := vifStatus(t, hub, "vif0").Counters.Drops; d["tx_icmp_redirect"] == 0 {
		t.Errorf("no ICMP redirect kept out of the tunnel: drops %v", d)
	}
	before := vifStatus(t, hub, "vif0").Counters.Drops["rx_not_local"]
	if out, err := s[0].Run("ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "198.51.100.3"); err == nil {
		t.Errorf("spoke 1 reached spoke 3, which the hub does not forward to:\n%s", out)
	}
	st := vifStatus(t, hub, "vif0")
	if got := st.Counters.Drops["rx_not_local"]; got < before+2 {
		t.Errorf("pings for spoke 3 at the hub: rx_not_local %d -> %d, want +2", before, got)
	}
	if p1, p3 := peerOf(t, st, "198.18.0.11"), peerOf(t, st, "198.18.0.13"); p1.DecapsulatedPackets < 5 || p3.EncapsulatedPackets < 2 {
		t.Errorf("per-peer counters: spoke 1 %+v, spoke 3 %+v", p1, p3)
	}

	spoofed := st.Counters.Drops["rx_bad_source"]
	attack(t, s[0], nil, "ipipecho", "198.18.0.1", "198.51.100.2", "192.0.2.1") // spoke 1 as spoke 2
	if _, ok := waitFor(5*time.Second, func() bool {
		return vifStatus(t, hub, "vif0").Counters.Drops["rx_bad_source"] == spoofed+1
	}); !ok {
		t.Errorf("spoke 1 spoofing spoke 2: drops %v", vifStatus(t, hub, "vif0").Counters.Drops)
	}
}

// Peers added, changed and removed while a ping flood runs to another
// peer: not one packet of the flood is lost.
func TestPeersChangedUnderTraffic(t *testing.T) {
	hub, _ := hubLab(t)
	flood := hub.Start("ping", "-n", "-q", "-c", "1500", "-i", "0.002", "-W", "2", "198.51.100.1")
	for k := 0; k < 10; k++ {
		vifCmd(t, hub, "set", "vif0", "peer", "198.18.0.13", "remove")
		vifCmd(t, hub, "set", "vif0", "peer", "198.18.0.14", "allowed-ips", "203.0.113.0/25")
		vifCmd(t, hub, "set", "vif0", "peer", "198.18.0.13", "allowed-ips", "198.51.100.3/32,203.0.113.128/25")
		vifCmd(t, hub, "set", "vif0", "peer", "198.18.0.14", "remove")
	}
	if err := flood.Wait(30 * time.Second); err != nil {
		t.Fatalf("ping flood to spoke 1 while peers changed: %v\n%s", err, flood.Output())
	}
	if out := flood.Output(); !strings.Contains(out, " 0% packet loss") {
		t.Errorf("ping flood to spoke 1 while peers changed:\n%s", out)
	}
	if !hub.HasRoute("203.0.113.128/25") || hub.HasRoute("203.0.113.0/25") {
		t.Errorf("routes of the peers' prefixes: %v", hub.Routes())
	}
	if out, err := hub.Run(vifBin, "set", "vif0", "peer", "198.18.0.99", "remove"); err == nil || !strings.Contains(out, "no such peer") {
		t.Errorf("removing a peer that is not there: %v, %q", err, out)
	}
	if out, err := hub.Run(vifBin, "set", "vif0", "peer", "198.18.0.15", "allowed-ips", "198.51.100.1/32"); err == nil || !strings.Contains(out, "given to peers") {
		t.Errorf("a prefix another peer has: %v, %q", err, out)
	}
}

// A whole /24 on one NIC with one route: a neighbour resolves and pings
// random addresses of it; the address another host holds is left to that
// host (probed at vif up, excluded, and routed to the segment, so that
// not even the kernel answers for it); network and broadcast addresses
// are not claimed; vif down leaves no route behind.
func TestRangeOnSegment(t *testing.T) {
	n := nstest.New(t)
	seg := n.Segment()
	a, c, d := n.Host("a"), n.Host("c"), n.Host("d")
	aIf := seg.Attach(a, "198.18.1.1/24")
	cIf := seg.Attach(c, "198.18.1.3/24")
	dIf := seg.Attach(d, "198.18.1.4/24")
	d.AddAddr(dIf.Name(), "192.0.2.77/32")
	c.AddRoute("192.0.2.0/24", "dev", cIf.Name())
	d.AddRoute("192.0.2.0/24", "dev", dIf.Name())
	a.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
	a.Sysctl("net.ipv4.conf."+aIf.Name()+".arp_ignore", "1")
	out := vifCmd(t, a, "up", "vif0", "192.0.2.0/24", "--range", "--slave", aIf.Name())
	t.Cleanup(func() { stopDaemon(a) })
	if !strings.Contains(out, "but 1 addresses other hosts use") {
		t.Errorf("vif up says: %q", out)
	}
	st := vifStatus(t, a, "vif0")
	if len(st.Ranges) != 1 || st.Ranges[0].String() != "192.0.2.0/24" || len(st.Exclude) != 1 || st.Exclude[0].String() != "192.0.2.77" {
		t.Fatalf("vif show: ranges %v, exclude %v", st.Ranges, st.Exclude)
	}
	for k := 0; k < 10; k++ {
		addr := fmt.Sprintf("192.0.2.%d", 1+(k*37+11)%253)
		if addr == "192.0.2.77" {
			continue
		}
		if mac, ok := arping(c, cIf.Name(), addr); !ok || mac.String() != aIf.MAC().String() {
			t.Errorf("arping %s: answered %v by %v, want by a (%v)", addr, ok, mac, aIf.MAC())
		}
		if !pingOnce(c, addr, 2*time.Second) {
			t.Errorf("ping %s in the range failed", addr)
		}
	}
	// Even the kernel, answering for local addresses (arp_ignore=0),
	// leaves 192.0.2.77 to d.
	a.Sysctl("net.ipv4.conf.all.arp_ignore", "0")
	a.Sysctl("net.ipv4.conf."+aIf.Name()+".arp_ignore", "0")
	capture := cIf.Capture("arp")
	c.IP("neigh", "flush", "dev", cIf.Name())
	if mac, ok := arping(c, cIf.Name(), "192.0.2.77"); !ok || mac.String() != dIf.MAC().String() {
		t.Errorf("arping 192.0.2.77: answered %v by %v, want by d (%v)", ok, mac, dIf.MAC())
	}
	fromA := func(p gopacket.Packet) bool {
		arp := arpLayer(p)
		return arp != nil && arp.Operation == layers.ARPReply && net.HardwareAddr(arp.SourceHwAddress).String() == aIf.MAC().String() &&
			net.IP(arp.SourceProtAddress).String() == "192.0.2.77"
	}
	if got := capture.Stop(); capture.Count(fromA) != 0 {
		t.Errorf("a answered for 192.0.2.77, d's address (%d frames captured)", len(got))
	}
	for _, addr := range []string{"192.0.2.0", "192.0.2.255"} {
		if mac, ok := arping(c, cIf.Name(), addr); ok {
			t.Errorf("arping %s (the range's network or broadcast address) answered by %v", addr, mac)
		}
	}
	vifCmd(t, a, "down", "vif0")
	if routes := a.IP("route", "show", "table", "local"); strings.Contains(routes, "192.0.2.") {
		t.Errorf("routes left after vif down:\n%s", routes)
	}

	// Killed, a vif leaves its exclusion routes (they are the slave's);
	// the next vif up of the range takes them over.
	p := startVif(t, a, "vif0", "192.0.2.0/24", "--range", "--slave", aIf.Name())
	p.Signal(syscall.SIGKILL)
	p.Wait(5 * time.Second)
	vifCmd(t, a, "up", "vif0", "192.0.2.0/24", "--range", "--slave", aIf.Name())

	// Nothing else may route into the range, nor a peer live in it.
	for _, args := range [][]string{
		{"up", "vif1", "198.51.100.1", "--slave", aIf.Name(), "--peer", "198.18.1.9=192.0.2.64/26"},
		{"up", "vif1", "198.51.100.1", "--slave", aIf.Name(), "--peer", "192.0.2.9=203.0.113.0/24"},
	} {
		if out, err := a.Run(vifBin, args...); err == nil || !strings.Contains(out, "bad peer") {
			t.Errorf("vif %v: %v, %q", args, err, out)
		}
	}
}

// The routes of the peers' prefixes are followed like --route's: a link
// flap flushes them, which is reported, and they come back with the link;
// routes removed by hand are reported, "vif set" routes them anew, and a
// prefix whose route exists already (the operator's) is refused, the
// operator's route left alone.
func TestPeerRoutesFollowed(t *testing.T) {
	hub, _ := hubLab(t)
	peerRoutes := []string{"198.51.100.1/32", "198.51.100.2/32", "198.51.100.3/32"}
	missing := func(n int) (daemon.VifStatus, bool) {
		var st daemon.VifStatus
		_, ok := waitFor(5*time.Second, func() bool {
			st = vifStatus(t, hub, "vif0")
			return len(st.RoutesMissing) == n
		})
		return st, ok
	}
	hub.IP("link", "set", "vif0", "down")
	if st, ok := missing(3); !ok {
		t.Fatalf("with the link down: routes %v, missing %v; want the 3 peer routes missing", st.Routes, st.RoutesMissing)
	}
	hub.IP("link", "set", "vif0", "up")
	if st, ok := missing(0); !ok || len(st.Routes) != 3 {
		t.Fatalf("with the link up again: routes %v, missing %v; want the 3 peer routes back", st.Routes, st.RoutesMissing)
	}
	for _, p := range peerRoutes {
		hub.IP("route", "del", p, "dev", "vif0")
	}
	if st, ok := missing(3); !ok {
		t.Fatalf("after removing them by hand: routes %v, missing %v; want the 3 peer routes missing", st.Routes, st.RoutesMissing)
	}
	vifCmd(t, hub, "set", "vif0", "peer", "198.18.0.11", "allowed-ips", "198.51.100.1/32")
	if _, ok := waitFor(5*time.Second, func() bool { return len(vifStatus(t, hub, "vif0").RoutesMissing) == 2 }); !ok || !hub.HasRoute("198.51.100.1/32") {
		t.Errorf("vif set with the same prefixes did not route them anew: %+v", vifStatus(t, hub, "vif0").RoutesMissing)
	}
	hub.AddRoute("203.0.113.192/26", "via", "198.18.0.99")
	out, err := hub.Run(vifBin, "set", "vif0", "peer", "198.18.0.15", "allowed-ips", "203.0.113.192/26")
	if err == nil || !strings.Contains(out, "exists already") {
		t.Errorf("a prefix routed by the operator: %v, %q", err, out)
	}
	if !hub.HasRoute("203.0.113.192/26") {
		t.Error("the operator's route is gone")
	}
	for _, bad := range [][]string{
		{"198.18.0.1", "allowed-ips", "203.0.113.0/28"},                 // the hub's own underlay address
		{"198.18.0.16", "allowed-ips", "198.18.0.11/32"},                // another peer's underlay address
		{"198.18.0.17", "allowed-ips", "224.0.0.0/4"},                   // multicast
		{"198.18.0.18", "allowed-ips", "203.0.113.8/29,203.0.113.8/29"}, // twice
	} {
		if out, err := hub.Run(vifBin, append([]string{"set", "vif0", "peer"}, bad...)...); err == nil || !strings.Contains(out, "bad peer") {
			t.Errorf("vif set vif0 peer %v: %v, %q", bad, err, out)
		}
	}
}
