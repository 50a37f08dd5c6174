package vif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
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

// RawUnderlay is the production Underlay: raw IP sockets bound to the
// slave interface, moving packets in batches with recvmmsg and sendmmsg.
// Read and Write do not allocate. The sockets are IPv4 or IPv6, as the
// local address is: a tunnel's underlay has one family.
//
// Over IPv6 (RFC 2473) Linux never hands the IPv6 header to a raw socket's
// reader, so Read rebuilds it in front of the payload, which it receives
// IPv6HeaderLen bytes into bufs[i][offset:]: the source from the socket
// address, the destination from IPV6_PKTINFO, the Traffic Class (ECN, RFC
// 6040) from IPV6_TCLASS, the Flow Label from IPV6_FLOWINFO (sent only when
// not 0) and the Hop
// Limit from IPV6_HOPLIMIT, the Next Header being the socket's protocol:
// the bytes the packet arrived with, as the AF_XDP underlay reads them
// (XDPUnderlay), but that the kernel has processed any extension header
// and reassembled fragments by then. Writing sets IPV6_HDRINCL (Linux 4.5 and later), so that the
// loop writes the whole outer IPv6 header, Traffic Class, Flow Label and
// Hop Limit included, as IP_HDRINCL lets it over IPv4.
//
// Reading uses two raw sockets, one for the tunnel's IP protocol (94 or 4)
// and one for IPv6 in IPv4 (41, RFC 4213): the kernel hands them every
// packet of their protocol that reaches this network namespace on the
// slave for the local address, and the packet loop checks the outer
// source against the peers. They are non-blocking and sit in an epoll
// instance of their own, which waits in the Go runtime's netpoller: one
// Read waits for both, and reads from each in turn when both have
// packets, so that neither starves the other.
//
// Writing uses a second, send-only socket (IPPROTO_RAW, which implies
// IP_HDRINCL: the loop writes the outer header; such a socket receives
// nothing) that stays out of the netpoller. One socket for both would cost
// a poller wakeup per packet sent: a socket's write-space callback fires
// an EPOLLOUT event each time the receiver frees one of its buffers, and
// the netpoller registers for EPOLLOUT. Write does not wait unless the
// send buffer is full; then it blocks in the kernel. Close shuts the send
// socket down, which wakes a blocked Write, and closes it once Write has
// returned.
type RawUnderlay struct {
	slave int // the slave's interface index, which a rename keeps; 0: none
	proto int
	v6    bool // the sockets are IPv6

	// receiving: the sockets are replaced by SetLocal
	rx       atomic.Pointer[rxSockets]
	ep       *os.File // the epoll instance holding the receiving sockets
	eprc     syscall.RawConn
	dropBase uint64 // drops of the receiving sockets replaced; guarded by mu
	rhdrs    []unix.Mmsghdr
	riovs    []unix.Iovec
	rn       int
	rerr     error
	rgot     bool // recv read packets or failed
	rnext    int  // the socket Read tries first
	rfn      func(fd uintptr) bool
	rcfn     func(fd uintptr)
	rproto   uint8                   // the protocol of the socket read last
	rnames   []unix.RawSockaddrInet6 // IPv6: each packet's source
	rcmsgs   []byte                  // IPv6: each packet's control messages, rcmsgLen bytes each

	// sending
	mu      sync.Mutex // guards wfd, wold, wbusy and closing
	wfd     int
	wold    int  // a socket SetLocal replaced while Write used it, or -1
	wbusy   bool // Write is using a socket
	closing bool
	wnames  []unix.RawSockaddrInet4 // each packet's destination
	wnames6 []unix.RawSockaddrInet6 // the same over IPv6
	whdrs   []unix.Mmsghdr
	wiovs   []unix.Iovec
}

var _ Underlay = (*RawUnderlay)(nil)

// rxSocket is the receiving socket of a RawUnderlay.
type rxSocket struct {
	f     *os.File
	rc    syscall.RawConn
	proto uint8
}

