package ipip

import (
	"encoding/binary"
	"net/netip"
)

// An IPv6 header (RFC 8200 section 3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+                         Source Address                        +
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+                      Destination Address                      +
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	v6VersTCFlowOffset = 0
	v6PayloadLenOffset = 4
	v6NextHeaderOffset = 6
	v6HopLimitOffset   = 7
	v6SrcOffset        = 8
	v6DstOffset        = 24

	flowLabelMask = 0x000fffff
)

// IPv6HeaderLen is the length of the fixed IPv6 header: the outer header
// Encap and EncapIPv6 write over IPv6, and so the headroom they need there.
const IPv6HeaderLen = 40

// IPv6MinMTU is the minimum link MTU of IPv6 (RFC 8200 section 5): every
// link, a tunnel included, must carry packets of 1280 bytes. It bounds the
// ICMPv6 errors this package builds (RFC 4443 section 2.4(c)) and decides
// the outer Don't Fragment bit of IPv6 packets encapsulated in IPv4
// (EncapIPv6).
const IPv6MinMTU = 1280

// Next Header values of the IPv6 extension headers (IANA "IPv6 Extension
// Header Types", RFC 8200 section 4).
const (
	nhHopByHop    = 0
	nhRouting     = 43
	nhFragment    = 44
	nhESP         = 50
	nhAH          = 51
	nhDestOpts    = 60
	nhMobility    = 135
	nhHIP         = 139
	nhShim6       = 140
	nhExperiment1 = 253
	nhExperiment2 = 254
)

// isExtensionHeader reports whether nh names an IPv6 extension header
// rather than an upper-layer protocol.
func isExtensionHeader(nh uint8) bool {
	switch nh {
	case nhHopByHop, nhRouting, nhFragment, nhESP, nhAH, nhDestOpts,
		nhMobility, nhHIP, nhShim6, nhExperiment1, nhExperiment2:
		return true
	}
	return false
}

// IPv6 is a view of an IPv6 header at the start of a byte slice. Its
// accessors read fields by offset and panic if the slice is shorter than
// the field they read; call Valid first on untrusted input.
type IPv6 []byte

// Valid reports whether h starts with a well-formed IPv6 packet: at least
// IPv6HeaderLen bytes, version 6, and a payload that fits in h. It returns
// the reason when it does not: ErrTruncated, ErrVersion, ErrTotalLen (the
// payload runs past h), or ErrJumbogram for a payload length of 0 with a
// Hop-by-Hop header next, the shape of an RFC 2675 jumbogram, which this
// package does not handle. Bytes past the payload are allowed (link-layer
// padding). It does not look at extension headers.
func (h IPv6) Valid() error {
	if len(h) < IPv6HeaderLen {
		return ErrTruncated
	}
	if h.Version() != 6 {
		return ErrVersion
	}
	pl := int(h.PayloadLen())
	if pl == 0 && h.NextHeader() == nhHopByHop {
		return ErrJumbogram
	}
	if IPv6HeaderLen+pl > len(h) {
		return ErrTotalLen
	}
	return nil
}

// Version returns the IP version field.
func (h IPv6) Version() uint8 { return h[v6VersTCFlowOffset] >> 4 }

// TrafficClass returns the Traffic Class byte (DSCP and ECN, RFC 2474 and
// RFC 3168).
func (h IPv6) TrafficClass() uint8 {
	return h[0]<<4 | h[1]>>4
}

// ECN returns the ECN field (the two low bits of the Traffic Class).
func (h IPv6) ECN() ECN { return ECN(h[1]>>4) & 0x03 }

// FlowLabel returns the 20-bit Flow Label.
func (h IPv6) FlowLabel() uint32 {
	return binary.BigEndian.Uint32(h[v6VersTCFlowOffset:]) & flowLabelMask
}

// PayloadLen returns the Payload Length field: the bytes after the fixed
// header, extension headers included.
func (h IPv6) PayloadLen() uint16 { return binary.BigEndian.Uint16(h[v6PayloadLenOffset:]) }

