package daemon

import (
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vif-project/vif/vif"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addresses and routes that vif installed can be removed by other tools
// (a network manager restarting, an operator). vif does not fight them,
// which would make two tools flap the host: it follows the kernel. An
// address removed from a vif is no longer looped back, decapsulated to or
// published (a neighbour sent there would be black-holed), until it comes
// back; a removed route is reported. Each change is logged at WARN, and
// vif show lists what the kernel has and what is missing.

// driftWatch follows address and route changes over rtnetlink.
type driftWatch struct {
	once sync.Once
}

// watchDrift makes sure the address and route watch runs.
func (d *Daemon) watchDrift() {
	d.drift.once.Do(func() {
		done := make(chan struct{})
		d.mu.Lock()
		d.driftDone = done
		d.mu.Unlock()
		go d.keepWatching("address", done, d.subscribeAddrs)
		go d.keepWatching("route", done, d.subscribeRoutes)
	})
}

// keepWatching runs the subscription sub until done is closed. A
// subscription ends when the kernel's messages overflow its socket
// (ENOBUFS, after a burst of changes): events were lost, so it subscribes
// again and compares the host with what the vifs expect (resync).
func (d *Daemon) keepWatching(what string, done chan struct{}, sub func(done <-chan struct{}) (ended <-chan struct{}, err error)) {
	for first := true; ; first = false {
		subDone := make(chan struct{})
		ended, err := sub(subDone)
		if err != nil {
			close(subDone)
			d.log.Warn("cannot watch "+what+" changes; one removed from a vif, or a renumbered slave, goes unnoticed", "err", err)
			return
		}
		if !first {
			d.log.Warn("the kernel's " + what + " events overflowed; checked every vif against the host again")
			d.resync()
		}
		select {
		case <-done:
			close(subDone)
			return
		case <-ended:
			close(subDone)
		}
		select {
		case <-done:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *Daemon) subscribeAddrs(done <-chan struct{}) (<-chan struct{}, error) {
	ch := make(chan netlink.AddrUpdate, 64)
	cb := func(err error) { d.log.Debug("address watch", "err", err) }
	if err := netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{ErrorCallback: cb}); err != nil {
		return nil, err
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for u := range ch {
			if p, ok := prefixOf(&u.LinkAddress); ok {
				d.addrChanged(u.LinkIndex, p, u.NewAddr)
				if !u.NewAddr {
					// The kernel may have flushed routes through the
					// interface with the address, without a word, and
					// does so after it announces the address gone: look
					// now and once more a little later.
					d.routesAt(u.LinkIndex)
					idx := u.LinkIndex
					time.AfterFunc(routeFlushDelay, func() { d.routesAt(idx) })
				}
				if len(d.localConcerned(u.LinkIndex, p.Addr())) > 0 {
					d.scheduleFollowLocal()
				}
			}
		}
	}()
	return ended, nil
}

func (d *Daemon) subscribeRoutes(done <-chan struct{}) (<-chan struct{}, error) {
	ch := make(chan netlink.RouteUpdate, 64)
	cb := func(err error) { d.log.Debug("route watch", "err", err) }
	if err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{ErrorCallback: cb}); err != nil {
		return nil, err
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for u := range ch {
			if p, ok := prefixOf(u.Dst); ok && u.Table == unix.RT_TABLE_MAIN {
				d.routeChanged(u.LinkIndex, p, u.Type == unix.RTM_NEWROUTE)
			}
		}
	}()
	return ended, nil
}

// routeFlushDelay is how long after an address is announced removed the
// routes through its interface are looked at again: the kernel flushes
// them after the announcement.
const routeFlushDelay = 250 * time.Millisecond

// routesAt checks the routes of the vif with interface index idx, if it is
// one.
func (d *Daemon) routesAt(idx int) {
	d.mu.Lock()
	e := d.entryAtLocked(idx)
	d.mu.Unlock()
	if e != nil {
		d.checkRoutes(e, d.linkRoutes())
	}
}

// resync compares every vif with the host, as if each address and route
// event had been seen: what is missing or back is followed and logged.
func (d *Daemon) resync() {
	host, routes := d.hostAddrs(), d.linkRoutes()
	d.mu.Lock()
	es := slices.Collect(maps.Values(d.vifs))
	d.mu.Unlock()
	for _, e := range es {
		if host != nil {
			for _, p := range e.addrs {
				d.addrChanged(e.index, p, slices.Contains(host[e.index], p))
			}
		}
		d.checkRoutes(e, routes)
	}
	d.followLocal(es, host)
}

// checkRoutes compares the routes e installed with those the kernel has
// through it (routes is linkRoutes' answer).
func (d *Daemon) checkRoutes(e *entry, routes map[int][]netip.Prefix) {
	if routes == nil { // the dump failed: no news
		return
	}
	for _, p := range installedRoutes(e.ifc.Link()) {
		d.routeChanged(e.index, p, slices.Contains(routes[e.index], p))
	}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	ip := n.IP
	if v4 := ip.To4(); v4 != nil && len(n.Mask) == net.IPv4len {
		ip = v4
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a, bits), true
}

// entryAtLocked returns the vif with interface index idx, or nil. d.mu is
// held.
func (d *Daemon) entryAtLocked(idx int) *entry {
	for _, e := range d.vifs {
		if e.index == idx {
			return e
		}
	}
	return nil
}

// addrChanged follows an address of interface idx added or removed.
func (d *Daemon) addrChanged(idx int, p netip.Prefix, added bool) {
	d.mu.Lock()
	e := d.entryAtLocked(idx)
	if e == nil || !slices.Contains(e.addrs, p) || !follow(&e.missingAddrs, p, added) {
		d.mu.Unlock()
		return
	}
	var have []netip.Prefix
	for _, q := range e.addrs {
		if !e.missingAddrs[q] {
			have = append(have, q)
		}
	}
	name := e.name
	d.mu.Unlock()

	// With none left the loop owns none either: it must not go on
	// decapsulating to an address the host no longer has.
	e.ifc.SetAddrs(have)
	if e.arp != nil {
		if added {
			e.arp.Add(p.Addr())
		} else {
			e.arp.Remove(p.Addr())
		}
	}
	if added {
		d.log.Info("address back on the vif: serving it again", "vif", name, "addr", p)
	} else {
		d.log.Warn("address removed from the vif from outside: no longer looped back, decapsulated to or published (not restored; \"vif down\" and \"vif up\" put it back)", "vif", name, "addr", p)
	}
}

// routeChanged follows a route through interface idx added or removed.
func (d *Daemon) routeChanged(idx int, p netip.Prefix, added bool) {
	d.mu.Lock()
	e := d.entryAtLocked(idx)
	if e == nil || !slices.Contains(installedRoutes(e.ifc.Link()), p) || !follow(&e.missingRoutes, p, added) {
		d.mu.Unlock()
		return
	}
	name := e.name
	d.mu.Unlock()
	if added {
		d.log.Info("route back through the vif", "vif", name, "route", p)
	} else {
		d.log.Warn("route removed from the vif from outside: traffic to it no longer goes through the tunnel (not restored)", "vif", name, "route", p)
	}
}

// installedRoutes returns the routes vif installed for the vif l: its
// routes (--route) and its peers' prefixes (but 0.0.0.0/0), masked.
func installedRoutes(l vif.LinkConfig) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range l.Routes {
		out = append(out, p.Masked())
	}
	for _, peer := range l.Peers {
		for _, p := range peer.Prefixes {
			if p.Bits() > 0 && !slices.Contains(out, p.Masked()) {
				out = append(out, p.Masked())
			}
		}
	}
	return out
}

// follow notes in *missing that p was removed or added back, and reports
// whether that is news.
func follow(missing *map[netip.Prefix]bool, p netip.Prefix, added bool) bool {
	if (*missing)[p] != added { // missing and removed, or present and added
		return false
	}
	if *missing == nil {
		*missing = map[netip.Prefix]bool{}
	}
	if added {
		delete(*missing, p)
	} else {
		(*missing)[p] = true
	}
	return true
}

// present returns the prefixes of all that are not missing, and those that
// are.
func present(all []netip.Prefix, missing map[netip.Prefix]bool) (have, gone []netip.Prefix) {
	have = []netip.Prefix{}
	for _, p := range all {
		if missing[p] {
			gone = append(gone, p)
		} else {
			have = append(have, p)
		}
	}
	return have, gone
}
