package craft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// IP protocol numbers used by the builders.
const (
	ProtoICMP   uint8 = 1
	ProtoIPinIP uint8 = 4 // IP in IP, RFC 2003
	ProtoUDP    uint8 = 17
	ProtoIPIP   uint8 = 94 // IPIP of Ioannidis' VIF
)

// IPv4HeaderLen is the length of an IPv4 header without options.
const IPv4HeaderLen = 20

// ECN codepoints (RFC 3168 section 5), the two low bits of the TOS byte.
const (
	NotECT uint8 = 0b00
	ECT1   uint8 = 0b01
	ECT0   uint8 = 0b10
	CE     uint8 = 0b11
)

// IPv4 describes an IPv4 header (RFC 791 section 3.1) for Packet.
type IPv4 struct {
	// TOS is the whole Type of Service byte: DSCP and ECN.
	TOS uint8
	// ID is the Identification field.
	ID uint16
	// DF and MF are the Don't Fragment and More Fragments flags.
	DF, MF bool
	// FragOff is the fragment offset in 8-byte units.
	FragOff uint16
	// TTL is the Time to Live. Zero means 64 unless ZeroTTL is set.
	TTL uint8
	// ZeroTTL sends a TTL of 0, which RFC 2003 forbids a tunnel to
	// forward.
	ZeroTTL bool
	// Protocol is the payload's IP protocol.
	Protocol uint8
	// Src and Dst are the addresses; both must be IPv4.
	Src, Dst netip.Addr
	// Options are IP options, padded with End of Option List to a
	// multiple of 4 bytes (at most 40).
	Options []byte
}

// Packet returns the header h followed by payload: version 4, the IHL and
// Total Length that fit, and a valid header checksum. It panics if an
// address is not IPv4, the options exceed 40 bytes, or the packet exceeds
// 65535 bytes: those are mistakes in the test, not packets.
func (h IPv4) Packet(payload []byte) []byte {
	if !h.Src.Is4() || !h.Dst.Is4() {
		panic(fmt.Sprintf("craft: IPv4 addresses required, got %v and %v", h.Src, h.Dst))
	}
	optLen := (len(h.Options) + 3) &^ 3
	if optLen > 40 {
		panic("craft: IPv4 options longer than 40 bytes")
	}
	hl := IPv4HeaderLen + optLen
	if hl+len(payload) > 65535 {
		panic("craft: IPv4 packet longer than 65535 bytes")
	}
	b := make([]byte, hl+len(payload))
	b[0] = 4<<4 | byte(hl/4)
	b[1] = h.TOS
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], h.ID)
	frag := h.FragOff & 0x1fff
	if h.DF {
		frag |= 0x4000
	}
	if h.MF {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	switch {
	case h.ZeroTTL:
		b[8] = 0
	case h.TTL == 0:
		b[8] = 64
	default:
		b[8] = h.TTL
	}
	b[9] = h.Protocol
	src, dst := h.Src.As4(), h.Dst.As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	copy(b[IPv4HeaderLen:], h.Options) // the rest of the padding stays 0 (EOL)
	copy(b[hl:], payload)
	SetChecksum(b)
	return b
}

// Checksum returns the Internet checksum (RFC 1071) of b: the ones'
// complement of the ones' complement sum of its 16-bit words, an odd last
// byte padded with zero.
func Checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// SetChecksum recomputes the header checksum of the IPv4 header at the
// start of pkt, over the IHL the header declares (clamped to pkt). Call it
// after changing a header field to keep the checksum valid.
func SetChecksum(pkt []byte) {
	if len(pkt) < IPv4HeaderLen {
		return
	}
	hl := min(max(int(pkt[0]&0x0f)*4, IPv4HeaderLen), len(pkt))
	pkt[10], pkt[11] = 0, 0
	binary.BigEndian.PutUint16(pkt[10:], Checksum(pkt[:hl]))
}

// ChecksumValid reports whether the IPv4 header at the start of pkt has a
// valid checksum over the IHL it declares.
func ChecksumValid(pkt []byte) bool {
	if len(pkt) < IPv4HeaderLen {
		return false
	}
	hl := int(pkt[0]&0x0f) * 4
	if hl < IPv4HeaderLen || hl > len(pkt) {
		return false
	}
	return Checksum(pkt[:hl]) == 0
}

// SetTOS sets the TOS byte of the IPv4 header at the start of pkt and
// fixes the checksum.
func SetTOS(pkt []byte, tos uint8) {
	pkt[1] = tos
	SetChecksum(pkt)
}

// SetID writes id into the Identification field of the IPv4 header at the
// start of pkt and fixes the checksum. Fragments of one packet must share
// a non-zero ID: with IP_HDRINCL the kernel replaces a zero one, per
// fragment.
func SetID(pkt []byte, id uint16) {
	binary.BigEndian.PutUint16(pkt[4:], id)
	SetChecksum(pkt)
}