// rxSockets are the receiving sockets of a RawUnderlay: the tunnel's
// protocol, and 41.
type rxSockets [2]*rxSocket

// openRx opens the receiving sockets for proto and 41, bound to the
// interface with index slave and to local.
func openRx(slave, proto int, local netip.Addr) (*rxSockets, error) {
	var rx rxSockets
	for k, p := range [2]int{proto, int(ipip.ProtoIPv6)} {
		fd, err := rawSocket(slave, p, unix.SOCK_NONBLOCK, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, local)
		if err == nil {
			rx[k], err = newRxSocket(fd, p)
		}
		if err != nil {
			rx.close()
			return nil, err
		}
	}
	return &rx, nil
}

func (rx *rxSockets) close() error {
	var errs []error
	for _, s := range rx {
		if s != nil {
			errs = append(errs, s.f.Close())
		}
	}
	return errors.Join(errs...)
}

func (rx *rxSockets) drops() uint64 {
	return rx[0].drops() + rx[1].drops()
}

// epollCtl adds the sockets of rx to the epoll instance ep, or removes
// them (op).
func (rx *rxSockets) epollCtl(ep syscall.RawConn, op int) error {
	var err error
	cerr := ep.Control(func(epfd uintptr) {
		for _, s := range rx {
			if e := s.rc.Control(func(fd uintptr) {
				ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
				if e := unix.EpollCtl(int(epfd), op, int(fd), &ev); e != nil && err == nil {
					err = e
				}
			}); e != nil && err == nil {
				err = e
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("vif: underlay: epoll: %w", err)
	}
	return nil
}

func newRxSocket(fd int, proto int) (*rxSocket, error) {
	s := &rxSocket{f: os.NewFile(uintptr(fd), fmt.Sprintf("ipip%d", proto)), proto: uint8(proto)}
	var err error
	if s.rc, err = s.f.SyscallConn(); err != nil {
		s.f.Close()
		return nil, fmt.Errorf("vif: underlay: %w", err)
	}
	return s, nil
}

// ListenUnderlay opens the raw IP sockets of a tunnel: protocol proto (94
// or 4) and 41, bound to the interface slave (by its index, which a rename
// keeps) and to the address local, IPv4 or IPv6 (where proto must be 4:
// ErrProtocolFamily). Each packet written goes to the destination of its
// outer header: one underlay serves every peer. slave may be empty to
// leave the sockets unbound to a device. It needs CAP_NET_RAW (and
// CAP_NET_ADMIN for the larger socket buffers, which it asks for and does
// without when refused).
func ListenUnderlay(slave string, proto uint8, local netip.Addr) (*RawUnderlay, error) {
	if proto != ipip.ProtoIPIP && proto != ipip.ProtoIPinIP {
		return nil, ErrBadProtocol
	}
	if !local.IsValid() || local.Is4In6() || local.Zone() != "" {
		return nil, fmt.Errorf("%w: underlay endpoint %v", ErrBadAddress, local)
	}
	if local.Is6() && proto == ipip.ProtoIPIP {
		return nil, protocolFamilyError(local)
	}
	idx, err := ifIndex(slave)
	if err != nil {
		return nil, err
	}
	rx, err := openRx(idx, int(proto), local)
	if err != nil {
		return nil, err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err == nil {
		if err = unix.SetNonblock(epfd, true); err != nil {
			unix.Close(epfd)
		}
	}
	if err != nil {
		rx.close()
		return nil, fmt.Errorf("vif: underlay: epoll: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "ipip-epoll")
	eprc, err := ep.SyscallConn()
	if err == nil {
		err = rx.epollCtl(eprc, unix.EPOLL_CTL_ADD)
	}
	if err != nil {
		ep.Close()
		rx.close()
		return nil, err
	}
	wfd, err := rawSocket(idx, unix.IPPROTO_RAW, 0, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, local)
	if err != nil {
		ep.Close()
		rx.close()
		return nil, err
	}
	u := &RawUnderlay{
		ep:    ep,
		eprc:  eprc,
		slave: idx,
		proto: int(proto),
		rhdrs: make([]unix.Mmsghdr, defaultUnderlayBatch),
		riovs: make([]unix.Iovec, defaultUnderlayBatch),
		wfd:   wfd,
		wold:  -1,
		whdrs: make([]unix.Mmsghdr, defaultUnderlayBatch),
		wiovs: make([]unix.Iovec, defaultUnderlayBatch),
		v6:    local.Is6(),
	}
	if u.v6 {
		u.wnames6 = make([]unix.RawSockaddrInet6, defaultUnderlayBatch)
		u.rnames = make([]unix.RawSockaddrInet6, defaultUnderlayBatch)
		u.rcmsgs = make([]byte, defaultUnderlayBatch*rcmsgLen)
	} else {
		u.wnames = make([]unix.RawSockaddrInet4, defaultUnderlayBatch)
	}
	u.rx.Store(rx)
	u.rfn = u.poll
	u.rcfn = u.recv
	for i := range u.rhdrs {
		u.rhdrs[i].Hdr.Iov = &u.riovs[i]
		u.rhdrs[i].Hdr.SetIovlen(1)
	}
	// The write headers never change but for their buffers and the
	// destinations.
	for i := range u.whdrs {
		h := &u.whdrs[i].Hdr
		if u.v6 {
			u.wnames6[i].Family = unix.AF_INET6
			h.Name = (*byte)(unsafe.Pointer(&u.wnames6[i]))
			h.Namelen = unix.SizeofSockaddrInet6
		} else {
			u.wnames[i].Family = unix.AF_INET
			h.Name = (*byte)(unsafe.Pointer(&u.wnames[i]))
			h.Namelen = unix.SizeofSockaddrInet4
		}
		h.Iov = &u.wiovs[i]
		h.SetIovlen(1)
	}
	return u, nil
}

// ifIndex returns the index of the interface name, 0 for "".
func ifIndex(name string) (int, error) {
	if name == "" {
		return 0, nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", ErrNoSlave, name)
	}
	return ifi.Index, nil
}

// bindSocket binds fd to the interface with index slave (none if 0),
// which stays bound to it when it is renamed, and to the address local.
func bindSocket(fd, slave int, local netip.Addr) error {
	if slave != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, slave); err != nil {
			return fmt.Errorf("bind to interface %d: %w", slave, err)
		}
	}
	var sa unix.Sockaddr
	if local.Is6() {
		sa = &unix.SockaddrInet6{Addr: local.As16()}
	} else {
		sa = &unix.SockaddrInet4{Addr: local.As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("bind to %s: not an address of this host: %w", local, err)
		}
		return fmt.Errorf("bind to %s: %w", local, err)
	}
	return nil
}

// rawSocket opens a raw IP socket, IPv4 or IPv6 as local is, for protocol
// proto bound to the interface with index slave and to local, with a large
// buffer set through force (or, without CAP_NET_ADMIN, plain). An IPv6
// socket for IPPROTO_RAW sends whole packets (IPV6_HDRINCL); one for
// another protocol receives the control messages Read rebuilds the IPv6
// header from.
func rawSocket(slave, proto, flags, force, plain int, local netip.Addr) (int, error) {
	family := unix.AF_INET
	if local.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC|flags, proto)
	if err != nil {
		return -1, fmt.Errorf("vif: raw socket for protocol %d: %w", proto, err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		if what != "" {
			err = fmt.Errorf("%s: %w", what, err)
		}
		return -1, fmt.Errorf("vif: underlay: %w", err)
	}
	switch {
	case family == unix.AF_INET:
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
			return fail("IP_HDRINCL", err)
		}
	case proto == unix.IPPROTO_RAW:
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL, 1); err != nil {
			return fail("IPV6_HDRINCL (Linux 4.5 or later)", err)
		}
	default:
		for _, opt := range [...]int{unix.IPV6_RECVPKTINFO, unix.IPV6_RECVTCLASS, unix.IPV6_RECVHOPLIMIT, ipv6FlowInfo} {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, opt, 1); err != nil {
				return fail("IPV6_RECVPKTINFO, IPV6_RECVTCLASS, IPV6_RECVHOPLIMIT, IPV6_FLOWINFO", err)
			}
		}
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, underlayBufSize) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, underlayBufSize)
	}
	if err := bindSocket(fd, slave, local); err != nil {
		return fail("", err)
	}
	return fd, nil
}

