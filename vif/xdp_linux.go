package vif

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vif-project/vif/internal/xdp"
	"github.com/vif-project/vif/ipip"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hopRefresh is how often the XDP underlay looks its next hops, their
// neighbour entries, the path MTUs and the slave's MAC up again, besides
// the netlink events that tell it sooner.
const hopRefresh = time.Second

// ethHeaderLen is the length of an Ethernet header.
const ethHeaderLen = 14

// XDPUnderlay is an Underlay that moves the tunnel's outer packets through
// AF_XDP sockets on the slave (package internal/xdp), past the kernel's IP
// stack: an XDP program steers the packets of the tunnel's peers to the
// receiving socket, and Write builds each frame's Ethernet header itself,
// the next hop's MAC taken from the kernel's neighbour table. Read and
// Write do not allocate.
//
// What AF_XDP cannot carry goes through a RawUnderlay inside it, as it
// would without XDP: outer fragments, packets to a peer whose next hop is
// not resolved yet (sending through the kernel resolves it, and the next
// packets take AF_XDP), reached through another interface or an address
// of this host, and packets too large for a frame. Read reads both the
// socket's rx ring and the raw sockets, which receive what the program
// passes to the kernel (fragments, packets on a queue without a socket,
// frames longer than a socket's frame can hold, and the packets of a peer
// another vif on the slave receives too: see xdpSlaves).
//
// The sockets and the program are the slave's, shared by every
// XDPUnderlay of the process on it (xdpPort): each vif steers and
// receives its own peers' packets, sends through the shared socket, and
// keeps its own next hops and counters.
//
// As the kernel no longer refuses a packet larger than the path MTU
// towards its peer, Write does, with the error the raw socket gives
// (EMSGSIZE): the loop's path MTU handling is the same on both. The path
// MTU is the kernel's (learnt from ICMP "fragmentation needed", or ICMPv6
// Packet Too Big over IPv6, which the program passes to the kernel),
// looked up every hopRefresh.
//
// Over IPv6 (RFC 2473) the same holds: the next hop is the route's
// gateway or the peer, its MAC from the neighbour discovery table; outer
// fragments, which carry a Fragment header, go through the raw socket;
// Read hands the loop each packet's IPv6 header as it arrived, as the raw
// underlay rebuilds it.
type XDPUnderlay struct {
	raw    *RawUnderlay
	port   *xdpPort
	sock   *xdp.Socket   // the port's queue 0's, which also sends
	socks  []*xdp.Socket // the port's, by receive queue; none when txOnly
	in     *xdpInbox     // frames other members took for this one
	name   string        // the vif's
	txOnly bool          // sends only: its peers' packets go to the kernel
	slave  int
	proto  uint8

	// receiving; rmu and wmu are held by Read and Write, so that the
	// port's memory is freed only once neither uses it. wmu is the
	// port's: the members of the port take turns on its tx ring.
	rmu    sync.Mutex
	wmu    *sync.Mutex
	ep     *os.File // epoll: the socket and the raw underlay's epoll
	eprc   syscall.RawConn
	rfn    func(uintptr) bool
	rbufs  [][]byte
	rsizes []int
	roff   int
	rn     int
	rerr   error
	rnext  int // the source poll tries first: a socket, or the raw sockets
	// rbusy: the last socket read filled the batch; rskipped: the
	// raw sockets' turns poll skipped since it last read them.
	rbusy    bool
	rskipped int

	// sending: the next hops, which follow replaces
	hops    atomic.Pointer[hopTable]
	want    chan netip.Addr // next hops Write found missing
	txRaw   atomic.Uint64   // packets Write sent through the raw socket
	txXDP   atomic.Uint64   // packets Write sent through AF_XDP
	rxXDP   atomic.Uint64   // packets Read received through AF_XDP
	rxInbox atomic.Uint64   // of which another vif took from the rings
	txErrs  atomic.Uint64   // failed flushes
	wclosed atomic.Bool

	// following the host
	nl      *netlink.Handle
	pathMTU func(netip.Addr) (int, error)
	kick    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	log     *slog.Logger

	// mu guards closed, final, shared and steer; local, peers and
	// unsteered are written with xdpSlaves and mu held, and read with
	// either.
	mu        sync.Mutex
	local     netip.Addr
	peers     []netip.Addr
	steer     map[xdpPair][]uint8 // what this vif has the program steer
	shared    string              // the peers left to the kernel, for an operator
	unsteered bool                // it is leaving: nothing steered to it
	closed    bool
	final     xdp.Stats // the port's, when Close left it
	key       xdpSlave  // the slave in the registry
	rxRaw     atomic.Uint64
}

