package vif_test

import (
	"bytes"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/viftest"
)

// Capture the tunnel's outer packets, as the underlay sends and receives
// them, and write them as pcap (link type RAW: IP header first) for
// tcpdump or Wireshark.
func ExampleInterface_Capture() {
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
	c, err := ifc.Capture(&vif.CaptureOptions{Direction: vif.Out})
	if err != nil {
		log.Fatal(err)
	}

	dev.Inject(ping(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")))
	under.Recv(time.Second)
	for c.Captured() == 0 {
		time.Sleep(time.Millisecond)
	}
	c.Close() // Packets is closed after what it holds

	var file bytes.Buffer // or an *os.File
	w := pcapgo.NewWriter(&file)
	w.WriteFileHeader(65536, layers.LinkTypeRaw)
	for p := range c.Packets() {
		w.WritePacket(gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: p.Length}, p.Data)
		fmt.Println(p.Direction, len(p.Data), "bytes")
	}
	fmt.Println(c.Captured(), "captured,", c.Dropped(), "dropped")
	// Output:
	// out 48 bytes
	// 1 captured, 0 dropped
}
