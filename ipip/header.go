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

// Header is a view of an IPv4 header at the start of a byte slice. Its
// accessors read fields by offset and panic if the slice is shorter than
// the field they read; call Valid first on untrusted input.
type Header []byte

// Valid reports whether h starts with a well-formed IPv4 header: version 4,
// an IHL of at least 5 words that fits in h, and a total length that covers
// the header and fits in h. It returns the reason when it does not. It does
// not check the checksum (see ChecksumValid).
func (h Header) Valid() error {
	if len(h) < HeaderLen {
		return ErrTruncated
	}
	if h.Version() != 4 {
		return ErrVersion
	}
	ihl := h.HeaderLen()
	if ihl < HeaderLen {
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
func (h Header) Version() uint8 { return h[versIHLOffset] >> 4 }

// HeaderLen returns the header length in bytes (the IHL field times four).
func (h Header) HeaderLen() int { return int(h[versIHLOffset]&0x0f) * 4 }

// TOS returns the Type of Service byte (DSCP and ECN).
func (h Header) TOS() uint8 { return h[tosOffset] }

// ECN returns the ECN field (the two low bits of TOS, RFC 3168).
func (h Header) ECN() ECN { return ECN(h[tosOffset] & 0x03) }

// TotalLen returns the Total Length field.
func (h Header) TotalLen() uint16 { return binary.BigEndian.Uint16(h[totalLenOffset:]) }

// ID returns the Identification field.
func (h Header) ID() uint16 { return binary.BigEndian.Uint16(h[idOffset:]) }

// DF reports whether the Don't Fragment flag is set.
func (h Header) DF() bool { return binary.BigEndian.Uint16(h[flagsOffset:])&flagDF != 0 }

// MF reports whether the More Fragments flag is set.
func (h Header) MF() bool { return binary.BigEndian.Uint16(h[flagsOffset:])&flagMF != 0 }

// FragmentOffset returns the fragment offset in 8-byte units.
func (h Header) FragmentOffset() uint16 {
	return binary.BigEndian.Uint16(h[flagsOffset:]) & fragOffsetMask
}

// IsFragment reports whether h is a fragment: More Fragments set or a
// non-zero fragment offset.
func (h Header) IsFragment() bool {
	return binary.BigEndian.Uint16(h[flagsOffset:])&(flagMF|fragOffsetMask) != 0
}

// TTL returns the Time to Live field.
func (h Header) TTL() uint8 { return h[ttlOffset] }

// Protocol returns the Protocol field.
func (h Header) Protocol() uint8 { return h[protocolOffset] }

// Checksum returns the Header Checksum field.
func (h Header) Checksum() uint16 { return binary.BigEndian.Uint16(h[checksumOffset:]) }

// Src returns the source address.
func (h Header) Src() netip.Addr { return netip.AddrFrom4([4]byte(h[srcOffset : srcOffset+4])) }

// Dst returns the destination address.
func (h Header) Dst() netip.Addr { return netip.AddrFrom4([4]byte(h[dstOffset : dstOffset+4])) }

// SrcBytes returns the source address as an array, which is cheaper than Src
// on hot paths.
func (h Header) SrcBytes() [4]byte { return [4]byte(h[srcOffset : srcOffset+4]) }

// DstBytes returns the destination address as an array.
func (h Header) DstBytes() [4]byte { return [4]byte(h[dstOffset : dstOffset+4]) }

// SetECN sets the ECN field and updates the checksum incrementally.
func (h Header) SetECN(e ECN) {
	old := binary.BigEndian.Uint16(h[versIHLOffset:])
	h[tosOffset] = h[tosOffset]&^0x03 | uint8(e)&0x03
	h.updateChecksum(old, binary.BigEndian.Uint16(h[versIHLOffset:]))
}

// CalculateChecksum returns the checksum of the header (HeaderLen bytes),
// computed with the checksum field taken as zero.
func (h Header) CalculateChecksum() uint16 {
	n := h.HeaderLen()
	var sum uint32
	for i := 0; i+1 < n; i += 2 {
		if i == checksumOffset {
			continue
		}
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	return ^fold(sum)
}

// ChecksumValid reports whether the header checksum is correct.
func (h Header) ChecksumValid() bool {
	n := h.HeaderLen()
	var sum uint32
	for i := 0; i+1 < n; i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	return fold(sum) == 0xffff
}

// SetChecksum computes the header checksum and stores it.
func (h Header) SetChecksum() {
	binary.BigEndian.PutUint16(h[checksumOffset:], h.CalculateChecksum())
}

// updateChecksum adjusts the checksum for a 16-bit word changing from old to
// new (RFC 1624 equation 3).
func (h Header) updateChecksum(old, new uint16) {
	sum := uint32(^h.Checksum()) + uint32(^old) + uint32(new)
	binary.BigEndian.PutUint16(h[checksumOffset:], ^fold(sum))
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}