var _ Underlay = (*XDPUnderlay)(nil)

// hopTable is what Write knows of the peers' next hops: replaced whole,
// never changed. A map per family, keyed by the address as it sits in the
// outer header, so that Write looks a packet's peer up without building
// a key that allocates.
type hopTable struct {
	hops  map[uint32]*hop   // IPv4, by peer address (key)
	hops6 map[[16]byte]*hop // IPv6, by peer address
}

// lookup returns the hop towards a, or nil.
func (t *hopTable) lookup(a netip.Addr) *hop {
	if a.Is4() {
		return t.hops[key(a.As4())]
	}
	return t.hops6[a.As16()]
}

// hop is how to send to one peer.
type hop struct {
	xdp  bool
	hdr  [ethHeaderLen]byte // next hop's MAC, the slave's, the EtherType (IPv4 or IPv6)
	pmtu int                // the path MTU, outer packets
	// nudge sends the next packet through the kernel, which then
	// checks a stale neighbour entry (and keeps it fresh).
	nudge atomic.Bool
	why   string // why not xdp
}

// XDPStats are an XDPUnderlay's counters: packets that went through
// AF_XDP, and those that went through the raw sockets instead.
//
// The vif's own are RxXDP, TxXDP, TxRaw, RxRaw and InboxDropped; Dropped
// and Unclaimed are the slave's AF_XDP port's, shared by all its vifs:
// each reports the same.
type XDPStats struct {
	// RxXDP and TxXDP count the vif's packets received and sent through
	// AF_XDP.
	RxXDP, TxXDP uint64
	// TxRaw counts packets sent through the raw socket instead; RxRaw
	// those received from the raw sockets (what the XDP program passed
	// to the kernel).
	TxRaw, RxRaw uint64
	// InboxDropped counts the vif's packets another vif of the slave
	// took from the rings while the vif's inbox was full.
	InboxDropped uint64
	// Dropped counts packets the kernel steered to the slave's AF_XDP
	// sockets but dropped (their rings were full): the port's.
	Dropped uint64
	// Unclaimed counts packets steered to the port that no vif claimed
	// when they were read (their vif had just gone): the port's.
	Unclaimed uint64
}

// errXDP is a reason the XDP underlay cannot run, in words for an
// operator.
type errXDP struct{ why string }

func (e *errXDP) Error() string { return e.why }

// ListenXDP opens the XDP underlay of the vif name over ru, the tunnel's
// raw underlay on slave (which it takes over: Close closes it), for the
// tunnel's protocol, its local address and its peers. pathMTU returns the
// kernel's path MTU towards a peer. It works in the calling thread's
// network namespace. The first XDPUnderlay on a slave opens its AF_XDP
// sockets and attaches the program; the others share them. When AF_XDP
// cannot run on the slave, it returns an error that says why (another XDP
// program on the slave, no AF_XDP in the kernel, a slave that is not
// Ethernet), and leaves ru as it was.
func ListenXDP(name, slave string, ru *RawUnderlay, proto uint8, local netip.Addr, peers []netip.Addr, pathMTU func(netip.Addr) (int, error), log *slog.Logger) (*XDPUnderlay, error) {
	return listenXDP(name, slave, ru, proto, local, peers, pathMTU, false, log)
}

