package xdp

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config sizes a Socket. A nil *Config applies the defaults.
type Config struct {
	// FrameSize is the size of one UMEM frame, a power of two from 2048
	// to the page size; a frame holds one Ethernet frame. Default 4096.
	FrameSize int
	// RingSize is the number of entries of each ring, a power of two;
	// the UMEM has twice as many frames, half for receiving, half for
	// sending. Default 2048.
	RingSize int
	// TxBudget is how many frames one sendto may send in copy mode
	// (XDP_MAX_TX_SKB_BUDGET; the kernel's default is 32). Default 256.
	TxBudget int
	// RxOnly opens a socket that only receives: no sending socket, and
	// a UMEM of RingSize frames, all receiving.
	RxOnly bool
}

func (c *Config) withDefaults() Config {
	var d Config
	if c != nil {
		d = *c
	}
	if d.FrameSize == 0 {
		d.FrameSize = 4096
	}
	if d.RingSize == 0 {
		d.RingSize = 2048
	}
	if d.TxBudget == 0 {
		d.TxBudget = 256
	}
	return d
}

// ErrBusy is returned by Open when the queue stays bound to another
// socket: another process, or one of this process closed less than a
// moment ago (the kernel releases a queue after the socket's last
// reference is gone).
var ErrBusy = errors.New("xdp: queue in use")

// A Socket receives and sends Ethernet frames on one queue of an
// interface (see the package documentation). Receive and Send, Flush are
// each called from one goroutine at a time; the two sides may run
// concurrently. Close must not run concurrently with either.
type Socket struct {
	rxfd, txfd int
	umem       []byte
	frameSize  uint32
	maps       [][]byte

	// receiving: the fill and rx rings
	fill    ring
	fillQ   []uint64
	rx      ring
	rxQ     []unix.XDPDesc
	rxCount atomic.Uint64

	// sending: the tx and completion rings, and the sending frames
	// neither ring holds
	tx      ring
	txQ     []unix.XDPDesc
	comp    ring
	compQ   []uint64
	txFree  []uint64
	queued  uint32 // filled tx entries not yet submitted
	txCount atomic.Uint64
}

