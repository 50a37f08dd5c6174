package arpproxy

// DropReason is the reason Respond drops a frame without answering it. The
// values are comparable constants, usable as errors with errors.Is (a
// DropReason implements error) and as indexes of a counter array
// (0 < r < NumDropReasons), so counting drops by reason costs nothing.
//
// DropShort through DropOpcode mean the frame is malformed (Frame.Validate
// reports them); the others are well-formed frames we refuse to act on.
// On a socket opened by Listen the kernel filter (Filter) already discards
// frames whose EtherType is not ARP, so DropEtherType only counts frames
// that reach the Responder through another connection.
type DropReason uint8

// The reasons a frame is dropped.
const (
	// DropShort: the frame ends before the end of the ARP packet
	// (FrameLen bytes for Ethernet and IPv4 addresses).
	DropShort DropReason = iota + 1
	// DropEtherType: the EtherType is not ARP (0x0806). VLAN-tagged frames
	// are dropped with this reason.
	DropEtherType
	// DropHardwareType: ar$hrd is not Ethernet (1).
	DropHardwareType
	// DropProtocolType: ar$pro is not IPv4 (0x0800).
	DropProtocolType
	// DropHardwareLen: ar$hln is not 6.
	DropHardwareLen
	// DropProtocolLen: ar$pln is not 4.
	DropProtocolLen
	// DropOpcode: ar$op is neither request (1) nor reply (2).
	DropOpcode
	// DropSenderMAC: the Ethernet source or the ARP sender hardware address
	// is a multicast or broadcast address, or all zeros. No host sends
	// from such an address, and a reply to one would be flooded.
	DropSenderMAC
	// DropSourceMismatch: a request whose Ethernet source differs from its
	// ARP sender hardware address. The reply is unicast to the sender
	// hardware address, so answering such a request would let anyone aim
	// our replies at a third host. Replies are not answered and are not
	// checked (they are only inspected for conflicts). Bridges that
	// rewrite the Ethernet source without the ARP payload (wireless
	// "MAC NAT") trip this check; their hosts cannot be answered anyway.
	DropSourceMismatch
	// DropSenderIP: the ARP sender protocol address is multicast, the
	// limited broadcast address 255.255.255.255, or loopback (127/8).
	// 0.0.0.0 is allowed: it marks an RFC 5227 probe.
	DropSenderIP
	// DropOtherHost: the Ethernet destination is unicast to another host
	// (seen only in promiscuous mode or on a flooding bridge). Like the
	// kernel, we only act on frames sent to us, broadcast or multicast.
	DropOtherHost
	// DropFromSelf: the Ethernet source or ARP sender hardware address is
	// our own: an echo of a frame we (or the kernel) sent.
	DropFromSelf

	// NumDropReasons is one more than the largest DropReason, for sizing
	// arrays.
	NumDropReasons
)

var _ error = DropShort

var dropText = [NumDropReasons]string{
	DropShort:          "arpproxy: frame too short",
	DropEtherType:      "arpproxy: EtherType is not ARP",
	DropHardwareType:   "arpproxy: hardware type is not Ethernet",
	DropProtocolType:   "arpproxy: protocol type is not IPv4",
	DropHardwareLen:    "arpproxy: hardware address length is not 6",
	DropProtocolLen:    "arpproxy: protocol address length is not 4",
	DropOpcode:         "arpproxy: opcode is neither request nor reply",
	DropSenderMAC:      "arpproxy: sender hardware address is multicast, broadcast or zero",
	DropSourceMismatch: "arpproxy: Ethernet source differs from ARP sender hardware address",
	DropSenderIP:       "arpproxy: sender IP is multicast, broadcast or loopback",
	DropOtherHost:      "arpproxy: frame addressed to another host",
	DropFromSelf:       "arpproxy: frame sent by ourselves",
}

var dropNames = [NumDropReasons]string{
	DropShort:          "short",
	DropEtherType:      "ethertype",
	DropHardwareType:   "hardware_type",
	DropProtocolType:   "protocol_type",
	DropHardwareLen:    "hardware_len",
	DropProtocolLen:    "protocol_len",
	DropOpcode:         "opcode",
	DropSenderMAC:      "sender_mac",
	DropSourceMismatch: "source_mismatch",
	DropSenderIP:       "sender_ip",
	DropOtherHost:      "other_host",
	DropFromSelf:       "from_self",
}

// Error returns a description prefixed with "arpproxy: ".
func (r DropReason) Error() string {
	if r == 0 || r >= NumDropReasons {
		return "arpproxy: unknown drop reason"
	}
	return dropText[r]
}

// Name returns a short snake_case name for r, stable for use as a counter
// key (for example "source_mismatch").
func (r DropReason) Name() string {
	if r == 0 || r >= NumDropReasons {
		return "unknown"
	}
	return dropNames[r]
}

// String returns r.Name().
func (r DropReason) String() string { return r.Name() }

// DropReasons returns every DropReason in order, for tools that print one
// column or line per reason.
func DropReasons() []DropReason {
	rs := make([]DropReason, 0, NumDropReasons-1)
	for r := DropReason(1); r < NumDropReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}
