package vif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vif-project/vif/internal/xdp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// An xdpPort is the AF_XDP side of one slave, shared by every XDPUnderlay
// of the process on it: a socket per receive queue (queue 0's also sends)
// and, while a member receives through AF_XDP, the XDP program steering
// to them. The first member opens it, the last one closes it (xdpSlaves
// counts them): a vif leaving closes nothing the others use.
//
// Receiving, whoever reads demultiplexes: a member's Read takes the
// frames of the rx rings under rx, keeps its own, and copies the others'
// into their members' inboxes (xdpInbox), whose eventfds wake them. With
// one receiving member every steered frame is its own: no lookup, no
// copy, no wakeup. Sending, the members take turns on queue 0's tx ring
// under tx (the ring has one producer); each keeps its own next hops.
//
// The kernel's socket counters (frames dropped because a ring was full)
// are the port's: every member reports the same. What each member
// received and sent through AF_XDP it counts itself.
type xdpPort struct {
	sock  *xdp.Socket   // queue 0's, which also sends
	socks []*xdp.Socket // by receive queue; nil where none could be opened
	maxRx int           // the longest frame every socket can receive
	slave string        // its name when opened, for logs
	log   *slog.Logger

	rx       sync.Mutex // the rx and fill rings, and demultiplexing
	tx       sync.Mutex // queue 0's tx and completion rings, txClosed
	txClosed bool
	// retry flushes what a Flush left in the tx ring: without it, the
	// last frames of a burst waited for the next Write, which a TCP
	// sender waiting for their acknowledgements never makes.
	retry     *time.Timer
	routes    atomic.Pointer[xdpRoutes]
	unclaimed atomic.Uint64 // steered frames no member claimed

	// guarded by xdpSlaves
	ifindex int
	prog    *xdp.Program        // nil while no member receives through AF_XDP
	steered map[xdpPair][]uint8 // what the program's map holds
}

// xdpRoutes is which member a steered frame is for: replaced whole, never
// changed but for settled.
type xdpRoutes struct {
	only *XDPUnderlay // the only receiving member: every frame is its
	by   map[xdpTriple]*XDPUnderlay
	// The frames the program steered before the change may still come:
	// until settled, the only member's frames are looked up too.
	made    time.Time
	settled atomic.Bool
}

// routesSettle is how long after a change of the members the frames the
// program steered before it may still be on their way to the rings.
const routesSettle = 100 * time.Millisecond

// xdpTriple is what the program steers: a peer's packets to a local
// address of one protocol.
type xdpTriple struct {
	peer, local netip.Addr
	proto       uint8
}

// errOtherProgram says the slave has an XDP program that is not ours.
func errOtherProgram(name string, id uint32) error {
	if id != 0 {
		return &errXDP{fmt.Sprintf("slave %s has another XDP program (id %d); only one can be attached", name, id)}
	}
	return &errXDP{fmt.Sprintf("slave %s has another XDP program; only one can be attached", name)}
}

// openPort opens the AF_XDP sockets on the slave a (queue 0's sends too),
// in the calling thread's network namespace. The program is attached by
// the first member that receives (attachLocked).
func openPort(a *netlink.LinkAttrs, log *slog.Logger) (p *xdpPort, err error) {
	p = &xdpPort{slave: a.Name, ifindex: a.Index, log: log, steered: map[xdpPair][]uint8{}}
	p.routes.Store(&xdpRoutes{})
	p.socks = make([]*xdp.Socket, min(max(a.NumRxQueues, 1), xdp.MaxQueues))
	p.sock, err = xdp.Open(a.Index, 0, nil)
	if err != nil {
		switch {
		case errors.Is(err, unix.EAFNOSUPPORT):
			return nil, &errXDP{"this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)"}
		case errors.Is(err, xdp.ErrBusy):
			return nil, &errXDP{fmt.Sprintf("slave %s's receive queue is bound to another AF_XDP socket", a.Name)}
		}
		return nil, &errXDP{fmt.Sprintf("AF_XDP socket on %s: %v", a.Name, err)}
	}
	p.socks[0] = p.sock
	p.retry = time.AfterFunc(time.Hour, p.retryFlush)
	p.retry.Stop()
	for q := 1; q < len(p.socks); q++ {
		// The other queues receive only: what their packets answer
		// leaves through queue 0's socket.
		if p.socks[q], err = xdp.Open(a.Index, q, &xdp.Config{RxOnly: true, RingSize: 1024}); err != nil {
			// Their packets go through the kernel.
			// (veth has more queues than it uses: EINVAL.)
			log.Debug("no AF_XDP socket on a receive queue", "slave", a.Name, "queue", q, "err", err)
			p.socks[q] = nil
		}
	}
	// The program passes the frames a socket cannot take to the kernel:
	// the raw sockets receive them.
	p.maxRx = p.sock.MaxRxFrame()
	for _, sk := range p.socks {
		if sk != nil {
			p.maxRx = min(p.maxRx, sk.MaxRxFrame())
		}
	}
	if a.MTU+ethHeaderLen > min(p.maxRx, p.sock.MaxFrame()) {
		// Still useful: larger packets take the raw sockets.
		log.Info("slave MTU larger than an AF_XDP frame: larger packets go through the kernel", "mtu", a.MTU, "rxframe", p.maxRx, "txframe", p.sock.MaxFrame())
	}
	return p, nil
}

