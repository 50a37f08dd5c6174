//go:build linux

package craft

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// A RawConn sends complete IPv4 packets, header included, on a raw socket
// of protocol IPPROTO_RAW (which implies IP_HDRINCL, raw(7)). It is bound
// to the network namespace of the thread that opened it. Its methods are
// safe for concurrent use.
type RawConn struct {
	f *os.File
}

// ListenRaw opens a RawConn in the calling thread's network namespace,
// bound to the interface ifname when it is not empty (SO_BINDTODEVICE).
// It needs CAP_NET_RAW.
func ListenRaw(ifname string) (*RawConn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("craft: raw socket: %w", err)
	}
	if ifname != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("craft: bind raw socket to %s: %w", ifname, err)
		}
	}
	return &RawConn{f: os.NewFile(uintptr(fd), "craft-raw")}, nil
}

// Send sends the IPv4 packet pkt as it is, to the destination in its
// header. The kernel fixes Total Length and the checksum when the IHL is
// at least 5 and fills in a zero Identification (see the package
// documentation); it refuses a packet longer than the route's MTU
// (EMSGSIZE): Fragment it first.
func (c *RawConn) Send(pkt []byte) error {
	if len(pkt) < IPv4HeaderLen {
		return fmt.Errorf("craft: packet of %d bytes has no IPv4 header", len(pkt))
	}
	to := &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])}
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.Sendto(int(fd), pkt, 0, to)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("craft: send %d bytes to %v: %w", len(pkt), net.IP(to.Addr[:]), serr)
	}
	return nil
}

// SendAll sends every packet in order and stops at the first error.
func (c *RawConn) SendAll(pkts ...[]byte) error {
	for _, p := range pkts {
		if err := c.Send(p); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the socket.
func (c *RawConn) Close() error { return c.f.Close() }

// An EtherConn sends complete Ethernet frames on one interface through an
// AF_PACKET socket (github.com/mdlayher/packet). It is bound to the network
// namespace of the thread that opened it. Its methods are safe for
// concurrent use.
type EtherConn struct {
	ifi  *net.Interface
	conn *packet.Conn
}

// ListenEthernet opens an EtherConn on the interface ifname of the calling
// thread's network namespace, for frames of EtherType etherType. It needs
// CAP_NET_RAW.
func ListenEthernet(ifname string, etherType uint16) (*EtherConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("craft: interface %s: %w", ifname, err)
	}
	conn, err := packet.Listen(ifi, packet.Raw, int(etherType), nil)
	if err != nil {
		return nil, fmt.Errorf("craft: packet socket on %s: %w", ifname, err)
	}
	return &EtherConn{ifi: ifi, conn: conn}, nil
}

// HardwareAddr returns the MAC address of the interface.
func (c *EtherConn) HardwareAddr() net.HardwareAddr { return c.ifi.HardwareAddr }

// Send sends frame, a complete Ethernet frame whose first 6 bytes are its
// destination, as it is: its source address and EtherType need not be the
// interface's.
func (c *EtherConn) Send(frame []byte) error {
	if len(frame) < 14 {
		return errors.New("craft: Ethernet frame shorter than its 14-byte header")
	}
	_, err := c.conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[:6])})
	return err
}

// Close closes the socket.
func (c *EtherConn) Close() error { return c.conn.Close() }
