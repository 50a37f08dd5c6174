package arpproxy

import (
	"net"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
)

// frameIO is how the serve goroutine reads and writes whole Ethernet
// frames. Implementations are used by one goroutine at a time.
type frameIO interface {
	read(b []byte) (int, error)
	write(frame []byte, dst net.HardwareAddr) error
}

var _ frameIO = (*connIO)(nil)

// connIO reads and writes through the net.PacketConn interface. It reuses
// one destination address, so it allocates only what the conn does.
type connIO struct {
	conn net.PacketConn
	dst  *packet.Addr
}

func newConnIO(conn net.PacketConn) *connIO {
	return &connIO{conn: conn, dst: &packet.Addr{HardwareAddr: make(net.HardwareAddr, hardwareAddrLen)}}
}

func (c *connIO) read(b []byte) (int, error) {
	n, _, err := c.conn.ReadFrom(b)
	return n, err
}

func (c *connIO) write(frame []byte, dst net.HardwareAddr) error {
	copy(c.dst.HardwareAddr, dst)
	_, err := c.conn.WriteTo(frame, c.dst)
	return err
}

// Filter returns the classic BPF program Listen attaches to its socket: it
// accepts Ethernet frames with EtherType ARP and discards everything else
// in the kernel, so the process sees only ARP. Use it when opening a packet
// socket for New yourself:
//
//	packet.Listen(ifi, packet.Raw, arpproxy.EtherTypeARP, &packet.Config{Filter: arpproxy.Filter()})
//
// Everything inside the ARP header (hardware and protocol types and
// lengths, opcode) is left to the Responder, so that frames with bad values
// are counted by reason (DropHardwareType, DropProtocolType, ...), not
// silently discarded.
func Filter() []bpf.RawInstruction {
	const drop = 0
	// Keep whole frames: truncation would hide what was received.
	const keep = 0xffff
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: ethTypeOffset, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: EtherTypeARP, SkipTrue: 1},
		bpf.RetConstant{Val: keep},
		bpf.RetConstant{Val: drop},
	})
	if err != nil {
		panic("arpproxy: assembling BPF filter: " + err.Error())
	}
	return prog
}
