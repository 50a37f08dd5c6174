package ndpproxy

import (
	"net"
	"net/netip"
)

// Verdict is what Respond decided to do with a frame.
type Verdict uint8

// The verdicts of Respond.
const (
	// VerdictDrop: the frame was rejected; Result.Reason says why.
	VerdictDrop Verdict = iota
	// VerdictReply: the frame is a solicitation (or a Duplicate Address
	// Detection probe) for an owned address; the advertisement is in
	// Result.Reply.
	VerdictReply
	// VerdictNotOwned: the frame is a solicitation for an address we do
	// not own. Nothing is sent.
	VerdictNotOwned
	// VerdictIgnore: the frame is a valid advertisement from another
	// host. Nothing is sent and nothing is learned.
	VerdictIgnore
)

var verdictNames = [...]string{
	VerdictDrop:     "drop",
	VerdictReply:    "reply",
	VerdictNotOwned: "not_owned",
	VerdictIgnore:   "ignore",
}

// String returns a short name for v ("drop", "reply", "not_owned",
// "ignore").
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict(" + itoa(uint64(v)) + ")"
}

// Self is what Respond answers with: the interface's hardware address,
// the address advertisements are sent from, and the flags they carry.
type Self struct {
	// HardwareAddr is the interface's hardware address: the Ethernet
	// source and target link-layer address of advertisements. It must be
	// 6 bytes long.
	HardwareAddr net.HardwareAddr
	// Addr is the IPv6 source of advertisements: RFC 4861 section 4.4
	// wants "an address assigned to the interface from which the
	// advertisement is sent", normally its link-local address.
	Addr netip.Addr
	// Router sets the Router flag. RFC 4861 section 7.2.4: "if the node
	// is a router, it MUST set the Router flag to one; otherwise, it MUST
	// set the flag to zero."
	Router bool
	// Proxy says that the addresses belong to other nodes, which may be
	// on the link themselves (RFC 4861 section 7.2.8): advertisements
	// then carry Override 0, so that the node's own answer wins. Without
	// it, the addresses are this host's (a vif's) and advertisements
	// carry Override 1, as section 7.2.4 says for an address that is
	// neither anycast nor proxied.
	Proxy bool
}

// flags returns the flags of an advertisement from s; solicited says
// whether it answers a solicitation from a unicast source.
func (s *Self) flags(solicited bool) Flags {
	var f Flags
	if s.Router {
		f |= FlagRouter
	}
	if solicited {
		f |= FlagSolicited
	}
	if !s.Proxy {
		f |= FlagOverride
	}
	return f
}

// Flags returns the flags of an unsolicited advertisement from s (RFC 4861
// section 7.2.6): the Router flag if s.Router, the Override flag unless
// s.Proxy, never the Solicited flag.
func (s *Self) Flags() Flags { return s.flags(false) }

// Result is the outcome of Respond.
type Result struct {
	// Verdict says what to do with the frame.
	Verdict Verdict
	// Reason is why the frame was dropped when Verdict is VerdictDrop, and
	// zero otherwise.
	Reason DropReason
	// Reply is the advertisement, a ReplyLen-byte prefix of the out
	// buffer given to Respond, when Verdict is VerdictReply; nil
	// otherwise.
	Reply Frame
	// DAD reports that the frame is a Duplicate Address Detection probe
	// (a solicitation from the unspecified address, RFC 4862 section
	// 5.4) for an owned address, answered in Reply.
	DAD bool
	// Conflict reports that another host uses an owned address: it sent
	// a solicitation from it, or an advertisement for it (RFC 4862
	// section 5.4.4: "it would possibly indicate that the address is a
	// duplicate"). It is independent of Verdict: a conflicting
	// solicitation for another owned address is still answered.
	Conflict bool
}

