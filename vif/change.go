package vif

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// hostOps change the host under an Interface made by Up: its device's
// addresses, routes through it and MTU.
type hostOps struct {
	checkPeer          func(netip.Addr) error // refuses a peer the slave's subnets make a broadcast
	addAddr, delAddr   func(netip.Prefix) error
	addRoute, delRoute func(netip.Prefix) error
	setMTU             func(int) error
}

// ErrNoHost is returned by AddRoute, RemoveRoute and SetMTU for an
// Interface made by New: it has no host device to change.
var ErrNoHost = errors.New("vif: the interface was not made by Up: no host device to change")

// AddAddr adds the address p (a /32, or a prefix whose network is then
// routed into the vif, as Up does) to the running interface: to the loop,
// and for an Interface made by Up to the device, published on the slave's
// segment with Publish. Traffic to the other addresses goes on. Adding an
// address it has does nothing. It returns an error wrapping ErrBadAddress
// for an address that cannot be the vif's.
func (i *Interface) AddAddr(p netip.Prefix) error {
	i.changeMu.Lock()
	defer i.changeMu.Unlock()
	cur := i.Addrs()
	if slices.ContainsFunc(cur, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
		return nil
	}
	c := Config{Addrs: append(slices.Clone(cur), p)}
	if err := c.check(); err != nil {
		return err
	}
	if err := checkOwn(i.peers.Load().peers(), []netip.Prefix{p}, nil); err != nil {
		return fmt.Errorf("%w: %s is a peer's address", ErrBadAddress, p.Addr())
	}
	if i.host != nil {
		if err := i.host.addAddr(p); err != nil {
			return err
		}
	}
	if i.pub != nil {
		if err := i.pub.Add(p.Addr()); err != nil {
			if i.host != nil {
				_ = i.host.delAddr(p)
			}
			return fmt.Errorf("vif: publish %s: %w", p.Addr(), err)
		}
	}
	i.addrs.Store(newAddrSet(c.Addrs, i.link.Ranges, i.link.Exclude))
	return i.syncOffload()
}

// RemoveAddr removes the address p (its address; the length does not
// matter) from the running interface, in the reverse order of AddAddr:
// the loop first, so that nothing is delivered to it meanwhile. It
// returns an error wrapping ErrNoAddress for the last address of an
// interface without ranges, and one for an address it does not have.
func (i *Interface) RemoveAddr(p netip.Prefix) error {
	i.changeMu.Lock()
	defer i.changeMu.Unlock()
	cur := i.Addrs()
	k := slices.IndexFunc(cur, func(q netip.Prefix) bool { return q.Addr() == p.Addr() })
	if k < 0 {
		return fmt.Errorf("vif: %s is not an address of the interface", p.Addr())
	}
	have := cur[k]
	rest := slices.Delete(slices.Clone(cur), k, k+1)
	if len(rest) == 0 && len(i.link.Ranges) == 0 {
		return fmt.Errorf("%w: %s is the interface's last address (remove the interface instead)", ErrNoAddress, p.Addr())
	}
	i.addrs.Store(newAddrSet(rest, i.link.Ranges, i.link.Exclude))
	i.offloadChanged() // before the host forgets it: nothing is delivered to it meanwhile
	if i.pub != nil {
		i.pub.Remove(have.Addr())
	}
	if i.host != nil {
		return i.host.delAddr(have)
	}
	return nil
}

// routeExistsError is the host's refusal of a route another one of the
// same prefix holds.
type routeExistsError struct{ p netip.Prefix }

func (e routeExistsError) Error() string {
	return fmt.Sprintf("vif: a route for %s exists already on this host (ip route show %s)", e.p, e.p)
}

// AddRoute routes the prefix p into the running vif, towards its peers
// (as LinkConfig.Routes); RemoveRoute removes such a route. They return
// ErrNoHost for an Interface made by New.
func (i *Interface) AddRoute(p netip.Prefix) error {
	if i.host == nil {
		return ErrNoHost
	}
	p = p.Masked()
	i.changeMu.Lock()
	defer i.changeMu.Unlock()
	cur := *i.routes.Load()
	if slices.Contains(cur, p) {
		// Installed once; put it back if another tool (or the kernel,
		// flushing the routes of a removed address) took it away.
		if err := i.host.addRoute(p); err != nil && !errors.As(err, new(routeExistsError)) {
			return err
		}
		return nil
	}
	if err := checkRoute(p, i.peers.Load().peers(), i.link.Ranges); err != nil {
		return err
	}
	if err := i.host.addRoute(p); err != nil {
		return err
	}
	n := append(slices.Clone(cur), p)
	i.routes.Store(&n)
	return nil
}

