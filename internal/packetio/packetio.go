// Package packetio reads and writes whole Ethernet frames on the packet
// sockets of the ARP and NDP proxies without allocating per frame.
package packetio

import (
	"net"

	"github.com/mdlayher/packet"
)

// IO is how a proxy's serve goroutine reads and writes whole Ethernet
// frames. Implementations are used by one goroutine at a time.
type IO interface {
	// Read reads one frame into b and returns its length.
	Read(b []byte) (int, error)
	// Write sends frame, whose Ethernet destination is dst.
	Write(frame []byte, dst net.HardwareAddr) error
}

var _ IO = (*connIO)(nil)

// connIO reads and writes through the net.PacketConn interface. It reuses
// one destination address, so it allocates only what the conn does.
type connIO struct {
	conn net.PacketConn
	dst  *packet.Addr
}

// NewConn returns an IO over any net.PacketConn: frames are read with
// ReadFrom and written with WriteTo to a *packet.Addr holding the Ethernet
// destination, as a *packet.Conn of type packet.Raw expects.
func NewConn(conn net.PacketConn) IO {
	return &connIO{conn: conn, dst: &packet.Addr{HardwareAddr: make(net.HardwareAddr, 6)}}
}

func (c *connIO) Read(b []byte) (int, error) {
	n, _, err := c.conn.ReadFrom(b)
	return n, err
}

func (c *connIO) Write(frame []byte, dst net.HardwareAddr) error {
	copy(c.dst.HardwareAddr, dst)
	_, err := c.conn.WriteTo(frame, c.dst)
	return err
}
