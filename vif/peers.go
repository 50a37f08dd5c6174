package vif

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/gaissmai/bart"
	"github.com/vif-project/vif/internal/inet"
)

// A Peer is a tunnel endpoint and the inner networks behind it, as
// WireGuard's peers with their allowed IPs and Linux's per-route
// encapsulation ("ip route add PREFIX encap ip dst ADDR") have them.
type Peer struct {
	// Addr is the peer's underlay address: the outer destination of the
	// packets sent to it, the outer source of those it sends.
	Addr netip.Addr `json:"addr"`
	// Prefixes are the inner networks behind the peer. A packet routed
	// into the vif goes to the peer with the longest prefix holding its
	// destination; a packet from the peer is decapsulated only when its
	// inner source is in one of them (no spoofing another peer's
	// networks: rx_bad_source). 0.0.0.0/0 takes every destination no
	// other peer has, and every source.
	Prefixes []netip.Prefix `json:"prefixes"`
}

// PeerStats is a peer and its counters.
type PeerStats struct {
	Peer
	// Encapsulated counts the packets sent to the peer (bytes are outer
	// bytes); Decapsulated those received from it and delivered (inner
	// bytes).
	Encapsulated, EncapsulatedBytes uint64
	Decapsulated, DecapsulatedBytes uint64
	// PathMTU is the tunnel MTU towards the peer (inner packets): the
	// device's MTU, or less when the underlay path to the peer is
	// smaller (RFC 2003 section 5.1).
	PathMTU int
}

// ErrNoTunnel is returned by SetPeer and RemovePeer for an interface
// without an underlay (created without a peer or a local address).
var ErrNoTunnel = errors.New("vif: the interface has no tunnel (create it with a peer or a local address)")

// ErrNoPeer is returned by RemovePeer for an address that is not a peer.
var ErrNoPeer = errors.New("vif: no such peer")

// peer is a peer as the packet loop sees it. Its configuration never
// changes; SetPeer puts a new peer in its place, which keeps the counters.
type peer struct {
	Peer
	key   uint32     // Addr
	allow *bart.Lite // Prefixes, for the inner source check
	st    *peerState
}

// peerState is what a peer keeps across SetPeer: its counters, written by
// one loop direction each, and its path MTU.
type peerState struct {
	txPkts, txBytes atomic.Uint64
	_               [48]byte // the directions on their own cache lines
	rxPkts, rxBytes atomic.Uint64
	pmtu            atomic.Int32
}

// peerTable is an immutable snapshot of the peers, replaced as a whole.
type peerTable struct {
	route *bart.Table[*peer] // inner destination -> peer
	addrs *inet.Set          // the peers' addresses
	list  []*peer            // in the order of addrs
}

// newPeerTable builds the table of peers, which checkPeers has found
// valid.
func newPeerTable(peers []Peer, mtu int) *peerTable {
	t := &peerTable{route: new(bart.Table[*peer])}
	addrs := make([]netip.Addr, len(peers))
	for k, p := range peers {
		addrs[k] = p.Addr
	}
	t.addrs = inet.NewSet(addrs...)
	t.list = make([]*peer, t.addrs.Len())
	for _, c := range peers {
		p := &peer{Peer: clonePeer(c), key: inet.Key(c.Addr.As4()), allow: new(bart.Lite), st: &peerState{}}
		p.st.pmtu.Store(int32(mtu))
		for _, pfx := range c.Prefixes {
			p.allow.Insert(pfx.Masked())
			t.route.Insert(pfx.Masked(), p)
		}
		t.list[t.addrs.Index(c.Addr)] = p
	}
	return t
}

// byAddr returns the peer whose underlay address has key k, or nil.
func (t *peerTable) byAddr(k uint32) *peer {
	if t == nil {
		return nil
	}
	if i := t.addrs.IndexKey(k); i >= 0 {
		return t.list[i]
	}
	return nil
}

// lookup returns the peer that packets for dst go to, or nil.
func (t *peerTable) lookup(dst [4]byte) *peer {
	p, _ := t.route.Lookup(netip.AddrFrom4(dst))
	return p
}

// peers returns the configuration of the table's peers.
func (t *peerTable) peers() []Peer {
	out := make([]Peer, len(t.list))
	for k, p := range t.list {
		out[k] = clonePeer(p.Peer)
	}
	return out
}

func clonePeer(p Peer) Peer {
	p.Prefixes = slices.Clone(p.Prefixes)
	return p
}

// checkPeers validates peers: host addresses, each once, IPv4 prefixes,
// and no prefix given to two peers (longest-prefix match would have no
// answer for it).
func checkPeers(peers []Peer) error {
	seen := map[netip.Addr]bool{}
	owner := map[netip.Prefix]netip.Addr{}
	for _, p := range peers {
		if !IsHostAddr(p.Addr) {
			return fmt.Errorf("%w: peer %s", ErrBadAddress, p.Addr)
		}
		if seen[p.Addr] {
			return fmt.Errorf("%w: peer %s given twice", ErrBadAddress, p.Addr)
		}
		seen[p.Addr] = true
		for _, pfx := range p.Prefixes {
			if !pfx.IsValid() || !pfx.Addr().Is4() {
				return fmt.Errorf("%w: peer %s: prefix %v is not IPv4", ErrBadAddress, p.Addr, pfx)
			}
			if o, ok := owner[pfx.Masked()]; ok {
				return fmt.Errorf("%w: prefix %s given to peers %s and %s", ErrBadAddress, pfx.Masked(), o, p.Addr)
			}
			owner[pfx.Masked()] = p.Addr
		}
	}
	return nil
}

