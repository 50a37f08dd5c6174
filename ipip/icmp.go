package ipip

import (
	"encoding/binary"

	"github.com/vif-project/vif/internal/inet"
)

// ICMP destination unreachable (RFC 792), the error a tunnel entry point
// sends back to a sender, as a router would (RFC 1812 section 4.3) and as
// RFC 2003 section 4 asks.
const (
	ICMPDestUnreach = 3 // the ICMP type
	// Codes of ICMPDestUnreach.
	ICMPNetUnreach  = 0
	ICMPHostUnreach = 1
	ICMPFragNeeded  = 4 // with the next-hop MTU (RFC 1191)

	// ICMPQuoteLen is how much of the offending packet an error quotes:
	// RFC 1812 section 4.3.2.3 allows as much as keeps the error within
	// 576 bytes (20 for the header, 8 for ICMP, 548).
	ICMPQuoteLen = 576 - IPv4MinLen - icmpHeaderLen
	// ICMPMaxErrorLen is the longest error Unreachable builds.
	ICMPMaxErrorLen = IPv4MinLen + icmpHeaderLen + ICMPQuoteLen

	icmpHeaderLen = 8
	protoICMP     = 1
)

// ErrorAllowed reports whether an ICMP error may be sent about pkt (RFC
// 1812 section 4.3.2.7): not about an ICMP error, a non-initial fragment,
// or a packet whose source is not a unicast address. pkt must be Valid.
func ErrorAllowed(pkt IPv4) bool {
	if pkt.FragmentOffset() != 0 || inet.Why4(pkt.SrcBytes()) != "" {
		return false
	}
	if pkt.Protocol() == protoICMP {
		ihl := pkt.HeaderLen()
		if len(pkt) < ihl+1 {
			return false
		}
		switch pkt[ihl] { // only queries (echo, timestamp, ...) may cause errors
		case 0, 8, 13, 14, 17, 18:
		default:
			return false
		}
	}
	return true
}

// Unreachable writes into buf an ICMP destination unreachable with code,
// from src to the source of the offending packet pkt, quoting as much of
// pkt as ICMPQuoteLen allows, and returns the message (a sub-slice of
// buf). For ICMPFragNeeded, mtu is the next-hop MTU (RFC 1191). buf must
// hold ICMPMaxErrorLen bytes; pkt must be Valid. It does not allocate.
func Unreachable(buf []byte, src [4]byte, pkt IPv4, code uint8, mtu int) []byte {
	quote := min(len(pkt), int(pkt.TotalLen()), ICMPQuoteLen)
	n := IPv4MinLen + icmpHeaderLen + quote
	out := buf[:n]
	IPv4(out).Encode(&IPv4Fields{
		TOS:      0xc0, // precedence "internetwork control", as routers send errors
		TotalLen: uint16(n),
		TTL:      DefaultTTL,
		Protocol: protoICMP,
		Src:      src,
		Dst:      pkt.SrcBytes(),
	})
	m := out[IPv4MinLen:]
	clear(m[:icmpHeaderLen])
	m[0], m[1] = ICMPDestUnreach, code
	if code == ICMPFragNeeded {
		binary.BigEndian.PutUint16(m[6:], uint16(mtu))
	}
	copy(m[icmpHeaderLen:], pkt[:quote])
	binary.BigEndian.PutUint16(m[2:], Checksum(m))
	return out
}

// Checksum returns the Internet checksum of b (RFC 1071): the one's
// complement of the one's-complement sum of its 16-bit words, an odd last
// byte padded with zero. A message whose checksum field holds it sums,
// checksum included, to 0xffff: Checksum of it is 0.
func Checksum(b []byte) uint16 { return checksum(b, 0) }

// checksum is Checksum of a pseudo-header whose one's-complement sum,
// unfolded, is sum, followed by b.
func checksum(b []byte, sum uint64) uint16 {
	for len(b) >= 8 {
		sum += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	// Fold 64 bits into 16, carries end-around (RFC 1071 section 2(B)).
	sum = sum>>32 + sum&0xffffffff
	sum = sum>>32 + sum&0xffffffff
	return ^fold(uint32(sum>>16) + uint32(sum&0xffff))
}
