//go:build linux

package nstest_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/nstest"
)

// upVif brings a vif up inside host h, in this test process, with its
// addresses published on its slave (an ARP proxy), and removes it when the
// test ends.
func upVif(t *testing.T, h *nstest.Host, cfg vif.LinkConfig) {
	t.Helper()
	cfg.Publish = true
	var ifc *vif.Interface
	// Sockets, the TUN device and the netlink handle are opened in h's
	// namespace and stay there, whichever thread uses them later.
	err := h.Do(func() (err error) {
		ifc, err = vif.Up(&cfg)
		return err
	})
	if err != nil {
		t.Fatalf("vif on %v: %v", h, err)
	}
	t.Cleanup(func() { ifc.Close() })
}

// TestExampleTunnelAndNeighbour is the test a tunnel-tool author copies
// first: two hosts with vifs tunnelling to each other over protocol 94,
// and a neighbour on the same segment that reaches a vif address through
// the ARP proxy. It asserts reachability and what is on the wire.
func TestExampleTunnelAndNeighbour(t *testing.T) {
	n := nstest.New(t) // skips unless root
	seg := n.Segment()
	a, b, c := n.Host("a"), n.Host("b"), n.Host("c")
	aIf := seg.Attach(a, "198.18.2.1/24")
	bIf := seg.Attach(b, "198.18.2.2/24")
	cIf := seg.Attach(c, "198.18.2.3/24")
	a.Sysctl("net.ipv4.conf.eth0.arp_ignore", "1") // only the proxy answers for vif addresses
	c.AddRoute("192.0.2.0/24", "dev", cIf.Name())

	// tcpdump on a slave sees only what passes the kernel's stack: the
	// tunnel checked on the wire here runs on raw sockets (AF_XDP
	// traffic is invisible to it).
	upVif(t, a, vif.LinkConfig{Name: "vif0", Slave: aIf.Name(), Underlay: vif.UnderlayRaw,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: bIf.Addr()},
		Routes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	upVif(t, b, vif.LinkConfig{Name: "vif0", Slave: bIf.Name(), Underlay: vif.UnderlayRaw,
		Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32")}, Peer: aIf.Addr()},
		Routes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})

	wire := bIf.Capture("ip proto 94")
	if err := a.Ping("198.51.100.1", 3); err != nil {
		t.Fatalf("ping through the tunnel: %v", err)
	}
	if err := c.Ping("192.0.2.1", 2); err != nil {
		t.Fatalf("neighbour ping of a's vif address: %v", err)
	}
	pkts := wire.Stop()

	// Three echo requests arrived at b in IPIP from a, three replies left.
	in := wire.Count(func(p gopacket.Packet) bool {
		ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		return ok && ip.SrcIP.Equal(aIf.Addr().AsSlice()) && ip.DstIP.Equal(bIf.Addr().AsSlice())
	})
	if in != 3 || len(pkts) != 6 {
		t.Errorf("on b's wire: %d IPIP packets from a (want 3), %d in all (want 6)", in, len(pkts))
	}
	// The neighbour learned a's slave MAC for the vif address.
	if got := c.NeighborMAC("192.0.2.1"); !bytes.Equal(got, aIf.MAC()) {
		t.Errorf("neighbour has 192.0.2.1 at %v, want %v", got, aIf.MAC())
	}
}
