package ndpproxy

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// An Ethernet II frame carrying an IPv6 packet whose payload is an ICMPv6
// Neighbor Solicitation or Advertisement (RFC 4861 sections 4.3 and 4.4,
// over Ethernet as RFC 2464 says), with no IPv6 extension header:
//
//	offset size  field
//	     0    6  Ethernet destination
//	     6    6  Ethernet source
//	    12    2  EtherType (0x86dd)
//	    14    4  IPv6 version (6), traffic class, flow label
//	    18    2  IPv6 payload length
//	    20    1  IPv6 next header (58, ICMPv6)
//	    21    1  IPv6 hop limit (255)
//	    22   16  IPv6 source
//	    38   16  IPv6 destination
//	    54    1  ICMPv6 type (135 solicitation, 136 advertisement)
//	    55    1  ICMPv6 code (0)
//	    56    2  ICMPv6 checksum
//	    58    4  NA: R, S, O flags and reserved bits; NS: reserved
//	    62   16  target address
//	    78       options, 8-byte units: type, length (in units), data;
//	             a link-layer address option for Ethernet is
//	             type 1 (source) or 2 (target), length 1, 6 bytes of MAC
const (
	ethDstOffset    = 0
	ethSrcOffset    = 6
	ethTypeOffset   = 12
	ipOffset        = 14
	payloadLenOff   = 18
	nextHeaderOff   = 20
	hopLimitOffset  = 21
	srcOffset       = 22
	dstOffset       = 38
	icmpOffset      = 54
	codeOffset      = 55
	checksumOffset  = 56
	flagsOffset     = 58
	targetOffset    = 62
	optionsOffset   = 78
	ipv6HeaderLen   = 40
	icmpHeaderLen   = 4
	lladdrOptionLen = 8
	hardwareAddrLen = 6
)

const (
	// EthernetHeaderLen is the length of an Ethernet II header without
	// VLAN tags.
	EthernetHeaderLen = 14

	// MinFrameLen is the length of the shortest valid frame: a Neighbor
	// Solicitation or Advertisement without options (24 bytes of ICMPv6,
	// RFC 4861 section 7.1.1) after the Ethernet and IPv6 headers.
	MinFrameLen = optionsOffset

	// ReplyLen is the length of the advertisements this package writes
	// (Respond, PutAdvertisement) and of the solicitations with a source
	// link-layer address option (PutSolicitation): the ICMPv6 message is
	// 32 bytes, the fixed part and one link-layer address option.
	ReplyLen = optionsOffset + lladdrOptionLen

	// EtherTypeIPv6 is the EtherType of IPv6, and the protocol to bind a
	// packet socket to.
	EtherTypeIPv6 = 0x86dd

	// ProtocolICMPv6 is the IPv6 next header value of ICMPv6.
	ProtocolICMPv6 = 58

	// HopLimit is the hop limit of every Neighbor Discovery message: a
	// node accepts only those with 255, which no router can have
	// forwarded (RFC 4861 sections 7.1.1 and 7.1.2).
	HopLimit = 255
)

// Type is an ICMPv6 message type.
type Type uint8

// The ICMPv6 types the package reads. Frames with any other type are
// dropped with DropICMPType.
const (
	// TypeNeighborSolicitation asks for the link-layer address of the
	// target (RFC 4861 section 4.3).
	TypeNeighborSolicitation Type = 135
	// TypeNeighborAdvertisement gives the link-layer address of the
	// target (RFC 4861 section 4.4).
	TypeNeighborAdvertisement Type = 136
)

// String returns "neighbor_solicitation", "neighbor_advertisement" or
// "type(N)".
func (t Type) String() string {
	switch t {
	case TypeNeighborSolicitation:
		return "neighbor_solicitation"
	case TypeNeighborAdvertisement:
		return "neighbor_advertisement"
	}
	return "type(" + itoa(uint64(t)) + ")"
}

// Option types of RFC 4861 section 4.6.
const (
	optSourceLinkLayer = 1
	optTargetLinkLayer = 2
)

// Flags are the R, S and O bits of a Neighbor Advertisement (RFC 4861
// section 4.4).
type Flags uint8

