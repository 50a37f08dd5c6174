//go:build linux

package nstest_test

import (
	"bytes"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/vif/nstest"
)

// testTwoHostsAndANeighbour is a complete test as a user of nstest writes
// it; in your own package it is a test function such as
// TestTwoHostsAndANeighbour(t *testing.T). Here go test runs it as
// TestExample.
//
// It builds the setting of the vif paper: two hosts, a and b, whose slave
// interfaces share an Ethernet segment with a third machine, the
// neighbour. The neighbour pings both hosts, and a capture on its
// interface shows the ARP exchanges and the echoes.
func testTwoHostsAndANeighbour(t *testing.T) {
	n := nstest.New(t) // skips the test unless it runs as root

	seg := n.Segment()
	a, b, nb := n.Host("a"), n.Host("b"), n.Host("neighbour")
	aIf := seg.Attach(a, "198.18.1.1/24") // a's slave, a/eth0
	bIf := seg.Attach(b, "198.18.1.2/24") // b's slave, b/eth0
	nIf := seg.Attach(nb, "198.18.1.3/24")

	// Like hardened hosts, a and b answer ARP only for addresses of the
	// interface a request arrives on.
	for _, h := range []*nstest.Host{a, b} {
		h.Sysctl("net.ipv4.conf.eth0.arp_ignore", "1")
	}

	// Capture on the neighbour's wire, then ping each host twice from it.
	c := nIf.Capture("arp or icmp")
	for _, host := range []*nstest.Iface{aIf, bIf} {
		if err := nb.Ping(host.Addr().String(), 2); err != nil {
			t.Fatal(err)
		}
	}
	pkts := c.Stop()
	t.Logf("captured %d packets on %v", len(pkts), nIf)

	for _, host := range []*nstest.Iface{aIf, bIf} {
		// The neighbour resolved the host's address to its slave's MAC...
		if got := nb.NeighborMAC(host.Addr().String()); !bytes.Equal(got, host.MAC()) {
			t.Errorf("neighbour has %v at %v, want %v", host.Addr(), got, host.MAC())
		}
		arpReplies := c.Count(func(p gopacket.Packet) bool {
			arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
			return ok && arp.Operation == layers.ARPReply &&
				bytes.Equal(arp.SourceProtAddress, host.Addr().AsSlice()) &&
				bytes.Equal(arp.SourceHwAddress, host.MAC())
		})
		if arpReplies < 1 {
			t.Errorf("no ARP reply from %v on the wire", host)
		}
		// ...and the host answered both echo requests.
		echoReplies := c.Count(func(p gopacket.Packet) bool {
			ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			icmp, isICMP := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			return ok && isICMP && ip.SrcIP.Equal(host.Addr().AsSlice()) &&
				icmp.TypeCode.Type() == layers.ICMPv4TypeEchoReply
		})
		if echoReplies != 2 {
			t.Errorf("%d echo replies from %v, want 2", echoReplies, host)
		}
	}
}

// This example is the test above: two hosts and a neighbour on one
// Ethernet segment, a ping from the neighbour to each host, and checks of
// the neighbour table and of a packet capture. Example functions get no
// *testing.T, so this one does not run; go test runs the test as
// TestExample.
func Example_twoHostsAndANeighbour() {
	// In a user's package:
	//
	//	func TestTwoHostsAndANeighbour(t *testing.T) {
	//		n := nstest.New(t)
	//		...
	//	}
}
