package vif

import "net/netip"

// A peerFollower is an Underlay that needs the tunnel's peers: the XDP
// underlay steers their packets, and only theirs, past the IP stack.
type peerFollower interface {
	SetPeers(peers []netip.Addr)
}

// followPeers tells the underlay the peers, when it wants them. SetPeer
// and RemovePeer defer it with peersMu held: it runs after the table
// changed (or failed to; then it tells the same peers again).
func (i *Interface) followPeers() {
	f, ok := i.under.(peerFollower)
	if !ok {
		return
	}
	t := i.peers.Load()
	addrs := make([]netip.Addr, len(t.list))
	for k, p := range t.list {
		addrs[k] = p.Addr
	}
	f.SetPeers(addrs)
}
