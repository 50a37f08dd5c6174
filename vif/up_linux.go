package vif

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vif-project/vif/arpproxy"
	"github.com/vif-project/vif/internal/logattr"
	"github.com/vif-project/vif/ndpproxy"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// Resolve checks c and returns it with its defaults filled in, as Up
// would use it, without creating anything: the slave (the interface of
// the IPv4 default route, when a peer or Publish needs one; of the IPv6
// one for IPv6 peers), the local address (the slave's first IPv4 address,
// with a peer; its first global IPv6 address for IPv6 peers), the MTU
// (the slave's minus the outer header, 20 or 40 bytes) and the protocol. It looks the host up in the calling thread's network
// namespace. Errors wrap ErrBadName, ErrExists (the name is taken),
// ErrNoAddress, ErrBadAddress, ErrBadProtocol, ErrNoSlave or ErrBadMTU.
func (c LinkConfig) Resolve() (LinkConfig, error) {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return LinkConfig{}, fmt.Errorf("vif: netlink: %w", err)
	}
	defer nl.Close()
	return resolve(nl, c)
}

func resolve(nl *netlink.Handle, c LinkConfig) (LinkConfig, error) {
	c = c.clone()
	if err := CheckName(c.Name); err != nil {
		return c, err
	}
	if _, err := nl.LinkByName(c.Name); err == nil {
		return c, fmt.Errorf("%w: %s", ErrExists, c.Name)
	}
	c.Protocol = c.protocol()
	if err := c.CheckUnderlay(); err != nil {
		return c, err
	}
	if c.Slave == "" && (c.HasTunnel() || c.Publish) {
		s, err := defaultSlave(nl, c.underlay6())
		if err != nil && !c.HasTunnel() {
			// Publishing only: an IPv6-only host has its slave where
			// its IPv6 default route goes.
			if s, err = defaultSlave(nl, true); err != nil {
				err = fmt.Errorf("%w: there is no default route, IPv4 or IPv6, to take the slave from (pass --slave IFACE)", ErrNoSlave)
			}
		}
		if err != nil {
			return c, err
		}
		c.Slave = s
	}
	slaveMTU := 1500
	if c.Slave != "" {
		slave, err := nl.LinkByName(c.Slave)
		if err != nil {
			return c, fmt.Errorf("%w: %s", ErrNoSlave, c.Slave)
		}
		slaveMTU = slave.Attrs().MTU
	}
	if c.MTU == 0 {
		c.MTU = c.DefaultMTU(slaveMTU)
	}
	if c.MTU < MinMTU || c.MTU > MaxMTU {
		return c, fmt.Errorf("%w: %d (use %d to %d)", ErrBadMTU, c.MTU, MinMTU, MaxMTU)
	}
	if err := c.checkMTU6(c.MTU); err != nil {
		return c, err
	}
	if err := checkHostAddrs(nl, c.Addrs, c.Ranges, c.Local, 0); err != nil {
		return c, err
	}
	for _, p := range c.Routes {
		if err := checkRoute(p, c.peers(), c.Ranges); err != nil {
			return c, err
		}
	}
	// A peer inside what the vif's address routes into it would be
	// reached through the vif itself: every packet to it would loop.
	for _, peer := range c.peers() {
		for _, p := range c.Addrs {
			if p.Bits() < 32 && p.Masked().Contains(peer.Addr) {
				return c, fmt.Errorf("%w: %s is inside %s, which the vif's address routes into it: the tunnel would carry its own packets", ErrBadPeer, peer.Addr, p.Masked())
			}
		}
	}
	if c.Slave != "" {
		if err := notSubnetEdge(nl, c.Slave, c.Addrs); err != nil {
			return c, err
		}
		var peers []netip.Addr
		for _, p := range c.peers() {
			peers = append(peers, p.Addr)
		}
		if err := peerNotSubnetEdge(nl, c.Slave, peers); err != nil {
			return c, err
		}
	}
	if c.HasTunnel() && !c.Local.IsValid() {
		l, err := primaryAddr(nl, c.Slave, c.underlay6())
		if err != nil {
			return c, err
		}
		c.Local = l
	}
	return c, c.check()
}

