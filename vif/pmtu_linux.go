package vif

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

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