// attachLocked attaches the program and steers each queue to its socket,
// if it is not attached yet; xdpSlaves is locked. other is the id of an
// XDP program the slave had when the member asked, 0 for none.
func (p *xdpPort) attachLocked(other uint32, attached bool) error {
	if p.prog != nil {
		return nil
	}
	if attached {
		return errOtherProgram(p.slave, other)
	}
	prog, err := xdp.Attach(p.ifindex, p.maxRx)
	if err != nil {
		if errors.Is(err, xdp.ErrOtherProgram) {
			return errOtherProgram(p.slave, 0)
		}
		return &errXDP{fmt.Sprintf("cannot attach an XDP program to %s: %v", p.slave, err)}
	}
	for q, sk := range p.socks {
		if sk == nil {
			continue
		}
		if err := prog.SetSocket(q, sk); err != nil {
			prog.Close()
			return &errXDP{err.Error()}
		}
	}
	p.prog = prog
	clear(p.steered)
	return nil
}

// detachLocked takes the program off the slave: the kernel receives
// everything again; xdpSlaves is locked.
func (p *xdpPort) detachLocked() error {
	p.routes.Store(&xdpRoutes{})
	if p.prog == nil {
		return nil
	}
	err := p.prog.Close()
	p.prog = nil
	clear(p.steered)
	return err
}

// applyLocked steers what the receiving members of u want (their
// XDPUnderlay.steer, which steerLocked computed) and routes their frames
// to them; with no receiving member left it detaches the program.
// xdpSlaves is locked.
func (p *xdpPort) applyLocked(u *slaveUse) error {
	want := map[xdpPair][]uint8{}
	r := &xdpRoutes{by: map[xdpTriple]*XDPUnderlay{}, made: time.Now()}
	n := 0
	for x := range u.xdp {
		if !x.receives() {
			continue
		}
		n++
		r.only = x
		for k, protos := range x.steer {
			for _, pr := range protos {
				if !slices.Contains(want[k], pr) {
					want[k] = append(want[k], pr)
				}
				r.by[xdpTriple{k.peer, k.local, pr}] = x
			}
		}
	}
	if n != 1 {
		r.only = nil
	}
	if n == 0 {
		return p.detachLocked()
	}
	if p.prog == nil {
		// A receiving member attached it when it joined; only a
		// failure since leaves it off: the kernel carries all.
		return nil
	}
	var errs []error
	for k := range p.steered {
		if _, ok := want[k]; ok {
			continue
		}
		if err := p.prog.Accept(k.peer, k.local); err != nil {
			errs = append(errs, err) // tried again next time
			continue
		}
		delete(p.steered, k)
	}
	for k, protos := range want {
		slices.Sort(protos)
		if slices.Equal(p.steered[k], protos) {
			continue
		}
		if err := p.prog.Accept(k.peer, k.local, protos...); err != nil {
			// Its packets go through the kernel: still delivered.
			errs = append(errs, err)
			delete(p.steered, k)
			continue
		}
		p.steered[k] = protos
	}
	if old := p.routes.Load(); old.only != r.only || !maps.Equal(old.by, r.by) {
		p.routes.Store(r)
	}
	return errors.Join(errs...)
}

