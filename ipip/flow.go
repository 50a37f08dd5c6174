package ipip

import "encoding/binary"

// The outer Flow Label of a packet encapsulated in IPv6 is a hash of the
// inner packet's flow, as RFC 6438 section 3 asks of a tunnel entry point,
// so that routers on the underlay spread the tunnel's flows over equal-cost
// paths and links (RFC 6437) while keeping each flow on one. Linux's
// ip6tnl does the same with its automatic flow labels.
//
// The flow is the source and destination addresses and the protocol, with
// the ports for TCP, UDP, UDP-Lite and SCTP when the header holding them
// is in the packet; an IPv4 fragment is hashed without its ports, so all
// fragments of a datagram share a label. An IPv6 inner packet that carries
// a Flow Label of its own is hashed by its addresses and that label (RFC
// 6438 section 3: the label already tells its flows apart), the others
// by their addresses, Next Header and, when it is TCP, UDP, UDP-Lite or
// SCTP, ports; extension headers are not walked.

// hasPorts reports whether protocol p starts with 16-bit source and
// destination ports.
func hasPorts(p uint8) bool {
	switch p {
	case 6, 17, 132, 136: // TCP, UDP, SCTP, UDP-Lite
		return true
	}
	return false
}

// mix folds the 32-bit word w into the hash h.
func mix(h, w uint32) uint32 {
	h ^= w
	h *= 0x9e3779b1 // 2^32 / golden ratio, odd
	return h ^ h>>16
}

// label reduces the hash h to a 20-bit Flow Label.
func label(h uint32) uint32 { return (h ^ h>>20) & flowLabelMask }

// flowHash4 returns the Flow Label for the valid IPv4 packet h.
func flowHash4(h IPv4) uint32 {
	x := mix(0x811c9dc5, binary.BigEndian.Uint32(h[srcOffset:]))
	x = mix(x, binary.BigEndian.Uint32(h[dstOffset:]))
	p := h.Protocol()
	ports := uint32(0)
	if ihl := h.HeaderLen(); hasPorts(p) && !h.IsFragment() && int(h.TotalLen()) >= ihl+4 {
		ports = binary.BigEndian.Uint32(h[ihl:])
	}
	return label(mix(mix(x, uint32(p)), ports))
}

// flowHash6 returns the Flow Label for the valid IPv6 packet h.
func flowHash6(h IPv6) uint32 {
	x := uint32(0x811c9dc5)
	for i := v6SrcOffset; i < v6DstOffset+16; i += 4 {
		x = mix(x, binary.BigEndian.Uint32(h[i:]))
	}
	if fl := h.FlowLabel(); fl != 0 {
		return label(mix(x, fl|1<<31)) // a label, not a protocol number
	}
	p := h.NextHeader()
	ports := uint32(0)
	if hasPorts(p) && h.PayloadLen() >= 4 {
		ports = binary.BigEndian.Uint32(h[IPv6HeaderLen:])
	}
	return label(mix(mix(x, uint32(p)), ports))
}