// BatchSize implements Underlay.
func (u *RawUnderlay) BatchSize() int { return len(u.rhdrs) }

// Read implements Underlay: one recvmmsg into bufs[i][offset:].
func (u *RawUnderlay) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	u.rn = u.prepRead(bufs, offset)
	if err := u.eprc.Read(u.rfn); err != nil {
		// The epoll instance fails only when Close closes it.
		return 0, os.ErrClosed
	}
	if u.rerr != nil {
		return 0, os.NewSyscallError("recvmmsg", u.rerr)
	}
	u.readSizes(bufs, sizes, offset)
	return u.rn, nil
}

// prepRead points the read headers at bufs[i][offset:] (over IPv6 at the
// payload after the room for the header) and returns how many packets
// one recvmmsg may read.
func (u *RawUnderlay) prepRead(bufs [][]byte, offset int) int {
	n := min(len(bufs), len(u.rhdrs))
	for i := 0; i < n; i++ {
		b := bufs[i][offset:]
		if u.v6 {
			// The payload goes after the room for the header.
			b = b[ipip.IPv6HeaderLen:]
			h := &u.rhdrs[i].Hdr
			h.Name = (*byte)(unsafe.Pointer(&u.rnames[i]))
			h.Namelen = unix.SizeofSockaddrInet6
			h.Control = &u.rcmsgs[i*rcmsgLen]
			h.SetControllen(rcmsgLen)
		}
		u.riovs[i].Base = &b[0]
		u.riovs[i].SetLen(len(b))
		u.rhdrs[i].Hdr.Flags = 0
		u.rhdrs[i].Len = 0
	}
	return n
}