// Up creates a vif in the calling thread's network namespace, as Resolve
// completes cfg: a TUN device with offloads, its addresses, routes and MTU
// set through netlink, the underlay socket when there is a peer, the
// packet loop, and with Publish the addresses published on the slave's
// segment. It needs CAP_NET_ADMIN (and CAP_NET_RAW for a tunnel or
// Publish).
//
// Close on the returned Interface removes everything Up installed: the
// published addresses, the routes, the addresses and the interface itself.
// If Up fails, it leaves nothing behind.
func Up(cfg *LinkConfig) (ifc *Interface, err error) {
	// One netlink socket, opened in the calling thread's namespace, serves
	// every request of this interface, Close's included: Close may run on
	// any thread, in any namespace.
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("vif: netlink: %w", err)
	}
	var index int // the device's, once created
	// undo holds what Up installed, to be undone in reverse order: by Up
	// if it fails, or else by the Interface's Close, which gets it whole.
	// dev and the underlay are the Interface's once New has taken them.
	// After Up, the device is looked up by index from other goroutines
	// (MTU, Stats) while Close may be closing the handle.
	var nlMu sync.Mutex
	nlClosed := false
	linkNow := func() (netlink.Link, error) {
		nlMu.Lock()
		defer nlMu.Unlock()
		if nlClosed {
			return nil, os.ErrClosed
		}
		return nl.LinkByIndex(index)
	}
	undo := []func() error{func() error {
		nlMu.Lock()
		defer nlMu.Unlock()
		nlClosed = true
		nl.Close()
		return nil
	}}
	var owned []func() error
	defer func() {
		if err != nil {
			for k := len(undo) - 1; k >= 0; k-- {
				undo[k]()
			}
			for _, c := range owned {
				c()
			}
		}
	}()
	c, err := resolve(nl, *cfg)
	if err != nil {
		return nil, err
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Log lines name the interface as the kernel calls it now: an
	// operator may rename it ("ip link set vif0 name ...").
	log = slog.New(logattr.Dynamic(log.Handler(), "vif", func() string {
		if l, err := linkNow(); err == nil {
			return l.Attrs().Name
		}
		return c.Name // not created yet, or closed
	}))
	c.Logger = log

	dev, err := tun.CreateTUN(c.Name, c.MTU)
	if err != nil {
		return nil, fmt.Errorf("vif: create TUN %s: %w", c.Name, err)
	}
	owned = append(owned, dev.Close)
	link, err := nl.LinkByName(c.Name)
	if err != nil {
		return nil, fmt.Errorf("vif: find %s after creating it: %w", c.Name, err)
	}
	index = link.Attrs().Index
	// Without IPv6 addresses, routes or peer prefixes keep the kernel's
	// IPv6 chatter (router solicitations, MLD) out of the TUN; with them,
	// IPv6 runs without a link-local address or router solicitations.
	setIPv6(c.Name, hasIPv6(c.Addrs) || hasIPv6(c.Ranges) || hasIPv6(c.Routes) || hasIPv6(peerPrefixes(c.peers())))

	for _, p := range c.Addrs {
		if err := nl.AddrAdd(link, hostAddr(p)); err != nil {
			return nil, fmt.Errorf("vif: add address %s to %s: %w", p, c.Name, err)
		}
	}
	if err := nl.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("vif: set %s up: %w", c.Name, err)
	}
	// A range is local to the host through one route ("AnyIP", "ip -6
	// route add local PREFIX" for IPv6); the addresses others use are
	// routed to the slave's segment instead, so that the kernel neither
	// takes nor answers ARP for them.
	rangeRoute := func(p netip.Prefix) *netlink.Route {
		return &netlink.Route{LinkIndex: index, Dst: prefixNet(p), Type: unix.RTN_LOCAL, Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST}
	}
	for _, p := range c.Ranges {
		r := rangeRoute(p)
		if err := nl.RouteAdd(r); err != nil {
			return nil, fmt.Errorf("vif: make range %s local: %w", p, err)
		}
		undo = append(undo, func() error { return ignoreGone(nl.RouteDel(r)) })
		if p.Addr().Is6() || p.Bits() > 30 {
			// IPv6 has no broadcast; the kernel answers no
			// solicitation on the slave for an address that is
			// not the slave's, so the Subnet-Router anycast address
			// needs no route of its own.
			continue
		}
		// Its network and broadcast addresses are broadcast, as the
		// kernel makes them for a subnet: not local, so that not even
		// the kernel answers ARP for them.
		last := p.Addr().As4()
		host := ^uint32(0) >> p.Bits()
		for k := range last {
			last[k] |= byte(host >> (24 - 8*k))
		}
		for _, a := range []netip.Addr{p.Addr(), netip.AddrFrom4(last)} {
			b := &netlink.Route{LinkIndex: index, Dst: prefixNet(netip.PrefixFrom(a, 32)), Type: unix.RTN_BROADCAST, Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_LINK}
			if err := nl.RouteAdd(b); err != nil {
				return nil, fmt.Errorf("vif: make %s of range %s broadcast: %w", a, p, err)
			}
			undo = append(undo, func() error { return ignoreGone(nl.RouteDel(b)) })
		}
	}
	if len(c.Exclude) > 0 && c.Slave != "" {
		slave, err := nl.LinkByName(c.Slave)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrNoSlave, c.Slave)
		}
		for _, a := range c.Exclude {
			r := &netlink.Route{LinkIndex: slave.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(a, a.BitLen())), Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_LINK}
			// Replace: a vif killed before it could remove them leaves
			// such routes behind.
			if err := nl.RouteReplace(r); err != nil {
				return nil, fmt.Errorf("vif: route %s, another host's, to %s: %w", a, c.Slave, err)
			}
			undo = append(undo, func() error { return ignoreGone(nl.RouteDel(r)) })
		}
	}
	for _, p := range c.Routes {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixNet(p.Masked()), Scope: netlink.SCOPE_LINK}
		if err := nl.RouteAdd(r); err != nil {
			return nil, fmt.Errorf("vif: add route %s via %s: %w", p, c.Name, err)
		}
		undo = append(undo, func() error { return ignoreGone(nl.RouteDel(r)) })
	}

	// The peers' prefixes are routed into the vif too (but 0.0.0.0/0,
	// and those --route has routed already), now and as peers change.
	routed := map[netip.Prefix]bool{}
	for _, p := range c.Routes {
		routed[p.Masked()] = true
	}
	peerRouted := map[netip.Prefix]bool{} // guarded by the Interface's peersMu
	peerRoutes := func(add, del []netip.Prefix) error {
		nlMu.Lock()
		defer nlMu.Unlock()
		if nlClosed {
			return os.ErrClosed
		}
		var added []*netlink.Route
		undoAdded := func() {
			for _, r := range added {
				_ = ignoreGone(nl.RouteDel(r))
				p, _ := netip.AddrFromSlice(r.Dst.IP)
				bits, _ := r.Dst.Mask.Size()
				delete(peerRouted, netip.PrefixFrom(p, bits))
			}
		}
		if hasIPv6(add) {
			// IPv6 routes need IPv6 on the device.
			setIPv6(c.Name, true)
		}
		for _, p := range add {
			if routed[p] {
				continue
			}
			r := &netlink.Route{LinkIndex: index, Dst: prefixNet(p), Scope: netlink.SCOPE_LINK}
			if peerRouted[p] {
				// Ours: routed anew, in case the kernel dropped it.
				if err := nl.RouteReplace(r); err != nil {
					undoAdded()
					return fmt.Errorf("vif: route %s via %s again: %w", p, c.Name, err)
				}
				continue
			}
			if err := nl.RouteAdd(r); err != nil {
				undoAdded()
				if errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("%w: a route for %s exists already on this host (ip route show %s): remove it, or give the peer another prefix", ErrBadPeer, p, p)
				}
				return fmt.Errorf("vif: add route %s via %s: %w", p, c.Name, err)
			}
			peerRouted[p] = true
			added = append(added, r)
		}
		for _, p := range del {
			if peerRouted[p] {
				_ = ignoreGone(nl.RouteDel(&netlink.Route{LinkIndex: index, Dst: prefixNet(p), Scope: netlink.SCOPE_LINK}))
				delete(peerRouted, p)
			}
		}
		return nil
	}
	if add, _ := routeChanges(nil, c.peers()); len(add) > 0 {
		if err := peerRoutes(add, nil); err != nil {
			return nil, err
		}
	}

	var under Underlay
	var probe *pmtuProbe
	var uinfo UnderlayInfo
	if c.HasTunnel() {
		ru, err := ListenUnderlay(c.Slave, c.Protocol, c.Local)
		if err != nil {
			return nil, err
		}
		under = ru
		owned = append(owned, ru.Close)
		probe, err = newPMTUProbe(c.Slave, c.Local)
		if err != nil {
			return nil, err
		}
		undo = append(undo, probe.Close)
		c.PathMTU = probe.PathMTU
		if under, uinfo, err = pickUnderlay(&c, ru, log); err != nil {
			return nil, err
		}
		if under != Underlay(ru) {
			owned = append(owned, under.Close)
		}
	}

	ifc, err = newInterface(dev, under, &c.Config)
	if err != nil {
		return nil, err
	}
	ifc.underlay = uinfo
	ifc.link = c.clone()
	ifc.link.Peer, ifc.link.Peers = netip.Addr{}, nil // the peer table's
	routes := slices.Clone(c.Routes)
	ifc.routes.Store(&routes)
	withNL := func(f func() error) error {
		nlMu.Lock()
		defer nlMu.Unlock()
		if nlClosed {
			return os.ErrClosed
		}
		return f()
	}
	route := func(p netip.Prefix) *netlink.Route {
		return &netlink.Route{LinkIndex: index, Dst: prefixNet(p.Masked()), Scope: netlink.SCOPE_LINK}
	}
	slaveIndex := 0 // followed by index: the slave may be renamed
	if c.Slave != "" {
		if l, err := nl.LinkByName(c.Slave); err == nil {
			slaveIndex = l.Attrs().Index
		}
	}
	ifc.host = &hostOps{
		checkPeer: func(a netip.Addr) error {
			if slaveIndex == 0 {
				return nil
			}
			return withNL(func() error {
				l, err := nl.LinkByIndex(slaveIndex)
				if err != nil {
					return nil // the slave is gone; the daemon follows that
				}
				return peerNotSubnetEdge(nl, l.Attrs().Name, []netip.Addr{a})
			})
		},
		addAddr: func(p netip.Prefix) error {
			return withNL(func() error {
				if err := checkHostAddrs(nl, []netip.Prefix{p}, nil, netip.Addr{}, index); err != nil {
					return err
				}
				if p.Addr().Is6() {
					if l, err := nl.LinkByIndex(index); err == nil {
						setIPv6(l.Attrs().Name, true)
					}
				}
				if err := nl.AddrAdd(link, hostAddr(p)); err != nil {
					return fmt.Errorf("vif: add address %s to %s: %w", p, c.Name, err)
				}
				return nil
			})
		},
		delAddr: func(p netip.Prefix) error {
			return withNL(func() error { return ignoreGone(nl.AddrDel(link, hostAddr(p))) })
		},
		addRoute: func(p netip.Prefix) error {
			return withNL(func() error {
				if p.Addr().Is6() {
					if l, err := nl.LinkByIndex(index); err == nil {
						setIPv6(l.Attrs().Name, true)
					}
				}
				if err := nl.RouteAdd(route(p)); err != nil {
					if errors.Is(err, unix.EEXIST) {
						return routeExistsError{p}
					}
					return fmt.Errorf("vif: add route %s via %s: %w", p, c.Name, err)
				}
				return nil
			})
		},
		delRoute: func(p netip.Prefix) error {
			return withNL(func() error { return ignoreGone(nl.RouteDel(route(p))) })
		},
		setMTU: func(mtu int) error {
			return withNL(func() error {
				l, err := nl.LinkByIndex(index)
				if err == nil {
					err = nl.LinkSetMTU(l, mtu)
				}
				if err != nil {
					return fmt.Errorf("vif: set the MTU of %s to %d: %w", c.Name, mtu, err)
				}
				return nil
			})
		},
	}
	// Routes added while it ran go with it (Up's own are undone above).
	undo = append(undo, func() error {
		for _, p := range *ifc.routes.Load() {
			_ = withNL(func() error { return ignoreGone(nl.RouteDel(route(p))) })
		}
		return nil
	})
	if probe != nil {
		ifc.rebind = append(ifc.rebind, probe.SetLocal)
	}
	ifc.peerRoutes = peerRoutes
	undo = append(undo, func() error {
		ifc.peersMu.Lock()
		defer ifc.peersMu.Unlock()
		_, del := routeChanges(ifc.peers.Load().peers(), nil)
		return peerRoutes(nil, del)
	})
	ifc.closers, undo, owned = undo, nil, nil
	ifc.deviceMTU = func() (int, error) {
		l, err := linkNow()
		if err != nil {
			return 0, err
		}
		return l.Attrs().MTU, nil
	}
	ifc.tunDrops = func() uint64 {
		// The kernel counts a packet it could not queue for the loop
		// as the TUN device's tx_dropped.
		l, err := linkNow()
		if err != nil || l.Attrs().Statistics == nil {
			return 0
		}
		return l.Attrs().Statistics.TxDropped
	}
	// The kernel flushes a device's IPv6 routes when it goes down, or
	// its MTU below 1280 (IPv4 local routes stay): make the IPv6 ranges
	// local again when it is back.
	ranges6 := func() {
		for _, p := range c.Ranges {
			if p.Addr().Is6() {
				if err := withNL(func() error { return nl.RouteReplace(rangeRoute(p)) }); err != nil && !errors.Is(err, os.ErrClosed) {
					log.Warn("cannot make the range local again", "range", p, "err", err)
				}
			}
		}
	}
	ifc.mtuHook = func() {
		// The kernel drops a device's IPv6 settings when its MTU goes
		// below 1280 and makes them anew, IPv6 on, when it comes back.
		if l, err := linkNow(); err == nil {
			setIPv6(l.Attrs().Name, hasIPv6(ifc.Addrs()) || hasIPv6(c.Ranges) || hasIPv6(*ifc.routes.Load()) || hasIPv6(peerPrefixes(ifc.peers.Load().peers())))
			if l.Attrs().MTU >= 1280 && l.Attrs().Flags&net.FlagUp != 0 {
				ranges6()
			}
		}
	}
	if hasIPv6(c.Ranges) {
		ifc.upHook = ranges6
	}
	ifc.start()
	if c.HasTunnel() {
		if err := ifc.startICMPRelay(c.Slave); err != nil {
			ifc.Close()
			return nil, err
		}
	}
	if c.Publish {
		if err := ifc.publish(); err != nil {
			ifc.Close()
			return nil, err
		}
	}
	if c.Offload {
		// After the loop started: it takes what the programs pass.
		var slave netlink.Link
		err := withNL(func() (err error) { slave, err = nl.LinkByName(c.Slave); return err })
		if err == nil {
			err = ifc.startOffload(index, slave.Attrs().Index)
		}
		if err != nil {
			ifc.Close()
			return nil, err
		}
	}
	log.Info("vif up", "addrs", c.Addrs, "ranges", c.Ranges, "exclude", c.Exclude, "mtu", c.MTU, "slave", c.Slave, "local", c.Local, "peers", c.peers(),
		"proto", c.Protocol, "routes", c.Routes, "forward", c.Forward)
	for _, w := range HostWarnings(c) {
		log.Warn(w)
	}
	return ifc, nil
}

