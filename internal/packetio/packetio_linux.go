//go:build linux

package packetio

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// New returns the IO for conn. For a *packet.Conn it asks the kernel not
// to deliver our own outgoing frames (PACKET_IGNORE_OUTGOING, Linux 4.20;
// without it the proxies see them and drop them as their own) and returns
// an IO that reads and writes the socket's file descriptor; for other
// conns, NewConn(conn). log receives Debug messages about what could not
// be set up.
func New(conn net.PacketConn, log *slog.Logger) IO {
	pc, ok := conn.(*packet.Conn)
	if !ok {
		return NewConn(conn)
	}
	rc, err := pc.SyscallConn()
	if err != nil {
		log.Debug("packet socket has no raw connection; using ReadFrom/WriteTo", "err", err)
		return NewConn(conn)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	}); err == nil && serr != nil {
		log.Debug("PACKET_IGNORE_OUTGOING unsupported; own frames are dropped in userspace", "err", serr)
	}
	return newRawIO(pc, rc)
}

var _ IO = (*rawIO)(nil)

// rawIO reads and writes a bound AF_PACKET socket with read(2) and
// write(2) on its file descriptor, through the runtime poller. Unlike
// packet.Conn's ReadFrom and WriteTo it allocates no socket address per
// frame. write(2) on a socket bound to an interface and protocol sends on
// that interface; the frame carries its own Ethernet header.
type rawIO struct {
	pc *packet.Conn
	rc syscall.RawConn

	rbuf    []byte
	rn      int
	rerr    error
	readFn  func(fd uintptr) bool
	wbuf    []byte
	werr    error
	writeFn func(fd uintptr) bool
}

func newRawIO(pc *packet.Conn, rc syscall.RawConn) *rawIO {
	r := &rawIO{pc: pc, rc: rc}
	r.readFn = r.doRead
	r.writeFn = r.doWrite
	return r
}

func (r *rawIO) doRead(fd uintptr) bool {
	r.rn, r.rerr = unix.Read(int(fd), r.rbuf)
	return r.rerr != unix.EAGAIN
}

func (r *rawIO) doWrite(fd uintptr) bool {
	_, r.werr = unix.Write(int(fd), r.wbuf)
	return r.werr != unix.EAGAIN
}

func (r *rawIO) Read(b []byte) (int, error) {
	r.rbuf = b
	err := r.rc.Read(r.readFn)
	r.rbuf = nil
	if err != nil {
		return 0, r.closedOr(err)
	}
	if r.rerr != nil {
		return 0, os.NewSyscallError("read", r.rerr)
	}
	return r.rn, nil
}

// closedOr returns an error wrapping net.ErrClosed if the conn was closed
// (the raw connection then reports "use of closed file", which matches no
// exported sentinel), and err otherwise.
func (r *rawIO) closedOr(err error) error {
	if _, cerr := r.pc.SyscallConn(); cerr != nil {
		return fmt.Errorf("%w: %v", net.ErrClosed, err)
	}
	return err
}

func (r *rawIO) Write(frame []byte, _ net.HardwareAddr) error {
	r.wbuf = frame
	err := r.rc.Write(r.writeFn)
	r.wbuf = nil
	if err != nil {
		return r.closedOr(err)
	}
	if r.werr != nil {
		return os.NewSyscallError("write", r.werr)
	}
	return nil
}
