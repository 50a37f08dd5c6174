//go:build linux

package main

// IPv6 inside the tunnel over the IPv4 underlay (6in4, RFC 4213; issue
// 14 item 3): two hosts on a veth, each vif with an IPv6 address and the
// other's IPv6 network as its peer's prefix.

import (
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/vif/nstest"
)

// sixPair builds hosts a and b joined by a veth (198.18.0.0/24), each with
// vif0 holding 2001:db8:A::1 (B::1) and 192.0.2.x, the other side's /64
// behind its peer.
func sixPair(t *testing.T) (a, b *nstest.Host, aIf, bIf *nstest.Iface) {
	t.Helper()
	n := nstest.New(t)
	a, b = n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, bIf = n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
	startVif(t, a, "vif0", "2001:db8:a::1", "192.0.2.1", "--slave", aIf.Name(),
		"--peer", "198.18.0.2=2001:db8:b::/64,198.51.100.0/24", "--no-arp-proxy")
	startVif(t, b, "vif0", "2001:db8:b::1", "198.51.100.1", "--slave", bIf.Name(),
		"--peer", "198.18.0.1=2001:db8:a::/64,192.0.2.0/24", "--no-arp-proxy")
	return a, b, aIf, bIf
}

// Ping -6 both ways and a TCP transfer over IPv6 cross the tunnel, as
// IPv4 protocol 41 on the underlay and nothing else.
func TestSixInFour(t *testing.T) {
	a, b, _, bIf := sixPair(t)
	wire := bIf.Capture("ip")
	for _, p := range []struct {
		from *nstest.Host
		to   string
	}{{a, "2001:db8:b::1"}, {b, "2001:db8:a::1"}} {
		if out, err := p.from.Run("ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", p.to); err != nil {
			t.Fatalf("ping -6 %s from %v: %v\n%s\n%s", p.to, p.from, err, out, p.from.IP("-6", "route"))
		}
	}
	echoTCP6(t, a, b, "2001:db8:b::1", 4<<20)
	// IPv4 still goes through the same tunnel.
	if err := a.Ping("198.51.100.1", 1); err != nil {
		t.Errorf("IPv4 ping beside IPv6: %v", err)
	}
	var six, ipip, plain int
	for _, p := range wire.Stop() {
		pr, ok := outerProto(p)
		switch {
		case !ok:
		case pr == layers.IPProtocolIPv6:
			six++
		case pr == 94:
			ipip++
		default:
			plain++
		}
	}
	if six < 100 || ipip == 0 || plain != 0 {
		t.Errorf("on the underlay: %d 6in4 (protocol 41) packets, %d IPIP, %d others; want 100+, some, none", six, ipip, plain)
	}
	for _, h := range []*nstest.Host{a, b} {
		st := vifStatus(t, h, "vif0")
		if st.Counters.EncapsulatedPackets == 0 || st.Counters.DecapsulatedPackets == 0 || st.Counters.Drops["rx_bad_source"]+st.Counters.Drops["rx_not_local"] != 0 {
			t.Errorf("counters on %v: %+v", h, st.Counters)
		}
	}
	// A peer's IPv6 prefixes changed in place: the kept route is still
	// the vif's (the daemon follows IPv6 routes as IPv4 ones), the new
	// one is installed, and a link flap's route check agrees.
	vifCmd(t, a, "set", "vif0", "peer", "198.18.0.2", "allowed-ips", "2001:db8:b::/64,2001:db8:c::/64,198.51.100.0/24")
	a.IP("link", "set", "vif0", "down")
	a.IP("link", "set", "vif0", "up")
	vifCmd(t, a, "set", "vif0", "peer", "198.18.0.2", "allowed-ips", "2001:db8:b::/64,2001:db8:c::/64,198.51.100.0/24")
	if _, ok := waitFor(3*time.Second, func() bool {
		st := vifStatus(t, a, "vif0")
		return len(st.RoutesMissing) == 0 && slices.Contains(st.Routes, netip.MustParsePrefix("2001:db8:c::/64")) &&
			slices.Contains(st.Routes, netip.MustParsePrefix("2001:db8:b::/64"))
	}); !ok {
		st := vifStatus(t, a, "vif0")
		t.Errorf("after vif set allowed-ips: routes %v, missing %v\n%s", st.Routes, st.RoutesMissing, a.IP("-6", "route"))
	}
	if !pingOnce6(a, "2001:db8:b::1", 3*time.Second) {
		t.Error("the tunnel no longer carries IPv6 after the change")
	}
}