// listenXDP is ListenXDP; with txOnly the underlay only sends through
// AF_XDP: its peers' packets are left to the kernel, and it receives them
// from the raw sockets (LinkConfig.Offload: the tc program on the slave's
// ingress must see them). Without a member that receives, the port has
// no program on the slave.
func listenXDP(name, slave string, ru *RawUnderlay, proto uint8, local netip.Addr, peers []netip.Addr, pathMTU func(netip.Addr) (int, error), txOnly bool, log *slog.Logger) (x *XDPUnderlay, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("vif: netlink: %w", err)
	}
	x = &XDPUnderlay{raw: ru, name: name, txOnly: txOnly, slave: ru.slave, proto: proto, nl: nl, pathMTU: pathMTU, log: log, local: local,
		peers: slices.Clone(peers), steer: map[xdpPair][]uint8{}, want: make(chan netip.Addr, 64), kick: make(chan struct{}, 1), done: make(chan struct{})}
	x.hops.Store(&hopTable{})
	me := x // x is nil when the undoing runs
	var undo []func()
	defer func() {
		if err != nil {
			for k := len(undo) - 1; k >= 0; k-- {
				undo[k]()
			}
			nl.Close()
		}
	}()
	l, err := nl.LinkByIndex(x.slave)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSlave, slave)
	}
	a := l.Attrs()
	if a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
		return nil, &errXDP{fmt.Sprintf("slave %s is not an Ethernet interface", a.Name)}
	}
	if x.key, err = slaveKey(x.slave); err != nil {
		return nil, err
	}
	if !txOnly {
		if x.in, err = newInbox(4096); err != nil {
			return nil, err
		}
		undo = append(undo, func() { me.in.close() })
	}
	// The port of the slave, opened if x is its first member; x's peers'
	// packets that no other vif of the slave needs go to the sockets,
	// and the other members' steering follows x's.
	xdpSlaves.Lock()
	err = x.joinLocked(a)
	if err == nil {
		x.sock, x.wmu = x.port.sock, &x.port.tx
		if !txOnly {
			x.socks = x.port.socks
		}
		if serr := resteerLocked(x.key); serr != nil {
			// Their packets go through the kernel: still delivered.
			log.Warn("XDP steering of the peers failed", "err", serr)
		}
	}
	xdpSlaves.Unlock()
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() {
		me.unsteer()
		me.leave()
	})

	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err == nil {
		if err = unix.SetNonblock(epfd, true); err != nil {
			unix.Close(epfd)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("vif: underlay: epoll: %w", err)
	}
	x.ep = os.NewFile(uintptr(epfd), "xdp-epoll")
	undo = append(undo, func() { me.ep.Close() })
	if x.eprc, err = x.ep.SyscallConn(); err != nil {
		return nil, fmt.Errorf("vif: underlay: %w", err)
	}
	// The raw underlay's epoll instance is readable when one of its
	// sockets is: nested, one wait covers both.
	var ctlErr error
	fds := []int{}
	for _, sk := range x.socks {
		if sk != nil {
			fds = append(fds, sk.FD())
		}
	}
	if x.in != nil {
		fds = append(fds, x.in.efd)
	}
	rawErr := ru.eprc.Control(func(rawep uintptr) {
		for _, fd := range append(fds, int(rawep)) {
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
			if e := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); e != nil && ctlErr == nil {
				ctlErr = e
			}
		}
	})
	if err := errors.Join(rawErr, ctlErr); err != nil {
		return nil, fmt.Errorf("vif: underlay: epoll: %w", err)
	}
	x.rfn = x.poll
	if x.in != nil {
		x.rfn = x.pollShared
	}

	// Follow the neighbour table and the slave (its MAC) through
	// netlink, in this namespace.
	neigh := make(chan netlink.NeighUpdate, 64)
	if err := netlink.NeighSubscribeWithOptions(neigh, x.done, netlink.NeighSubscribeOptions{ErrorCallback: func(error) {}}); err != nil {
		return nil, fmt.Errorf("vif: follow the neighbour table: %w", err)
	}
	links := make(chan netlink.LinkUpdate, 16)
	if err := netlink.LinkSubscribeWithOptions(links, x.done, netlink.LinkSubscribeOptions{ErrorCallback: func(error) {}}); err != nil {
		close(x.done)
		return nil, fmt.Errorf("vif: follow %s: %w", a.Name, err)
	}
	x.refresh(x.wanted(nil))
	x.wg.Add(3)
	go func() {
		defer x.wg.Done()
		for u := range neigh {
			if u.LinkIndex == x.slave {
				x.poke()
			}
		}
	}()
	go func() {
		defer x.wg.Done()
		for u := range links {
			if int(u.Index) == x.slave {
				x.poke()
			}
		}
	}()
	go x.follow()
	return x, nil
}

