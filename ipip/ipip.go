package ipip

import (
	"net/netip"
)

// IP protocol numbers of the encapsulations. Over IPv6 they are Next
// Header values, from the same registry.
const (
	// ProtoIPIP is IP protocol 94, the IPIP encapsulation of Ioannidis'
	// VIF (IANA "IPIP", IP-within-IP): IPv4 in IPv4. It is the default
	// over IPv4 and is not used over IPv6 (ErrProtocolFamily).
	ProtoIPIP uint8 = 94
	// ProtoIPinIP is IP protocol 4: IPv4 in IPv4, IP Encapsulation within
	// IP (RFC 2003), and IPv4 in IPv6 (RFC 2473).
	ProtoIPinIP uint8 = 4
	// ProtoIPv6 is IP protocol 41: IPv6 in IPv4 (RFC 4213 section 3.5,
	// "6in4") and IPv6 in IPv6 (RFC 2473).
	ProtoIPv6 uint8 = 41
)

// IPv4MinLen is the length of an IPv4 header without options: the
// shortest valid header, the outer header Encap writes, and so the
// headroom it needs in front of the inner packet.
const IPv4MinLen = 20

// DefaultTTL is the outer TTL or Hop Limit used when an Encapsulator sets
// none, the default TTL recommended by RFC 1700 and the default tunnel hop
// limit of RFC 2473 section 6.3.
const DefaultTTL = 64

// MaxPacketLen is the largest IPv4 packet, outer header included, and the
// largest IPv6 payload (an IPv6 packet may be IPv6HeaderLen longer).
const MaxPacketLen = 65535

// ECN is the Explicit Congestion Notification field of an IP header (RFC
// 3168 section 5).
type ECN uint8

// The four ECN codepoints.
const (
	NotECT ECN = 0b00 // not ECN-capable transport
	ECT1   ECN = 0b01 // ECN-capable transport, ECT(1)
	ECT0   ECN = 0b10 // ECN-capable transport, ECT(0)
	CE     ECN = 0b11 // congestion experienced
)

// String returns the RFC 3168 name of e.
func (e ECN) String() string {
	switch e & 0x03 {
	case NotECT:
		return "Not-ECT"
	case ECT1:
		return "ECT(1)"
	case ECT0:
		return "ECT(0)"
	}
	return "CE"
}

// DecapECN combines the ECN fields of an arriving outer and inner header as
// RFC 6040 section 4.2 (normal mode) prescribes and returns the field the
// forwarded inner header must carry. It returns false when the packet must
// be dropped: outer CE over an inner Not-ECT, since the congestion signal
// could not be passed on.
//
//	             | outer Not-ECT | outer ECT(0) | outer ECT(1) | outer CE
//	inner Not-ECT| Not-ECT       | Not-ECT      | Not-ECT      | drop
//	inner ECT(0) | ECT(0)        | ECT(0)       | ECT(1)       | CE
//	inner ECT(1) | ECT(1)        | ECT(1)       | ECT(1)       | CE
//	inner CE     | CE            | CE           | CE           | CE
func DecapECN(outer, inner ECN) (ECN, bool) {
	outer, inner = outer&0x03, inner&0x03
	switch {
	case inner == NotECT:
		return NotECT, outer != CE
	case inner == CE || outer == CE:
		return CE, true
	case outer == ECT1:
		return ECT1, true
	}
	return inner, true
}

// An Encapsulator writes outer headers for one tunnel. Its zero value is
// not usable: Src and Dst must be set. It is not safe for concurrent use
// (the Identification counter is not atomic); give each goroutine its own.
//
// Its methods are named after the inner packet they are given: Encap
// takes an IPv4 packet, EncapIPv6 an IPv6 one. The outer header's IP
// version is that of Src and Dst: the four combinations are IPv4 in IPv4
// (protocol 94 or 4), IPv6 in IPv4 (41), IPv4 in IPv6 (4) and IPv6 in
// IPv6 (41).
type Encapsulator struct {
	// Protocol is the outer protocol of IPv4 inner packets. Over IPv4 it
	// is ProtoIPIP or ProtoIPinIP; zero means ProtoIPIP. Over IPv6 it is
	// ProtoIPinIP (RFC 2473), which zero means there; ProtoIPIP, an IPv4
	// protocol, is refused with ErrProtocolFamily. IPv6 inner packets are
	// always carried as ProtoIPv6, whatever Protocol says.
	Protocol uint8
	// Src and Dst are the tunnel endpoints: this host's underlay address
	// and the peer's. Both must be IPv4 addresses, or both IPv6 addresses
	// (not IPv4-mapped), or Encap and EncapIPv6 fail with ErrEndpoints.
	Src, Dst netip.Addr
	// TTL is the outer TTL or Hop Limit. Zero means DefaultTTL.
	TTL uint8
	// InheritTTL copies the inner TTL or Hop Limit into the outer header
	// instead of using TTL (RFC 2003 section 3.1 allows either; RFC 2473
	// section 6.3 and RFC 4213 section 3.3 leave it to the tunnel).
	InheritTTL bool

	id uint16
}

