package daemon

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
)

// Apply brings the daemon's vifs to specs, the whole wanted state of its
// network namespace (a configuration file): it removes the vifs specs
// lacks, creates those it adds, and changes the others in place where the
// vif library can (addresses, routes, peers, MTU: their traffic goes on).
// A vif whose slave, local address, protocol, ranges, forward prefixes,
// ARP proxy or an address's length changes is removed and created again.
// Vifs that specs leaves as they are are not touched, so applying the
// same specs twice changes nothing the second time.
//
// It returns what it changed, one line per change ("vif0: address
// 192.0.2.2/32 added"), and the errors of the changes that failed: it
// goes on with the others. Applies are serialized.
func (d *Daemon) Apply(specs []Spec) ([]string, error) {
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	for _, s := range specs {
		if s.Slave != "" && d.ifIndex(s.Slave) == 0 {
			return nil, fmt.Errorf("%s: %w: %s (nothing was changed)", s.Name, vif.ErrNoSlave, s.Slave)
		}
	}
	names := d.ifNames()
	d.mu.Lock()
	d.renamedLocked(names)
	var prev []Spec // to put back if the apply fails
	for _, e := range d.vifs {
		prev = append(prev, d.specLocked(e, names))
	}
	d.mu.Unlock()
	changes, err := d.apply(specs, true)
	if err == nil {
		return changes, nil
	}
	// Put back what ran: its addresses were the vifs' a moment ago, so
	// they are not probed for again.
	undo, uerr := d.apply(prev, false)
	for _, u := range undo {
		changes = append(changes, "undone: "+u)
	}
	if uerr != nil {
		return changes, joined{err, fmt.Errorf("putting the vifs back as they were failed too: %w", uerr)}
	}
	return changes, joined{err, errors.New("the vifs are as they were before")}
}

// joined is errors, said in one line.
type joined []error

func (j joined) Error() string {
	s := make([]string, len(j))
	for k, e := range j {
		s[k] = e.Error()
	}
	return strings.Join(s, "; ")
}

func (j joined) Unwrap() []error { return j }

// apply is Apply without its checks and undo; without probe, addresses
// are not probed for.
func (d *Daemon) apply(specs []Spec, probe bool) ([]string, error) {
	names := d.ifNames()
	d.mu.Lock()
	d.renamedLocked(names)
	running := maps.Clone(d.vifs)
	d.mu.Unlock()
	want := make(map[string]Spec, len(specs))
	for _, s := range specs {
		want[s.Name] = s
	}
	var changes []string
	var errs []error
	note := func(name, format string, args ...any) {
		changes = append(changes, name+": "+fmt.Sprintf(format, args...))
	}
	fail := func(name string, err error) {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	// Removals first: they free the addresses and prefixes that the
	// vifs created next may take.
	var create []Spec
	for _, name := range slices.SortedFunc(maps.Keys(running), compareNames) {
		e := running[name]
		s, ok := want[name]
		why := ""
		if ok {
			l := e.ifc.Link()
			if why = recreate(d.spec(e, names), s, l.HasTunnel()); why == "" {
				continue
			}
		}
		if err := d.remove(e); err != nil && !errors.Is(err, ErrUnknown) {
			fail(name, err)
			continue
		}
		if !ok {
			note(name, "removed")
			continue
		}
		note(name, "removed to be created again: its %s changed", why)
		create = append(create, s)
	}
	for _, s := range specs {
		e := running[s.Name]
		switch {
		case e == nil:
			create = append(create, s)
		case !slices.ContainsFunc(create, func(c Spec) bool { return c.Name == s.Name }):
			d.change(e, d.spec(e, names), s, probe, note, fail)
		}
	}
	slices.SortStableFunc(create, func(a, b Spec) int { return compareNames(a.Name, b.Name) })
	for _, s := range create {
		if _, err := d.bringUp(s, probe); err != nil {
			fail(s.Name, err)
			continue
		}
		note(s.Name, "created")
	}
	if len(errs) > 0 {
		return changes, joined(errs)
	}
	return changes, nil
}

// recreate names what differs between the running vif's spec cur and
// want that only creating the vif again can change; "" if nothing does.
// tunnel says whether the running vif has a tunnel (peers can be set).
func recreate(cur, want Spec, tunnel bool) string {
	switch {
	case cur.Slave != want.Slave:
		return "slave"
	case cur.Local != want.Local:
		return "local address"
	case protocolOf(cur) != protocolOf(want):
		return "protocol"
	case !sameSet(cur.Ranges, want.Ranges):
		return "ranges"
	case !sameSet(cur.Forward, want.Forward):
		return "forward prefixes"
	case cur.Publish != want.Publish:
		return "ARP proxy"
	case cur.Underlay != want.Underlay:
		return "underlay"
	case cur.Offload != want.Offload:
		return "offload"
	case want.HasTunnel() && !tunnel:
		return "tunnel (it had no peer and no local address)"
	}
	for _, p := range want.Addrs {
		if k := slices.IndexFunc(cur.Addrs, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }); k >= 0 && cur.Addrs[k] != p {
			return "address " + p.Addr().String() + "'s prefix length"
		}
	}
	return ""
}