// HostWarnings returns what, in the host's settings, keeps the vif c
// (resolved, as Link returns it) from working as configured, each as a
// sentence with its fix: a strict reverse-path filter with nothing routed
// into the tunnel, forwarding asked for while the kernel does not forward,
// and --forward 0.0.0.0/0, which makes the vif a relay for its peers.
func HostWarnings(c LinkConfig) []string {
	var out []string
	routed := len(c.Routes) > 0
	for _, p := range c.peers() {
		for _, pfx := range p.Prefixes {
			routed = routed || pfx.Bits() > 0
		}
	}
	if len(c.peers()) > 0 && !routed && strictRPFilter(c.Name) {
		out = append(out, "rp_filter is strict (1) and nothing is routed into the vif: the kernel will drop decapsulated packets whose source is not routed back through it; give the peers' networks (--route, or --peer ADDR=PREFIX), or set net.ipv4.conf."+c.Name+".rp_filter=2")
	}
	if len(c.Forward) > 0 {
		four := slices.ContainsFunc(c.Forward, func(p netip.Prefix) bool { return p.Addr().Is4() })
		six := slices.ContainsFunc(c.Forward, func(p netip.Prefix) bool { return p.Addr().Is6() })
		if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); four && strings.TrimSpace(string(b)) != "1" {
			out = append(out, "--forward is set but the kernel does not forward (net.ipv4.ip_forward=0): decapsulated packets for the forwarded prefixes are dropped; sysctl -w net.ipv4.ip_forward=1")
		}
		if b, _ := os.ReadFile("/proc/sys/net/ipv6/conf/all/forwarding"); six && strings.TrimSpace(string(b)) != "1" {
			out = append(out, "--forward has IPv6 prefixes but the kernel does not forward IPv6 (net.ipv6.conf.all.forwarding=0): decapsulated packets for them are dropped; sysctl -w net.ipv6.conf.all.forwarding=1")
		}
		for _, p := range c.Forward {
			if p.Bits() == 0 {
				out = append(out, "--forward 0.0.0.0/0: the vif relays anything its peers send to any destination (CVE-2020-10136); forward only the networks behind it")
			}
		}
	}
	return out
}