// outerLen returns the length of the outer header e writes, IPv4MinLen or
// IPv6HeaderLen, or ErrEndpoints.
func (e *Encapsulator) outerLen() (int, error) {
	switch {
	case e.Src.Is4() && e.Dst.Is4():
		return IPv4MinLen, nil
	case e.Src.Is6() && e.Dst.Is6() && !e.Src.Is4In6() && !e.Dst.Is4In6():
		return IPv6HeaderLen, nil
	}
	return 0, ErrEndpoints
}

// outerTTL returns the outer TTL or Hop Limit for an inner packet whose
// own is inner.
func (e *Encapsulator) outerTTL(inner uint8) uint8 {
	switch {
	case e.InheritTTL:
		return inner
	case e.TTL == 0:
		return DefaultTTL
	}
	return e.TTL
}

// Encap encapsulates the inner IPv4 packet buf[off:] in place: it writes
// the outer header, IPv4 or IPv6 as Src and Dst are, into the hl bytes in
// front of it, buf[off-hl:off], and returns buf[off-hl:], which aliases
// buf. hl is IPv4MinLen over IPv4 and IPv6HeaderLen over IPv6; the caller
// must leave at least that much headroom (off >= hl) and buf[off:] must
// hold exactly one inner packet (its Total Length is used; trailing bytes
// are not sent). An inner packet with TTL 0 is refused with ErrInnerTTL
// (RFC 2003 section 3.1: an encapsulator MUST NOT encapsulate it). On
// error buf is left untouched.
//
// Over IPv4 the outer header carries the inner TOS byte (so ECN is
// copied, RFC 6040 section 4.1 normal mode), the inner Don't Fragment bit
// (RFC 2003 section 3.1), a fresh Identification, the TTL set by e, and a
// valid checksum. Over IPv6 (next header ProtoIPinIP, RFC 2473) it carries
// the inner TOS byte as its Traffic Class, a Flow Label hashed from the
// inner packet's flow (RFC 6438), and the TTL set by e as its Hop Limit.
// Encap does not allocate.
func (e *Encapsulator) Encap(buf []byte, off int) ([]byte, error) {
	hl, err := e.outerLen()
	if err != nil {
		return nil, err
	}
	proto := e.Protocol
	if hl == IPv6HeaderLen {
		switch proto {
		case 0, ProtoIPinIP:
			proto = ProtoIPinIP
		default:
			return nil, ErrProtocolFamily
		}
	} else if proto == 0 {
		proto = ProtoIPIP
	}
	if off < hl || off > len(buf) {
		return nil, ErrHeadroom
	}
	inner := IPv4(buf[off:])
	if err := inner.Valid(); err != nil {
		return nil, err.(Error).Inner()
	}
	if inner.TTL() == 0 {
		// RFC 2003 section 3.1: an encapsulator MUST NOT encapsulate a
		// datagram with TTL = 0.
		return nil, ErrInnerTTL
	}
	n := int(inner.TotalLen())
	if hl == IPv6HeaderLen {
		return e.encap6(buf[off-hl:off+n], proto, inner.TOS(), e.outerTTL(inner.TTL()), flowHash4(inner)), nil
	}
	if n+IPv4MinLen > MaxPacketLen {
		return nil, ErrTooBig
	}
	return e.encap4(buf[off-hl:off+n], proto, inner.TOS(), e.outerTTL(inner.TTL()), inner.DF()), nil
}