// change makes the running vif e, whose spec is cur, want in place.
func (d *Daemon) change(e *entry, cur, want Spec, probe bool, note func(string, string, ...any), fail func(string, error)) {
	name := e.name
	// Addresses: new ones first, so that the vif never has none.
	for _, p := range want.Addrs {
		if !holdsAddr(cur.Addrs, p.Addr()) {
			if err := d.ChangeAddr(name, p, false, want.Force || !probe); err != nil {
				fail(name, err)
			} else {
				note(name, "address %s added", p)
			}
		}
	}
	for _, p := range cur.Addrs {
		if !holdsAddr(want.Addrs, p.Addr()) {
			if err := d.ChangeAddr(name, p, true, false); err != nil {
				fail(name, err)
			} else {
				note(name, "address %s removed", p)
			}
		}
	}
	// Peers: those that go first, freeing their prefixes.
	curPeers, wantPeers := peersOf(cur), peersOf(want)
	for _, a := range slices.SortedFunc(maps.Keys(curPeers), netip.Addr.Compare) {
		if _, ok := wantPeers[a]; !ok {
			if err := d.RemovePeer(name, a); err != nil {
				fail(name, err)
			} else {
				note(name, "peer %s removed", a)
			}
		}
	}
	for _, a := range slices.SortedFunc(maps.Keys(wantPeers), netip.Addr.Compare) {
		ps, had := curPeers[a]
		if had && sameSet(ps, wantPeers[a]) {
			continue
		}
		if err := d.SetPeer(name, vif.Peer{Addr: a, Prefixes: wantPeers[a]}); err != nil {
			fail(name, err)
		} else if had {
			note(name, "peer %s allowed-ips set to %s", a, prefixList(wantPeers[a]))
		} else {
			note(name, "peer %s added with allowed-ips %s", a, prefixList(wantPeers[a]))
		}
	}
	for _, p := range want.Routes {
		if !slices.Contains(cur.Routes, p.Masked()) {
			if err := d.ChangeRoute(name, p, false); err != nil {
				fail(name, err)
			} else {
				note(name, "route %s added", p.Masked())
			}
		}
	}
	for _, p := range cur.Routes {
		if !slices.ContainsFunc(want.Routes, func(q netip.Prefix) bool { return q.Masked() == p }) {
			if err := d.ChangeRoute(name, p, true); err != nil {
				fail(name, err)
			} else {
				note(name, "route %s removed", p)
			}
		}
	}
	if want.MTU != cur.MTU {
		mtu := want.MTU
		if mtu == 0 {
			mtu = d.defaultMTU(e)
		}
		if err := d.SetMTU(name, mtu, want.OuterFragments); err != nil {
			fail(name, err)
			return
		}
		d.mu.Lock()
		e.mtu = want.MTU
		d.mu.Unlock()
		note(name, "MTU set to %d", mtu)
	}
}

