package vif

// XDPStats returns the counters of the tunnel's AF_XDP underlay, and true,
// while the tunnel runs on it (Underlay().Kind is UnderlayXDP); the zero
// XDPStats and false otherwise. It is safe for concurrent use.
func (i *Interface) XDPStats() (XDPStats, bool) {
	x, ok := i.under.(*XDPUnderlay)
	if !ok {
		return XDPStats{}, false
	}
	return x.Stats(), true
}
