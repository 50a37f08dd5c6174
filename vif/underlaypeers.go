package vif

import "net/netip"

// A peerFollower is an Underlay that needs the tunnel's peers: the XDP
// underlay steers their packets, and only theirs, past the IP stack.
type peerFollower interface {
	SetPeers(peers []netip.Addr)
}

// followPeers tells the underlay the peers of t, when it wants them. It
// is called with peersMu held, after the table changed.
func (i *Interface) followPeers(t *peerTable) {
	f, ok := i.under.(peerFollower)
	if !ok {
		return
	}
	addrs := make([]netip.Addr, len(t.list))
	for k, p := range t.list {
		addrs[k] = p.Addr
	}
	f.SetPeers(addrs)
}