// close closes the sockets; the program is detached already (the last
// receiving member left). Nobody uses the port anymore.
func (p *xdpPort) close() error {
	p.tx.Lock()
	p.txClosed = true
	p.retry.Stop()
	p.tx.Unlock()
	errs := []error{p.detachLocked()}
	for _, sk := range p.socks {
		if sk != nil {
			errs = append(errs, sk.Close())
		}
	}
	return errors.Join(errs...)
}

// flushRetry and flushRetryDown are how soon the port hands the kernel
// again what a Flush left in the tx ring: the device's queue was full, or
// (down) the kernel refused them, the slave down.
const (
	flushRetry     = time.Millisecond
	flushRetryDown = 100 * time.Millisecond
)

// flushed arms the retry when the Flush that returned err left frames in
// the tx ring; the port's tx lock is held.
func (p *xdpPort) flushed(err error) {
	switch {
	case !p.sock.Pending():
	case err != nil:
		p.retry.Reset(flushRetryDown)
	default:
		p.retry.Reset(flushRetry)
	}
}

// retryFlush is the retry timer's: it flushes the tx ring again.
func (p *xdpPort) retryFlush() {
	p.tx.Lock()
	defer p.tx.Unlock()
	if p.txClosed {
		return
	}
	p.flushed(p.sock.Flush())
}

// stats sums the sockets' counters.
func (p *xdpPort) stats() xdp.Stats {
	var st xdp.Stats
	for _, sk := range p.socks {
		if sk != nil {
			s := sk.Stats()
			st.Received += s.Received
			st.Sent += s.Sent
			st.Dropped += s.Dropped
			st.TxInvalid += s.TxInvalid
		}
	}
	return st
}

// receives reports whether x receives through the port's sockets: not
// when it only sends (LinkConfig.Offload), nor once it is closing.
func (x *XDPUnderlay) receives() bool { return !x.txOnly && !x.unsteered }

// joinLocked makes x a member of its slave's port, opening the port if it
// is the first and attaching the program if x receives through it and
// none is attached. a is the slave as x found it. xdpSlaves is locked.
func (x *XDPUnderlay) joinLocked(a *netlink.LinkAttrs) error {
	u := slaveUseLocked(x.key)
	p := u.port
	if p == nil {
		if !x.txOnly && a.Xdp != nil && a.Xdp.Attached {
			tidyLocked(x.key)
			return errOtherProgram(a.Name, a.Xdp.ProgId)
		}
		var err error
		if p, err = openPort(a, x.log); err != nil {
			tidyLocked(x.key)
			return err
		}
	}
	if !x.txOnly {
		// The slave's program is ours only if the port attached it.
		attached := p.prog == nil && a.Xdp != nil && a.Xdp.Attached
		var id uint32
		if a.Xdp != nil {
			id = a.Xdp.ProgId
		}
		if err := p.attachLocked(id, attached); err != nil {
			if u.port == nil {
				p.close()
				tidyLocked(x.key)
			}
			return err
		}
	}
	u.port = p
	u.xdp[x] = struct{}{}
	x.port = p
	return nil
}

// leave takes x out of its port, closing the port when x was the last
// member. x no longer uses it: Close made sure.
func (x *XDPUnderlay) leave() error {
	xdpSlaves.Lock()
	defer xdpSlaves.Unlock()
	u := xdpSlaves.m[x.key]
	if u == nil {
		return nil
	}
	var err error
	if _, ok := u.xdp[x]; ok {
		delete(u.xdp, x)
		resteerLocked(x.key)
		if len(u.xdp) == 0 && u.port != nil {
			err = u.port.close()
			u.port = nil
		}
	}
	tidyLocked(x.key)
	return err
}

// demux keeps x's own frames of the n in x.rbufs, moving them to the
// front, and hands the others to their members' inboxes; it returns how
// many are x's. The port's rx lock is held: frames reach each member in
// the order the rings had them.
func (x *XDPUnderlay) demux(n int) int {
	r := x.port.routes.Load()
	if r.only == x {
		if r.settled.Load() {
			x.rxXDP.Add(uint64(n))
			return n
		}
		if time.Since(r.made) > routesSettle {
			r.settled.Store(true)
		}
	}
	own := 0
	for k := range n {
		b := x.rbufs[k][x.roff : x.roff+x.rsizes[k]]
		to := r.owner(b)
		switch {
		case to == x:
			if own != k {
				x.rsizes[own] = copy(x.rbufs[own][x.roff:], b)
			}
			own++
		case to == nil:
			// Steered while the members changed: nobody's now.
			x.port.unclaimed.Add(1)
		default:
			to.in.push(b)
		}
	}
	x.rxXDP.Add(uint64(own))
	return own
}