// SetPeers steers the packets of peers, and no others, to the socket,
// but for those another vif of the slave receives too. Interface calls it
// as its peers change (SetPeer, RemovePeer).
func (x *XDPUnderlay) SetPeers(peers []netip.Addr) {
	xdpSlaves.Lock()
	defer xdpSlaves.Unlock()
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return
	}
	x.peers = slices.Clone(peers)
	x.mu.Unlock()
	if err := resteerLocked(x.key); err != nil {
		// Their packets go through the kernel: still delivered.
		x.log.Warn("XDP steering of the peers failed", "err", err)
	}
	x.poke()
}

// SetLocal binds the underlay to a new local address (RawUnderlay.SetLocal)
// and steers the peers' packets to it.
func (x *XDPUnderlay) SetLocal(local netip.Addr) error {
	if err := x.raw.SetLocal(local); err != nil {
		return err
	}
	xdpSlaves.Lock()
	defer xdpSlaves.Unlock()
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return os.ErrClosed
	}
	x.local = local
	x.mu.Unlock()
	if err := resteerLocked(x.key); err != nil {
		x.log.Warn("XDP steering of the peers failed", "err", err)
	}
	x.poke()
	return nil
}

func (x *XDPUnderlay) poke() {
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

// BatchSize implements Underlay.
func (x *XDPUnderlay) BatchSize() int { return x.raw.BatchSize() }

// Read implements Underlay: the frames in the socket's rx ring, or what
// the raw sockets have, in turn, waiting for either.
func (x *XDPUnderlay) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	x.rmu.Lock()
	defer x.rmu.Unlock()
	if x.wclosed.Load() {
		return 0, os.ErrClosed
	}
	x.rbufs, x.rsizes, x.roff = bufs, sizes, offset
	err := x.eprc.Read(x.rfn)
	x.rbufs, x.rsizes = nil, nil
	if err != nil {
		// The epoll instance fails only when Close closes it.
		return 0, os.ErrClosed
	}
	if x.rerr != nil {
		return 0, x.rerr
	}
	return x.rn, nil
}

// rawSkipMax bounds the raw sockets' turns poll skips while the AF_XDP
// rings fill every batch: what the program passes to the kernel waits at
// most that many batches.
const rawSkipMax = 8

// poll reads what is there without waiting, from the sockets and the raw
// sockets in turn, so that none starves the others; false: nothing.
func (x *XDPUnderlay) poll(uintptr) bool {
	srcs := len(x.socks) + 1 // the raw sockets are the last
	skipped := false
	for k := 0; k < srcs; k++ {
		at := x.rnext
		x.rnext = (x.rnext + 1) % srcs
		if at == len(x.socks) {
			// While the rings fill every batch, an empty recvmmsg
			// on the raw sockets every other read cost the
			// receiver 15% of its CPU (perf, vifbench tcp1): they
			// are read every rawSkipMax turns then, and before
			// poll gives up.
			if x.rbusy && x.rskipped < rawSkipMax {
				x.rskipped++
				skipped = true
				continue
			}
			if x.readRaw() {
				return true
			}
			continue
		}
		if sk := x.socks[at]; sk != nil {
			x.port.rx.Lock()
			n := sk.Receive(x.rbufs, x.rsizes, x.roff, ethHeaderLen)
			x.rbusy = n == len(x.rbufs)
			if n > 0 {
				// A frame may be padded past its packet (a short
				// one on Ethernet): the kernel would trim it. The
				// program let only total lengths (IPv4) and
				// payload lengths (IPv6) the frame holds through.
				for k := range n {
					b := x.rbufs[k][x.roff:]
					switch {
					case x.rsizes[k] >= ipip.IPv6HeaderLen && b[0]>>4 == 6:
						x.rsizes[k] = min(x.rsizes[k], ipip.IPv6(b).Len())
					case x.rsizes[k] >= ipip.IPv4MinLen:
						x.rsizes[k] = min(x.rsizes[k], int(ipip.IPv4(b).TotalLen()))
					}
				}
				n = x.demux(n)
				x.port.rx.Unlock()
				if n == 0 {
					continue // all the other vifs'
				}
				x.rn, x.rerr = n, nil
				return true
			}
			x.port.rx.Unlock()
		}
	}
	// Waiting needs every source read empty: the epoll set wakes
	// the wait when a source becomes readable, not while one is.
	return skipped && x.readRaw()
}