// Open opens a Socket on queue of the interface with index ifindex, in the
// calling thread's network namespace. It needs CAP_NET_RAW (and
// CAP_NET_ADMIN, CAP_IPC_LOCK or enough RLIMIT_MEMLOCK for the UMEM on
// older kernels). Binding retries for a second while the queue is busy;
// then the error wraps ErrBusy.
func Open(ifindex, queue int, cfg *Config) (s *Socket, err error) {
	c := cfg.withDefaults()
	if c.FrameSize < 2048 || c.FrameSize&(c.FrameSize-1) != 0 || c.RingSize < 2 || c.RingSize&(c.RingSize-1) != 0 {
		return nil, fmt.Errorf("xdp: frame size %d and ring size %d must be powers of two (frames of 2048 or more)", c.FrameSize, c.RingSize)
	}
	sk := &Socket{rxfd: -1, txfd: -1, frameSize: uint32(c.FrameSize)}
	s = sk
	defer func() {
		if err != nil {
			sk.Close()
		}
	}()
	frames := 2 * c.RingSize
	if c.RxOnly {
		frames = c.RingSize
	}
	s.umem, err = unix.Mmap(-1, 0, frames*c.FrameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("xdp: UMEM: %w", err)
	}
	if s.rxfd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0); err != nil {
		return nil, fmt.Errorf("xdp: socket: %w", err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&s.umem[0]))), Len: uint64(len(s.umem)), Size: uint32(c.FrameSize)}
	if err := setsockopt(s.rxfd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			// The kernel charges the UMEM to RLIMIT_MEMLOCK.
			return nil, fmt.Errorf("xdp: register UMEM of %d MiB: %w: the locked-memory limit is too small (ulimit -l; LimitMEMLOCK= under systemd)", len(s.umem)>>20, err)
		}
		return nil, fmt.Errorf("xdp: register UMEM: %w", err)
	}
	size := uint32(c.RingSize)
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING} {
		if err := setsockopt(s.rxfd, opt, unsafe.Pointer(&size), 4); err != nil {
			return nil, fmt.Errorf("xdp: ring size: %w", err)
		}
	}
	off, err := mmapOffsets(s.rxfd)
	if err != nil {
		return nil, err
	}
	fill, err := s.mmap(s.rxfd, off.Fr, 8, size, unix.XDP_UMEM_PGOFF_FILL_RING)
	if err != nil {
		return nil, err
	}
	s.fill = newRing(word(fill, off.Fr.Producer), word(fill, off.Fr.Consumer), word(fill, off.Fr.Flags), size, true)
	s.fillQ = unsafe.Slice((*uint64)(unsafe.Pointer(&fill[off.Fr.Desc])), size)
	comp, err := s.mmap(s.rxfd, off.Cr, 8, size, unix.XDP_UMEM_PGOFF_COMPLETION_RING)
	if err != nil {
		return nil, err
	}
	s.comp = newRing(word(comp, off.Cr.Producer), word(comp, off.Cr.Consumer), word(comp, off.Cr.Flags), size, false)
	s.compQ = unsafe.Slice((*uint64)(unsafe.Pointer(&comp[off.Cr.Desc])), size)
	rx, err := s.mmap(s.rxfd, off.Rx, 16, size, unix.XDP_PGOFF_RX_RING)
	if err != nil {
		return nil, err
	}
	s.rx = newRing(word(rx, off.Rx.Producer), word(rx, off.Rx.Consumer), word(rx, off.Rx.Flags), size, false)
	s.rxQ = unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&rx[off.Rx.Desc])), size)

	// The first RingSize frames receive: all of them wait in the fill
	// ring. The others send.
	n := s.fill.reserve(size)
	for k := uint32(0); k < n; k++ {
		s.fillQ[(s.fill.own+k)&s.fill.mask] = uint64(k) * uint64(c.FrameSize)
	}
	s.fill.submit(n)
	s.txFree = make([]uint64, 0, size)
	for k := frames - 1; k >= c.RingSize; k-- {
		s.txFree = append(s.txFree, uint64(k)*uint64(c.FrameSize))
	}

	if err := bind(s.rxfd, &unix.SockaddrXDP{Flags: unix.XDP_USE_NEED_WAKEUP, Ifindex: uint32(ifindex), QueueID: uint32(queue)}); err != nil {
		return nil, err
	}
	if c.RxOnly {
		return s, nil
	}

	if s.txfd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0); err != nil {
		return nil, fmt.Errorf("xdp: socket: %w", err)
	}
	if err := setsockopt(s.txfd, unix.XDP_TX_RING, unsafe.Pointer(&size), 4); err != nil {
		return nil, fmt.Errorf("xdp: ring size: %w", err)
	}
	budget := uint32(c.TxBudget)
	// Older kernels have no budget to set: they send 32 per call.
	_ = setsockopt(s.txfd, unix.XDP_MAX_TX_SKB_BUDGET, unsafe.Pointer(&budget), 4)
	toff, err := mmapOffsets(s.txfd)
	if err != nil {
		return nil, err
	}
	tx, err := s.mmap(s.txfd, toff.Tx, 16, size, unix.XDP_PGOFF_TX_RING)
	if err != nil {
		return nil, err
	}
	s.tx = newRing(word(tx, toff.Tx.Producer), word(tx, toff.Tx.Consumer), word(tx, toff.Tx.Flags), size, true)
	s.txQ = unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&tx[toff.Tx.Desc])), size)
	if err := bind(s.txfd, &unix.SockaddrXDP{Flags: unix.XDP_SHARED_UMEM, Ifindex: uint32(ifindex), QueueID: uint32(queue), SharedUmemFD: uint32(s.rxfd)}); err != nil {
		return nil, err
	}
	return s, nil
}