// strictRPFilter reports whether the kernel's reverse-path filter is
// strict on interface name: the larger of conf.all and conf.<name>
// applies (Documentation/networking/ip-sysctl.rst).
func strictRPFilter(name string) bool {
	v := 0
	for _, c := range []string{"all", name} {
		b, _ := os.ReadFile("/proc/sys/net/ipv4/conf/" + c + "/rp_filter")
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			v = max(v, n)
		}
	}
	return v == 1
}

// setIPv6 turns IPv6 on or off on the interface name. On, the interface
// makes no link-local address (addr_gen_mode 1), takes no router
// advertisements and keeps its addresses over a link flap: only its own
// addresses are IPv6.
func setIPv6(name string, on bool) {
	conf := "/proc/sys/net/ipv6/conf/" + name + "/"
	if !on {
		_ = os.WriteFile(conf+"disable_ipv6", []byte("1"), 0)
		return
	}
	_ = os.WriteFile(conf+"addr_gen_mode", []byte("1"), 0)
	_ = os.WriteFile(conf+"accept_ra", []byte("0"), 0)
	// Keep the IPv6 addresses when the link goes down, as IPv4 ones are
	// kept: otherwise a link flap takes them.
	_ = os.WriteFile(conf+"keep_addr_on_down", []byte("1"), 0)
	_ = os.WriteFile(conf+"disable_ipv6", []byte("0"), 0)
}

