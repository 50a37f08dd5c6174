package ipip

// Error is the reason Encap or Decap rejects a packet. The values are
// comparable constants, usable with errors.Is and as indexes of a counter
// array (0 < e < NumErrors), so counting drops by reason costs nothing.
type Error uint8

// The reasons a packet is rejected.
const (
	// ErrTruncated: the outer header is shorter than 20 bytes or than its
	// IHL.
	ErrTruncated Error = iota + 1
	// ErrVersion: the outer header is not of the IP version expected.
	ErrVersion
	// ErrHeaderLen: the outer IHL is below 5.
	ErrHeaderLen
	// ErrTotalLen: the outer Total Length is below the header length or
	// beyond the buffer.
	ErrTotalLen
	// ErrChecksum: the outer header checksum is wrong.
	ErrChecksum
	// ErrFragment: the outer packet is a fragment. Fragments are left to
	// the kernel's reassembly; one that reaches Decap is dropped.
	ErrFragment
	// ErrProtocol: the outer protocol is not the tunnel's.
	ErrProtocol
	// ErrInnerTruncated: the inner packet is shorter than 20 bytes or than
	// its IHL.
	ErrInnerTruncated
	// ErrInnerVersion: the inner packet is not of the IP version
	// expected.
	ErrInnerVersion
	// ErrInnerHeaderLen: the inner IHL is below 5.
	ErrInnerHeaderLen
	// ErrInnerTotalLen: the inner Total Length is below its header length
	// or beyond the outer payload.
	ErrInnerTotalLen
	// ErrInnerChecksum: the inner header checksum is wrong.
	ErrInnerChecksum
	// ErrInnerTTL: the inner TTL is zero (RFC 2003 section 3.1): Decap
	// must discard such a packet and Encap must not encapsulate it.
	ErrInnerTTL
	// ErrNested: the inner packet is itself IPIP (protocol 4 or 94); at
	// most one level is decapsulated.
	ErrNested
	// ErrECN: outer CE over inner Not-ECT, dropped per RFC 6040 section
	// 4.2.
	ErrECN
	// ErrHeadroom: Encap was given less than IPv4MinLen bytes of headroom.
	ErrHeadroom
	// ErrTooBig: the encapsulated packet would exceed 65535 bytes.
	ErrTooBig
	// ErrJumbogram: an IPv6 header with a payload length of 0 and a
	// Hop-by-Hop header next: an RFC 2675 jumbogram, never passed.
	ErrJumbogram

	// NumErrors is one more than the largest Error, for sizing arrays.
	NumErrors
)

var errorText = [NumErrors]string{
	ErrTruncated:      "truncated header",
	ErrVersion:        "wrong IP version",
	ErrHeaderLen:      "bad header length",
	ErrTotalLen:       "bad total length",
	ErrChecksum:       "bad header checksum",
	ErrFragment:       "fragment",
	ErrProtocol:       "wrong protocol",
	ErrInnerTruncated: "truncated inner header",
	ErrInnerVersion:   "inner wrong IP version",
	ErrInnerHeaderLen: "bad inner header length",
	ErrInnerTotalLen:  "bad inner total length",
	ErrInnerChecksum:  "bad inner header checksum",
	ErrInnerTTL:       "inner TTL zero",
	ErrNested:         "nested IPIP",
	ErrECN:            "CE over Not-ECT",
	ErrHeadroom:       "no headroom",
	ErrTooBig:         "packet too big",
	ErrJumbogram:      "jumbogram",
}

var errorNames = [NumErrors]string{
	ErrTruncated:      "truncated",
	ErrVersion:        "version",
	ErrHeaderLen:      "header_len",
	ErrTotalLen:       "total_len",
	ErrChecksum:       "checksum",
	ErrFragment:       "fragment",
	ErrProtocol:       "protocol",
	ErrInnerTruncated: "inner_truncated",
	ErrInnerVersion:   "inner_version",
	ErrInnerHeaderLen: "inner_header_len",
	ErrInnerTotalLen:  "inner_total_len",
	ErrInnerChecksum:  "inner_checksum",
	ErrInnerTTL:       "inner_ttl",
	ErrNested:         "nested",
	ErrECN:            "ecn",
	ErrHeadroom:       "headroom",
	ErrTooBig:         "too_big",
	ErrJumbogram:      "jumbogram",
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
