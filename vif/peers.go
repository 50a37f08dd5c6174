package vif

import (
	"errors"
	"fmt"
	"maps"
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
	// inner source is the peer's by the same longest-prefix match, as the
	// answer would be routed (rx_bad_source otherwise): no peer speaks
	// for another's networks. 0.0.0.0/0 takes every IPv4 destination and
	// source no other peer has. IPv6 prefixes (::/0 included) are carried
	// in IPv4 as 6in4 (RFC 4213, protocol 41), under the same rules.
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
	key uint32 // Addr, when it is IPv4
	st  *peerState
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
// A tunnel's peers are all of one family, that of its local address
// (checkFamily), but the table holds either.
type peerTable struct {
	route *bart.Table[*peer] // inner destination -> peer
	addrs *inet.Set          // the IPv4 peers' addresses
	list  []*peer            // the IPv4 peers in the order of addrs, then the IPv6 ones in address order
	by6   map[[16]byte]*peer // the IPv6 peers; nil without
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
	t.list = make([]*peer, t.addrs.Len(), len(peers))
	for _, c := range peers {
		p := &peer{Peer: clonePeer(c), st: &peerState{}}
		p.st.pmtu.Store(int32(mtu))
		for _, pfx := range c.Prefixes {
			t.route.Insert(pfx.Masked(), p)
		}
		if c.Addr.Is4() {
			p.key = inet.Key(c.Addr.As4())
			t.list[t.addrs.Index(c.Addr)] = p
			continue
		}
		if t.by6 == nil {
			t.by6 = map[[16]byte]*peer{}
		}
		t.by6[c.Addr.As16()] = p
		t.list = append(t.list, p)
	}
	slices.SortFunc(t.list[t.addrs.Len():], func(a, b *peer) int { return a.Addr.Compare(b.Addr) })
	return t
}

// byAddr6 returns the peer whose underlay address is the IPv6 address a,
// or nil. It does not allocate.
func (t *peerTable) byAddr6(a [16]byte) *peer {
	if t == nil {
		return nil
	}
	return t.by6[a]
}

// find returns the peer whose underlay address is a, or nil.
func (t *peerTable) find(a netip.Addr) *peer {
	if a.Is4() {
		return t.byAddr(inet.Key(a.As4()))
	}
	if a.Is6() {
		return t.byAddr6(a.As16())
	}
	return nil
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

// lookup6 returns the peer that packets for the IPv6 address dst go to,
// or nil. It does not allocate.
func (t *peerTable) lookup6(dst [16]byte) *peer {
	p, _ := t.route.Lookup(netip.AddrFrom16(dst))
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

// ErrBadPeer is wrapped by the errors about a peer that cannot be: its
// address, or its prefixes.
var ErrBadPeer = errors.New("vif: bad peer")

// checkPeers validates peers on an interface whose local underlay address
// is local: host addresses, none twice nor local; IPv4 prefixes that can
// hold hosts, none given twice; no prefix holding a peer's or the local
// underlay address (the tunnel would carry its own packets). IPv6 prefixes
// are checked by badPrefix6.
func checkPeers(peers []Peer, local netip.Addr) error {
	if err := checkFamily(peers, local); err != nil {
		return err
	}
	seen := map[netip.Addr]bool{}
	owner := map[netip.Prefix]netip.Addr{}
	for _, p := range peers {
		switch {
		case !IsHostAddr(p.Addr) || p.Addr.Zone() != "":
			return fmt.Errorf("%w: peer %s", ErrBadAddress, p.Addr)
		case seen[p.Addr]:
			return fmt.Errorf("%w: %s given twice", ErrBadPeer, p.Addr)
		case p.Addr == local:
			return fmt.Errorf("%w: %s is the local underlay address", ErrBadPeer, p.Addr)
		}
		seen[p.Addr] = true
		for _, pfx := range p.Prefixes {
			if why := badPrefix(pfx); why != "" {
				return fmt.Errorf("%w %s: prefix %v %s", ErrBadPeer, p.Addr, pfx, why)
			}
			if o, ok := owner[pfx.Masked()]; ok {
				if o == p.Addr {
					return fmt.Errorf("%w %s: prefix %s given twice", ErrBadPeer, p.Addr, pfx.Masked())
				}
				return fmt.Errorf("%w: prefix %s given to peers %s and %s (a prefix has one peer)", ErrBadPeer, pfx.Masked(), o, p.Addr)
			}
			owner[pfx.Masked()] = p.Addr
		}
	}
	for pfx, o := range owner {
		if pfx.Bits() == 0 {
			continue
		}
		for a := range seen {
			if pfx.Contains(a) {
				return fmt.Errorf("%w %s: prefix %s holds peer %s's underlay address: the tunnel would carry its own packets", ErrBadPeer, o, pfx, a)
			}
		}
		if local.IsValid() && pfx.Contains(local) {
			return fmt.Errorf("%w %s: prefix %s holds the local underlay address %s: the tunnel would carry its own packets", ErrBadPeer, o, pfx, local)
		}
	}
	return nil
}

// checkOwn returns an error if a peer of peers would take what the
// interface owns (addrs and ranges): a prefix overlapping a range would
// beat its local route and loop (the main table's longer prefix wins),
// a peer address among them would be reached through the vif itself.
func checkOwn(peers []Peer, addrs, ranges []netip.Prefix) error {
	for _, p := range peers {
		for _, r := range ranges {
			if r.Contains(p.Addr) {
				return fmt.Errorf("%w: %s is in the vif's range %s", ErrBadPeer, p.Addr, r)
			}
			for _, pfx := range p.Prefixes {
				if pfx.Bits() > 0 && pfx.Overlaps(r) {
					return fmt.Errorf("%w %s: prefix %s overlaps the vif's range %s, which is local", ErrBadPeer, p.Addr, pfx.Masked(), r)
				}
			}
		}
		for _, a := range addrs {
			if a.Addr() == p.Addr {
				return fmt.Errorf("%w: %s is an address of the vif", ErrBadPeer, p.Addr)
			}
		}
	}
	return nil
}

// badPrefix says why p cannot be a peer's prefix, or returns "": it must
// hold host addresses (0.0.0.0/0 and 0.0.0.0/1 do; 127/8, 224/4 and
// 240/4 do not). IPv6 prefixes follow badPrefix6.
func badPrefix(p netip.Prefix) string {
	if p.IsValid() && p.Addr().Is6() {
		return badPrefix6(p)
	}
	if !p.IsValid() || !p.Addr().Is4() {
		return "is not IPv4"
	}
	m := p.Masked().Addr().As4()
	switch {
	case p.Bits() >= 8 && m[0] == 0:
		return "is in 0.0.0.0/8 (this network)"
	case p.Bits() >= 8 && m[0] == 127:
		return "is loopback"
	case p.Bits() >= 4 && m[0] >= 224:
		return "is multicast or reserved"
	}
	return ""
}

// badPrefix6 says why the IPv6 prefix p cannot be a peer's prefix, or
// returns "": it must hold global addresses: not inside multicast
// (ff00::/8), link-local (fe80::/10), which belongs to one link, nor be
// the loopback address ::1 or inside IPv4-mapped ::ffff:0:0/96 (RFC 4291
// section 2.4); ::/0 takes every IPv6 destination no other peer has.
func badPrefix6(p netip.Prefix) string {
	m := p.Masked()
	switch {
	case p.Addr().Is4In6() || p.Addr().Zone() != "":
		return "is IPv4-mapped or zoned"
	case p.Bits() >= 8 && m.Addr().IsMulticast():
		return "is multicast"
	case p.Bits() >= 10 && m.Addr().IsLinkLocalUnicast():
		return "is link-local"
	case p.Bits() == 128 && (m.Addr().IsLoopback() || m.Addr().IsUnspecified()):
		return "is loopback or unspecified"
	}
	return ""
}

// SetPeer adds the peer p, or gives the peer with p's address p's
// prefixes instead of its own, while the loop runs: packets to the other
// peers are not disturbed, and the peer keeps its counters. An Interface
// made by Up also routes the prefixes into the vif (but 0.0.0.0/0), and
// removes the routes of prefixes the peer no longer has. It returns
// ErrNoTunnel for an interface without a tunnel, and an error wrapping
// ErrBadAddress for a peer address that is not a host address, and
// ErrBadPeer for one that is the local address, a prefix that holds no hosts, one another peer has, or one
// holding a peer's or the local underlay address. Its cost grows with p's
// prefixes, not with the other peers'.
func (i *Interface) SetPeer(p Peer) error {
	if i.under == nil {
		return ErrNoTunnel
	}
	i.peersMu.Lock()
	defer i.peersMu.Unlock()
	defer i.followPeers()
	i.localMu.Lock()
	local := i.bound
	i.localMu.Unlock()
	if err := checkPeers([]Peer{p}, local); err != nil {
		return err
	}
	if err := checkOwn([]Peer{p}, i.Addrs(), i.link.Ranges); err != nil {
		return err
	}
	if i.host != nil {
		if err := i.host.checkPeer(p.Addr); err != nil {
			return err
		}
	}
	t := i.peers.Load()
	for _, pfx := range p.Prefixes {
		if q, ok := t.route.Get(pfx.Masked()); ok && q.Addr != p.Addr {
			return fmt.Errorf("%w: prefix %s given to peers %s and %s (a prefix has one peer)", ErrBadPeer, pfx.Masked(), q.Addr, p.Addr)
		}
		if pfx.Bits() == 0 {
			continue
		}
		for _, q := range t.list {
			if q.Addr != p.Addr && pfx.Contains(q.Addr) {
				return fmt.Errorf("%w %s: prefix %s holds peer %s's underlay address: the tunnel would carry its own packets", ErrBadPeer, p.Addr, pfx, q.Addr)
			}
		}
	}
	if pfx, q, ok := t.route.LookupPrefixLPM(netip.PrefixFrom(p.Addr, p.Addr.BitLen())); ok && pfx.Bits() > 0 && q.Addr != p.Addr {
		return fmt.Errorf("%w: %s is in prefix %s of peer %s: the tunnel would carry its own packets", ErrBadPeer, p.Addr, pfx, q.Addr)
	}
	old := t.find(p.Addr)
	var before []netip.Prefix
	if old != nil {
		before = old.Prefixes
	}
	if i.peerRoutes != nil {
		// All of p's prefixes: those routed already are routed anew,
		// in case the kernel dropped them (it does on a link flap).
		_, del := routeChanges([]Peer{{Prefixes: before}}, []Peer{p})
		add, _ := routeChanges(nil, []Peer{p})
		if err := i.peerRoutes(add, del); err != nil {
			return err
		}
	}
	nt := t.with(p, int(i.devMTU.Load()))
	i.peers.Store(nt)
	if old == nil {
		i.probePathMTU(nt.find(p.Addr))
	}
	return i.syncOffload()
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
	defer i.followPeers()
	t := i.peers.Load()
	old := t.find(addr)
	if old == nil {
		return fmt.Errorf("%w: %s", ErrNoPeer, addr)
	}
	if i.peerRoutes != nil {
		_, del := routeChanges([]Peer{old.Peer}, nil)
		if err := i.peerRoutes(nil, del); err != nil {
			return err
		}
	}
	i.peers.Store(t.without(old))
	return i.syncOffload()
}

// with returns a copy of t in which the peer with c's address has c's
// prefixes (a new peer if there is none); the other peers, and most of
// the route table, are shared with t.
func (t *peerTable) with(c Peer, mtu int) *peerTable {
	old := t.find(c.Addr)
	p := &peer{Peer: clonePeer(c)}
	if c.Addr.Is4() {
		p.key = inet.Key(c.Addr.As4())
	}
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
		route = route.InsertPersist(pfx.Masked(), p)
	}
	n := &peerTable{route: route, addrs: t.addrs, by6: t.by6}
	switch {
	case old != nil:
		n.list = slices.Clone(t.list)
		n.list[slices.Index(t.list, old)] = p
	case c.Addr.Is4():
		var at int
		n.addrs, at = t.addrs.With(c.Addr)
		n.list = slices.Insert(slices.Clone(t.list), at, p)
	default:
		at, _ := slices.BinarySearchFunc(t.list[t.addrs.Len():], c.Addr, func(q *peer, a netip.Addr) int { return q.Addr.Compare(a) })
		n.list = slices.Insert(slices.Clone(t.list), t.addrs.Len()+at, p)
	}
	if c.Addr.Is6() {
		n.by6 = maps.Clone(t.by6)
		if n.by6 == nil {
			n.by6 = map[[16]byte]*peer{}
		}
		n.by6[c.Addr.As16()] = p
	}
	return n
}

// without returns a copy of t without the peer p.
func (t *peerTable) without(p *peer) *peerTable {
	route := t.route
	for _, pfx := range p.Prefixes {
		route = route.DeletePersist(pfx.Masked())
	}
	at := slices.Index(t.list, p)
	n := &peerTable{route: route, addrs: t.addrs, by6: t.by6, list: slices.Delete(slices.Clone(t.list), at, at+1)}
	if p.Addr.Is4() {
		n.addrs = t.addrs.Without(t.addrs.IndexKey(p.key))
	} else {
		n.by6 = maps.Clone(t.by6)
		delete(n.by6, p.Addr.As16())
	}
	return n
}

// routeChanges returns the prefixes (but 0.0.0.0/0 and ::/0) that the peers after
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
		i.addOffloadPeer(&out[k])
	}
	return out
}
