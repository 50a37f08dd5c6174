package vif

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"github.com/vif-project/vif/ipip"
	"golang.org/x/sys/unix"
)

// underlayBufSize is the socket buffer size asked for the raw socket, in
// bytes, like wireguard-go's UDP sockets.
const underlayBufSize = 7 << 20

// defaultUnderlayBatch is how many packets one recvmmsg/sendmmsg moves.
const defaultUnderlayBatch = 128

// RawUnderlay is the production Underlay: a raw IPv4 socket for one IPIP
// protocol, bound to the slave interface, moving packets in batches with
// recvmmsg and sendmmsg. It sends packets whose outer header is already
// written (IP_HDRINCL) to one peer. Read and Write do not allocate.
//
// The kernel hands a raw socket every packet of its protocol that reaches
// this network namespace on the slave for the local address; the packet
// loop checks the outer source against the peer.
type RawUnderlay struct {
	f  *os.File
	rc syscall.RawConn

	peer unix.RawSockaddrInet4

	rhdrs []unix.Mmsghdr
	riovs []unix.Iovec
	rn    int
	rerr  error
	rfn   func(fd uintptr) bool

	whdrs []unix.Mmsghdr
	wiovs []unix.Iovec
	wcnt  int
	wn    int
	werr  error
	wfn   func(fd uintptr) bool
}

var _ Underlay = (*RawUnderlay)(nil)

// ListenUnderlay opens the raw IP socket of a tunnel: protocol proto (94 or
// 4), bound to the interface slave (SO_BINDTODEVICE) and to the address
// local, sending to peer. slave may be empty to leave the socket unbound
// to a device. It needs CAP_NET_RAW (and CAP_NET_ADMIN for the larger
// socket buffers, which it asks for and does without when refused).
func ListenUnderlay(slave string, proto uint8, local, peer netip.Addr) (*RawUnderlay, error) {
	if proto != ipip.ProtoIPIP && proto != ipip.ProtoIPinIP {
		return nil, ErrBadProtocol
	}
	if !peer.Is4() || !local.Is4() {
		return nil, fmt.Errorf("%w: underlay endpoints %v and %v", ErrBadAddress, local, peer)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("vif: raw socket for protocol %d: %w", proto, err)
	}
	fail := func(what string, err error) (*RawUnderlay, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("vif: underlay %s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
		return fail("IP_HDRINCL", err)
	}
	if slave != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, slave); err != nil {
			return fail("bind to "+slave, err)
		}
	}
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], underlayBufSize) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], underlayBufSize)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: local.As4()}); err != nil {
		return fail("bind to "+local.String(), err)
	}
	u := &RawUnderlay{
		f:     os.NewFile(uintptr(fd), fmt.Sprintf("ipip%d", proto)),
		peer:  unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: peer.As4()},
		rhdrs: make([]unix.Mmsghdr, defaultUnderlayBatch),
		riovs: make([]unix.Iovec, defaultUnderlayBatch),
		whdrs: make([]unix.Mmsghdr, defaultUnderlayBatch),
		wiovs: make([]unix.Iovec, defaultUnderlayBatch),
	}
	if u.rc, err = u.f.SyscallConn(); err != nil {
		u.f.Close()
		return nil, fmt.Errorf("vif: underlay: %w", err)
	}
	u.rfn, u.wfn = u.recv, u.send
	return u, nil
}

// BatchSize implements Underlay.
func (u *RawUnderlay) BatchSize() int { return len(u.rhdrs) }

// Read implements Underlay: one recvmmsg into bufs[i][offset:].
func (u *RawUnderlay) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := min(len(bufs), len(u.rhdrs))
	for i := 0; i < n; i++ {
		b := bufs[i][offset:]
		u.riovs[i].Base = &b[0]
		u.riovs[i].SetLen(len(b))
		u.rhdrs[i] = unix.Mmsghdr{}
		u.rhdrs[i].Hdr.Iov = &u.riovs[i]
		u.rhdrs[i].Hdr.SetIovlen(1)
	}
	u.rn = n
	if err := u.rc.Read(u.rfn); err != nil {
		// RawConn fails only when the file is closing.
		return 0, os.ErrClosed
	}
	if u.rerr != nil {
		return 0, os.NewSyscallError("recvmmsg", u.rerr)
	}
	for i := 0; i < u.rn; i++ {
		sizes[i] = int(u.rhdrs[i].Len)
	}
	return u.rn, nil
}

func (u *RawUnderlay) recv(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&u.rhdrs[0])), uintptr(u.rn), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case 0:
			u.rn, u.rerr = int(r), nil
		default:
			u.rn, u.rerr = 0, e
		}
		return true
	}
}

// Write implements Underlay: sendmmsg to the peer, in batches.
func (u *RawUnderlay) Write(bufs [][]byte, offset int) (int, error) {
	sent := 0
	for sent < len(bufs) {
		n := min(len(bufs)-sent, len(u.whdrs))
		for i := 0; i < n; i++ {
			b := bufs[sent+i][offset:]
			u.wiovs[i].Base = &b[0]
			u.wiovs[i].SetLen(len(b))
			u.whdrs[i] = unix.Mmsghdr{}
			h := &u.whdrs[i].Hdr
			h.Name = (*byte)(unsafe.Pointer(&u.peer))
			h.Namelen = unix.SizeofSockaddrInet4
			h.Iov = &u.wiovs[i]
			h.SetIovlen(1)
		}
		u.wcnt = n
		if err := u.rc.Write(u.wfn); err != nil {
			return sent, os.ErrClosed
		}
		if u.werr != nil {
			return sent, os.NewSyscallError("sendmmsg", u.werr)
		}
		sent += u.wn
	}
	return sent, nil
}

func (u *RawUnderlay) send(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&u.whdrs[0])), uintptr(u.wcnt), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case 0:
			u.wn, u.werr = int(r), nil
			if u.wn == 0 {
				u.werr = errors.New("sent nothing")
			}
		default:
			u.wn, u.werr = 0, e
		}
		return true
	}
}

// Close implements Underlay. Pending Read and Write calls return an error
// wrapping os.ErrClosed.
func (u *RawUnderlay) Close() error { return u.f.Close() }
