package vif

// XDPStatsOf returns the counters of i's XDP underlay, and false when its
// tunnel is not on one.
func XDPStatsOf(i *Interface) (XDPStats, bool) {
	x, ok := i.under.(*XDPUnderlay)
	if !ok {
		return XDPStats{}, false
	}
	return x.Stats(), true
}

// XDPHopOf returns why i's XDP underlay does not send to peer through
// AF_XDP ("" when it does, or does not know yet).
func XDPHopOf(i *Interface, peer [4]byte) string {
	x, ok := i.under.(*XDPUnderlay)
	if !ok {
		return "not xdp"
	}
	return hopWhy(x.hops.Load().hops[key(peer)])
}

// XDPHop6Of is XDPHopOf for an IPv6 peer.
func XDPHop6Of(i *Interface, peer [16]byte) string {
	x, ok := i.under.(*XDPUnderlay)
	if !ok {
		return "not xdp"
	}
	return hopWhy(x.hops.Load().hops6[peer])
}

func hopWhy(h *hop) string {
	if h == nil {
		return "unknown"
	}
	return h.why
}

// XDPInboxOf returns how many of the packets i's XDP underlay received
// through AF_XDP another vif of the slave took from the rings for it.
func XDPInboxOf(i *Interface) uint64 {
	x, ok := i.under.(*XDPUnderlay)
	if !ok {
		return 0
	}
	return x.rxInbox.Load()
}

// XDPInboxOfUnderlay is XDPInboxOf for an underlay.
func XDPInboxOfUnderlay(x *XDPUnderlay) uint64 { return x.rxInbox.Load() }