// EncapIPv6 encapsulates the inner IPv6 packet buf[off:] in place, as
// Encap does an IPv4 one: it writes the outer header into the hl bytes in
// front of it and returns buf[off-hl:], which aliases buf and ends where
// the inner payload length says (trailing bytes are not sent). The outer
// protocol is ProtoIPv6 (41). An inner packet with Hop Limit 0 is refused
// with ErrInnerTTL: a tunnel entry point forwards the packet and so first
// decrements its hop limit (RFC 2473 section 3.1), which the kernel did
// when it routed the packet into the tunnel; one that arrives at 0 must
// not go on (RFC 8200 section 3). Jumbograms are refused with ErrJumbogram.
// On error buf is left untouched.
//
// Over IPv4 ("6in4", RFC 4213) the outer header carries the inner Traffic
// Class as its TOS (ECN copied, RFC 6040 section 4.1), a fresh
// Identification, the TTL set by e, a valid checksum, and Don't Fragment
// set when the inner packet is longer than IPv6MinMTU: RFC 4213 section
// 3.2.2's algorithm for a tunnel that follows the IPv4 path MTU, as vif
// does, once the caller has answered a packet larger than both the tunnel
// MTU and IPv6MinMTU with a Packet Too Big. Such a packet is sent with DF
// ("Encapsulate and set the Don't Fragment flag"), and one of at most
// IPv6MinMTU bytes without, so that the IPv4 path may fragment it when its
// MTU is below 1280 + 20 ("Encapsulate but do not set the Don't Fragment
// flag"), as no IPv6 link may refuse it. Over IPv6 (RFC 2473) it carries
// the inner Traffic Class, a Flow Label hashed from the inner flow (RFC
// 6438), and the Hop Limit set by e. EncapIPv6 does not allocate.
func (e *Encapsulator) EncapIPv6(buf []byte, off int) ([]byte, error) {
	hl, err := e.outerLen()
	if err != nil {
		return nil, err
	}
	if off < hl || off > len(buf) {
		return nil, ErrHeadroom
	}
	inner := IPv6(buf[off:])
	if err := inner.Valid(); err != nil {
		return nil, err.(Error).Inner()
	}
	if inner.HopLimit() == 0 {
		return nil, ErrInnerTTL
	}
	n := inner.Len()
	if hl == IPv6HeaderLen {
		if n > MaxPacketLen {
			return nil, ErrTooBig
		}
		return e.encap6(buf[off-hl:off+n], ProtoIPv6, inner.TrafficClass(), e.outerTTL(inner.HopLimit()), flowHash6(inner)), nil
	}
	if n+IPv4MinLen > MaxPacketLen {
		return nil, ErrTooBig
	}
	return e.encap4(buf[off-hl:off+n], ProtoIPv6, inner.TrafficClass(), e.outerTTL(inner.HopLimit()), n > IPv6MinMTU), nil
}

// encap4 writes an IPv4 outer header at the start of out, which holds it
// and the inner packet, and returns out.
func (e *Encapsulator) encap4(out []byte, proto, tos, ttl uint8, df bool) []byte {
	e.id++
	IPv4(out).Encode(&IPv4Fields{
		TOS:      tos,
		TotalLen: uint16(len(out)),
		ID:       e.id,
		DF:       df,
		TTL:      ttl,
		Protocol: proto,
		Src:      e.Src.As4(),
		Dst:      e.Dst.As4(),
	})
	return out
}

// encap6 writes an IPv6 outer header at the start of out, which holds it
// and the inner packet, and returns out.
func (e *Encapsulator) encap6(out []byte, proto, tc, hops uint8, flow uint32) []byte {
	IPv6(out).Encode(&IPv6Fields{
		TrafficClass: tc,
		FlowLabel:    flow,
		PayloadLen:   uint16(len(out) - IPv6HeaderLen),
		NextHeader:   proto,
		HopLimit:     hops,
		Src:          e.Src.As16(),
		Dst:          e.Dst.As16(),
	})
	return out
}

// Decap validates the encapsulated packet pkt, whose outer header is IPv4,
// and returns the inner packet, a sub-slice of pkt (it aliases pkt and is
// trimmed to the inner packet's own length: IPv4 Total Length, or the IPv6
// payload length, RFC 4213 section 3.6).
//
// The outer header must be a well-formed, unfragmented IPv4 header with a
// valid checksum and protocol proto. With ProtoIPv6 (6in4, RFC 4213) the
// inner packet must be a well-formed IPv6 packet with a non-zero Hop
// Limit, not a jumbogram, whose extension headers fit in it; with any
// other proto (ProtoIPIP, ProtoIPinIP) a well-formed IPv4 packet with a
// valid header checksum and a non-zero TTL. In either case it must not
// itself be a tunnel packet (protocol 4, 41 or 94, for IPv6 after its
// extension headers): one level is undone, never more. The inner ECN field
// is updated in place as RFC 6040 prescribes (DecapECN), fixing an IPv4
// inner checksum (RFC 1624 equation 3); the inner TTL or Hop Limit is left
// unchanged (RFC 2003 section 3.1). An inner header Decap does not change
// keeps its checksum as sent: one that verifies but reads 0xffff where a
// full computation gives 0x0000 (one's-complement -0 and +0, RFC 1624
// section 3) is passed through as receivers accept it.
//
// Any rejection is one of the Error constants. Decap does not allocate.
func Decap(pkt []byte, proto uint8) ([]byte, error) {
	outer := IPv4(pkt)
	if err := outer.Valid(); err != nil {
		return nil, err
	}
	if !outer.ChecksumValid() {
		return nil, ErrChecksum
	}
	if outer.IsFragment() {
		return nil, ErrFragment
	}
	if outer.Protocol() != proto {
		return nil, ErrProtocol
	}
	payload := pkt[outer.HeaderLen():outer.TotalLen()]
	if proto == ProtoIPv6 {
		return decapIPv6Inner(payload, outer.ECN())
	}
	return decapIPv4Inner(payload, outer.ECN())
}