// owner returns the member whose (peer, local, protocol) the packet b is,
// or nil.
func (r *xdpRoutes) owner(b []byte) *XDPUnderlay {
	var t xdpTriple
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		t = xdpTriple{netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])), b[9]}
	case len(b) >= 40 && b[0]>>4 == 6:
		t = xdpTriple{netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40])), b[6]}
	default:
		return nil
	}
	return r.by[t]
}

// pollShared is poll for a receiving member: first what the other
// members took from the rings for it, then the rings and the raw sockets;
// before waiting, it rearms its eventfd.
func (x *XDPUnderlay) pollShared(fd uintptr) bool {
	if x.takeInbox() {
		return true
	}
	if x.poll(fd) {
		return true
	}
	if x.in.kick.Swap(false) {
		x.in.drainEventfd()
	}
	return x.takeInbox()
}

// takeInbox moves frames of x's inbox into the Read's buffers.
func (x *XDPUnderlay) takeInbox() bool {
	if x.in.count.Load() == 0 {
		return false
	}
	n := x.in.take(x.rbufs, x.rsizes, x.roff)
	if n == 0 {
		return false
	}
	x.rxXDP.Add(uint64(n))
	x.rxInbox.Add(uint64(n))
	x.rn, x.rerr = n, nil
	return true
}

// inboxFrames bounds an inbox: frames beyond are dropped and counted.
const inboxFrames = 256

// An xdpInbox holds the frames other members of the port took from the
// rings for one member, until its Read takes them. Pushing never blocks:
// a full inbox drops the frame.
type xdpInbox struct {
	mu      sync.Mutex
	efd     int // readable when frames came
	closed  bool
	slot    int      // bytes a slot holds
	slots   [][]byte // made at the first frame
	sizes   []int
	head, n int
	one     [8]byte // an eventfd increment of 1; a field: a local would
	drained [8]byte // escape to the heap with the race detector

	count   atomic.Int32  // n, read without mu
	kick    atomic.Bool   // efd was written since the member last read it
	dropped atomic.Uint64 // frames dropped because the inbox was full
}

func newInbox(slot int) (*xdpInbox, error) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("vif: underlay: eventfd: %w", err)
	}
	in := &xdpInbox{efd: efd, slot: slot}
	binary.NativeEndian.PutUint64(in.one[:], 1)
	return in, nil
}

// push copies b into the inbox, waking its member when it was empty.
func (in *xdpInbox) push(b []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return
	}
	if in.n == inboxFrames {
		in.dropped.Add(1)
		return
	}
	if in.slots == nil {
		mem := make([]byte, inboxFrames*in.slot)
		in.slots = make([][]byte, inboxFrames)
		for k := range in.slots {
			in.slots[k] = mem[k*in.slot : (k+1)*in.slot : (k+1)*in.slot]
		}
		in.sizes = make([]int, inboxFrames)
	}
	at := (in.head + in.n) % inboxFrames
	in.sizes[at] = copy(in.slots[at], b)
	in.n++
	in.count.Store(int32(in.n))
	if in.n == 1 {
		in.kick.Store(true)
		_, _ = unix.Write(in.efd, in.one[:])
	}
}

// take moves up to len(bufs) frames into bufs[i][offset:].
func (in *xdpInbox) take(bufs [][]byte, sizes []int, offset int) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	k := min(len(bufs), in.n)
	for i := range k {
		sizes[i] = copy(bufs[i][offset:], in.slots[in.head][:in.sizes[in.head]])
		in.head = (in.head + 1) % inboxFrames
	}
	in.n -= k
	in.count.Store(int32(in.n))
	return k
}

// drainEventfd resets the eventfd.
func (in *xdpInbox) drainEventfd() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.closed {
		_, _ = unix.Read(in.efd, in.drained[:])
	}
}

// close closes the eventfd; later frames are dropped.
func (in *xdpInbox) close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil
	}
	in.closed = true
	return unix.Close(in.efd)
}