// The flags of a Neighbor Advertisement, in the positions they have in
// the message's first byte after the checksum.
const (
	// FlagRouter (R): the sender is a router.
	FlagRouter Flags = 0x80
	// FlagSolicited (S): the advertisement answers a solicitation from
	// its destination; a reachability confirmation. Never set in
	// multicast advertisements.
	FlagSolicited Flags = 0x40
	// FlagOverride (O): the advertisement should replace a cached
	// link-layer address.
	FlagOverride Flags = 0x20
)

// String returns the set flags as letters, such as "SO", or "-".
func (f Flags) String() string {
	var b [3]byte
	n := 0
	for _, x := range [...]struct {
		f Flags
		c byte
	}{{FlagRouter, 'R'}, {FlagSolicited, 'S'}, {FlagOverride, 'O'}} {
		if f&x.f != 0 {
			b[n] = x.c
			n++
		}
	}
	if n == 0 {
		return "-"
	}
	return string(b[:n])
}

// itoa formats n in decimal without fmt.
func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// Frame is a view of an Ethernet II frame carrying an ICMPv6 Neighbor
// Solicitation or Advertisement. The accessors read the frame at fixed
// offsets; they panic if the frame is shorter than MinFrameLen, so call
// Validate first. Hardware addresses are returned as sub-slices of the
// frame: they alias it and change when it does.
type Frame []byte

// EthernetDst returns the Ethernet destination address, a sub-slice of f.
func (f Frame) EthernetDst() net.HardwareAddr {
	return net.HardwareAddr(f[ethDstOffset : ethDstOffset+6 : ethDstOffset+6])
}

// EthernetSrc returns the Ethernet source address, a sub-slice of f.
func (f Frame) EthernetSrc() net.HardwareAddr {
	return net.HardwareAddr(f[ethSrcOffset : ethSrcOffset+6 : ethSrcOffset+6])
}

// EtherType returns the frame's EtherType.
func (f Frame) EtherType() uint16 { return binary.BigEndian.Uint16(f[ethTypeOffset:]) }

// Version returns the IP version field.
func (f Frame) Version() uint8 { return f[ipOffset] >> 4 }

// PayloadLen returns the IPv6 payload length: the length of the ICMPv6
// message, since no extension header precedes it.
func (f Frame) PayloadLen() int { return int(binary.BigEndian.Uint16(f[payloadLenOff:])) }

// NextHeader returns the IPv6 next header field.
func (f Frame) NextHeader() uint8 { return f[nextHeaderOff] }

// HopLimit returns the IPv6 hop limit.
func (f Frame) HopLimit() uint8 { return f[hopLimitOffset] }

// Source returns the IPv6 source address.
func (f Frame) Source() netip.Addr { return netip.AddrFrom16([16]byte(f[srcOffset:])) }

// Destination returns the IPv6 destination address.
func (f Frame) Destination() netip.Addr { return netip.AddrFrom16([16]byte(f[dstOffset:])) }

// Type returns the ICMPv6 type.
func (f Frame) Type() Type { return Type(f[icmpOffset]) }

// Code returns the ICMPv6 code.
func (f Frame) Code() uint8 { return f[codeOffset] }

// Checksum returns the ICMPv6 checksum field.
func (f Frame) Checksum() uint16 { return binary.BigEndian.Uint16(f[checksumOffset:]) }

// Flags returns the R, S and O flags of an advertisement (in a
// solicitation the bits are reserved and ignored).
func (f Frame) Flags() Flags {
	return Flags(f[flagsOffset]) & (FlagRouter | FlagSolicited | FlagOverride)
}

// Target returns the target address.
func (f Frame) Target() netip.Addr { return netip.AddrFrom16([16]byte(f[targetOffset:])) }

// Message returns the ICMPv6 message: the IPv6 payload, a sub-slice of f
// that ends where the payload length says (Ethernet padding excluded). It
// returns nil if the frame is shorter than that.
func (f Frame) Message() []byte {
	end := icmpOffset + f.PayloadLen()
	if end > len(f) {
		return nil
	}
	return f[icmpOffset:end:end]
}