// DecapIPv6 validates the encapsulated packet pkt, whose outer header is
// IPv6 (RFC 2473), and returns the inner packet, a sub-slice of pkt
// trimmed to the inner packet's own length, as Decap does.
//
// proto is the tunnel's protocol: ProtoIPinIP for IPv4 inner packets or
// ProtoIPv6 for IPv6 ones; any other, ProtoIPIP included, fails every
// packet with ErrProtocolFamily. The outer header must be a well-formed
// IPv6 header, not a jumbogram, whose Next Header is proto: a Fragment
// header fails with ErrFragment (nothing is reassembled here), any other
// extension header with ErrExtensionHeader (none is processed, and a
// Linux ip6tnl peer must be set to send no Tunnel Encapsulation Limit
// option, RFC 2473 section 4.1.1), another protocol with ErrProtocol. The
// inner packet is checked as Decap checks it, and its ECN field updated
// from the outer Traffic Class by RFC 6040.
//
// Any rejection is one of the Error constants. DecapIPv6 does not
// allocate.
func DecapIPv6(pkt []byte, proto uint8) ([]byte, error) {
	if proto != ProtoIPinIP && proto != ProtoIPv6 {
		return nil, ErrProtocolFamily
	}
	outer := IPv6(pkt)
	if err := outer.Valid(); err != nil {
		return nil, err
	}
	if nh := outer.NextHeader(); nh != proto {
		switch {
		case nh == nhFragment:
			return nil, ErrFragment
		case isExtensionHeader(nh):
			return nil, ErrExtensionHeader
		}
		return nil, ErrProtocol
	}
	payload := pkt[IPv6HeaderLen:outer.Len()]
	if proto == ProtoIPv6 {
		return decapIPv6Inner(payload, outer.ECN())
	}
	return decapIPv4Inner(payload, outer.ECN())
}

// isTunnel reports whether an inner packet of protocol p is itself a
// tunnel packet of one of the encapsulations this package undoes.
func isTunnel(p uint8) bool { return p == ProtoIPIP || p == ProtoIPinIP || p == ProtoIPv6 }

// decapIPv4Inner checks the IPv4 packet at the start of payload, the outer
// packet's payload, applies the outer ECN field to it and returns it.
func decapIPv4Inner(payload []byte, outerECN ECN) ([]byte, error) {
	inner := IPv4(payload)
	if err := inner.Valid(); err != nil {
		return nil, err.(Error).Inner()
	}
	if !inner.ChecksumValid() {
		return nil, ErrInnerChecksum
	}
	if inner.TTL() == 0 {
		return nil, ErrInnerTTL
	}
	if isTunnel(inner.Protocol()) {
		return nil, ErrNested
	}
	ecn, ok := DecapECN(outerECN, inner.ECN())
	if !ok {
		return nil, ErrECN
	}
	if ecn != inner.ECN() {
		inner.SetECN(ecn)
	}
	return inner[:inner.TotalLen()], nil
}

// decapIPv6Inner is decapIPv4Inner for an IPv6 inner packet.
func decapIPv6Inner(payload []byte, outerECN ECN) ([]byte, error) {
	inner := IPv6(payload)
	if err := inner.Valid(); err != nil {
		return nil, err.(Error).Inner()
	}
	if inner.HopLimit() == 0 {
		return nil, ErrInnerTTL
	}
	proto, _, _, ok := inner.upperLayer()
	if !ok {
		return nil, ErrInnerTruncated
	}
	if isTunnel(proto) {
		return nil, ErrNested
	}
	ecn, ok := DecapECN(outerECN, inner.ECN())
	if !ok {
		return nil, ErrECN
	}
	if ecn != inner.ECN() {
		inner.SetECN(ecn)
	}
	return inner[:inner.Len()], nil
}

// Inner returns the reason for an inner packet that fails the same check
// as an outer header failing with e: ErrTruncated becomes ErrInnerTruncated,
// and likewise for ErrVersion, ErrHeaderLen and ErrTotalLen. Other reasons
// are returned unchanged.
func (e Error) Inner() Error {
	switch e {
	case ErrTruncated:
		return ErrInnerTruncated
	case ErrVersion:
		return ErrInnerVersion
	case ErrHeaderLen:
		return ErrInnerHeaderLen
	case ErrTotalLen:
		return ErrInnerTotalLen
	}
	return e
}
