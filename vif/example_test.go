package vif_test

import (
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/viftest"
)

// Run the packet loop over your own device and underlay: here the
// in-memory doubles of package viftest. A packet routed into the vif for
// another network is encapsulated to the peer.
func ExampleNew() {
	dev, under := viftest.NewTUN(16), viftest.NewUnderlay(16)
	ifc, err := vif.New(dev, under, &vif.Config{
		Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")},
		Local: netip.MustParseAddr("198.18.0.1"),
		Peer:  netip.MustParseAddr("198.18.0.2"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer ifc.Close()

	dev.Inject(ping(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")))
	out, _ := under.Recv(time.Second)
	h := ipip.IPv4(out)
	fmt.Printf("%v > %v protocol %d, carrying %v > %v\n",
		h.Src(), h.Dst(), h.Protocol(), ipip.IPv4(out[h.HeaderLen():]).Src(), ipip.IPv4(out[h.HeaderLen():]).Dst())
	// Output: 198.18.0.1 > 198.18.0.2 protocol 94, carrying 192.0.2.1 > 198.51.100.1
}

// Read an interface's counters, including drops by reason.
func ExampleInterface_Stats() {
	dev := viftest.NewTUN(1)
	ifc, err := vif.New(dev, nil, &vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}})
	if err != nil {
		log.Fatal(err)
	}
	defer ifc.Close()

	// No peer: a packet for another network can't be tunnelled.
	dev.Inject(ping(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")))
	for s := ifc.Stats(); s.Dropped() == 0 || s.ICMPSent == 0; s = ifc.Stats() {
		time.Sleep(time.Millisecond) // dropped, and "network unreachable" sent back
	}
	s := ifc.Stats()
	fmt.Println(s.Encapsulated, s.Dropped(), s.Drops)
	fmt.Println(s)
	// Output:
	// 0 1 map[tx_no_peer:1]
	// looped 0 (0 B), encapsulated 0 (0 B), decapsulated 0 (0 B), dropped 1 (tx_no_peer 1), icmp 1 sent, 0 limited
}

// ping returns a minimal ICMP echo request from src to dst.
func ping(src, dst netip.Addr) []byte {
	p := []byte{
		0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
		8, 0, 0xf7, 0xff, 0, 0, 0, 0,
	}
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	ipip.IPv4(p).SetChecksum()
	return p
}
