package arpproxy

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// An Ethernet II frame carrying ARP for IPv4 over Ethernet (RFC 826):
//
//	offset size  field
//	     0    6  Ethernet destination
//	     6    6  Ethernet source
//	    12    2  EtherType (0x0806)
//	    14    2  ar$hrd  hardware type (1, Ethernet)
//	    16    2  ar$pro  protocol type (0x0800, IPv4)
//	    18    1  ar$hln  hardware address length (6)
//	    19    1  ar$pln  protocol address length (4)
//	    20    2  ar$op   opcode (1 request, 2 reply)
//	    22    6  ar$sha  sender hardware address
//	    28    4  ar$spa  sender protocol address
//	    32    6  ar$tha  target hardware address
//	    38    4  ar$tpa  target protocol address
//	    42       end; Ethernet pads the frame to 60 bytes on the wire
const (
	ethDstOffset    = 0
	ethSrcOffset    = 6
	ethTypeOffset   = 12
	hrdOffset       = 14
	proOffset       = 16
	hlnOffset       = 18
	plnOffset       = 19
	opOffset        = 20
	shaOffset       = 22
	spaOffset       = 28
	thaOffset       = 32
	tpaOffset       = 38
	arpFixedHdrLen  = 22 // Ethernet header and ARP up to and including ar$op
	hardwareAddrLen = 6
	protocolAddrLen = 4
)

const (
	// EthernetHeaderLen is the length of an Ethernet II header without
	// VLAN tags.
	EthernetHeaderLen = 14

	// FrameLen is the length of an Ethernet II frame carrying ARP for IPv4
	// over Ethernet, without padding. Frames received from the wire are
	// usually padded to 60 bytes; the padding is ignored.
	FrameLen = 42

	// EtherTypeARP is the EtherType of ARP, and the protocol to bind a
	// packet socket to.
	EtherTypeARP = 0x0806

	// EtherTypeIPv4 is the EtherType of IPv4, which ARP uses as its
	// protocol type for IPv4 addresses.
	EtherTypeIPv4 = 0x0800

	// HardwareTypeEthernet is the ARP hardware type of Ethernet
	// (10Mb Ethernet in RFC 826; every Ethernet speed uses it).
	HardwareTypeEthernet = 1
)

// Op is an ARP opcode (ar$op).
type Op uint16

// The ARP opcodes of RFC 826. Frames with any other opcode are dropped
// with DropOpcode.
const (
	// OpRequest asks who has the target protocol address.
	OpRequest Op = 1
	// OpReply answers a request: the sender hardware address has the
	// sender protocol address.
	OpReply Op = 2
)

// String returns "request", "reply" or "op(N)".
func (o Op) String() string {
	switch o {
	case OpRequest:
		return "request"
	case OpReply:
		return "reply"
	}
	return "op(" + itoa(uint64(o)) + ")"
}

// itoa formats n in decimal without fmt.
func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// Frame is a view of an Ethernet II frame carrying ARP for IPv4 over
// Ethernet. The accessors read the frame at fixed offsets; they panic if
// the frame is shorter than FrameLen, so call Validate first. Hardware
// addresses are returned as sub-slices of the frame: they alias it and
// change when it does.
type Frame []byte

// EthernetDst returns the Ethernet destination address, a sub-slice of f.
func (f Frame) EthernetDst() net.HardwareAddr {
	return net.HardwareAddr(f[ethDstOffset : ethDstOffset+6 : ethDstOffset+6])
}

// EthernetSrc returns the Ethernet source address, a sub-slice of f.
func (f Frame) EthernetSrc() net.HardwareAddr {
	return net.HardwareAddr(f[ethSrcOffset : ethSrcOffset+6 : ethSrcOffset+6])
}

// EtherType returns the frame's EtherType.
func (f Frame) EtherType() uint16 { return binary.BigEndian.Uint16(f[ethTypeOffset:]) }

// HardwareType returns the ARP hardware type (ar$hrd).
func (f Frame) HardwareType() uint16 { return binary.BigEndian.Uint16(f[hrdOffset:]) }

// ProtocolType returns the ARP protocol type (ar$pro).
func (f Frame) ProtocolType() uint16 { return binary.BigEndian.Uint16(f[proOffset:]) }

// HardwareLen returns the ARP hardware address length (ar$hln).
func (f Frame) HardwareLen() uint8 { return f[hlnOffset] }

// ProtocolLen returns the ARP protocol address length (ar$pln).
func (f Frame) ProtocolLen() uint8 { return f[plnOffset] }

// Op returns the ARP opcode (ar$op).
func (f Frame) Op() Op { return Op(binary.BigEndian.Uint16(f[opOffset:])) }