// LinkLayerAddr returns the link-layer address option of the message: the
// first source link-layer address option of a solicitation, or the first
// target link-layer address option of an advertisement, as a sub-slice of
// f, and whether there is one. It is nil, false for options that are not
// 6-byte Ethernet addresses; Validate rejects those.
func (f Frame) LinkLayerAddr() (net.HardwareAddr, bool) {
	off, r := f.lladdrOffset()
	if r != 0 || off == 0 {
		return nil, false
	}
	return net.HardwareAddr(f[off : off+6 : off+6]), true
}

// Validate checks that f is a well-formed Ethernet II frame carrying an
// IPv6 Neighbor Solicitation or Advertisement that RFC 4861 (sections
// 7.1.1 and 7.1.2) would accept. It returns nil or the DropReason saying
// what is wrong, checked in this order: DropShort, DropEtherType,
// DropVersion, DropNextHeader, DropICMPType (DropICMPLength for a message
// too short to have a type), DropHopLimit, DropICMPLength, DropChecksum,
// DropCode, DropTarget, DropOptionLength,
// DropLinkLayerOption, and for solicitations from the unspecified address
// DropDADDestination and DropDADOption, for advertisements
// DropSolicitedMulticast. Bytes after the IPv6 payload (Ethernet padding)
// are ignored. Respond applies the address checks on top.
func (f Frame) Validate() error {
	if _, r := f.validate(); r != 0 {
		return r
	}
	return nil
}

// validate is Validate, which also returns the offset of the link-layer
// address in f (0 without one).
func (f Frame) validate() (lladdr int, r DropReason) {
	switch {
	case len(f) < EthernetHeaderLen:
		return 0, DropShort
	case f.EtherType() != EtherTypeIPv6:
		return 0, DropEtherType
	case len(f) < icmpOffset:
		return 0, DropShort
	case f.Version() != 6:
		return 0, DropVersion
	case icmpOffset+f.PayloadLen() > len(f):
		return 0, DropShort
	case f.NextHeader() != ProtocolICMPv6:
		return 0, DropNextHeader
	case f.PayloadLen() < icmpHeaderLen:
		return 0, DropICMPLength
	}
	t := f.Type()
	switch {
	case t != TypeNeighborSolicitation && t != TypeNeighborAdvertisement:
		return 0, DropICMPType
	// RFC 4861 section 7.1.1 for solicitations, 7.1.2 for advertisements.
	case f.HopLimit() != HopLimit:
		return 0, DropHopLimit
	case f.PayloadLen() < optionsOffset-icmpOffset:
		return 0, DropICMPLength
	case !checksumOK(f):
		return 0, DropChecksum
	case f.Code() != 0:
		return 0, DropCode
	case f[targetOffset] == 0xff:
		return 0, DropTarget
	}
	lladdr, r = f.lladdrOffset()
	if r != 0 {
		return 0, r
	}
	dst := f[dstOffset : dstOffset+16]
	if t == TypeNeighborSolicitation {
		if isUnspecified(f[srcOffset : srcOffset+16]) {
			if !isSolicitedNode(dst) {
				return 0, DropDADDestination
			}
			if lladdr != 0 {
				return 0, DropDADOption
			}
		}
	} else if dst[0] == 0xff && f.Flags()&FlagSolicited != 0 {
		return 0, DropSolicitedMulticast
	}
	return lladdr, 0
}

// lladdrOffset walks the options of a message at least MinFrameLen long
// whose payload fits in f. It returns the offset of the first link-layer
// address option's address that belongs to the message's type (source for
// a solicitation, target for an advertisement), 0 if there is none, and
// DropOptionLength if an option has length zero or runs past the end of
// the message (RFC 4861 sections 4.6 and 7.1.1), or DropLinkLayerOption if
// the option is not 8 bytes (a 6-byte Ethernet address: RFC 2464 section
// 6). Options of other types are skipped (RFC 4861 section 4.3: "Receivers
// MUST silently ignore any options they do not recognize").
func (f Frame) lladdrOffset() (int, DropReason) {
	want := byte(optSourceLinkLayer)
	if f.Type() == TypeNeighborAdvertisement {
		want = optTargetLinkLayer
	}
	end := icmpOffset + f.PayloadLen()
	found := 0
	for off := optionsOffset; off < end; {
		if end-off < 2 {
			return 0, DropOptionLength
		}
		n := int(f[off+1]) * 8
		if n == 0 || n > end-off {
			return 0, DropOptionLength
		}
		if f[off] == want && found == 0 {
			if n != lladdrOptionLen {
				return 0, DropLinkLayerOption
			}
			found = off + 2
		}
		off += n
	}
	return found, 0
}