// readSizes sets the sizes of the u.rn packets recvmmsg read into bufs,
// rebuilding their IPv6 headers first over IPv6 (header6).
func (u *RawUnderlay) readSizes(bufs [][]byte, sizes []int, offset int) {
	for i := 0; i < u.rn; i++ {
		sizes[i] = int(u.rhdrs[i].Len)
		if u.v6 {
			sizes[i] = u.header6(bufs[i][offset:], i)
		}
	}
}

// rcmsgLen is the room for one packet's control messages over IPv6:
// IPV6_PKTINFO (20 bytes of data), IPV6_TCLASS, IPV6_HOPLIMIT and
// IPV6_FLOWINFO (4 each), each after a 16-byte header and padded to 8
// bytes: 40+24+24+24.
const rcmsgLen = 128

// ipv6FlowInfo is IPV6_FLOWINFO (include/uapi/linux/in6.h), which
// golang.org/x/sys/unix lacks for Linux. Set on a socket, it asks for the
// received packets' flow information as a control message of that type:
// the header's first word, in network byte order, but the version
// (ip6_datagram_recv_specific_ctl, net/ipv6/datagram.c). Linux sends it
// only when that is not 0.
const ipv6FlowInfo = 11

// header6 writes the outer IPv6 header of packet i, whose payload recvmmsg
// put at b[IPv6HeaderLen:], into b[:IPv6HeaderLen], from its socket address
// and control messages, and returns the packet's length. A payload cut
// short (MSG_TRUNC) gets a Payload Length past what b holds, which the
// codec refuses (ErrTotalLen).
func (u *RawUnderlay) header6(b []byte, i int) int {
	h := &u.rhdrs[i].Hdr
	n := int(u.rhdrs[i].Len)
	f := ipip.IPv6Fields{PayloadLen: uint16(n), NextHeader: u.rproto, Src: u.rnames[i].Addr}
	if h.Flags&unix.MSG_TRUNC != 0 || n > ipip.MaxPacketLen {
		f.PayloadLen = ipip.MaxPacketLen
	}
	c := u.rcmsgs[i*rcmsgLen : i*rcmsgLen+min(int(h.Controllen), rcmsgLen)]
	for len(c) >= unix.SizeofCmsghdr {
		m := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		l := int(m.Len)
		if l < unix.SizeofCmsghdr || l > len(c) {
			break
		}
		data := c[unix.SizeofCmsghdr:l]
		if m.Level == unix.IPPROTO_IPV6 {
			switch {
			case m.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
				f.Dst = [16]byte(data[:16])
			case m.Type == unix.IPV6_TCLASS && len(data) >= 4:
				f.TrafficClass = uint8(*(*int32)(unsafe.Pointer(&data[0])))
			case m.Type == unix.IPV6_HOPLIMIT && len(data) >= 4:
				f.HopLimit = uint8(*(*int32)(unsafe.Pointer(&data[0])))
			case m.Type == ipv6FlowInfo && len(data) >= 4:
				f.FlowLabel = binary.BigEndian.Uint32(data) & 0xfffff
			}
		}
		c = c[min(cmsgAlign(l), len(c)):]
	}
	ipip.IPv6(b).Encode(&f)
	return ipip.IPv6HeaderLen + n
}

