package vif_test

import (
	"log"
	"net/netip"

	"github.com/vif-project/vif/vif"
)

// Bring a vif up on this host from Go (needs root): the library form of
// "vif up vif0 192.0.2.1 --slave eth0 --peer 198.18.0.2 --route 198.51.100.0/24",
// the address published on eth0's segment by an ARP proxy.
func ExampleUp() {
	ifc, err := vif.Up(&vif.LinkConfig{
		Name: "vif0",
		Config: vif.Config{
			Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")},
			Peer:  netip.MustParseAddr("198.18.0.2"),
		},
		Slave:   "eth0",
		Routes:  []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		Publish: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer ifc.Close() // removes the publication, routes, address and interface
	<-ifc.Done()      // until the interface is deleted from outside
}