// readRaw reads the raw sockets without waiting; false: nothing.
func (x *XDPUnderlay) readRaw() bool {
	x.rskipped = 0
	n, ok, err := x.raw.readNow(x.rbufs, x.rsizes, x.roff)
	if !ok {
		return false
	}
	x.rxRaw.Add(uint64(n))
	x.rn, x.rerr = n, err
	return true
}

// readNow is one recvmmsg on the raw receiving sockets without waiting:
// ok is false when they had nothing.
func (u *RawUnderlay) readNow(bufs [][]byte, sizes []int, offset int) (n int, ok bool, err error) {
	u.rn = u.prepRead(bufs, offset)
	if !u.poll(0) {
		return 0, false, nil
	}
	if u.rerr != nil {
		return 0, true, os.NewSyscallError("recvmmsg", u.rerr)
	}
	u.readSizes(bufs, sizes, offset)
	return u.rn, true, nil
}

// Write implements Underlay: each packet through AF_XDP to its next hop,
// or through the raw socket when AF_XDP cannot carry it. A packet larger
// than the path MTU towards its peer fails with EMSGSIZE, as the raw
// socket's does.
func (x *XDPUnderlay) Write(bufs [][]byte, offset int) (int, error) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if x.wclosed.Load() {
		return 0, os.ErrClosed
	}
	// What the port's socket sent while this vif holds it is this vif's.
	defer x.countSent(x.sock.Sent())
	t := x.hops.Load()
	queued := false
	firstQueued := 0 // the first packet queued since the last flush
	var last, last6 *hop
	lastKey := uint32(0)
	var lastKey6 [16]byte
	for k := 0; k < len(bufs); k++ {
		p := bufs[k][offset:]
		var h *hop
		switch {
		case len(p) >= ipip.IPv4MinLen && p[0] == 0x45 && !ipip.IPv4(p).IsFragment():
			dk := key([4]byte(p[16:20]))
			if last != nil && dk == lastKey {
				h = last
			} else if h = t.hops[dk]; h == nil {
				x.need(netip.AddrFrom4([4]byte(p[16:20])))
			}
			last, lastKey = h, dk
		case len(p) >= ipip.IPv6HeaderLen && p[0]>>4 == 6 && (p[6] == ipip.ProtoIPinIP || p[6] == ipip.ProtoIPv6):
			// RFC 2473 without extension headers: an outer fragment
			// (Next Header 44) goes through the raw socket, as an
			// IPv4 one does.
			dk := [16]byte(p[24:40])
			if last6 != nil && dk == lastKey6 {
				h = last6
			} else if h = t.hops6[dk]; h == nil {
				x.need(netip.AddrFrom16(dk))
			}
			last6, lastKey6 = h, dk
		}
		if h != nil && h.xdp && len(p)+ethHeaderLen <= x.sock.MaxFrame() && !(h.nudge.Load() && h.nudge.CompareAndSwap(true, false)) {
			if len(p) > h.pmtu {
				x.flush(queued)
				return k, os.NewSyscallError("sendmmsg", unix.EMSGSIZE)
			}
			if x.sock.Send(h.hdr[:], p) {
				if !queued {
					firstQueued = k
				}
				queued = true
				continue
			}
			x.flush(queued)
			queued = false
			if x.sock.Send(h.hdr[:], p) {
				firstQueued, queued = k, true
				continue
			}
			// The rings are full: this one goes through the kernel.
		}
		if queued {
			x.flush(true)
			queued = false
		}
		n, err := x.raw.Write(bufs[k:k+1], offset)
		x.txRaw.Add(uint64(n))
		if err != nil {
			return k, err
		}
	}
	if err := x.flush(queued); err != nil {
		// The kernel refused the batch's last frames (the slave went
		// down before the next hops knew): report the first of them
		// failed, as the raw socket would, rather than as sent.
		return firstQueued, err
	}
	return len(bufs), nil
}