// peerPrefixes returns the prefixes of peers.
func peerPrefixes(peers []Peer) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range peers {
		out = append(out, p.Prefixes...)
	}
	return out
}

func hasIPv6(ps []netip.Prefix) bool {
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Addr().Is6() })
}

// hostAddr is the netlink address of the vif address p; IPv6 ones skip
// duplicate address detection (RFC 4862 section 5.4): the segment was
// asked first, and the TUN is no link to detect on.
func hostAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: prefixNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// publish publishes the interface's addresses through its Publisher, or
// an ARP responder of its own on the slave, until Close.
func (i *Interface) publish() error {
	pub := i.link.Publisher
	if pub == nil {
		ifi, err := net.InterfaceByName(i.link.Slave)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrNoSlave, i.link.Slave)
		}
		r, err := arpproxy.Listen(ifi, &arpproxy.Config{Logger: i.log})
		if err != nil {
			return fmt.Errorf("vif: ARP proxy on %s: %w", i.link.Slave, err)
		}
		p := &proxies{arp: r, ifi: ifi, log: i.log}
		i.closers = append(i.closers, p.Close)
		pub = p
	}
	// The addresses as they are at Close: AddAddr may add some.
	i.closers = append(i.closers, func() error {
		for _, p := range i.Addrs() {
			pub.Remove(p.Addr())
		}
		return nil
	})
	for _, p := range i.link.Addrs {
		if err := pub.Add(p.Addr()); err != nil {
			return fmt.Errorf("vif: publish %s: %w", p.Addr(), err)
		}
	}
	i.changeMu.Lock()
	i.pub = pub
	i.changeMu.Unlock()
	for _, p := range i.link.Ranges {
		if err := pub.AddRange(p, i.link.Exclude); err != nil {
			return fmt.Errorf("vif: publish range %s: %w", p, err)
		}
		i.closers = append(i.closers, func() error { pub.RemoveRange(p); return nil })
	}
	return nil
}