// cmsgAlign rounds a control message's length up to the alignment of the
// next one.
func cmsgAlign(l int) int { return (l + unix.SizeofPtr - 1) &^ (unix.SizeofPtr - 1) }

// poll reads from the receiving sockets, the one that was not read last
// first; it returns false, to wait for the epoll instance, when neither
// has a packet. Each socket is used through its RawConn, so that SetLocal
// closing it meanwhile does not free its descriptor under recvmmsg: a
// socket closed so is passed over, and the new ones are in the epoll
// instance already.
func (u *RawUnderlay) poll(uintptr) bool {
	rx := u.rx.Load()
	for k := range rx {
		at := (u.rnext + k) % len(rx)
		u.rgot = false
		u.rproto = rx[at].proto
		if rx[at].rc.Control(u.rcfn) == nil && u.rgot {
			u.rnext = (at + 1) % len(rx)
			return true
		}
	}
	return false
}

// recv is one recvmmsg on fd into the read headers; it sets rgot when it
// read packets or failed.
func (u *RawUnderlay) recv(fd uintptr) {
	for {
		// The socket is non-blocking: no need to tell the runtime.
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&u.rhdrs[0])), uintptr(u.rn), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return
		case 0:
			u.rn, u.rerr = int(r), nil
		default:
			u.rn, u.rerr = 0, e
		}
		u.rgot = true
		return
	}
}

// Write implements Underlay: sendmmsg to each packet's outer destination,
// in batches, blocking while the socket's send buffer is full.
func (u *RawUnderlay) Write(bufs [][]byte, offset int) (int, error) {
	u.mu.Lock()
	if u.closing {
		u.mu.Unlock()
		return 0, os.ErrClosed
	}
	u.wbusy = true
	fd := u.wfd
	u.mu.Unlock()

	sent := 0
	var err error
	for sent < len(bufs) {
		n := min(len(bufs)-sent, len(u.whdrs))
		for i := 0; i < n; i++ {
			b := bufs[sent+i][offset:]
			u.wiovs[i].Base = &b[0]
			u.wiovs[i].SetLen(len(b))
			switch {
			case u.v6 && len(b) >= ipip.IPv6HeaderLen:
				u.wnames6[i].Addr = [16]byte(b[24:40])
			case !u.v6 && len(b) >= ipip.IPv4MinLen:
				u.wnames[i].Addr = [4]byte(b[16:20])
			}
		}
		// Without waiting, sendmmsg is a bounded system call: make it
		// without telling the runtime, which otherwise wakes its
		// monitor thread every 20µs while a P sits in a long system
		// call and hands the P over. Only a full send buffer makes
		// it wait, in a call the runtime knows about.
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&u.whdrs[0])), uintptr(n),
			unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			r, _, e = syscall.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&u.whdrs[0])), uintptr(n),
				unix.MSG_NOSIGNAL, 0, 0)
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			err = os.NewSyscallError("sendmmsg", e)
			break
		}
		if r == 0 {
			err = errSentNothing
			break
		}
		sent += int(r)
	}

	u.mu.Lock()
	u.wbusy = false
	if u.wold >= 0 {
		unix.Close(u.wold)
		u.wold = -1
	}
	closing := u.closing
	if closing {
		unix.Close(u.wfd)
	}
	u.mu.Unlock()
	if closing {
		return sent, os.ErrClosed
	}
	return sent, err
}