// isUnspecified reports whether a (16 bytes) is ::.
func isUnspecified(a []byte) bool {
	return binary.BigEndian.Uint64(a) == 0 && binary.BigEndian.Uint64(a[8:]) == 0
}

// solicitedNodePrefix is ff02::1:ff00:0/104 (RFC 4291 section 2.7.1).
var solicitedNodePrefix = [13]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff}

// isSolicitedNode reports whether a (16 bytes) is a solicited-node
// multicast address.
func isSolicitedNode(a []byte) bool { return [13]byte(a) == solicitedNodePrefix }

// SolicitedNode returns the solicited-node multicast address of a:
// ff02::1:ff00:0/104 with the low 24 bits of a (RFC 4291 section 2.7.1).
// Solicitations for a are sent there; a node that answers for a joins it.
func SolicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	copy(b[:13], solicitedNodePrefix[:])
	return netip.AddrFrom16(b)
}

// multicastMAC returns the Ethernet address of the IPv6 multicast address
// a (16 bytes): 33:33 and its last four bytes (RFC 2464 section 7).
func multicastMAC(a []byte) [6]byte {
	return [6]byte{0x33, 0x33, a[12], a[13], a[14], a[15]}
}

// allNodes is ff02::1, the link-local all-nodes multicast address.
var allNodes = [16]byte{0: 0xff, 1: 0x02, 15: 0x01}

// AllNodes is ff02::1, the link-local all-nodes multicast address, the
// destination of unsolicited advertisements and of the answers to
// Duplicate Address Detection.
var AllNodes = netip.AddrFrom16(allNodes)

// checksumOK reports whether the ICMPv6 checksum of f is valid: the sum
// over the pseudo-header and the message, checksum included, is all ones.
// f's payload must fit in f.
func checksumOK(f Frame) bool {
	msg := f[icmpOffset : icmpOffset+f.PayloadLen()]
	return fold(pseudoSum(f[srcOffset:srcOffset+16], f[dstOffset:dstOffset+16], len(msg))+sum(msg)) == 0xffff
}

// setChecksum computes the ICMPv6 checksum of the frame b, whose payload
// is its ICMPv6 message, and writes it (RFC 4443 section 2.3).
func setChecksum(b []byte) {
	msg := b[icmpOffset : icmpOffset+int(binary.BigEndian.Uint16(b[payloadLenOff:]))]
	msg[2], msg[3] = 0, 0
	c := ^fold(pseudoSum(b[srcOffset:srcOffset+16], b[dstOffset:dstOffset+16], len(msg)) + sum(msg))
	binary.BigEndian.PutUint16(msg[2:], c)
}

// pseudoSum is the sum of the IPv6 pseudo-header (RFC 8200 section 8.1)
// of an ICMPv6 message of length n from src to dst.
func pseudoSum(src, dst []byte, n int) uint64 {
	return sum(src) + sum(dst) + uint64(n) + ProtocolICMPv6
}

