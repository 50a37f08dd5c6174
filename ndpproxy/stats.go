package ndpproxy

import "sync/atomic"

// Stats is a snapshot of a Responder's counters. Every frame read counts in
// Frames and in exactly one of Drops (by reason), NotOwned, Ignored,
// RateLimited, Replies, or WriteErrors (a reply that could not be sent;
// failed announcements count there too). Solicitations, Advertisements,
// Conflicts and DADAnswered count alongside.
type Stats struct {
	// Frames is the number of frames read from the connection. It is
	// counted after the frame's other counters: a snapshot with Frames ==
	// n includes every effect of the first n frames.
	Frames uint64
	// Solicitations is the number of valid Neighbor Solicitations
	// received from other hosts, whatever their target.
	Solicitations uint64
	// Advertisements is the number of valid Neighbor Advertisements
	// received from other hosts.
	Advertisements uint64
	// Replies is the number of advertisements sent in answer to
	// solicitations, Duplicate Address Detection included.
	Replies uint64
	// DADAnswered is the number of Duplicate Address Detection probes
	// (solicitations from the unspecified address, RFC 4862 section 5.4)
	// for owned addresses that were answered.
	DADAnswered uint64
	// Announcements is the number of unsolicited advertisements sent
	// (after Add, Announce and SetHardwareAddr).
	Announcements uint64
	// NotOwned is the number of solicitations for addresses not owned.
	NotOwned uint64
	// Ignored is the number of valid advertisements from other hosts:
	// they ask nothing of us.
	Ignored uint64
	// Conflicts is the number of frames from other hosts that use an
	// owned address: solicitations from it, advertisements for it.
	Conflicts uint64
	// RateLimited is the number of solicitations for owned addresses left
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
	// Groups is the number of solicited-node multicast groups joined
	// (always zero for a Responder from New).
	Groups int
	// AllMulticast reports whether the interface receives all multicast
	// for the Responder, because it owns a range shorter than
	// GroupRangeBits (a Responder from Listen only).
	AllMulticast bool
	// Drops counts dropped frames by reason (DropReason.Name, such as
	// "hop_limit" or "checksum"); only reasons with a non-zero count are
	// present, as in vif.Stats.
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
	frames, solicitations, advertisements atomic.Uint64
	replies, dad, announcements           atomic.Uint64
	notOwned, ignored, conflicts, limited atomic.Uint64
	readErrors, writeErrors               atomic.Uint64
	socketDrops                           atomic.Uint64
	drops                                 [NumDropReasons]atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Frames:         c.frames.Load(),
		Solicitations:  c.solicitations.Load(),
		Advertisements: c.advertisements.Load(),
		Replies:        c.replies.Load(),
		DADAnswered:    c.dad.Load(),
		Announcements:  c.announcements.Load(),
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