// A destination no peer has gets an ICMPv6 unreachable from the vif; one
// larger than the tunnel's path MTU a Packet Too Big with it (RFC 4213
// section 3.2.2).
func TestSixInFourErrors(t *testing.T) {
	a, _, aIf, _ := sixPair(t)
	a.IP("-6", "route", "add", "2001:db8:99::/64", "dev", "vif0")
	out, _ := a.Run("ping", "-6", "-n", "-c", "1", "-W", "2", "2001:db8:99::1")
	t.Logf("ping to a prefix no peer has:\n%s", out)
	if !strings.Contains(out, "Unreachable") && !strings.Contains(out, "unreachable") {
		t.Errorf("ping to a prefix no peer has: want unreachable, got:\n%s", out)
	}
	// The vif's MTU is the veth's 1500 less 20: 1480. The underlay
	// shrinks to 1400: a 1448-byte packet fits the vif but not the
	// path, which the vif learns when the kernel refuses the outer
	// packet, and reports as 1380.
	a.IP("link", "set", aIf.Name(), "mtu", "1400")
	out, _ = a.Run("ping", "-6", "-n", "-c", "2", "-i", "0.3", "-W", "2", "-s", "1400", "2001:db8:b::1")
	t.Logf("ping over the path MTU:\n%s", out)
	if !strings.Contains(out, "mtu=1380") && !strings.Contains(out, "mtu: 1380") {
		t.Errorf("a ping over the path MTU: want a Packet Too Big with mtu 1380, got:\n%s", out)
	}
	if st := vifStatus(t, a, "vif0"); st.Counters.Drops["tx_no_peer"] == 0 || st.Counters.Drops["tx_too_big"] == 0 || st.Counters.ICMPSent < 2 {
		t.Errorf("counters %+v: want tx_no_peer and ICMP sent", st.Counters)
	}
}

// echoTCP6 is echoTCP over IPv6.
// A router inside the tunnel refuses the peer: its ICMP error about a 6in4
// packet comes to a, which relays the ICMPv6 counterpart to the IPv6
// sender (RFC 4213 section 3.4), from its own IPv6 address.
func TestSixInFourICMPRelayed(t *testing.T) {
	n := nstest.New(t)
	a, r, b := n.Host("a", nstest.WithIPv6()), n.Host("r"), n.Host("b", nstest.WithIPv6())
	aIf, _ := n.Link(a, r, "198.18.10.1/24", "198.18.10.254/24")
	bIf, _ := n.Link(b, r, "198.18.11.2/24", "198.18.11.254/24")
	r.Sysctl("net.ipv4.ip_forward", "1")
	a.AddRoute("198.18.11.0/24", "via", "198.18.10.254")
	b.AddRoute("198.18.10.0/24", "via", "198.18.11.254")
	startVif(t, a, "vif0", "2001:db8:a::1", "--slave", aIf.Name(), "--peer", "198.18.11.2=2001:db8:b::/64", "--no-arp-proxy")
	startVif(t, b, "vif0", "2001:db8:b::1", "--slave", bIf.Name(), "--peer", "198.18.10.1=2001:db8:a::/64", "--no-arp-proxy")
	ping := func() (string, error) {
		return a.Run("ping", "-6", "-n", "-c", "3", "-i", "0.3", "-W", "1", "2001:db8:b::1")
	}
	if out, err := ping(); err != nil {
		t.Fatalf("tunnel does not work before the fault: %v\n%s", err, out)
	}
	r.IP("route", "add", "unreachable", "198.18.11.2/32")
	out, _ := ping()
	if !strings.Contains(out, "From 2001:db8:a::1") || !strings.Contains(out, "Destination unreachable: Address unreachable") {
		t.Errorf("sender got no relayed ICMPv6 address unreachable from 2001:db8:a::1:\n%s", out)
	}
	r.IP("route", "del", "unreachable", "198.18.11.2/32")
	if out, err := ping(); err != nil {
		t.Errorf("tunnel does not recover: %v\n%s", err, out)
	}
}

func echoTCP6(t *testing.T, a, b *nstest.Host, addr string, size int) {
	t.Helper()
	var ln net.Listener
	if err := b.Do(func() (err error) {
		ln, err = net.Listen("tcp6", net.JoinHostPort(addr, "0"))
		return err
	}); err != nil {
		t.Fatalf("listen on %v: %v", b, err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	var c net.Conn
	if err := a.Do(func() (err error) {
		c, err = net.DialTimeout("tcp6", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial through the tunnel: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	payload := make([]byte, size)
	rand.Read(payload)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v (after %d bytes)", err, len(got))
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("echo differs: got %d bytes, sent %d", len(got), len(payload))
	}
}
