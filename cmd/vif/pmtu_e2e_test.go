//go:build linux

package main

import (
	"strings"
	"testing"

	"github.com/vif-project/vif/vif/nstest"
)

// TestPathMTUDiscoveryThroughTunnel puts a router with a 1280-byte link
// between the tunnel's ends (the vifs keep the default MTU, 1480): a DF
// packet too big for the path must come back to its sender as ICMP
// "fragmentation needed" with the tunnel MTU (RFC 2003 section 5.1), so a
// TCP transfer completes; a packet without DF is still delivered.
func TestPathMTUDiscoveryThroughTunnel(t *testing.T) {
	n := nstest.New(t)
	a, r, b := n.Host("a"), n.Host("r"), n.Host("b")
	aIf, _ := n.Link(a, r, "198.18.10.1/24", "198.18.10.254/24")
	bIf, _ := n.Link(b, r, "198.18.11.2/24", "198.18.11.254/24", nstest.WithMTU(1280))
	r.Sysctl("net.ipv4.ip_forward", "1")
	a.AddRoute("198.18.11.0/24", "via", "198.18.10.254")
	b.AddRoute("198.18.10.0/24", "via", "198.18.11.254")
	// b's slave has MTU 1280 itself: give b's vif the same 1480 as a's,
	// so both ends depend on path MTU discovery.
	startVif(t, a, "vif0", "192.0.2.1", "--slave", aIf.Name(), "--peer", "198.18.11.2",
		"--route", "198.51.100.0/24", "--no-arp-proxy")
	startVif(t, b, "vif0", "198.51.100.1", "--slave", bIf.Name(), "--peer", "198.18.10.1",
		"--route", "192.0.2.0/24", "--no-arp-proxy", "--mtu", "1480", "--outer-fragments")

	// Without DF, a big packet is fragmented by the router and delivered.
	if out, err := a.Run("ping", "-c", "2", "-W", "2", "-M", "dont", "-s", "1400", "198.51.100.1"); err != nil {
		t.Fatalf("big ping without DF through the tunnel: %v\n%s", err, out)
	}
	// With DF, the sender learns the tunnel's path MTU: 1280 - 20.
	out, _ := a.Run("ping", "-c", "3", "-i", "0.3", "-W", "1", "-M", "do", "-s", "1400", "198.51.100.1")
	if !strings.Contains(out, "mtu = 1260") {
		t.Errorf("DF ping too big for the path: want \"Frag needed ... mtu = 1260\", got:\n%s", out)
	}
	// TCP in both directions completes, at the smaller MSS.
	echoTCP(t, a, b, "198.51.100.1", 2<<20)

	// a's DF sender learnt the tunnel MTU from vif's ICMP errors
	// (generated, or relayed from the router's). b's vif carried the echo
	// replies, which have no DF, over its 1280-byte slave in outer
	// fragments (RFC 2003 section 5.1), rather than refusing them.
	if st := vifStatus(t, a, "vif0"); st.Counters.ICMPSent == 0 {
		t.Errorf("no ICMP error sent by a: %+v", st.Counters)
	}
	if st := vifStatus(t, b, "vif0"); st.Counters.FragmentedPackets == 0 || st.Counters.Drops["tx_too_big"] != 0 {
		t.Errorf("b's vif did not send its non-DF replies in fragments: %+v", st.Counters)
	}
}

// TestICMPRelayedFromInsideTheTunnel makes the router between the tunnel's
// ends refuse the peer (an unreachable route): the router's ICMP error
// comes to a, the encapsulator, which must relay host unreachable to the
// original sender (RFC 2003 section 4).
func TestICMPRelayedFromInsideTheTunnel(t *testing.T) {
	n := nstest.New(t)
	a, r, b := n.Host("a"), n.Host("r"), n.Host("b")
	aIf, _ := n.Link(a, r, "198.18.10.1/24", "198.18.10.254/24")
	bIf, _ := n.Link(b, r, "198.18.11.2/24", "198.18.11.254/24")
	r.Sysctl("net.ipv4.ip_forward", "1")
	a.AddRoute("198.18.11.0/24", "via", "198.18.10.254")
	b.AddRoute("198.18.10.0/24", "via", "198.18.11.254")
	startVif(t, a, "vif0", "192.0.2.1", "--slave", aIf.Name(), "--peer", "198.18.11.2",
		"--route", "198.51.100.0/24", "--no-arp-proxy")
	startVif(t, b, "vif0", "198.51.100.1", "--slave", bIf.Name(), "--peer", "198.18.10.1",
		"--route", "192.0.2.0/24", "--no-arp-proxy")
	if err := a.Ping("198.51.100.1", 1); err != nil {
		t.Fatalf("tunnel does not work before the fault: %v", err)
	}

	r.IP("route", "add", "unreachable", "198.18.11.2/32")
	out, _ := a.Run("ping", "-c", "3", "-i", "0.3", "-W", "1", "198.51.100.1")
	if !strings.Contains(out, "From 198.51.100.1") || !strings.Contains(out, "Unreachable") {
		t.Errorf("sender got no relayed unreachable from 198.51.100.1:\n%s", out)
	}
	r.IP("route", "del", "unreachable", "198.18.11.2/32")
	if err := a.Ping("198.51.100.1", 1); err != nil {
		t.Errorf("tunnel does not recover: %v", err)
	}
}