// proxies publishes an Interface's addresses when Up opens the proxies
// itself: IPv4 ones through an ARP proxy, IPv6 ones through an NDP proxy
// opened for the first of them.
type proxies struct {
	arp *arpproxy.Responder
	ifi *net.Interface
	log *slog.Logger

	mu  sync.Mutex
	ndp *ndpproxy.Responder
}

func (p *proxies) ndpProxy() (*ndpproxy.Responder, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ndp == nil {
		r, err := ndpproxy.Listen(p.ifi, &ndpproxy.Config{Logger: p.log})
		if err != nil {
			return nil, fmt.Errorf("vif: NDP proxy on %s: %w", p.ifi.Name, err)
		}
		p.ndp = r
	}
	return p.ndp, nil
}

func (p *proxies) Add(a netip.Addr) error {
	if a.Is4() {
		return p.arp.Add(a)
	}
	n, err := p.ndpProxy()
	if err != nil {
		return err
	}
	return n.Add(a)
}

func (p *proxies) Remove(a netip.Addr) {
	if a.Is4() {
		p.arp.Remove(a)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ndp != nil {
		p.ndp.Remove(a)
	}
}

func (p *proxies) AddRange(r netip.Prefix, exclude []netip.Addr) error {
	if r.Addr().Is4() {
		return p.arp.AddRange(r, exclude)
	}
	n, err := p.ndpProxy()
	if err != nil {
		return err
	}
	return n.AddRange(r, exclude)
}

func (p *proxies) RemoveRange(r netip.Prefix) {
	if r.Addr().Is4() {
		p.arp.RemoveRange(r)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ndp != nil {
		p.ndp.RemoveRange(r)
	}
}

func (p *proxies) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.arp.Close()
	if p.ndp != nil {
		err = errors.Join(err, p.ndp.Close())
	}
	return err
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// ignoreGone treats "already gone" as success: the kernel removes a
// device's routes and addresses with the device.
func ignoreGone(err error) error {
	if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) ||
		errors.Is(err, syscall.EADDRNOTAVAIL) {
		return nil
	}
	return err
}

// checkHostAddrs returns an error wrapping ErrExists if one of addrs is
// already an address of an interface of this host (a vif would share it
// with that interface, the slave's own address say, and removing the vif
// would take it from both), and one wrapping ErrBadAddress if local is
// set but not an address of this host.
func checkHostAddrs(nl *netlink.Handle, addrs, ranges []netip.Prefix, local netip.Addr, except int) error {
	list, err := nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("vif: list addresses: %w", err)
	}
	localFound := false
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.LinkIndex == except {
			continue
		}
		ip = ip.Unmap()
		localFound = localFound || ip == local
		name := func() string {
			if l, err := nl.LinkByIndex(a.LinkIndex); err == nil {
				return l.Attrs().Name
			}
			return strconv.Itoa(a.LinkIndex)
		}
		for _, p := range addrs {
			if p.Addr() == ip {
				return fmt.Errorf("%w: %s is already an address of %s on this host (pick another, or remove it there)", ErrBadAddress, ip, name())
			}
		}
		for _, p := range ranges {
			if p.Contains(ip) {
				return fmt.Errorf("%w %s: it holds %s, an address of %s on this host: making it local would cut the host off its own network (pick a range outside the host's addresses)", ErrBadRange, p, ip, name())
			}
		}
	}
	if local.IsValid() && !localFound {
		return fmt.Errorf("%w: local %s is not an address of this host (add it to the slave, or leave --local out to use the slave's)", ErrBadAddress, local)
	}
	return nil
}