// sum adds b up as big-endian 16-bit words (a last odd byte padded with
// zero), 32 bits at a time: folded, the total is the one's complement sum
// of RFC 1071.
func sum(b []byte) uint64 {
	var s uint64
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// fold folds s to 16 bits with end-around carry.
func fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// putHeaders writes the Ethernet and IPv6 headers of an ICMPv6 message of
// 32 bytes (ReplyLen-icmpOffset) into b.
func putHeaders(b []byte, ethDst, ethSrc [6]byte, src, dst [16]byte) {
	copy(b[ethDstOffset:], ethDst[:])
	copy(b[ethSrcOffset:], ethSrc[:])
	binary.BigEndian.PutUint16(b[ethTypeOffset:], EtherTypeIPv6)
	binary.BigEndian.PutUint32(b[ipOffset:], 6<<28) // traffic class and flow label 0
	binary.BigEndian.PutUint16(b[payloadLenOff:], ReplyLen-icmpOffset)
	b[nextHeaderOff] = ProtocolICMPv6
	b[hopLimitOffset] = HopLimit
	copy(b[srcOffset:], src[:])
	copy(b[dstOffset:], dst[:])
}

// putAdvertisement writes a Neighbor Advertisement for target with flags
// and a target link-layer address option holding mac into b[:ReplyLen],
// with the checksum.
func putAdvertisement(b []byte, ethDst, mac [6]byte, src, dst, target [16]byte, flags Flags) {
	putHeaders(b, ethDst, mac, src, dst)
	b[icmpOffset] = byte(TypeNeighborAdvertisement)
	b[codeOffset] = 0
	binary.BigEndian.PutUint32(b[flagsOffset:], uint32(flags)<<24)
	copy(b[targetOffset:], target[:])
	b[optionsOffset] = optTargetLinkLayer
	b[optionsOffset+1] = 1
	copy(b[optionsOffset+2:], mac[:])
	setChecksum(b)
}

// PutAdvertisement writes into b an unsolicited Neighbor Advertisement of
// target by mac, sent from src to the all-nodes address ff02::1 (RFC 4861
// section 7.2.6): flags as given (the Solicited flag must be clear in a
// multicast advertisement, so FlagSolicited is removed), a target
// link-layer address option holding mac, hop limit 255 and a valid
// checksum. It returns b[:ReplyLen]. It panics if len(b) < ReplyLen, if
// mac is not 6 bytes long or if an address is not IPv6.
func PutAdvertisement(b []byte, mac net.HardwareAddr, src, target netip.Addr, flags Flags) Frame {
	checkPut(b, mac, src, target)
	putAdvertisement(b[:ReplyLen], multicastMAC(allNodes[:]), [6]byte(mac), src.As16(), allNodes, target.As16(),
		flags&^FlagSolicited)
	return Frame(b[:ReplyLen])
}

// PutSolicitation writes into b a multicast Neighbor Solicitation for
// target from mac and src, sent to target's solicited-node multicast
// address (RFC 4861 section 7.2.2), with hop limit 255 and a valid
// checksum. With src the unspecified address it is a Duplicate Address
// Detection probe (RFC 4862 section 5.4.2): it carries no option and is
// MinFrameLen bytes long; otherwise it carries a source link-layer address
// option holding mac and is ReplyLen bytes long. It returns the frame, a
// prefix of b. It panics if len(b) < ReplyLen, if mac is not 6 bytes long
// or if an address is not IPv6.
func PutSolicitation(b []byte, mac net.HardwareAddr, src, target netip.Addr) Frame {
	checkPut(b, mac, src, target)
	dst := SolicitedNode(target).As16()
	putHeaders(b, multicastMAC(dst[:]), [6]byte(mac), src.As16(), dst)
	b[icmpOffset] = byte(TypeNeighborSolicitation)
	b[codeOffset] = 0
	clear(b[flagsOffset : flagsOffset+4])
	t := target.As16()
	copy(b[targetOffset:], t[:])
	n := ReplyLen
	if src.IsUnspecified() {
		n = MinFrameLen
		binary.BigEndian.PutUint16(b[payloadLenOff:], MinFrameLen-icmpOffset)
	} else {
		b[optionsOffset] = optSourceLinkLayer
		b[optionsOffset+1] = 1
		copy(b[optionsOffset+2:], mac)
	}
	setChecksum(b[:n])
	return Frame(b[:n])
}

func checkPut(b []byte, mac net.HardwareAddr, addrs ...netip.Addr) {
	if len(b) < ReplyLen {
		panic("ndpproxy: buffer shorter than ReplyLen")
	}
	if len(mac) != hardwareAddrLen {
		panic("ndpproxy: hardware address is not 6 bytes")
	}
	for _, a := range addrs {
		if !a.Is6() || a.Is4In6() {
			panic("ndpproxy: address is not IPv6")
		}
	}
}
