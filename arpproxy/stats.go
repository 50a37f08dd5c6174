package arpproxy

import "sync/atomic"

// Stats is a snapshot of a Responder's counters. Every frame read counts in
// Frames and in exactly one of Drops (by reason), NotOwned, Ignored,
// RateLimited, Replies, or WriteErrors (a reply that could not be sent;
// failed announcements count there too). Requests, Conflicts and
// ProbesAnswered count alongside.
type Stats struct {
	// Frames is the number of frames read from the connection. It is
	// counted after the frame's other counters: a snapshot with Frames ==
	// n includes every effect of the first n frames.
	Frames uint64
	// Requests is the number of well-formed ARP requests received from
	// other hosts, whatever their target.
	Requests uint64
	// Replies is the number of replies sent, probe replies included.
	Replies uint64
	// ProbesAnswered is the number of RFC 5227 probes (sender IP 0.0.0.0)
	// for owned addresses that were answered.
	ProbesAnswered uint64
	// Announcements is the number of gratuitous ARP announcements sent
	// (after Add, Announce, and in defence when Config.Defend is set).
	Announcements uint64
	// Defences is the number of announcements sent in defence of an owned
	// address after a conflict (Config.Defend); they also count in
	// Announcements.
	Defences uint64
	// NotOwned is the number of requests for addresses not owned.
	NotOwned uint64
	// Ignored is the number of well-formed frames that ask nothing of us:
	// ARP replies and gratuitous ARP from other hosts.
	Ignored uint64
	// Conflicts is the number of frames from other hosts whose sender IP
	// is an owned address (RFC 5227 section 2.4).
	Conflicts uint64
	// RateLimited is the number of requests for owned addresses left
	// unanswered by the rate limit.
	RateLimited uint64
	// ReadErrors is the number of errors returned by the connection's
	// reads, other than its closing.
	ReadErrors uint64
	// WriteErrors is the number of replies and announcements the
	// connection failed to send.
	WriteErrors uint64
	// SocketDrops is the number of frames the kernel dropped before the
	// Responder read them, because the socket's receive queue was full
	// (PACKET_STATISTICS). Only a Responder from Listen, or one given a
	// *packet.Conn, can know it; they count in no other field.
	SocketDrops uint64
	// Drops counts dropped frames by reason (DropReason.Name, such as
	// "short" or "source_mismatch"); only reasons with a non-zero count
	// are present, as in vif.Stats.
	Drops map[string]uint64
}

// Dropped returns the number of frames dropped for any reason.
func (s Stats) Dropped() uint64 {
	var n uint64
	for _, v := range s.Drops {
		n += v
	}
	return n
}

// counters are the live counters behind Stats.
type counters struct {
	frames, requests, replies, probes     atomic.Uint64
	announcements, defences               atomic.Uint64
	notOwned, ignored, conflicts, limited atomic.Uint64
	readErrors, writeErrors               atomic.Uint64
	socketDrops                           atomic.Uint64
	drops                                 [NumDropReasons]atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Frames:         c.frames.Load(),
		Requests:       c.requests.Load(),
		Replies:        c.replies.Load(),
		ProbesAnswered: c.probes.Load(),
		Announcements:  c.announcements.Load(),
		Defences:       c.defences.Load(),
		NotOwned:       c.notOwned.Load(),
		Ignored:        c.ignored.Load(),
		Conflicts:      c.conflicts.Load(),
		RateLimited:    c.limited.Load(),
		ReadErrors:     c.readErrors.Load(),
		WriteErrors:    c.writeErrors.Load(),
		SocketDrops:    c.socketDrops.Load(),
	}
	s.Drops = map[string]uint64{}
	for r := DropReason(1); r < NumDropReasons; r++ {
		if v := c.drops[r].Load(); v != 0 {
			s.Drops[r.Name()] = v
		}
	}
	return s
}