// notSubnetEdge returns an error wrapping ErrBadAddress if an address of
// addrs is the network or broadcast address of a subnet of the slave:
// neighbours take it for the whole segment, not for a host.
func notSubnetEdge(nl *netlink.Handle, slave string, addrs []netip.Prefix) error {
	as := make([]netip.Addr, len(addrs))
	for k, p := range addrs {
		as[k] = p.Addr()
	}
	a, why, subnet, err := subnetEdge(nl, slave, as)
	if err == nil && why != "" {
		err = fmt.Errorf("%w: %s is the %s address of %s's subnet %s (pick a host address)", ErrBadAddress, a, why, slave, subnet)
	}
	return err
}

// peerNotSubnetEdge refuses a peer that is the network or broadcast
// address of one of the slave's IPv4 subnets: every host there would get
// the tunnel's packets.
func peerNotSubnetEdge(nl *netlink.Handle, slave string, peers []netip.Addr) error {
	a, why, subnet, err := subnetEdge(nl, slave, peers)
	if err == nil && why != "" {
		err = fmt.Errorf("%w: %s is the %s address of %s's subnet %s: a peer is one host", ErrBadPeer, a, why, slave, subnet)
	}
	return err
}

// subnetEdge returns the first of addrs that is the network or broadcast
// address (why) of an IPv4 subnet of slave's, and that subnet.
func subnetEdge(nl *netlink.Handle, slave string, addrs []netip.Addr) (netip.Addr, string, netip.Prefix, error) {
	link, err := nl.LinkByName(slave)
	if err != nil {
		return netip.Addr{}, "", netip.Prefix{}, fmt.Errorf("%w: %s", ErrNoSlave, slave)
	}
	list, err := nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, "", netip.Prefix{}, fmt.Errorf("vif: addresses of %s: %w", slave, err)
	}
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		subnet := netip.PrefixFrom(ip, bits).Masked()
		for _, p := range addrs {
			if subnet.Contains(p) {
				if why := edgeOf(netip.PrefixFrom(p, bits)); why != "" {
					return p, why, subnet, nil
				}
			}
		}
	}
	return netip.Addr{}, "", netip.Prefix{}, nil
}

