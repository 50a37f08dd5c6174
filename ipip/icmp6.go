package ipip

import "encoding/binary"

// ICMPv6 errors (RFC 4443) a tunnel entry point sends back to the source
// of an IPv6 packet it cannot deliver: Packet Too Big when the packet is
// larger than the tunnel MTU (RFC 2473 section 7.1, RFC 4213 section
// 3.2.2), Destination Unreachable when there is no tunnel to send it into.
const (
	ICMPv6DestUnreach  = 1 // the ICMPv6 type of Destination Unreachable
	ICMPv6PacketTooBig = 2 // the ICMPv6 type of Packet Too Big
	// Codes of ICMPv6DestUnreach (RFC 4443 section 3.1).
	ICMPv6NoRoute     = 0 // no route to destination
	ICMPv6AddrUnreach = 3 // address unreachable

	// ICMPv6MaxErrorLen is the longest error PacketTooBig and
	// UnreachableIPv6 build: IPv6MinMTU, as RFC 4443 section 2.4(c) asks.
	ICMPv6MaxErrorLen = IPv6MinMTU
	// ICMPv6QuoteLen is how much of the offending packet an ICMPv6 error
	// quotes at most: what keeps the error within ICMPv6MaxErrorLen.
	ICMPv6QuoteLen = ICMPv6MaxErrorLen - IPv6HeaderLen - icmpHeaderLen

	protoICMPv6     = 58
	icmpv6Redirect  = 137
	icmpv6ErrorBase = 128 // types below are errors (RFC 4443 section 2.1)
)

// ErrorAllowedIPv6 reports whether an ICMPv6 error of type typ may be sent
// about pkt, following RFC 4443 section 2.4(e): not about an ICMPv6 error
// or Redirect (e.1, e.2), not about a packet to a multicast address unless
// typ is ICMPv6PacketTooBig (e.3), not about a packet whose source is the
// unspecified address or a multicast address (e.6) or the loopback
// address, which no other node can be. It also refuses a fragment other
// than the first and a packet whose extension headers run past it: either
// hides whether the packet is an ICMPv6 error. The e.4 and e.5 cases
// (link-layer multicast and broadcast) do not arise on the layer-3
// devices vif reads. pkt must be Valid. It does not allocate.
func ErrorAllowedIPv6(pkt IPv6, typ uint8) bool {
	src := pkt.SrcBytes()
	switch {
	case src[0] == 0xff, // multicast
		src == [16]byte{},      // unspecified
		src == [16]byte{15: 1}: // loopback
		return false
	case pkt[v6DstOffset] == 0xff && typ != ICMPv6PacketTooBig:
		return false
	}
	proto, l4, later, ok := pkt.upperLayer()
	if !ok || later {
		return false
	}
	if proto == protoICMPv6 {
		if len(l4) < 1 || l4[0] < icmpv6ErrorBase || l4[0] == icmpv6Redirect {
			return false
		}
	}
	return true
}

// PacketTooBig writes into buf an ICMPv6 Packet Too Big (RFC 4443 section
// 3.2) from src to the source of the offending packet pkt, with the MTU of
// the next hop, mtu, and as much of pkt as keeps the message within
// IPv6MinMTU bytes, and returns the message (a sub-slice of buf). An mtu
// below IPv6MinMTU is reported as IPv6MinMTU: a tunnel carries packets of
// that size by fragmenting its outer packets (RFC 2473 section 7.1 reports
// "the tunnel MTU or the IPv6 minimum link MTU, whichever is larger"), and
// a receiver ignores a smaller one anyway (RFC 8201 section 4). buf must
// hold ICMPv6MaxErrorLen bytes; pkt must be Valid. It does not allocate.
func PacketTooBig(buf []byte, src [16]byte, pkt IPv6, mtu int) []byte {
	return icmpv6Error(buf, src, pkt, ICMPv6PacketTooBig, 0, uint32(max(mtu, IPv6MinMTU)))
}

// UnreachableIPv6 writes into buf an ICMPv6 Destination Unreachable (RFC
// 4443 section 3.1) with code, from src to the source of the offending
// packet pkt, quoting as much of pkt as keeps the message within
// IPv6MinMTU bytes, and returns the message (a sub-slice of buf). buf must
// hold ICMPv6MaxErrorLen bytes; pkt must be Valid. It does not allocate.
func UnreachableIPv6(buf []byte, src [16]byte, pkt IPv6, code uint8) []byte {
	return icmpv6Error(buf, src, pkt, ICMPv6DestUnreach, code, 0)
}

// icmpv6Error builds an ICMPv6 error whose second 32-bit word is word.
func icmpv6Error(buf []byte, src [16]byte, pkt IPv6, typ, code uint8, word uint32) []byte {
	quote := min(len(pkt), pkt.Len(), ICMPv6QuoteLen)
	n := IPv6HeaderLen + icmpHeaderLen + quote
	out := buf[:n]
	dst := pkt.SrcBytes()
	IPv6(out).Encode(&IPv6Fields{
		TrafficClass: 0xc0, // class selector 6, as routers send errors
		PayloadLen:   uint16(n - IPv6HeaderLen),
		NextHeader:   protoICMPv6,
		HopLimit:     DefaultTTL,
		Src:          src,
		Dst:          dst,
	})
	m := out[IPv6HeaderLen:]
	m[0], m[1], m[2], m[3] = typ, code, 0, 0
	binary.BigEndian.PutUint32(m[4:], word)
	copy(m[icmpHeaderLen:], pkt[:quote])
	binary.BigEndian.PutUint16(m[2:], ICMPv6Checksum(src, dst, m))
	return out
}

// ICMPv6Checksum returns the checksum of the ICMPv6 message msg from src to
// dst: the Internet checksum over the IPv6 pseudo-header (RFC 8200 section
// 8.1: the addresses, the upper-layer length and Next Header 58) and msg
// (RFC 4443 section 2.3). Computed over a message whose checksum field is
// zero, it is the value to store there; over a message that carries its
// checksum, it is 0. It does not allocate.
func ICMPv6Checksum(src, dst [16]byte, msg []byte) uint16 {
	var sum uint64
	for i := 0; i < 16; i += 4 {
		sum += uint64(binary.BigEndian.Uint32(src[i:])) + uint64(binary.BigEndian.Uint32(dst[i:]))
	}
	sum += uint64(len(msg)) + protoICMPv6
	return checksum(msg, sum)
}
