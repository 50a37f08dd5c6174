package arpproxy

import (
	"encoding/binary"
	"net"
)

// Verdict is what Respond decided to do with a frame.
type Verdict uint8

// The verdicts of Respond.
const (
	// VerdictDrop: the frame was rejected; Result.Reason says why.
	VerdictDrop Verdict = iota
	// VerdictReply: the frame is a request (or RFC 5227 probe) for an owned
	// address; the reply is in Result.Reply.
	VerdictReply
	// VerdictNotOwned: the frame is a request for an address we do not
	// own. Nothing is sent.
	VerdictNotOwned
	// VerdictIgnore: the frame is well-formed but asks nothing of us: an ARP
	// reply, or a gratuitous ARP / RFC 5227 announcement (sender IP equals
	// target IP). Nothing is sent and nothing is learned.
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

// Result is the outcome of Respond.
type Result struct {
	// Verdict says what to do with the frame.
	Verdict Verdict
	// Reason is why the frame was dropped when Verdict is VerdictDrop, and
	// zero otherwise.
	Reason DropReason
	// Reply is the reply frame, a FrameLen-byte prefix of the out buffer
	// given to Respond, when Verdict is VerdictReply; nil otherwise.
	Reply Frame
	// Probe reports that the frame is an RFC 5227 probe (a request with
	// sender IP 0.0.0.0) for an owned address, answered in Reply.
	Probe bool
	// Conflict reports that another host (a hardware address other than
	// ours) sent an ARP request or reply whose sender IP is an owned
	// address: it claims one of our addresses (RFC 5227 section 2.4). It
	// is independent of Verdict: a conflicting request for another owned
	// address is still answered.
	Conflict bool
}

// Respond examines frame, an Ethernet II frame received on an interface
// whose hardware address is mac, and decides whether to answer it for the
// addresses in owned (RFC 826, with the probe rule of RFC 5227). When it
// answers, it writes the reply into out and returns it in Result.Reply. It
// never allocates, and it never keeps anything it heard.
//
// The reply to a request from sha/spa for the owned address tpa is
// unicast to sha: Ethernet source and ARP sender hardware address mac,
// opcode reply, sender IP tpa, target hardware address sha, target IP spa.
// A probe (spa 0.0.0.0) therefore gets a reply with target IP 0.0.0.0,
// which is how a prober learns that the address is taken.
//
// The checks, in order, each with its DropReason: the header fields
// (Frame.Validate); the Ethernet destination must be broadcast, multicast
// or mac (DropOtherHost); the sender hardware addresses must be unicast
// (DropSenderMAC) and not mac (DropFromSelf); a request's Ethernet source
// must equal its ARP sender hardware address (DropSourceMismatch); the
// sender IP must not be multicast, broadcast or loopback (DropSenderIP).
//
// out may be frame itself (the reply is then written in place) or any other
// buffer; it must be at least FrameLen bytes long when a reply is due, or
// Respond panics. Respond writes to out only, so frame changes only if out
// overlaps it. mac must be 6 bytes long. owned may be nil (no address is
// owned).
func Respond(out []byte, frame Frame, mac net.HardwareAddr, owned *AddrSet) Result {
	if r := frame.validate(); r != 0 {
		return Result{Reason: r}
	}
	self := [6]byte(mac)
	ethDst := [6]byte(frame[ethDstOffset:])
	ethSrc := [6]byte(frame[ethSrcOffset:])
	sha := [6]byte(frame[shaOffset:])
	spa := binary.BigEndian.Uint32(frame[spaOffset:])
	tpa := binary.BigEndian.Uint32(frame[tpaOffset:])
	op := frame.Op()

	switch {
	case !isGroup(ethDst) && ethDst != self:
		return Result{Reason: DropOtherHost}
	case !isUnicast(ethSrc) || !isUnicast(sha):
		return Result{Reason: DropSenderMAC}
	case ethSrc == self || sha == self:
		return Result{Reason: DropFromSelf}
	case op == OpRequest && ethSrc != sha:
		return Result{Reason: DropSourceMismatch}
	case badSenderIP(spa):
		return Result{Reason: DropSenderIP}
	}

	// Never answered, but inspected: another host using one of our
	// addresses as its sender IP is a conflict (RFC 5227 section 2.4),
	// whatever the opcode, including its own announcements.
	res := Result{Verdict: VerdictIgnore, Conflict: spa != 0 && owned.containsKey(spa)}
	switch {
	case op != OpRequest:
		return res
	case spa == tpa:
		// Gratuitous ARP or RFC 5227 announcement: not a question.
		return res
	case !owned.containsKey(tpa):
		res.Verdict = VerdictNotOwned
		return res
	}

	if len(out) < FrameLen {
		panic("arpproxy: Respond output buffer shorter than FrameLen")
	}
	// Everything needed from the request is in locals, so out may alias
	// frame.
	putHeader(out, sha, self, OpReply)
	copy(out[shaOffset:], self[:])
	binary.BigEndian.PutUint32(out[spaOffset:], tpa)
	copy(out[thaOffset:], sha[:])
	binary.BigEndian.PutUint32(out[tpaOffset:], spa)
	res.Verdict = VerdictReply
	res.Reply = Frame(out[:FrameLen])
	res.Probe = spa == 0
	return res
}

// isGroup reports whether a is a multicast or broadcast Ethernet address
// (the I/G bit is set).
func isGroup(a [6]byte) bool { return a[0]&1 != 0 }

// isUnicast reports whether a can be a host's hardware address: not
// multicast, not broadcast, not all zeros.
func isUnicast(a [6]byte) bool { return !isGroup(a) && a != [6]byte{} }

// badSenderIP reports whether ip (big-endian) cannot be the sender
// protocol address of a host: multicast (224/4), limited broadcast or
// loopback (127/8). 0.0.0.0 is a probe.
func badSenderIP(ip uint32) bool {
	return ip>>28 == 0xe || ip>>24 == 127 || ip == 0xffffffff
}