func primaryAddr(nl *netlink.Handle, name string, v6 bool) (netip.Addr, error) {
	link, err := nl.LinkByName(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %s", ErrNoSlave, name)
	}
	fam := netlink.FAMILY_V4
	if v6 {
		fam = netlink.FAMILY_V6
	}
	list, err := nl.AddrList(link, fam)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vif: addresses of %s: %w", name, err)
	}
	for _, a := range list {
		if v6 {
			// A global address, usable: not link-local, nor still
			// tentative (DAD) or deprecated.
			ip, ok := netip.AddrFromSlice(a.IP)
			if ok && ip.Is6() && !ip.Is4In6() && IsHostAddr(ip) && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED|unix.IFA_F_DEPRECATED) == 0 {
				return ip, nil
			}
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("vif: %s has no %s address to use as the local tunnel endpoint (set one, or pass --local)", name, family(v6))
}

// defaultSlave returns the interface of the IPv4 default route, or of the
// IPv6 one.
func defaultSlave(nl *netlink.Handle, v6 bool) (string, error) {
	fam := netlink.FAMILY_V4
	if v6 {
		fam = netlink.FAMILY_V6
	}
	routes, err := nl.RouteList(nil, fam)
	if err != nil {
		return "", fmt.Errorf("vif: list routes: %w", err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) && r.LinkIndex > 0 {
			l, err := nl.LinkByIndex(r.LinkIndex)
			if err == nil {
				return l.Attrs().Name, nil
			}
		}
	}
	return "", fmt.Errorf("%w: there is no %s default route to take the slave from (pass --slave IFACE)", ErrNoSlave, family(v6))
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}