// RestoreRoutes puts back the routes the vif installed, LinkConfig.Routes
// and its peers' prefixes, where they are missing: the kernel flushes the
// routes of a device set down ("ip link set vif0 down") and does not put
// them back when it is set up again. Routes present are left as they are.
// It returns ErrNoHost for an Interface made by New.
func (i *Interface) RestoreRoutes() error {
	if i.host == nil {
		return ErrNoHost
	}
	var errs []error
	i.changeMu.Lock()
	for _, p := range *i.routes.Load() {
		if err := i.host.addRoute(p); err != nil && !errors.As(err, new(routeExistsError)) {
			errs = append(errs, err)
		}
	}
	i.changeMu.Unlock()
	if i.peerRoutes != nil {
		i.peersMu.Lock()
		add, _ := routeChanges(nil, i.peers.Load().peers())
		errs = append(errs, i.peerRoutes(add, nil))
		i.peersMu.Unlock()
	}
	return errors.Join(errs...)
}

// RemoveRoute removes the route of p into the vif (see AddRoute).
func (i *Interface) RemoveRoute(p netip.Prefix) error {
	if i.host == nil {
		return ErrNoHost
	}
	p = p.Masked()
	i.changeMu.Lock()
	defer i.changeMu.Unlock()
	cur := *i.routes.Load()
	k := slices.Index(cur, p)
	if k < 0 {
		return fmt.Errorf("vif: %s is not routed into the interface by it", p)
	}
	if err := i.host.delRoute(p); err != nil {
		return err
	}
	n := slices.Delete(slices.Clone(cur), k, k+1)
	i.routes.Store(&n)
	return nil
}

// checkRoute returns an error if routing p into the vif would loop: it
// holds a peer (reached through the vif itself) or overlaps a range (which
// is local: the main table's longer prefix would win).
func checkRoute(p netip.Prefix, peers []Peer, ranges []netip.Prefix) error {
	if why := badPrefix(p); why != "" {
		return fmt.Errorf("%w: --route %s %s", ErrBadAddress, p, why)
	}
	for _, peer := range peers {
		if p.Bits() > 0 && p.Masked().Contains(peer.Addr) {
			return fmt.Errorf("%w: %s is inside --route %s: the tunnel would carry its own packets", ErrBadPeer, peer.Addr, p)
		}
	}
	for _, r := range ranges {
		if p.Overlaps(r) {
			return fmt.Errorf("%w %s: --route %s overlaps it; routed into the vif, its addresses would loop (a range is local)", ErrBadRange, r, p)
		}
	}
	return nil
}

// SetMTU changes the MTU of the running vif's device; the loop follows it
// (as when an operator changes it). It returns an error wrapping
// ErrBadMTU for an MTU outside MinMTU..MaxMTU or below 1280 for a vif
// that carries IPv6 (RFC 8200 section 5), and ErrNoHost for an
// Interface made by New.
func (i *Interface) SetMTU(mtu int) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return fmt.Errorf("%w: %d (use %d to %d)", ErrBadMTU, mtu, MinMTU, MaxMTU)
	}
	if i.host == nil {
		return ErrNoHost
	}
	i.changeMu.Lock()
	defer i.changeMu.Unlock()
	l := i.Link()
	if err := l.checkMTU6(mtu); err != nil {
		return err
	}
	// The kernel sends packets of the new MTU as soon as it has it: the
	// loop must be able to read them first.
	i.growTxBuffers(mtu)
	if err := i.host.setMTU(mtu); err != nil {
		return err
	}
	i.setDevMTU(mtu) // at once, not when the device's event comes
	return nil
}

// wakeTxLoop ends the tx loop's wait in a read of the TUN, without a
// packet, with a read deadline in the past; the loop clears it and looks
// at the MTU again. It reports false for a device without a pollable
// file.
func (i *Interface) wakeTxLoop() bool {
	f := i.dev.File()
	return f != nil && f.SetReadDeadline(time.Now()) == nil
}

// growWait bounds how long growTxBuffers waits for the tx loop.
const growWait = time.Second

// A growReq asks the tx loop for read buffers that hold mtu bytes; the
// loop closes done once it has them.
type growReq struct {
	mtu  int
	done chan struct{}
}

// growTxBuffers has the tx loop, which waits in a read of the TUN with
// buffers of the MTU it had, take buffers of mtu before the device's MTU
// is raised to it: the first packet of the new size would otherwise not
// fit and be lost (tx_read_error). The read is woken by a deadline in
// the past, which returns before the kernel hands over a packet, so none
// is lost. A device without a pollable file (one given to New) keeps the
// old way: the loop grows its buffers after the first read that fails.
func (i *Interface) growTxBuffers(mtu int) {
	if mtu <= int(i.devMTU.Load()) {
		return
	}
	if i.dev.File() == nil {
		return
	}
	r := &growReq{mtu: mtu, done: make(chan struct{})}
	i.grow.Store(r)
	if !i.wakeTxLoop() {
		i.grow.CompareAndSwap(r, nil) // not pollable: no wake-up
		return
	}
	t := time.NewTimer(growWait)
	defer t.Stop()
	select {
	case <-r.done:
	case <-i.done:
	case <-t.C:
		i.log.Warn("the packet loop did not take buffers for the new MTU in time: a first packet of the new size may be dropped", "mtu", mtu)
	}
}