// Respond examines frame, an Ethernet II frame received on the interface
// self describes, and decides whether to answer it for the addresses in
// owned (RFC 4861 sections 7.2.3 and 7.2.4). When it answers, it writes
// the advertisement into out and returns it in Result.Reply. It never
// allocates, and it never keeps anything it heard: unlike a node, it
// creates no Neighbor Cache entry for the solicitation's source.
//
// The advertisement for the owned target T asked by a solicitation from
// source S carries T, a target link-layer address option holding
// self.HardwareAddr, the flags of Self, and hop limit 255; it is sent
// from self.Addr. When S is a unicast address, the Solicited flag is set
// and it goes to S, at the solicitation's source link-layer address or,
// without that option, at its Ethernet source. When S is the unspecified
// address (Duplicate Address Detection), the Solicited flag is clear and
// it goes to the all-nodes address ff02::1 (RFC 4861 section 7.2.4).
//
// The checks, in order, each with its DropReason: the validity checks of
// RFC 4861 (Frame.Validate); the Ethernet destination must be a group
// address or ours (DropOtherHost); the Ethernet source and the link-layer
// address option must be unicast (DropSenderMAC) and not ours
// (DropFromSelf); a solicitation's link-layer address option must equal
// its Ethernet source (DropSourceMismatch); the IPv6 source must not be
// multicast, loopback or IPv4-mapped, nor unspecified in an advertisement
// (DropSource); a solicitation must be sent to its target or to the
// target's solicited-node address (DropDestination).
//
// out may be frame itself (the reply is then written in place) or any
// other buffer; it must be at least ReplyLen bytes long when a reply is
// due, or Respond panics. Respond writes to out only, so frame changes
// only if out overlaps it. self.HardwareAddr must be 6 bytes long and
// self.Addr an IPv6 address. owned may be nil (no address is owned).
func Respond(out []byte, frame Frame, self *Self, owned *AddrSet) Result {
	lladdr, r := frame.validate()
	if r != 0 {
		return Result{Reason: r}
	}
	mac := [6]byte(self.HardwareAddr)
	ethDst := [6]byte(frame[ethDstOffset:])
	ethSrc := [6]byte(frame[ethSrcOffset:])
	hasLL := lladdr != 0
	var ll [6]byte
	if hasLL {
		ll = [6]byte(frame[lladdr:])
	}
	src := [16]byte(frame[srcOffset:])
	dst := [16]byte(frame[dstOffset:])
	target := [16]byte(frame[targetOffset:])
	ns := frame.Type() == TypeNeighborSolicitation
	dad := ns && isUnspecified(src[:])

	switch {
	case !isGroup(ethDst) && ethDst != mac:
		return Result{Reason: DropOtherHost}
	case !isUnicast(ethSrc) || hasLL && !isUnicast(ll):
		return Result{Reason: DropSenderMAC}
	case ethSrc == mac || hasLL && ll == mac:
		return Result{Reason: DropFromSelf}
	case ns && hasLL && ll != ethSrc:
		return Result{Reason: DropSourceMismatch}
	case badSource(&src, dad):
		return Result{Reason: DropSource}
	case ns && dst != target && !(isSolicitedNode(dst[:]) && [3]byte(dst[13:]) == [3]byte(target[13:])):
		return Result{Reason: DropDestination}
	}

	owns := owned.containsKey(target[:])
	if !ns {
		// Another host advertises an owned address.
		return Result{Verdict: VerdictIgnore, Conflict: owns}
	}
	res := Result{Verdict: VerdictNotOwned, Conflict: !dad && owned.containsKey(src[:])}
	if !owns {
		return res
	}

	if len(out) < ReplyLen {
		panic("ndpproxy: Respond output buffer shorter than ReplyLen")
	}
	// Everything needed from the solicitation is in locals, so out may
	// alias frame.
	to, toMAC := src, ethSrc
	if hasLL {
		toMAC = ll
	}
	if dad {
		to, toMAC = allNodes, multicastMAC(allNodes[:])
	}
	putAdvertisement(out[:ReplyLen], toMAC, mac, self.Addr.As16(), to, target, self.flags(!dad))
	res.Verdict = VerdictReply
	res.Reply = Frame(out[:ReplyLen])
	res.DAD = dad
	return res
}

// isGroup reports whether a is a multicast or broadcast Ethernet address
// (the I/G bit is set).
func isGroup(a [6]byte) bool { return a[0]&1 != 0 }

// isUnicast reports whether a can be a host's hardware address: not
// multicast, not broadcast, not all zeros.
func isUnicast(a [6]byte) bool { return !isGroup(a) && a != [6]byte{} }

// v4MappedPrefix is ::ffff:0:0/96.
var v4MappedPrefix = [12]byte{10: 0xff, 11: 0xff}

// loopback is ::1.
var loopback = [16]byte{15: 1}

// badSource reports whether a cannot be the IPv6 source of a Neighbor
// Discovery message: a multicast address (RFC 4291 section 2.7: they
// "must not be used as source addresses"), the loopback address, an
// IPv4-mapped address, or the unspecified address unless the message is a
// Duplicate Address Detection probe (dad).
func badSource(a *[16]byte, dad bool) bool {
	return a[0] == 0xff || *a == loopback || [12]byte(a[:]) == v4MappedPrefix ||
		!dad && isUnspecified(a[:])
}