// SenderHardwareAddr returns the ARP sender hardware address (ar$sha), a
// sub-slice of f.
func (f Frame) SenderHardwareAddr() net.HardwareAddr {
	return net.HardwareAddr(f[shaOffset : shaOffset+6 : shaOffset+6])
}

// SenderIP returns the ARP sender protocol address (ar$spa).
func (f Frame) SenderIP() netip.Addr {
	return netip.AddrFrom4([4]byte(f[spaOffset : spaOffset+4]))
}

// TargetHardwareAddr returns the ARP target hardware address (ar$tha), a
// sub-slice of f.
func (f Frame) TargetHardwareAddr() net.HardwareAddr {
	return net.HardwareAddr(f[thaOffset : thaOffset+6 : thaOffset+6])
}

// TargetIP returns the ARP target protocol address (ar$tpa).
func (f Frame) TargetIP() netip.Addr {
	return netip.AddrFrom4([4]byte(f[tpaOffset : tpaOffset+4]))
}

// Validate checks that f is a well-formed Ethernet II frame carrying an
// ARP request or reply for IPv4 over Ethernet. It returns nil or the
// DropReason saying what is wrong: DropShort, DropEtherType,
// DropHardwareType, DropProtocolType, DropHardwareLen, DropProtocolLen or
// DropOpcode. It looks at the header fields only; Respond applies the
// address checks on top. Bytes after FrameLen (Ethernet padding) are
// ignored.
func (f Frame) Validate() error {
	if r := f.validate(); r != 0 {
		return r
	}
	return nil
}

func (f Frame) validate() DropReason {
	switch {
	case len(f) < EthernetHeaderLen:
		return DropShort
	case f.EtherType() != EtherTypeARP:
		return DropEtherType
	case len(f) < arpFixedHdrLen:
		return DropShort
	case f.HardwareType() != HardwareTypeEthernet:
		return DropHardwareType
	case f.ProtocolType() != EtherTypeIPv4:
		return DropProtocolType
	case f.HardwareLen() != hardwareAddrLen:
		return DropHardwareLen
	case f.ProtocolLen() != protocolAddrLen:
		return DropProtocolLen
	case f.Op() != OpRequest && f.Op() != OpReply:
		return DropOpcode
	case len(f) < FrameLen:
		return DropShort
	}
	return 0
}

// broadcast is the Ethernet broadcast address.
var broadcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// putHeader writes the fixed part of an Ethernet/ARP frame for IPv4 over
// Ethernet into b[:FrameLen].
func putHeader(b []byte, dst, src [6]byte, op Op) {
	copy(b[ethDstOffset:], dst[:])
	copy(b[ethSrcOffset:], src[:])
	binary.BigEndian.PutUint16(b[ethTypeOffset:], EtherTypeARP)
	binary.BigEndian.PutUint16(b[hrdOffset:], HardwareTypeEthernet)
	binary.BigEndian.PutUint16(b[proOffset:], EtherTypeIPv4)
	b[hlnOffset] = hardwareAddrLen
	b[plnOffset] = protocolAddrLen
	binary.BigEndian.PutUint16(b[opOffset:], uint16(op))
}

// PutRequest writes into b a broadcast ARP request from mac and senderIP
// asking who has targetIP, with a zero target hardware address, and
// returns b[:FrameLen]. With senderIP 0.0.0.0 it is an RFC 5227 probe;
// with senderIP equal to targetIP, an announcement (see PutAnnouncement).
// It panics if len(b) < FrameLen, if mac is not 6 bytes long or if an
// address is not IPv4.
func PutRequest(b []byte, mac net.HardwareAddr, senderIP, targetIP netip.Addr) Frame {
	if len(b) < FrameLen {
		panic("arpproxy: buffer shorter than FrameLen")
	}
	if len(mac) != hardwareAddrLen {
		panic("arpproxy: hardware address is not 6 bytes")
	}
	if !senderIP.Is4() || !targetIP.Is4() {
		panic("arpproxy: address is not IPv4")
	}
	src := [6]byte(mac)
	spa, tpa := senderIP.As4(), targetIP.As4()
	putHeader(b, broadcast, src, OpRequest)
	copy(b[shaOffset:], src[:])
	copy(b[spaOffset:], spa[:])
	clear(b[thaOffset : thaOffset+6])
	copy(b[tpaOffset:], tpa[:])
	return Frame(b[:FrameLen])
}

// PutAnnouncement writes into b an ARP Announcement of ip by mac (RFC 5227
// section 2.3): an ARP request broadcast on Ethernet, with sender hardware
// address mac, sender and target protocol addresses ip, and a zero target
// hardware address. It returns b[:FrameLen]. It panics if len(b) <
// FrameLen, if mac is not 6 bytes long or if ip is not IPv4.
func PutAnnouncement(b []byte, mac net.HardwareAddr, ip netip.Addr) Frame {
	return PutRequest(b, mac, ip, ip)
}