// defaultMTU is the MTU vif up gives a vif without --mtu: its slave's
// MTU minus the outer header (vif.LinkConfig.DefaultMTU).
func (d *Daemon) defaultMTU(e *entry) int {
	if m := d.ifMTU(e.slaveIndex); m > 0 {
		l := e.ifc.Link()
		return l.DefaultMTU(m)
	}
	return 1480
}

// spec returns the running vif of e as a Spec: what was asked for at up
// and changed since, without the defaults vif chose (names is ifNames'
// answer). Applying it changes nothing.
func (d *Daemon) spec(e *entry, names map[int]string) Spec {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.specLocked(e, names)
}

// specLocked is spec with d.mu held.
func (d *Daemon) specLocked(e *entry, names map[int]string) Spec {
	l := e.ifc.Link()
	mtu := e.mtu
	if now := e.ifc.MTU(); now != 0 && now != mtu && (mtu != 0 || now != d.defaultMTU(e)) {
		mtu = now // changed from outside ("ip link set NAME mtu N"), as vif follows it
	}
	s := Spec{
		LinkConfig: vif.LinkConfig{
			Name: e.name, Routes: l.Routes, MTU: mtu, Publish: e.arp != nil, Underlay: l.Underlay, Offload: l.Offload,
			Config: vif.Config{Addrs: slices.Clone(e.addrs), Ranges: l.Ranges, Forward: l.Forward, Protocol: l.Protocol},
		},
		Force: e.force, OuterFragments: e.outerFragments,
	}
	if e.slaveGiven {
		s.Slave = l.Slave
		if n := names[e.slaveIndex]; n != "" {
			s.Slave = n
		}
	}
	if e.localGiven {
		s.Local = l.Local
	}
	for _, p := range l.Peers {
		if !s.Peer.IsValid() && len(p.Prefixes) == 1 && p.Prefixes[0].Bits() == 0 {
			s.Peer = p.Addr // the peer of every destination (vif up --peer ADDR)
			continue
		}
		s.Peers = append(s.Peers, p)
	}
	return s
}

// peersOf returns the peers of s by address, the peer of every
// destination (Spec.Peer) with the prefix 0.0.0.0/0.
func peersOf(s Spec) map[netip.Addr][]netip.Prefix {
	m := make(map[netip.Addr][]netip.Prefix, len(s.Peers)+1)
	for _, p := range s.Peers {
		m[p.Addr] = p.Prefixes
	}
	if s.Peer.IsValid() {
		m[s.Peer] = []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
	}
	return m
}

// protocolOf is the outer protocol of s's tunnel with the library's
// default: 94 over IPv4, 4 over IPv6 (an IPv6 local address, or else
// peer).
func protocolOf(s Spec) uint8 {
	if s.Protocol != 0 {
		return s.Protocol
	}
	a := s.Local
	switch {
	case a.IsValid():
	case s.Peer.IsValid():
		a = s.Peer
	case len(s.Peers) > 0:
		a = s.Peers[0].Addr
	}
	if a.Is6() {
		return ipip.ProtoIPinIP
	}
	return ipip.ProtoIPIP
}

func holdsAddr(ps []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Addr() == a })
}

// sameSet reports whether a and b hold the same prefixes, in any order.
func sameSet(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for _, p := range a {
		if !slices.Contains(b, p) {
			return false
		}
	}
	return true
}

func prefixList(ps []netip.Prefix) string {
	if len(ps) == 1 && ps[0].Bits() == 0 {
		return "0.0.0.0/0 (every destination no other peer takes)"
	}
	return fmt.Sprint(ps)
}
