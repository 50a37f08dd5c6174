package ndpproxy

// DropReason is the reason Respond drops a frame without acting on it.
// The values are comparable constants, usable as errors with errors.Is (a
// DropReason implements error) and as indexes of a counter array
// (0 < r < NumDropReasons), so counting drops by reason costs nothing.
//
// DropShort through DropSolicitedMulticast mean the frame is malformed or
// fails the validity checks of RFC 4861 (Frame.Validate reports them); the
// others are valid messages we refuse to act on. On a socket opened by
// Listen the kernel filter (Filter) passes only ICMPv6 Neighbor
// Solicitations and Advertisements that follow the IPv6 header directly,
// so DropEtherType, DropNextHeader and DropICMPType only count frames that
// reach the Responder through another connection.
type DropReason uint8

// The reasons a frame is dropped.
const (
	// DropShort: the frame ends before the end of the IPv6 header or of
	// the payload the IPv6 payload length announces.
	DropShort DropReason = iota + 1
	// DropEtherType: the EtherType is not IPv6 (0x86dd). VLAN-tagged
	// frames are dropped with this reason.
	DropEtherType
	// DropVersion: the IP version is not 6.
	DropVersion
	// DropNextHeader: the IPv6 next header is not ICMPv6 (58); in
	// particular, a message after an extension header.
	DropNextHeader
	// DropICMPType: the ICMPv6 type is neither Neighbor Solicitation
	// (135) nor Neighbor Advertisement (136).
	DropICMPType
	// DropHopLimit: the IPv6 hop limit is not 255, so a router may have
	// forwarded the message (RFC 4861 sections 7.1.1 and 7.1.2).
	DropHopLimit
	// DropICMPLength: the ICMPv6 message is shorter than 24 bytes (RFC
	// 4861 sections 7.1.1 and 7.1.2).
	DropICMPLength
	// DropChecksum: the ICMPv6 checksum is wrong (RFC 4861 sections
	// 7.1.1 and 7.1.2).
	DropChecksum
	// DropCode: the ICMPv6 code is not 0 (RFC 4861 sections 7.1.1 and
	// 7.1.2).
	DropCode
	// DropTarget: the target address is a multicast address (RFC 4861
	// sections 7.1.1 and 7.1.2).
	DropTarget
	// DropOptionLength: an option has length zero, or runs past the end
	// of the message (RFC 4861 sections 4.6 and 7.1.1).
	DropOptionLength
	// DropLinkLayerOption: the source link-layer address option of a
	// solicitation, or the target one of an advertisement, is not 8 bytes
	// long: it does not hold an Ethernet address (RFC 2464 section 6).
	DropLinkLayerOption
	// DropDADDestination: a solicitation from the unspecified address
	// (Duplicate Address Detection) not sent to a solicited-node
	// multicast address (RFC 4861 section 7.1.1).
	DropDADDestination
	// DropDADOption: a solicitation from the unspecified address with a
	// source link-layer address option (RFC 4861 section 7.1.1).
	DropDADOption
	// DropSolicitedMulticast: an advertisement to a multicast address
	// with the Solicited flag set (RFC 4861 section 7.1.2).
	DropSolicitedMulticast
	// DropSenderMAC: the Ethernet source, or the link-layer address
	// option, is a multicast or broadcast address, or all zeros. No host
	// sends from such an address, and a reply to one would be flooded.
	DropSenderMAC
	// DropSourceMismatch: a solicitation whose source link-layer address
	// option differs from its Ethernet source. The reply goes to the
	// option's address, so answering such a solicitation would let anyone
	// aim our replies at a third host. Advertisements are not answered
	// and are not checked.
	DropSourceMismatch
	// DropSource: the IPv6 source is multicast (RFC 4291 section 2.7),
	// loopback or IPv4-mapped, or the unspecified address in an
	// advertisement (RFC 4861 section 4.4: "an address assigned to the
	// interface").
	DropSource
	// DropDestination: a solicitation sent neither to its target nor to
	// the target's solicited-node multicast address (RFC 4861 section
	// 4.3, Destination Address).
	DropDestination
	// DropOtherHost: the Ethernet destination is unicast to another host
	// (seen only in promiscuous mode or on a flooding bridge). Like the
	// kernel, we only act on frames sent to us or to a group.
	DropOtherHost
	// DropFromSelf: the Ethernet source or the link-layer address option
	// is our own hardware address: an echo of a frame we sent.
	DropFromSelf

	// NumDropReasons is one more than the largest DropReason, for sizing
	// arrays.
	NumDropReasons
)