// bind binds fd, retrying for a second while the queue is busy.
func bind(fd int, sa *unix.SockaddrXDP) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Bind(fd, sa)
		if err == nil {
			return nil
		}
		if errors.Is(err, unix.EBUSY) {
			if time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("%w: interface %d queue %d: %w", ErrBusy, sa.Ifindex, sa.QueueID, err)
		}
		return fmt.Errorf("xdp: bind to interface %d queue %d: %w", sa.Ifindex, sa.QueueID, err)
	}
}

func setsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	l := uint32(n)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

func mmapOffsets(fd int) (*unix.XDPMmapOffsets, error) {
	var off unix.XDPMmapOffsets
	if err := getsockopt(fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return nil, fmt.Errorf("xdp: ring offsets: %w", err)
	}
	return &off, nil
}

// mmap maps a ring of size entries of descSize bytes.
func (s *Socket) mmap(fd int, off unix.XDPRingOffset, descSize, size uint32, pgoff int64) ([]byte, error) {
	m, err := unix.Mmap(fd, pgoff, int(off.Desc)+int(descSize*size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("xdp: map ring: %w", err)
	}
	s.maps = append(s.maps, m)
	return m, nil
}

// FD returns the receiving socket's descriptor: for an XSKMAP entry, and
// to wait for frames (it polls readable when the rx ring has some).
func (s *Socket) FD() int { return s.rxfd }

// Receive takes up to len(bufs) received frames without waiting: it
// copies each one's bytes from skip on into bufs[i][offset:], sets
// sizes[i], and returns how many it took. A frame longer than the buffer
// is cut short (sizes[i] says the buffer's length). It does not allocate.
func (s *Socket) Receive(bufs [][]byte, sizes []int, offset, skip int) int {
	n := s.rx.peek(uint32(len(bufs)))
	if n == 0 {
		return 0
	}
	// Every frame taken goes back to the fill ring, which has room for
	// all of the receiving frames.
	f := s.fill.reserve(n)
	for k := uint32(0); k < n; k++ {
		d := s.rxQ[(s.rx.own+k)&s.rx.mask]
		frame := s.umem[d.Addr : d.Addr+uint64(d.Len)]
		if len(frame) < skip {
			sizes[k] = 0
		} else {
			sizes[k] = copy(bufs[k][offset:], frame[skip:])
		}
		if k < f {
			s.fillQ[(s.fill.own+k)&s.fill.mask] = d.Addr &^ uint64(s.frameSize-1)
		}
	}
	s.rx.release(n)
	s.fill.submit(f)
	if s.fill.needWakeup() {
		_, _, _ = unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(s.rxfd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	}
	s.rxCount.Add(uint64(n))
	return int(n)
}

// xdpPacketHeadroom is the kernel's XDP_PACKET_HEADROOM: it keeps that
// much of each receiving frame in front of the packet.
const xdpPacketHeadroom = 256

// MaxRxFrame is the longest frame the socket can receive: its frame size
// less the headroom the kernel keeps in front of the packet (the UMEM's
// own headroom is 0). The kernel drops a longer frame steered to it.
func (s *Socket) MaxRxFrame() int { return int(s.frameSize) - xdpPacketHeadroom }

// MaxFrame is the longest frame Send takes.
func (s *Socket) MaxFrame() int { return int(s.frameSize) }

// Send queues the frame made of hdr followed by pkt; Flush sends what is
// queued. It returns false, queuing nothing, on a socket opened RxOnly,
// when the frame is longer than MaxFrame or no sending frame is free even after the kernel's
// completed ones are taken back: call Flush, then try again. It does not
// allocate.
func (s *Socket) Send(hdr, pkt []byte) bool {
	if len(hdr)+len(pkt) > int(s.frameSize) || s.txQ == nil {
		return false
	}
	if len(s.txFree) == 0 {
		s.complete()
		if len(s.txFree) == 0 {
			return false
		}
	}
	if s.tx.reserve(s.queued+1) < s.queued+1 {
		return false
	}
	addr := s.txFree[len(s.txFree)-1]
	s.txFree = s.txFree[:len(s.txFree)-1]
	frame := s.umem[addr : addr+uint64(s.frameSize)]
	n := copy(frame, hdr)
	n += copy(frame[n:], pkt)
	s.txQ[(s.tx.own+s.queued)&s.tx.mask] = unix.XDPDesc{Addr: addr, Len: uint32(n)}
	s.queued++
	return true
}

// complete takes the frames the kernel has sent back from the
// completion ring.
func (s *Socket) complete() {
	n := s.comp.peek(s.comp.size)
	for k := uint32(0); k < n; k++ {
		s.txFree = append(s.txFree, s.compQ[(s.comp.own+k)&s.comp.mask])
	}
	s.comp.release(n)
}

// flushTries bounds how often Flush asks the kernel again while it
// leaves frames in the tx ring (a full device queue): then the frames
// stay queued for the next Flush.
const flushTries = 64

// Flush hands the queued frames to the kernel and, in copy mode, has it
// send them (sendto), asking again while it takes them in budgets. It
// returns an error when the kernel refuses (the interface is down): the
// frames stay in the ring, and go out with a later Flush. It does not
// allocate.
func (s *Socket) Flush() error {
	if s.txQ == nil {
		return nil
	}
	if s.queued > 0 {
		s.txCount.Add(uint64(s.queued))
		s.tx.submit(s.queued)
		s.queued = 0
	}
	for try := 0; try < flushTries && s.tx.pending(); try++ {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.txfd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0, unix.EAGAIN, unix.EINTR:
			// EAGAIN: a budget sent, more to go.
		case unix.EBUSY, unix.ENOBUFS:
			// The device's queue is full, or no memory for an skb:
			// let it drain.
			s.complete()
			time.Sleep(20 * time.Microsecond)
		default:
			return fmt.Errorf("xdp: sendto: %w", e)
		}
	}
	s.complete()
	return nil
}

// Pending reports whether frames Flush handed over are still in the tx
// ring, not taken by the kernel (its queue was full, or the interface
// down): a later Flush sends them.
func (s *Socket) Pending() bool { return s.txQ != nil && s.tx.pending() }

// Stats are a Socket's counters.
type Stats struct {
	// Received and Sent count the frames Receive took and Flush handed
	// to the kernel.
	Received, Sent uint64
	// Dropped counts frames the kernel steered to the socket but dropped:
	// no free frame in the fill ring, or the rx ring full
	// (XDP_STATISTICS).
	Dropped uint64
	// TxInvalid counts frames the kernel refused to send.
	TxInvalid uint64
}

// Sent returns the frames Flush handed to the kernel, Stats' Sent. It is
// safe to call concurrently with Receive and Send, and cheap: no system
// call.
func (s *Socket) Sent() uint64 { return s.txCount.Load() }

// Stats returns the socket's counters. It is safe to call concurrently
// with Receive and Send.
func (s *Socket) Stats() Stats {
	st := Stats{Received: s.rxCount.Load(), Sent: s.txCount.Load()}
	var k unix.XDPStatistics
	if getsockopt(s.rxfd, unix.XDP_STATISTICS, unsafe.Pointer(&k), unsafe.Sizeof(k)) == nil {
		st.Dropped = k.Rx_dropped + k.Rx_ring_full
	}
	if s.txfd >= 0 && getsockopt(s.txfd, unix.XDP_STATISTICS, unsafe.Pointer(&k), unsafe.Sizeof(k)) == nil {
		st.TxInvalid = k.Tx_invalid_descs
	}
	return st
}

// Close closes the sockets and unmaps the rings and the UMEM.
func (s *Socket) Close() error {
	var errs []error
	for _, fd := range []*int{&s.txfd, &s.rxfd} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	for _, m := range s.maps {
		errs = append(errs, unix.Munmap(m))
	}
	s.maps = nil
	if s.umem != nil {
		errs = append(errs, unix.Munmap(s.umem))
		s.umem = nil
	}
	return errors.Join(errs...)
}