// flush sends the queued frames; a failure (the slave is down) leaves
// them queued, is counted and returned.
func (x *XDPUnderlay) flush(queued bool) error {
	if !queued {
		return nil
	}
	err := x.sock.Flush()
	if err != nil {
		x.txErrs.Add(1)
	}
	x.port.flushed(err)
	return err
}

// need asks follow to look up the next hop towards dst, without waiting.
func (x *XDPUnderlay) need(dst netip.Addr) {
	select {
	case x.want <- dst:
	default:
	}
}

// wanted returns the destinations to know the next hops of: the peers
// and extra, those Write asked for.
func (x *XDPUnderlay) wanted(extra map[netip.Addr]bool) []netip.Addr {
	x.mu.Lock()
	out := slices.Clone(x.peers)
	x.mu.Unlock()
	for a := range extra {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// follow keeps the next hops fresh until Close.
func (x *XDPUnderlay) follow() {
	defer x.wg.Done()
	tick := time.NewTicker(hopRefresh)
	defer tick.Stop()
	extra := map[netip.Addr]bool{}
	for {
		select {
		case <-x.done:
			return
		case a := <-x.want:
			extra[a] = true
		case <-x.kick:
		case <-tick.C:
			// Those Write asked for that are no peers (a removed
			// one) are forgotten now and then.
			clear(extra)
		}
		x.refresh(x.wanted(extra))
	}
}

// refresh looks up the next hops towards dsts and replaces the table.
func (x *XDPUnderlay) refresh(dsts []netip.Addr) {
	t := &hopTable{hops: map[uint32]*hop{}, hops6: map[[16]byte]*hop{}}
	defer func() { x.hops.Store(t) }()
	l, err := x.nl.LinkByIndex(x.slave)
	if err != nil {
		return // all through the kernel
	}
	src := l.Attrs().HardwareAddr
	up := l.Attrs().Flags&net.FlagUp != 0
	// The neighbour tables of the families asked for: ARP's, and
	// neighbour discovery's (RFC 4861) over IPv6.
	var neighs [2][]netlink.Neigh // IPv4, IPv6
	for k, fam := range [2]int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if !slices.ContainsFunc(dsts, func(a netip.Addr) bool { return a.Is4() == (k == 0) }) {
			continue
		}
		if neighs[k], err = x.nl.NeighList(x.slave, fam); err != nil {
			return
		}
	}
	old := x.hops.Load()
	x.mu.Lock()
	local := x.local
	x.mu.Unlock()
	for _, dst := range dsts {
		h := &hop{}
		ns := neighs[0]
		if dst.Is4() {
			t.hops[key(dst.As4())] = h
		} else {
			t.hops6[dst.As16()] = h
			ns = neighs[1]
		}
		h.why = x.nextHop(h, dst, local, src, up, l.Attrs().MTU, ns)
		if h.xdp {
			if o := old.lookup(dst); o != nil && !o.xdp {
				x.log.Debug("peer's packets take AF_XDP", "peer", dst)
			}
		}
	}
}

// nextHop fills h in for dst and returns why its packets cannot take
// AF_XDP, or "".
func (x *XDPUnderlay) nextHop(h *hop, dst, local netip.Addr, src net.HardwareAddr, up bool, mtu int, neighs []netlink.Neigh) string {
	if len(src) != 6 || !up {
		return "slave down or without a MAC"
	}
	opts := &netlink.RouteGetOptions{}
	if local.IsValid() {
		opts.SrcAddr = local.AsSlice()
	}
	routes, err := x.nl.RouteGetWithOptions(dst.AsSlice(), opts)
	if err != nil || len(routes) == 0 {
		return "no route"
	}
	r := routes[0]
	switch {
	case r.Type == unix.RTN_LOCAL:
		return "peer is an address of this host"
	case r.Type != unix.RTN_UNICAST:
		return "no unicast route"
	case r.LinkIndex != x.slave:
		return "peer is reached through another interface"
	}
	if dst.Is4() != local.Is4() && local.IsValid() {
		return "peer and local address of different families"
	}
	// The gateway, or the peer itself on the link; over IPv6 the
	// neighbour discovery table's (RFC 4861), the same NUD states.
	next := dst
	if gw := ipOf(r.Gw, dst.Is4()); gw.IsValid() && !gw.IsUnspecified() {
		next = gw
	}
	var mac net.HardwareAddr
	stale := false
	for _, n := range neighs {
		if ip := ipOf(n.IP, dst.Is4()); ip.IsValid() && ip == next && n.LinkIndex == x.slave {
			if n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT) != 0 && len(n.HardwareAddr) == 6 {
				mac = n.HardwareAddr
				stale = n.State&netlink.NUD_STALE != 0
			}
			break
		}
	}
	if mac == nil {
		return "next hop " + next.String() + " not resolved"
	}
	// The kernel's path MTU; without a probe, the route's or the
	// slave's.
	h.pmtu = mtu
	if r.MTU > 0 {
		h.pmtu = min(r.MTU, mtu)
	}
	if x.pathMTU != nil {
		if m, err := x.pathMTU(dst); err == nil {
			h.pmtu = m
		}
	}
	copy(h.hdr[0:6], mac)
	copy(h.hdr[6:12], src)
	h.hdr[12], h.hdr[13] = 0x08, 0x00
	if dst.Is6() {
		h.hdr[12], h.hdr[13] = 0x86, 0xdd
	}
	h.xdp = true
	// The kernel sees none of our packets: a stale entry would stay
	// stale, its MAC unchecked. One packet through the kernel makes it
	// probe the neighbour.
	h.nudge.Store(stale)
	return ""
}

