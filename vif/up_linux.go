package vif

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// Publisher publishes addresses on the slave's segment, so neighbours send
// their packets for them to this host. *arpproxy.Responder implements it:
// Add answers ARP for the address (and announces it), Remove stops.
type Publisher interface {
	Add(addr netip.Addr) error
	Remove(addr netip.Addr)
}

// LinkConfig describes a vif to create on this host with Up.
type LinkConfig struct {
	// Name is the interface name, such as "vif0" (at most 15 bytes).
	Name string
	// Addrs are the interface's addresses. A /32 installs a host address
	// only (the seed's "delete the spurious net route"); a shorter prefix
	// also routes that network into the vif.
	Addrs []netip.Prefix
	// Slave is the physical interface the tunnel runs over and the
	// addresses are published on. Required with a Peer or a Publisher.
	Slave string
	// Local is the outer source address; the zero Addr means the slave's
	// primary IPv4 address. Used only with a Peer.
	Local netip.Addr
	// Peer is the underlay address of the tunnel's other end; the zero
	// Addr means no tunnel.
	Peer netip.Addr
	// Routes are prefixes routed into the vif (and so to the peer).
	Routes []netip.Prefix
	// Protocol is the outer IP protocol, 94 (default) or 4.
	Protocol uint8
	// MTU of the vif; zero means the slave's MTU minus 20 (the outer
	// header), or 1480 without a slave.
	MTU int
	// TTL is the outer TTL; zero means 64.
	TTL uint8
	// Publisher, when set, publishes the addresses on the slave's segment
	// (an ARP proxy) for as long as the interface lives.
	Publisher Publisher
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger
}

// Errors returned by Up.
var (
	// ErrBadName is returned for an interface name that Linux would refuse.
	ErrBadName = errors.New("vif: bad interface name")
	// ErrExists is returned when an interface of that name already exists.
	ErrExists = errors.New("vif: interface already exists")
	// ErrNoSlave is returned when the slave interface does not exist.
	ErrNoSlave = errors.New("vif: no such slave interface")
	// ErrBadMTU is returned for an MTU outside 68..65515.
	ErrBadMTU = errors.New("vif: MTU out of range")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// ValidName reports whether name is usable as a Linux interface name.
func ValidName(name string) error {
	if !nameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%w %q: use 1 to 15 letters, digits, '.', '-' or '_'", ErrBadName, name)
	}
	return nil
}

// Up creates a vif in the calling thread's network namespace: a TUN
// device with offloads, its addresses, routes and MTU set through netlink,
// the underlay socket when there is a peer, and the packet loop. It needs
// CAP_NET_ADMIN (and CAP_NET_RAW for a tunnel).
//
// Close on the returned Interface removes everything Up installed: the
// published addresses, the routes, the addresses and the interface itself.
// If Up fails, it leaves nothing behind.
func Up(cfg *LinkConfig) (ifc *Interface, err error) {
	if err := ValidName(cfg.Name); err != nil {
		return nil, err
	}
	if len(cfg.Addrs) == 0 {
		return nil, ErrNoAddress
	}
	addrs := make([]netip.Addr, len(cfg.Addrs))
	for k, p := range cfg.Addrs {
		addrs[k] = p.Addr()
	}
	if _, err := newAddrSet(addrs); err != nil {
		return nil, err
	}
	// One netlink socket, opened in the calling thread's namespace, serves
	// every request of this interface, Close's included: Close may run on
	// any thread, in any namespace.
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("vif: netlink: %w", err)
	}
	defer func() {
		if err != nil {
			nl.Close()
		}
	}()
	if _, err := nl.LinkByName(cfg.Name); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrExists, cfg.Name)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("vif", cfg.Name)

	var slave netlink.Link
	mtu := cfg.MTU
	if cfg.Slave != "" {
		if slave, err = nl.LinkByName(cfg.Slave); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrNoSlave, cfg.Slave)
		}
		if mtu == 0 {
			mtu = slave.Attrs().MTU - 20
		}
	} else if cfg.Peer.IsValid() || cfg.Publisher != nil {
		return nil, fmt.Errorf("%w: a peer or an ARP proxy needs --slave", ErrNoSlave)
	}
	if mtu == 0 {
		mtu = 1500 - 20
	}
	if mtu < MinMTU || mtu > MaxMTU {
		return nil, fmt.Errorf("%w: %d (use %d to %d)", ErrBadMTU, mtu, MinMTU, MaxMTU)
	}
	local := cfg.Local
	if cfg.Peer.IsValid() && !local.IsValid() {
		if local, err = primaryAddr(nl, cfg.Slave); err != nil {
			return nil, err
		}
	}

	var undo []func() error
	defer func() {
		if err != nil {
			for k := len(undo) - 1; k >= 0; k-- {
				undo[k]()
			}
		}
	}()

	dev, err := tun.CreateTUN(cfg.Name, mtu)
	if err != nil {
		return nil, fmt.Errorf("vif: create TUN %s: %w", cfg.Name, err)
	}
	undo = append(undo, dev.Close)
	link, err := nl.LinkByName(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("vif: find %s after creating it: %w", cfg.Name, err)
	}
	// The vif carries IPv4 only: keep the kernel's IPv6 chatter (router
	// solicitations, MLD) out of the TUN.
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+cfg.Name+"/disable_ipv6", []byte("1"), 0)

	for _, p := range cfg.Addrs {
		a := &netlink.Addr{IPNet: prefixNet(p)}
		if err := nl.AddrAdd(link, a); err != nil {
			return nil, fmt.Errorf("vif: add address %s to %s: %w", p, cfg.Name, err)
		}
	}
	if err := nl.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("vif: set %s up: %w", cfg.Name, err)
	}
	var routes []*netlink.Route
	for _, p := range cfg.Routes {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixNet(p.Masked()), Scope: netlink.SCOPE_LINK}
		if err := nl.RouteAdd(r); err != nil {
			return nil, fmt.Errorf("vif: add route %s via %s: %w", p, cfg.Name, err)
		}
		routes = append(routes, r)
		undo = append(undo, func() error { return ignoreGone(nl.RouteDel(r)) })
	}

	var under Underlay
	var pathMTU func() (int, error)
	if cfg.Peer.IsValid() {
		ru, err := ListenUnderlay(cfg.Slave, protoOrDefault(cfg.Protocol), local, cfg.Peer)
		if err != nil {
			return nil, err
		}
		under = ru
		undo = append(undo, ru.Close)
		probe, err := newPMTUProbe(cfg.Slave, local, cfg.Peer)
		if err != nil {
			return nil, err
		}
		undo = append(undo, probe.Close)
		pathMTU = probe.PathMTU
	}

	ifc, err = New(dev, under, &Config{
		Addrs:    addrs,
		Local:    local,
		Peer:     cfg.Peer,
		Protocol: cfg.Protocol,
		TTL:      cfg.TTL,
		PathMTU:  pathMTU,
		Logger:   log,
	})
	if err != nil {
		return nil, err
	}
	// From here on the Interface owns dev and under: Close undoes the
	// rest in reverse order.
	if pathMTU != nil {
		ifc.closers = append(ifc.closers, undo[len(undo)-1]) // the probe
	}
	undo = undo[:0]
	ifc.closers = append(ifc.closers, func() error { nl.Close(); return nil })
	for _, r := range routes {
		ifc.closers = append(ifc.closers, func() error { return ignoreGone(nl.RouteDel(r)) })
	}
	if cfg.Peer.IsValid() {
		if err := ifc.startICMPRelay(cfg.Slave); err != nil {
			ifc.Close()
			return nil, err
		}
	}
	if cfg.Publisher != nil {
		for _, a := range addrs {
			if err := cfg.Publisher.Add(a); err != nil {
				ifc.Close()
				return nil, fmt.Errorf("vif: publish %s: %w", a, err)
			}
			ifc.closers = append(ifc.closers, func() error { cfg.Publisher.Remove(a); return nil })
		}
	}
	log.Info("vif up", "addrs", cfg.Addrs, "mtu", mtu, "slave", cfg.Slave, "local", local, "peer", cfg.Peer,
		"proto", protoOrDefault(cfg.Protocol), "routes", cfg.Routes)
	return ifc, nil
}