// SetHeaderLen writes ihl (in 32-bit words, 0 to 15) into the IHL field of
// the IPv4 header at the start of pkt without moving anything, and fixes
// the checksum over the first 20 bytes when ihl is below 5, over the new
// IHL otherwise (as far as pkt reaches).
func SetHeaderLen(pkt []byte, ihl uint8) {
	pkt[0] = pkt[0]&0xf0 | ihl&0x0f
	SetChecksum(pkt)
}

// SetTotalLen writes n into the Total Length field of the IPv4 header at
// the start of pkt and fixes the checksum.
func SetTotalLen(pkt []byte, n uint16) {
	binary.BigEndian.PutUint16(pkt[2:], n)
	SetChecksum(pkt)
}

// ICMPEcho returns an ICMP echo request (type 8) with identifier id,
// sequence number seq and data, with a valid checksum.
func ICMPEcho(id, seq uint16, data []byte) []byte {
	b := make([]byte, 8+len(data))
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], data)
	binary.BigEndian.PutUint16(b[2:], Checksum(b))
	return b
}

// Ping returns an IPv4 ICMP echo request from src to dst with TTL 64, the
// given TOS byte, identifier id and sequence number seq, and 32 bytes of
// data.
func Ping(src, dst netip.Addr, tos uint8, id, seq uint16) []byte {
	data := []byte("vif-hostile-test-0123456789abcde")
	return IPv4{TOS: tos, ID: seq, Protocol: ProtoICMP, Src: src, Dst: dst}.Packet(ICMPEcho(id, seq, data))
}

// UDP returns an IPv4 UDP datagram from src:sport to dst:dport carrying
// payload, with a valid UDP checksum.
func UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	// Pseudo-header (RFC 768): source, destination, zero, protocol, length.
	s, d := src.As4(), dst.As4()
	ph := make([]byte, 0, 12+len(u))
	ph = append(ph, s[:]...)
	ph = append(ph, d[:]...)
	ph = append(ph, 0, ProtoUDP, u[4], u[5])
	ph = append(ph, u...)
	c := Checksum(ph)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return IPv4{Protocol: ProtoUDP, Src: src, Dst: dst}.Packet(u)
}

// Encap returns inner encapsulated in an outer header from src to dst with
// IP protocol proto (ProtoIPIP or ProtoIPinIP) and outer TOS byte tos.
// Like an RFC 2003 encapsulator it copies the inner DF bit; the outer TTL
// is 64.
func Encap(proto uint8, src, dst netip.Addr, tos uint8, inner []byte) []byte {
	df := len(inner) >= IPv4HeaderLen && inner[6]&0x40 != 0
	return IPv4{TOS: tos, DF: df, Protocol: proto, Src: src, Dst: dst}.Packet(inner)
}

// Nest encapsulates inner levels times with protocol proto from src to
// dst: Nest(1, ...) is Encap, Nest(100, ...) is 100 outer headers deep.
func Nest(levels int, proto uint8, src, dst netip.Addr, inner []byte) []byte {
	p := inner
	for range levels {
		p = Encap(proto, src, dst, 0, p)
	}
	return p
}

// ErrFragment is returned by Fragment for a packet it cannot split.
var ErrFragment = errors.New("craft: cannot fragment")

// Fragment splits the IPv4 packet pkt into fragments of at most mtu bytes
// (RFC 791 section 3.2): each carries pkt's header (options included, as
// if every option were copied) with the More Fragments flag and fragment
// offset set and a fresh checksum; the payload is cut at multiples of 8
// bytes. A packet that fits is returned alone, unchanged. pkt's DF flag
// is ignored: a test fragments on purpose.
func Fragment(pkt []byte, mtu int) ([][]byte, error) {
	if len(pkt) < IPv4HeaderLen || pkt[0]>>4 != 4 {
		return nil, fmt.Errorf("%w: not an IPv4 packet", ErrFragment)
	}
	hl := int(pkt[0]&0x0f) * 4
	tl := int(binary.BigEndian.Uint16(pkt[2:]))
	if hl < IPv4HeaderLen || tl < hl || tl > len(pkt) {
		return nil, fmt.Errorf("%w: malformed header", ErrFragment)
	}
	if tl <= mtu {
		return [][]byte{pkt[:tl]}, nil
	}
	chunk := (mtu - hl) &^ 7
	if chunk <= 0 {
		return nil, fmt.Errorf("%w: MTU %d leaves no room after a %d-byte header", ErrFragment, mtu, hl)
	}
	flags := binary.BigEndian.Uint16(pkt[6:])
	base := flags & 0x1fff
	lastMF := flags&0x2000 != 0
	payload := pkt[hl:tl]
	var frags [][]byte
	for off := 0; off < len(payload); off += chunk {
		end := min(off+chunk, len(payload))
		f := make([]byte, hl+end-off)
		copy(f, pkt[:hl])
		copy(f[hl:], payload[off:end])
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		fl := (base + uint16(off/8)) & 0x1fff
		if end < len(payload) || lastMF {
			fl |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], fl)
		SetChecksum(f)
		frags = append(frags, f)
	}
	return frags, nil
}
