package vif

import (
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// pmtuProbe reads the kernel's path MTU towards a peer: a UDP socket
// connected to the peer (it sends nothing) answers IP_MTU from the route
// cache, which the kernel updates when a router on the way returns ICMP
// "fragmentation needed" for our IPIP packets (IPV6_MTU and ICMPv6 Packet
// Too Big over an IPv6 underlay). It is bound to the local address, as the
// underlay is, so that source-based routing rules pick the same route.
type pmtuProbe struct {
	slave int  // interface index
	v6    bool // the underlay is IPv6

	mu sync.Mutex // guards fd, which SetLocal replaces
	fd int
}

func newPMTUProbe(slave string, local netip.Addr) (*pmtuProbe, error) {
	idx, err := ifIndex(slave)
	if err != nil {
		return nil, err
	}
	p := &pmtuProbe{slave: idx, v6: local.Is6()}
	fd, err := p.open(local)
	if err != nil {
		return nil, err
	}
	p.fd = fd
	return p, nil
}

// open returns a UDP socket bound to the slave and local.
func (p *pmtuProbe) open(local netip.Addr) (int, error) {
	family := unix.AF_INET
	if p.v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("vif: path MTU probe: %w", err)
	}
	fail := func(err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("vif: path MTU probe: %w", err)
	}
	if err := bindSocket(fd, p.slave, local); err != nil {
		return fail(err)
	}
	return fd, nil
}

// PathMTU returns the path MTU towards peer. It connects to the peer
// (port 9, discard: nothing is ever sent) for each question: a new route
// lookup sees a path MTU learnt since the last one.
func (p *pmtuProbe) PathMTU(peer netip.Addr) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.v6 {
		if err := unix.Connect(p.fd, &unix.SockaddrInet6{Addr: peer.As16(), Port: 9}); err != nil {
			return 0, err
		}
		return unix.GetsockoptInt(p.fd, unix.IPPROTO_IPV6, unix.IPV6_MTU)
	}
	if err := unix.Connect(p.fd, &unix.SockaddrInet4{Addr: peer.As4(), Port: 9}); err != nil {
		return 0, err
	}
	return unix.GetsockoptInt(p.fd, unix.IPPROTO_IP, unix.IP_MTU)
}

// SetLocal binds the probe to a new local address, of the same family.
func (p *pmtuProbe) SetLocal(local netip.Addr) error {
	if local.Is6() != p.v6 {
		return fmt.Errorf("vif: path MTU probe: %s is not %s", local, family(p.v6))
	}
	fd, err := p.open(local)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	unix.Close(p.fd)
	p.fd = fd
	return nil
}

// Close releases the socket.
func (p *pmtuProbe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return unix.Close(p.fd)
}