func protoOrDefault(p uint8) uint8 {
	if p == 0 {
		return 94
	}
	return p
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
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

// PrimaryAddr returns the first IPv4 address of interface name, in the
// calling thread's network namespace.
func PrimaryAddr(name string) (netip.Addr, error) {
	return primaryAddr(&netlink.Handle{}, name)
}

func primaryAddr(nl *netlink.Handle, name string) (netip.Addr, error) {
	link, err := nl.LinkByName(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %s", ErrNoSlave, name)
	}
	list, err := nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vif: addresses of %s: %w", name, err)
	}
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("vif: %s has no IPv4 address to use as the local tunnel endpoint (set one, or pass --local)", name)
}

// DefaultSlave returns the interface of the IPv4 default route.
func DefaultSlave() (string, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("vif: list routes: %w", err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) && r.LinkIndex > 0 {
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err == nil {
				return l.Attrs().Name, nil
			}
		}
	}
	return "", fmt.Errorf("%w: there is no IPv4 default route to take the slave from (pass --slave IFACE)", ErrNoSlave)
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

// pmtuProbe reads the kernel's path MTU towards the peer: a UDP socket
// connected to the peer (it sends nothing) answers IP_MTU from the route
// cache, which the kernel updates when a router on the way returns ICMP
// "fragmentation needed" for our IPIP packets.
type pmtuProbe struct {
	fd   int
	peer unix.SockaddrInet4
}

func newPMTUProbe(slave string, local, peer netip.Addr) (*pmtuProbe, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("vif: path MTU probe: %w", err)
	}
	if slave != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, slave); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("vif: path MTU probe: %w", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: local.As4()}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vif: path MTU probe: %w", err)
	}
	// Port 9 (discard): nothing is ever sent.
	p := &pmtuProbe{fd: fd, peer: unix.SockaddrInet4{Addr: peer.As4(), Port: 9}}
	if err := unix.Connect(fd, &p.peer); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vif: path MTU probe: %w", err)
	}
	return p, nil
}

// PathMTU returns the path MTU towards the peer. It connects again first:
// the socket's cached route does not see a path MTU learnt after it was
// looked up, a new lookup does.
func (p *pmtuProbe) PathMTU() (int, error) {
	if err := unix.Connect(p.fd, &p.peer); err != nil {
		return 0, err
	}
	return unix.GetsockoptInt(p.fd, unix.IPPROTO_IP, unix.IP_MTU)
}

// Close releases the socket.
func (p *pmtuProbe) Close() error { return unix.Close(p.fd) }