var _ error = DropShort

var dropText = [NumDropReasons]string{
	DropShort:              "ndpproxy: frame too short",
	DropEtherType:          "ndpproxy: EtherType is not IPv6",
	DropVersion:            "ndpproxy: IP version is not 6",
	DropNextHeader:         "ndpproxy: next header is not ICMPv6",
	DropICMPType:           "ndpproxy: ICMPv6 type is neither neighbor solicitation nor advertisement",
	DropHopLimit:           "ndpproxy: hop limit is not 255",
	DropICMPLength:         "ndpproxy: ICMPv6 message shorter than 24 bytes",
	DropChecksum:           "ndpproxy: bad ICMPv6 checksum",
	DropCode:               "ndpproxy: ICMPv6 code is not 0",
	DropTarget:             "ndpproxy: target address is multicast",
	DropOptionLength:       "ndpproxy: option of length zero or past the end of the message",
	DropLinkLayerOption:    "ndpproxy: link-layer address option does not hold an Ethernet address",
	DropDADDestination:     "ndpproxy: solicitation from the unspecified address not sent to a solicited-node address",
	DropDADOption:          "ndpproxy: solicitation from the unspecified address with a source link-layer address",
	DropSolicitedMulticast: "ndpproxy: multicast advertisement with the solicited flag",
	DropSenderMAC:          "ndpproxy: sender hardware address is multicast, broadcast or zero",
	DropSourceMismatch:     "ndpproxy: Ethernet source differs from the source link-layer address",
	DropSource:             "ndpproxy: IPv6 source is not a unicast address",
	DropDestination:        "ndpproxy: solicitation sent neither to its target nor to its solicited-node address",
	DropOtherHost:          "ndpproxy: frame addressed to another host",
	DropFromSelf:           "ndpproxy: frame sent by ourselves",
}

var dropNames = [NumDropReasons]string{
	DropShort:              "short",
	DropEtherType:          "ethertype",
	DropVersion:            "version",
	DropNextHeader:         "next_header",
	DropICMPType:           "icmp_type",
	DropHopLimit:           "hop_limit",
	DropICMPLength:         "icmp_length",
	DropChecksum:           "checksum",
	DropCode:               "code",
	DropTarget:             "target",
	DropOptionLength:       "option_length",
	DropLinkLayerOption:    "link_layer_option",
	DropDADDestination:     "dad_destination",
	DropDADOption:          "dad_option",
	DropSolicitedMulticast: "solicited_multicast",
	DropSenderMAC:          "sender_mac",
	DropSourceMismatch:     "source_mismatch",
	DropSource:             "source",
	DropDestination:        "destination",
	DropOtherHost:          "other_host",
	DropFromSelf:           "from_self",
}

// Error returns a description prefixed with "ndpproxy: ".
func (r DropReason) Error() string {
	if r == 0 || r >= NumDropReasons {
		return "ndpproxy: unknown drop reason"
	}
	return dropText[r]
}

// Name returns a short snake_case name for r, stable for use as a counter
// key (for example "hop_limit").
func (r DropReason) Name() string {
	if r == 0 || r >= NumDropReasons {
		return "unknown"
	}
	return dropNames[r]
}

// String returns r.Name().
func (r DropReason) String() string { return r.Name() }

// DropReasons returns every DropReason in order, for tools that print one
// column or line per reason.
func DropReasons() []DropReason {
	rs := make([]DropReason, 0, NumDropReasons-1)
	for r := DropReason(1); r < NumDropReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}