// ipOf returns ip as an IPv4 address (v4) or an IPv6 one, or the zero
// Addr when it is not of that family.
func ipOf(ip net.IP, v4 bool) netip.Addr {
	if v4 {
		a, _ := netip.AddrFromSlice(ip.To4())
		return a
	}
	if len(ip) != net.IPv6len || ip.To4() != nil {
		return netip.Addr{}
	}
	return netip.AddrFrom16([16]byte(ip))
}

// countSent counts what the port's socket sent since it had sent before.
func (x *XDPUnderlay) countSent(before uint64) { x.txXDP.Add(x.sock.Sent() - before) }

// Stats returns the underlay's counters.
func (x *XDPUnderlay) Stats() XDPStats {
	s := x.sockStats()
	return XDPStats{RxXDP: x.rxXDP.Load(), TxXDP: x.txXDP.Load(), TxRaw: x.txRaw.Load(), RxRaw: x.rxRaw.Load(),
		InboxDropped: x.inboxDropped(), Dropped: s.Dropped, Unclaimed: x.port.unclaimed.Load()}
}

func (x *XDPUnderlay) inboxDropped() uint64 {
	if x.in == nil {
		return 0
	}
	return x.in.dropped.Load()
}

func (x *XDPUnderlay) sockStats() xdp.Stats {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.statsLocked()
}

// statsLocked returns the port's socket counters; x.mu is held (the port
// stays open while x is a member, and x leaves it once closed).
func (x *XDPUnderlay) statsLocked() xdp.Stats {
	if x.closed {
		return x.final
	}
	return x.port.stats()
}

