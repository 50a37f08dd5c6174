package ipip

import (
	"encoding/binary"
	"net/netip"
)

// An IPv4 header (RFC 791 section 3.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	versIHLOffset  = 0
	tosOffset      = 1
	totalLenOffset = 2
	idOffset       = 4
	flagsOffset    = 6
	ttlOffset      = 8
	protocolOffset = 9
	checksumOffset = 10
	srcOffset      = 12
	dstOffset      = 16

	flagDF         = 0x4000
	flagMF         = 0x2000
	fragOffsetMask = 0x1fff
)

// IPv4 is a view of an IPv4 header at the start of a byte slice. Its
// accessors read fields by offset and panic if the slice is shorter than
// the field they read; call Valid first on untrusted input.
type IPv4 []byte

// Valid reports whether h starts with a well-formed IPv4 header: version 4,
// an IHL of at least 5 words that fits in h, and a total length that covers
// the header and fits in h. It returns the reason when it does not. It does
// not check the checksum (see ChecksumValid).
func (h IPv4) Valid() error {
	if len(h) < IPv4MinLen {
		return ErrTruncated
	}
	if h.Version() != 4 {
		return ErrVersion
	}
	ihl := h.HeaderLen()
	if ihl < IPv4MinLen {
		return ErrHeaderLen
	}
	if ihl > len(h) {
		return ErrTruncated
	}
	tl := int(h.TotalLen())
	if tl < ihl || tl > len(h) {
		return ErrTotalLen
	}
	return nil
}

// Version returns the IP version field.
func (h IPv4) Version() uint8 { return h[versIHLOffset] >> 4 }

// HeaderLen returns the header length in bytes (the IHL field times four).
func (h IPv4) HeaderLen() int { return int(h[versIHLOffset]&0x0f) * 4 }

// TOS returns the Type of Service byte (DSCP and ECN).
func (h IPv4) TOS() uint8 { return h[tosOffset] }

// ECN returns the ECN field (the two low bits of TOS, RFC 3168).
func (h IPv4) ECN() ECN { return ECN(h[tosOffset] & 0x03) }

// TotalLen returns the Total Length field.
func (h IPv4) TotalLen() uint16 { return binary.BigEndian.Uint16(h[totalLenOffset:]) }

// ID returns the Identification field.
func (h IPv4) ID() uint16 { return binary.BigEndian.Uint16(h[idOffset:]) }

// DF reports whether the Don't Fragment flag is set.
func (h IPv4) DF() bool { return binary.BigEndian.Uint16(h[flagsOffset:])&flagDF != 0 }

// MF reports whether the More Fragments flag is set.
func (h IPv4) MF() bool { return binary.BigEndian.Uint16(h[flagsOffset:])&flagMF != 0 }

// FragmentOffset returns the fragment offset in 8-byte units.
func (h IPv4) FragmentOffset() uint16 {
	return binary.BigEndian.Uint16(h[flagsOffset:]) & fragOffsetMask
}

// IsFragment reports whether h is a fragment: More Fragments set or a
// non-zero fragment offset.
func (h IPv4) IsFragment() bool {
	return binary.BigEndian.Uint16(h[flagsOffset:])&(flagMF|fragOffsetMask) != 0
}

// TTL returns the Time to Live field.
func (h IPv4) TTL() uint8 { return h[ttlOffset] }

// Protocol returns the Protocol field.
func (h IPv4) Protocol() uint8 { return h[protocolOffset] }

// Checksum returns the Header Checksum field.
func (h IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(h[checksumOffset:]) }

// Src returns the source address.
func (h IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(h[srcOffset : srcOffset+4])) }

// Dst returns the destination address.
func (h IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(h[dstOffset : dstOffset+4])) }

// SrcBytes returns the source address as an array, which is cheaper than Src
// on hot paths.
func (h IPv4) SrcBytes() [4]byte { return [4]byte(h[srcOffset : srcOffset+4]) }

// DstBytes returns the destination address as an array.
func (h IPv4) DstBytes() [4]byte { return [4]byte(h[dstOffset : dstOffset+4]) }

// IPv4Fields are the fields of an IPv4 header without options, for Encode.
type IPv4Fields struct {
	TOS      uint8 // DSCP and ECN
	TotalLen uint16
	ID       uint16
	DF       bool // Don't Fragment; the header is never a fragment
	TTL      uint8
	Protocol uint8
	Src, Dst [4]byte
}

// Encode writes f into h as a header without options (IHL 5) and sets its
// checksum. h must hold IPv4MinLen bytes. It does not allocate.
func (h IPv4) Encode(f *IPv4Fields) {
	var flags uint16
	if f.DF {
		flags = flagDF
	}
	h = h[:IPv4MinLen] // one bounds check for all the stores below
	h[versIHLOffset] = 4<<4 | IPv4MinLen/4
	h[tosOffset] = f.TOS
	binary.BigEndian.PutUint16(h[totalLenOffset:], f.TotalLen)
	binary.BigEndian.PutUint16(h[idOffset:], f.ID)
	binary.BigEndian.PutUint16(h[flagsOffset:], flags)
	h[ttlOffset] = f.TTL
	h[protocolOffset] = f.Protocol
	copy(h[srcOffset:], f.Src[:])
	copy(h[dstOffset:], f.Dst[:])
	h[checksumOffset], h[checksumOffset+1] = 0, 0
	binary.BigEndian.PutUint16(h[checksumOffset:], Checksum(h))
}

// SetECN sets the ECN field and updates the checksum incrementally.
func (h IPv4) SetECN(e ECN) {
	old := binary.BigEndian.Uint16(h[versIHLOffset:])
	h[tosOffset] = h[tosOffset]&^0x03 | uint8(e)&0x03
	h.updateChecksum(old, binary.BigEndian.Uint16(h[versIHLOffset:]))
}

// CalculateChecksum returns the checksum of the header (HeaderLen bytes),
// computed with the checksum field taken as zero.
func (h IPv4) CalculateChecksum() uint16 {
	n := h.HeaderLen()
	// The field's own value, added back in one's complement, cancels out.
	return ^fold(uint32(^Checksum(h[:n])) + uint32(^h.Checksum()))
}

// ChecksumValid reports whether the header checksum is correct.
func (h IPv4) ChecksumValid() bool { return Checksum(h[:h.HeaderLen()]) == 0 }

// SetChecksum computes the header checksum and stores it.
func (h IPv4) SetChecksum() {
	h[checksumOffset], h[checksumOffset+1] = 0, 0
	binary.BigEndian.PutUint16(h[checksumOffset:], Checksum(h[:h.HeaderLen()]))
}

// updateChecksum adjusts the checksum for a 16-bit word changing from old to
// new (RFC 1624 equation 3).
func (h IPv4) updateChecksum(old, new uint16) {
	sum := uint32(^h.Checksum()) + uint32(^old) + uint32(new)
	binary.BigEndian.PutUint16(h[checksumOffset:], ^fold(sum))
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}
