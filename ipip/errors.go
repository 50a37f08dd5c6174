package ipip

// Error is the reason Encap or Decap rejects a packet. The values are
// comparable constants, usable with errors.Is and as indexes of a counter
// array (0 < e < NumErrors), so counting drops by reason costs nothing.
type Error uint8

// The reasons a packet is rejected. "Outer" is the header Decap or
// DecapIPv6 is given, "inner" the packet it carries or the one Encap or
// EncapIPv6 is given.
const (
	// ErrTruncated: the outer header is shorter than 20 bytes or than its
	// IHL (IPv4), or shorter than 40 bytes (IPv6).
	ErrTruncated Error = iota + 1
	// ErrVersion: the outer header is not of the IP version expected
	// (IPv4 for Decap, IPv6 for DecapIPv6).
	ErrVersion
	// ErrHeaderLen: the outer IHL is below 5.
	ErrHeaderLen
	// ErrTotalLen: the outer Total Length is below the header length or
	// beyond the buffer, or the outer IPv6 payload runs past the buffer.
	ErrTotalLen
	// ErrChecksum: the outer header checksum is wrong.
	ErrChecksum
	// ErrFragment: the outer packet is a fragment (IPv4 More Fragments or
	// a fragment offset, or an IPv6 Fragment header). Fragments are left
	// to the kernel's reassembly; one that reaches Decap is dropped.
	ErrFragment
	// ErrProtocol: the outer protocol (IPv6: Next Header) is not the
	// tunnel's.
	ErrProtocol
	// ErrInnerTruncated: the inner packet is shorter than 20 bytes or than
	// its IHL (IPv4), or shorter than 40 bytes or than its extension
	// headers (IPv6).
	ErrInnerTruncated
	// ErrInnerVersion: the inner packet is not of the IP version the
	// tunnel protocol carries (IPv4 for 4 and 94, IPv6 for 41).
	ErrInnerVersion
	// ErrInnerHeaderLen: the inner IHL is below 5.
	ErrInnerHeaderLen
	// ErrInnerTotalLen: the inner Total Length is below its header length
	// or beyond the outer payload, or the inner IPv6 payload runs past
	// the outer payload.
	ErrInnerTotalLen
	// ErrInnerChecksum: the inner IPv4 header checksum is wrong.
	ErrInnerChecksum
	// ErrInnerTTL: the inner TTL or Hop Limit is zero (RFC 2003 section
	// 3.1, RFC 2473 section 3.1): a decapsulator must discard such a
	// packet and an encapsulator must not encapsulate it.
	ErrInnerTTL
	// ErrNested: the inner packet is itself a tunnel packet (protocol 4,
	// 41 or 94, for IPv6 after its extension headers); at most one level
	// is decapsulated.
	ErrNested
	// ErrECN: outer CE over inner Not-ECT, dropped per RFC 6040 section
	// 4.2.
	ErrECN
	// ErrHeadroom: Encap or EncapIPv6 was given less headroom than the
	// outer header needs (IPv4MinLen, or IPv6HeaderLen over IPv6).
	ErrHeadroom
	// ErrTooBig: the encapsulated packet would exceed what its outer
	// header can announce: 65535 bytes in all over IPv4, a payload of
	// 65535 bytes over IPv6.
	ErrTooBig
	// ErrExtensionHeader: the outer IPv6 header is followed by an
	// extension header (Hop-by-Hop, Routing, Destination Options, ...)
	// instead of the tunnel protocol. DecapIPv6 does not process them;
	// vif peers send none.
	ErrExtensionHeader
	// ErrJumbogram: an IPv6 header, outer or inner, with a payload length
	// of 0 and a Hop-by-Hop header next: an RFC 2675 jumbogram, never
	// passed.
	ErrJumbogram
	// ErrProtocolFamily: the protocol cannot be used over the outer
	// header's IP version: ProtoIPIP (94) is IPv4's, so an Encapsulator
	// with IPv6 endpoints refuses it for IPv4 inner packets, and
	// DecapIPv6 accepts only ProtoIPinIP (4) and ProtoIPv6 (41).
	ErrProtocolFamily
	// ErrEndpoints: the Encapsulator's Src and Dst are not both IPv4 or
	// both IPv6 addresses (IPv4-mapped IPv6 addresses are neither).
	ErrEndpoints

	// NumErrors is one more than the largest Error, for sizing arrays.
	NumErrors
)

var errorText = [NumErrors]string{
	ErrTruncated:       "truncated header",
	ErrVersion:         "wrong IP version",
	ErrHeaderLen:       "bad header length",
	ErrTotalLen:        "bad total length",
	ErrChecksum:        "bad header checksum",
	ErrFragment:        "fragment",
	ErrProtocol:        "wrong protocol",
	ErrInnerTruncated:  "truncated inner header",
	ErrInnerVersion:    "inner wrong IP version",
	ErrInnerHeaderLen:  "bad inner header length",
	ErrInnerTotalLen:   "bad inner total length",
	ErrInnerChecksum:   "bad inner header checksum",
	ErrInnerTTL:        "inner TTL zero",
	ErrNested:          "nested IPIP",
	ErrECN:             "CE over Not-ECT",
	ErrHeadroom:        "no headroom",
	ErrTooBig:          "packet too big",
	ErrExtensionHeader: "outer IPv6 extension header",
	ErrJumbogram:       "jumbogram",
	ErrProtocolFamily:  "protocol not used over this IP version",
	ErrEndpoints:       "tunnel endpoints not of one IP version",
}

var errorNames = [NumErrors]string{
	ErrTruncated:       "truncated",
	ErrVersion:         "version",
	ErrHeaderLen:       "header_len",
	ErrTotalLen:        "total_len",
	ErrChecksum:        "checksum",
	ErrFragment:        "fragment",
	ErrProtocol:        "protocol",
	ErrInnerTruncated:  "inner_truncated",
	ErrInnerVersion:    "inner_version",
	ErrInnerHeaderLen:  "inner_header_len",
	ErrInnerTotalLen:   "inner_total_len",
	ErrInnerChecksum:   "inner_checksum",
	ErrInnerTTL:        "inner_ttl",
	ErrNested:          "nested",
	ErrECN:             "ecn",
	ErrHeadroom:        "headroom",
	ErrTooBig:          "too_big",
	ErrExtensionHeader: "extension_header",
	ErrJumbogram:       "jumbogram",
	ErrProtocolFamily:  "protocol_family",
	ErrEndpoints:       "endpoints",
}

// Error returns a description prefixed with "ipip: ".
func (e Error) Error() string {
	if e == 0 || e >= NumErrors {
		return "ipip: unknown error"
	}
	return "ipip: " + errorText[e]
}

// Name returns a short snake_case name for e, stable for use as a counter
// key (for example "inner_checksum").
func (e Error) Name() string {
	if e == 0 || e >= NumErrors {
		return "unknown"
	}
	return errorNames[e]
}