// SetPeer adds the peer p, or gives the peer with p's address p's
// prefixes instead of its own, while the loop runs: packets to the other
// peers are not disturbed, and the peer keeps its counters. An Interface
// made by Up also routes the prefixes into the vif (but 0.0.0.0/0), and
// removes the routes of prefixes the peer no longer has. It returns
// ErrNoTunnel for an interface without a tunnel, and an error wrapping
// ErrBadAddress for a peer address that is not a host address, a prefix
// that is not IPv4 or one another peer has. Its cost grows with p's
// prefixes, not with the other peers'.
func (i *Interface) SetPeer(p Peer) error {
	if i.under == nil {
		return ErrNoTunnel
	}
	if err := checkPeers([]Peer{p}); err != nil {
		return err
	}
	i.peersMu.Lock()
	defer i.peersMu.Unlock()
	t := i.peers.Load()
	k := inet.Key(p.Addr.As4())
	for _, pfx := range p.Prefixes {
		if q, ok := t.route.Get(pfx.Masked()); ok && q.key != k {
			return fmt.Errorf("%w: prefix %s given to peers %s and %s", ErrBadAddress, pfx.Masked(), q.Addr, p.Addr)
		}
	}
	old := t.byAddr(k)
	var before []netip.Prefix
	if old != nil {
		before = old.Prefixes
	}
	if i.peerRoutes != nil {
		add, del := routeChanges([]Peer{{Prefixes: before}}, []Peer{p})
		if err := i.peerRoutes(add, del); err != nil {
			return err
		}
	}
	nt := t.with(p, int(i.devMTU.Load()))
	i.peers.Store(nt)
	if old == nil {
		i.probePathMTU(nt.byAddr(k))
	}
	return nil
}

// RemovePeer removes the peer with address addr, and the routes of its
// prefixes (with Up). It returns ErrNoTunnel for an interface without a
// tunnel, and an error wrapping ErrNoPeer if addr is not a peer.
func (i *Interface) RemovePeer(addr netip.Addr) error {
	if i.under == nil {
		return ErrNoTunnel
	}
	i.peersMu.Lock()
	defer i.peersMu.Unlock()
	t := i.peers.Load()
	old := t.byAddr(inet.Key(addr.As4()))
	if !addr.Is4() || old == nil {
		return fmt.Errorf("%w: %s", ErrNoPeer, addr)
	}
	if i.peerRoutes != nil {
		_, del := routeChanges([]Peer{old.Peer}, nil)
		if err := i.peerRoutes(nil, del); err != nil {
			return err
		}
	}
	i.peers.Store(t.without(old))
	return nil
}

// with returns a copy of t in which the peer with c's address has c's
// prefixes (a new peer if there is none); the other peers, and most of
// the route table, are shared with t.
func (t *peerTable) with(c Peer, mtu int) *peerTable {
	k := inet.Key(c.Addr.As4())
	old := t.byAddr(k)
	p := &peer{Peer: clonePeer(c), key: k, allow: new(bart.Lite)}
	if old != nil {
		p.st = old.st
	} else {
		p.st = &peerState{}
		p.st.pmtu.Store(int32(mtu))
	}
	route := t.route
	if old != nil {
		for _, pfx := range old.Prefixes {
			route = route.DeletePersist(pfx.Masked())
		}
	}
	for _, pfx := range c.Prefixes {
		p.allow.Insert(pfx.Masked())
		route = route.InsertPersist(pfx.Masked(), p)
	}
	n := &peerTable{route: route}
	if old != nil {
		n.addrs = t.addrs
		n.list = slices.Clone(t.list)
		n.list[t.addrs.IndexKey(k)] = p
	} else {
		var at int
		n.addrs, at = t.addrs.With(c.Addr)
		n.list = slices.Insert(slices.Clone(t.list), at, p)
	}
	return n
}

// without returns a copy of t without the peer p.
func (t *peerTable) without(p *peer) *peerTable {
	route := t.route
	for _, pfx := range p.Prefixes {
		route = route.DeletePersist(pfx.Masked())
	}
	at := t.addrs.IndexKey(p.key)
	return &peerTable{route: route, addrs: t.addrs.Without(at), list: slices.Delete(slices.Clone(t.list), at, at+1)}
}

// routeChanges returns the prefixes (but 0.0.0.0/0) that the peers after
// have and before did not, and those before had and after has not.
func routeChanges(before, after []Peer) (add, del []netip.Prefix) {
	set := func(peers []Peer) map[netip.Prefix]bool {
		m := map[netip.Prefix]bool{}
		for _, p := range peers {
			for _, pfx := range p.Prefixes {
				if pfx.Bits() > 0 {
					m[pfx.Masked()] = true
				}
			}
		}
		return m
	}
	b, a := set(before), set(after)
	for p := range a {
		if !b[p] {
			add = append(add, p)
		}
	}
	for p := range b {
		if !a[p] {
			del = append(del, p)
		}
	}
	return add, del
}

// Peers returns the peers and their counters, in the order of their
// addresses.
func (i *Interface) Peers() []PeerStats {
	tab := i.peers.Load()
	out := make([]PeerStats, len(tab.list))
	for k, p := range tab.list {
		out[k] = PeerStats{
			Peer:              clonePeer(p.Peer),
			Encapsulated:      p.st.txPkts.Load(),
			EncapsulatedBytes: p.st.txBytes.Load(),
			Decapsulated:      p.st.rxPkts.Load(),
			DecapsulatedBytes: p.st.rxBytes.Load(),
			PathMTU:           int(p.st.pmtu.Load()),
		}
	}
	return out
}