// Len returns the length of the packet the header announces, IPv6HeaderLen
// plus the payload length.
func (h IPv6) Len() int { return IPv6HeaderLen + int(h.PayloadLen()) }

// NextHeader returns the Next Header field.
func (h IPv6) NextHeader() uint8 { return h[v6NextHeaderOffset] }

// HopLimit returns the Hop Limit field.
func (h IPv6) HopLimit() uint8 { return h[v6HopLimitOffset] }

// Src returns the source address. It does not allocate.
func (h IPv6) Src() netip.Addr { return netip.AddrFrom16(h.SrcBytes()) }

// Dst returns the destination address. It does not allocate.
func (h IPv6) Dst() netip.Addr { return netip.AddrFrom16(h.DstBytes()) }

// SrcBytes returns the source address as an array.
func (h IPv6) SrcBytes() [16]byte { return [16]byte(h[v6SrcOffset : v6SrcOffset+16]) }

// DstBytes returns the destination address as an array.
func (h IPv6) DstBytes() [16]byte { return [16]byte(h[v6DstOffset : v6DstOffset+16]) }

// IPv6Fields are the fields of an IPv6 header, for Encode.
type IPv6Fields struct {
	TrafficClass uint8  // DSCP and ECN
	FlowLabel    uint32 // the low 20 bits are used
	PayloadLen   uint16
	NextHeader   uint8
	HopLimit     uint8
	Src, Dst     [16]byte
}

// Encode writes f into h as a version 6 header. h must hold IPv6HeaderLen
// bytes. It does not allocate.
func (h IPv6) Encode(f *IPv6Fields) {
	h = h[:IPv6HeaderLen] // one bounds check for all the stores below
	binary.BigEndian.PutUint32(h[v6VersTCFlowOffset:], 6<<28|uint32(f.TrafficClass)<<20|f.FlowLabel&flowLabelMask)
	binary.BigEndian.PutUint16(h[v6PayloadLenOffset:], f.PayloadLen)
	h[v6NextHeaderOffset] = f.NextHeader
	h[v6HopLimitOffset] = f.HopLimit
	copy(h[v6SrcOffset:], f.Src[:])
	copy(h[v6DstOffset:], f.Dst[:])
}

// SetECN sets the ECN field. IPv6 has no header checksum to update.
func (h IPv6) SetECN(e ECN) {
	h[1] = h[1]&^0x30 | (uint8(e)&0x03)<<4
}

// upperLayer walks the extension headers of the valid packet h that can be
// walked (Hop-by-Hop, Routing, Destination Options, Fragment and
// Authentication Header, RFC 8200 section 4 and RFC 4302 section 2) to the
// upper-layer protocol, and returns it with its bytes (up to the end of the
// payload). A fragment other than the first has no upper-layer header:
// later is true and proto is the Next Header of its Fragment header, the
// protocol of the packet it is a piece of. ok is false when a header runs
// past the payload. Each step advances by 8 bytes at least, so the walk is
// bounded by the payload length.
func (h IPv6) upperLayer() (proto uint8, l4 []byte, later, ok bool) {
	proto = h.NextHeader()
	b := h[IPv6HeaderLen:h.Len()]
	for {
		switch proto {
		case nhHopByHop, nhRouting, nhDestOpts:
			if len(b) < 8 {
				return proto, nil, false, false
			}
			n := (int(b[1]) + 1) * 8
			if n > len(b) {
				return proto, nil, false, false
			}
			proto, b = b[0], b[n:]
		case nhAH:
			if len(b) < 8 {
				return proto, nil, false, false
			}
			n := (int(b[1]) + 2) * 4
			if n < 8 || n > len(b) {
				return proto, nil, false, false
			}
			proto, b = b[0], b[n:]
		case nhFragment:
			if len(b) < 8 {
				return proto, nil, false, false
			}
			if binary.BigEndian.Uint16(b[2:])&^7 != 0 { // fragment offset
				return b[0], nil, true, true
			}
			proto, b = b[0], b[8:]
		default:
			return proto, b, false, true
		}
	}
}