var errSentNothing = errors.New("vif: sendmmsg sent nothing")

// Close implements Underlay. Pending and later Read and Write calls return
// an error wrapping os.ErrClosed.
func (u *RawUnderlay) Close() error {
	u.mu.Lock()
	if u.closing {
		u.mu.Unlock()
		return nil
	}
	u.closing = true
	var werr error
	if u.wbusy {
		// Wake the blocked sendmmsg; Write closes the sockets.
		_ = unix.Shutdown(u.wfd, unix.SHUT_WR)
		if u.wold >= 0 {
			_ = unix.Shutdown(u.wold, unix.SHUT_WR)
		}
	} else {
		werr = unix.Close(u.wfd)
	}
	// Closing the epoll instance wakes a waiting Read.
	eerr := u.ep.Close()
	rerr := u.rx.Load().close()
	u.mu.Unlock()
	return errors.Join(eerr, rerr, werr)
}

// Drops returns the number of packets for the tunnel the kernel dropped
// before the loop read them, because the receiving socket's queue was
// full (SK_MEMINFO_DROPS, for every receiving socket the underlay has
// had, of both protocols).
func (u *RawUnderlay) Drops() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dropBase + u.rx.Load().drops()
}

// drops returns the socket's drop counter (0 once it is closed).
func (s *rxSocket) drops() uint64 {
	var mem [unix.SK_MEMINFO_VARS]uint32
	var errno syscall.Errno
	err := s.rc.Control(func(fd uintptr) {
		n := uint32(unsafe.Sizeof(mem))
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&n)), 0)
	})
	if err != nil || errno != 0 {
		return 0
	}
	return uint64(mem[unix.SK_MEMINFO_DROPS])
}

// SetLocal binds the underlay to a new local address (the slave was
// renumbered): it opens sockets bound to local and puts them in place of
// the old ones, which it closes once no Read or Write uses them. Packets
// queued on the old receiving socket are lost. It returns an error if the
// new sockets cannot be opened (local is not an address of this host),
// leaving the old ones in use, and os.ErrClosed after Close.
func (u *RawUnderlay) SetLocal(local netip.Addr) error {
	if !local.IsValid() || local.Is6() != u.v6 || local.Is4In6() || local.Zone() != "" {
		return fmt.Errorf("%w: underlay endpoint %v (the underlay is %s)", ErrBadAddress, local, family(u.v6))
	}
	rx, err := openRx(u.slave, u.proto, local)
	if err != nil {
		return err
	}
	wfd, err := rawSocket(u.slave, unix.IPPROTO_RAW, 0, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, local)
	if err != nil {
		rx.close()
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closing {
		rx.close()
		unix.Close(wfd)
		return os.ErrClosed
	}
	if err := rx.epollCtl(u.eprc, unix.EPOLL_CTL_ADD); err != nil {
		rx.close()
		unix.Close(wfd)
		return err
	}
	// A Read waiting on the epoll instance goes on with the new sockets
	// when they have packets; one reading the old ones finds them closed.
	old := u.rx.Swap(rx)
	u.dropBase += old.drops()
	_ = old.epollCtl(u.eprc, unix.EPOLL_CTL_DEL)
	old.close()
	if u.wbusy && u.wold < 0 {
		u.wold = u.wfd // Write is using it, and closes it
	} else {
		unix.Close(u.wfd) // unused
	}
	u.wfd = wfd
	return nil
}
