package ipip_test

import (
	"fmt"
	"net/netip"

	"github.com/vif-project/vif/ipip"
)

// exampleInner returns a 28-byte ICMP echo request from 10.0.0.1 to
// 10.0.0.2 (TTL 64, DF set, ECT(0)), with a valid IPv4 header checksum.
func exampleInner() []byte {
	pkt := []byte{
		0x45, 0x02, 0x00, 0x1c, // version 4, IHL 5, ECT(0), total length 28
		0x12, 0x34, 0x40, 0x00, // ID 0x1234, DF
		0x40, 0x01, 0x00, 0x00, // TTL 64, ICMP, checksum (set below)
		10, 0, 0, 1, // source
		10, 0, 0, 2, // destination
		0x08, 0x00, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x00, // ICMP echo request
	}
	ipip.IPv4(pkt).SetChecksum()
	return pkt
}

func ExampleEncapsulator_Encap() {
	inner := exampleInner()

	// Leave IPv4MinLen bytes of headroom in front of the inner packet, as a
	// TUN reader would by reading into buf[ipip.IPv4MinLen:].
	buf := make([]byte, ipip.IPv4MinLen+len(inner))
	copy(buf[ipip.IPv4MinLen:], inner)

	tun := ipip.Encapsulator{
		Src: netip.MustParseAddr("192.0.2.1"),
		Dst: netip.MustParseAddr("198.51.100.7"),
	}
	out, err := tun.Encap(buf, ipip.IPv4MinLen)
	if err != nil {
		fmt.Println("drop:", err)
		return
	}
	h := ipip.IPv4(out)
	fmt.Println(h.Src(), "->", h.Dst())
	fmt.Println("protocol", h.Protocol(), "ttl", h.TTL(), "len", h.TotalLen(), "id", h.ID())
	fmt.Println("DF", h.DF(), "ECN", h.ECN(), "checksum ok", h.ChecksumValid())
	fmt.Printf("% x\n", out[:ipip.IPv4MinLen])
	fmt.Println("in place:", &out[ipip.IPv4MinLen] == &buf[ipip.IPv4MinLen])
	// Output:
	// 192.0.2.1 -> 198.51.100.7
	// protocol 94 ttl 64 len 48 id 1
	// DF true ECN ECT(0) checksum ok true
	// 45 02 00 30 00 01 40 00 40 5e 4e 31 c0 00 02 01 c6 33 64 07
	// in place: true
}

func ExampleDecap() {
	tun := ipip.Encapsulator{
		Protocol: ipip.ProtoIPinIP, // RFC 2003
		Src:      netip.MustParseAddr("192.0.2.1"),
		Dst:      netip.MustParseAddr("198.51.100.7"),
	}
	buf := append(make([]byte, ipip.IPv4MinLen), exampleInner()...)
	pkt, _ := tun.Encap(buf, ipip.IPv4MinLen)

	var drops [ipip.NumErrors]int
	inner, err := ipip.Decap(pkt, ipip.ProtoIPinIP)
	if err != nil {
		drops[err.(ipip.Error)]++
	} else {
		h := ipip.IPv4(inner)
		fmt.Println(h.Src(), "->", h.Dst(), "len", len(inner), "ttl", h.TTL())
	}

	// A packet damaged in transit is dropped and counted by reason.
	pkt[8]-- // outer TTL changed without fixing the checksum
	if _, err := ipip.Decap(pkt, ipip.ProtoIPinIP); err != nil {
		drops[err.(ipip.Error)]++
		fmt.Println(err)
	}
	for e, n := range drops {
		if n > 0 {
			fmt.Printf("%s=%d\n", ipip.Error(e).Name(), n)
		}
	}
	// Output:
	// 10.0.0.1 -> 10.0.0.2 len 28 ttl 64
	// ipip: bad header checksum
	// checksum=1
}
