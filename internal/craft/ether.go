package craft

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// EtherTypes used by the builders.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeARP  uint16 = 0x0806
)

// ARP opcodes (RFC 826).
const (
	ARPRequest uint16 = 1
	ARPReply   uint16 = 2
)

// Broadcast is the Ethernet broadcast address.
var Broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Ethernet returns an Ethernet II frame from src to dst with EtherType
// etherType carrying payload. It does not pad to the 60-byte minimum; the
// kernel sends short frames as they are and the receiver sees them padded
// or not depending on the link (veth does not pad).
func Ethernet(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	b := make([]byte, 14+len(payload))
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], etherType)
	copy(b[14:], payload)
	return b
}

// ARP returns an ARP packet for IPv4 over Ethernet (RFC 826), without the
// Ethernet header: opcode op, sender sha/spa, target tha/tpa. A nil tha is
// all zeros, as in a request.
func ARP(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1) // hardware type: Ethernet
	binary.BigEndian.PutUint16(b[2:], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:14], sha)
	s, t := spa.As4(), tpa.As4()
	copy(b[14:18], s[:])
	copy(b[18:24], tha)
	copy(b[24:28], t[:])
	return b
}

// ARPRequestFrame returns a broadcast Ethernet frame from sha carrying an
// ARP request of sha/spa for tpa.
func ARPRequestFrame(sha net.HardwareAddr, spa, tpa netip.Addr) []byte {
	return Ethernet(Broadcast, sha, EtherTypeARP, ARP(ARPRequest, sha, spa, nil, tpa))
}
