package ipip

import (
	"net/netip"
)

// IP protocol numbers of the two encapsulations.
const (
	// ProtoIPIP is IP protocol 94, the IPIP encapsulation of Ioannidis'
	// VIF (IANA "IPIP", IP-within-IP). It is the default.
	ProtoIPIP uint8 = 94
	// ProtoIPinIP is IP protocol 4, IP Encapsulation within IP (RFC 2003).
	ProtoIPinIP uint8 = 4
)

// IPv4MinLen is the length of an IPv4 header without options: the
// shortest valid header, the outer header Encap writes, and so the
// headroom it needs in front of the inner packet.
const IPv4MinLen = 20

// DefaultTTL is the outer TTL used when an Encapsulator sets none, the
// default TTL recommended by RFC 1700.
const DefaultTTL = 64

// MaxPacketLen is the largest IPv4 packet, outer header included.
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
type Encapsulator struct {
	// Protocol is the outer IP protocol: ProtoIPIP or ProtoIPinIP.
	// Zero means ProtoIPIP.
	Protocol uint8
	// Src and Dst are the tunnel endpoints: this host's underlay address
	// and the peer's. Both must be IPv4 addresses.
	Src, Dst netip.Addr
	// TTL is the outer TTL. Zero means DefaultTTL.
	TTL uint8
	// InheritTTL copies the inner TTL into the outer header instead of
	// using TTL (RFC 2003 section 3.1 allows either).
	InheritTTL bool

	id uint16
}

// Encap encapsulates the inner IPv4 packet buf[off:] in place: it writes
// the outer header into buf[off-IPv4MinLen:off] and returns
// buf[off-IPv4MinLen:], which aliases buf. The caller must leave at least
// IPv4MinLen bytes of headroom (off >= IPv4MinLen) and buf[off:] must hold
// exactly one inner packet (its Total Length is used; trailing bytes are
// not sent). An inner packet with TTL 0 is refused with ErrInnerTTL (RFC
// 2003 section 3.1: an encapsulator MUST NOT encapsulate it). On error buf
// is left untouched.
//
// The outer header carries the inner TOS byte (so ECN is copied, RFC 6040
// section 4.1 normal mode), the inner Don't Fragment bit (RFC 2003 section
// 3.1), a fresh Identification, the TTL set by e, and a valid checksum.
// Encap does not allocate.
func (e *Encapsulator) Encap(buf []byte, off int) ([]byte, error) {
	if off < IPv4MinLen || off > len(buf) {
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
	tl := int(inner.TotalLen())
	if tl+IPv4MinLen > MaxPacketLen {
		return nil, ErrTooBig
	}
	src, dst := e.Src.As4(), e.Dst.As4()
	proto := e.Protocol
	if proto == 0 {
		proto = ProtoIPIP
	}
	ttl := e.TTL
	if e.InheritTTL {
		ttl = inner.TTL()
	} else if ttl == 0 {
		ttl = DefaultTTL
	}
	e.id++

	out := buf[off-IPv4MinLen : off+tl]
	IPv4(out).Encode(&IPv4Fields{
		TOS:      inner.TOS(),
		TotalLen: uint16(tl + IPv4MinLen),
		ID:       e.id,
		DF:       inner.DF(),
		TTL:      ttl,
		Protocol: proto,
		Src:      src,
		Dst:      dst,
	})
	return out, nil
}

// Decap validates the encapsulated packet pkt and returns the inner packet,
// a sub-slice of pkt (it aliases pkt and is trimmed to the inner Total
// Length).
//
// The outer header must be a well-formed, unfragmented IPv4 header with a
// valid checksum and protocol proto. The inner packet must be a well-formed
// IPv4 packet with a valid header checksum, a non-zero TTL, and must not
// itself be IPIP (protocol 4 or 94): one level is undone, never more. The
// inner ECN field is updated in place as RFC 6040 prescribes (DecapECN),
// fixing the inner checksum (RFC 1624 equation 3); the inner TTL is left
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
	inner := IPv4(pkt[outer.HeaderLen():outer.TotalLen()])
	if err := inner.Valid(); err != nil {
		return nil, err.(Error).Inner()
	}
	if !inner.ChecksumValid() {
		return nil, ErrInnerChecksum
	}
	if inner.TTL() == 0 {
		return nil, ErrInnerTTL
	}
	if p := inner.Protocol(); p == ProtoIPIP || p == ProtoIPinIP {
		return nil, ErrNested
	}
	ecn, ok := DecapECN(outer.ECN(), inner.ECN())
	if !ok {
		return nil, ErrECN
	}
	if ecn != inner.ECN() {
		inner.SetECN(ecn)
	}
	return inner[:inner.TotalLen()], nil
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