// Drops returns the packets dropped before the loop read them: the raw
// sockets' queue overflows, the vif's inbox's, and the AF_XDP sockets'
// (the port's, which every vif of the slave reports).
func (x *XDPUnderlay) Drops() uint64 {
	return x.raw.Drops() + x.inboxDropped() + x.sockStats().Dropped
}

// Close implements Underlay: the vif's peers are no longer steered to
// the port, and it leaves it; the last vif to leave the slave's port
// detaches the XDP program and closes the sockets. Pending and later Read
// and Write calls return an error wrapping os.ErrClosed.
func (x *XDPUnderlay) Close() error {
	if !x.wclosed.CompareAndSwap(false, true) {
		return nil
	}
	close(x.done)
	// The steering first: the kernel passes the peers' packets to the
	// stack again, or to another vif that shares them.
	x.unsteer()
	eerr := x.ep.Close()  // wakes Read
	rerr := x.raw.Close() // wakes a Write blocked in it
	// Lock order: rmu, wmu, mu. Read takes the port's rx lock and the
	// inboxes' locks inside rmu; Write takes no other.
	x.rmu.Lock()
	x.wmu.Lock()
	x.mu.Lock()
	x.final = x.statsLocked()
	x.closed = true
	x.mu.Unlock()
	x.wmu.Unlock()
	x.rmu.Unlock()
	var ierr error
	if x.in != nil {
		ierr = x.in.close()
	}
	x.wg.Wait()
	x.nl.Close()
	perr := x.leave()
	return errors.Join(perr, eerr, rerr, ierr)
}

// unsteer stops steering x's peers to the port; the others' steering
// follows (what x shared with them is theirs alone now).
func (x *XDPUnderlay) unsteer() {
	xdpSlaves.Lock()
	defer xdpSlaves.Unlock()
	x.mu.Lock()
	x.unsteered = true
	x.mu.Unlock()
	if err := resteerLocked(x.key); err != nil {
		x.log.Warn("XDP steering failed", "err", err)
	}
}

// pickUnderlay returns the underlay c.Underlay asks for over ru, the
// tunnel's raw underlay: ru itself for UnderlayRaw, or when UnderlayAuto
// finds that AF_XDP cannot run (UnderlayInfo.Fallback says why), an
// XDPUnderlay over it otherwise. UnderlayXDP that cannot run is an error
// wrapping ErrBadUnderlay. With c.Offload the XDPUnderlay only sends (the
// loop's packets, which the tc programs passed: TCP's GSO packets with
// protocol 94, say) and receives from the raw sockets, behind the tc
// program on the slave's ingress.
func pickUnderlay(c *LinkConfig, ru *RawUnderlay, log *slog.Logger) (Underlay, UnderlayInfo, error) {
	var peers []netip.Addr
	for _, p := range c.peers() {
		peers = append(peers, p.Addr)
	}
	if c.Underlay == UnderlayRaw {
		// Another vif's XDP program must leave its packets alone.
		m, err := joinRaw(c.Name, ru, c.Protocol, c.Local, peers, log)
		if err != nil {
			return nil, UnderlayInfo{}, err
		}
		return m, UnderlayInfo{Kind: UnderlayRaw}, nil
	}
	x, err := listenXDP(c.Name, c.Slave, ru, c.Protocol, c.Local, peers, c.PathMTU, c.Offload, log)
	if err == nil {
		return x, UnderlayInfo{Kind: UnderlayXDP, TransmitOnly: c.Offload}, nil
	}
	if c.Underlay == UnderlayXDP {
		return nil, UnderlayInfo{}, fmt.Errorf("%w: xdp: %w", ErrBadUnderlay, err)
	}
	log.Info("tunnel on raw sockets, not AF_XDP", "why", err)
	m, jerr := joinRaw(c.Name, ru, c.Protocol, c.Local, peers, log)
	if jerr != nil {
		return nil, UnderlayInfo{}, jerr
	}
	return m, UnderlayInfo{Kind: UnderlayRaw, Fallback: err.Error()}, nil
}
