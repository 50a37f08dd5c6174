package arpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vif-project/vif/internal/inet"
)

// Defaults applied by a nil *Config or by zero Config fields.
const (
	// DefaultAnnounceCount is ANNOUNCE_NUM of RFC 5227: the number of
	// announcements sent for an address when it is added.
	DefaultAnnounceCount = 2
	// DefaultAnnounceInterval is ANNOUNCE_INTERVAL of RFC 5227: the time
	// between announcements.
	DefaultAnnounceInterval = 2 * time.Second
	// DefendInterval is DEFEND_INTERVAL of RFC 5227: with Config.Defend,
	// the minimum time between two defensive announcements of an address.
	DefendInterval = 10 * time.Second

	// DefaultRequesterRate is the sustained number of replies per second
	// to one requester for one address. A Linux neighbour sends at most
	// about one request per second per address while resolving and one
	// every few tens of seconds to confirm an entry, so the default
	// leaves a wide margin.
	DefaultRequesterRate = 5
	// DefaultRequesterBurst is the number of replies one requester may
	// get for one address at once before DefaultRequesterRate applies.
	DefaultRequesterBurst = 10
	// DefaultRateLimitSlots is the number of buckets of the per-requester
	// rate limit table (about 32 bytes each).
	DefaultRateLimitSlots = 1024
	// DefaultGlobalRate is the sustained number of replies per second for
	// the whole Responder. It is generous: it bounds what a flood from
	// random hardware addresses can make us send (about 2.4 Mbit/s), not
	// normal traffic.
	DefaultGlobalRate = 5000
	// DefaultGlobalBurst is the number of replies the Responder may send
	// at once before DefaultGlobalRate applies.
	DefaultGlobalBurst = 5000
	// DefaultConflictLogInterval is the minimum time between two conflict
	// warnings in the log; conflicts in between are counted and reported
	// as "suppressed" with the next warning.
	DefaultConflictLogInterval = 10 * time.Second
)

// maxRateLimitSlots bounds Config.RateLimitSlots.
const maxRateLimitSlots = 1 << 20

// readBufLen is the size of the serve loop's read buffer: an Ethernet
// frame of the usual MTU; ARP needs 42 bytes, longer frames are truncated
// harmlessly.
const readBufLen = 1600

// Config contains options for a Responder. A nil *Config, and the zero
// value of each field, apply the defaults.
type Config struct {
	// Logger receives lifecycle messages (Info), rate-limited warnings
	// about conflicts and I/O errors (Warn) and address changes (Debug).
	// Nothing is logged per frame. Nil discards everything.
	Logger *slog.Logger

	// AnnounceCount is the number of gratuitous ARP announcements sent
	// when an address is added (RFC 5227 ANNOUNCE_NUM). Zero means
	// DefaultAnnounceCount; a negative value disables announcements.
	AnnounceCount int
	// AnnounceInterval is the time between two announcements of an
	// address (RFC 5227 ANNOUNCE_INTERVAL). Zero or negative means
	// DefaultAnnounceInterval.
	AnnounceInterval time.Duration

	// RequesterRate is the sustained number of replies per second to one
	// requester (its hardware address) for one target address. Zero means
	// DefaultRequesterRate; a negative value or +Inf disables the
	// per-requester limit.
	RequesterRate float64
	// RequesterBurst is the number of replies one requester may get for
	// one address at once. Zero or negative means DefaultRequesterBurst.
	RequesterBurst int
	// RateLimitSlots is the size of the fixed table holding per-requester
	// buckets, rounded up to a power of two (at most 1<<20). Zero or
	// negative means DefaultRateLimitSlots. A requester whose slot is
	// taken over by another starts again with a full bucket.
	RateLimitSlots int
	// GlobalRate is the sustained number of replies per second for the
	// whole Responder. Zero means DefaultGlobalRate; a negative value or
	// +Inf disables the global limit.
	GlobalRate float64
	// GlobalBurst is the number of replies the Responder may send at
	// once. Zero or negative means DefaultGlobalBurst.
	GlobalBurst int

	// ConflictLogInterval is the minimum time between two conflict
	// warnings. Zero means DefaultConflictLogInterval; a negative value
	// disables conflict warnings (they are still counted).
	ConflictLogInterval time.Duration

	// Defend makes the Responder defend owned addresses against conflicts
	// indefinitely, as RFC 5227 section 2.4 (c) allows a host that must
	// not give up its address: when another host sends ARP with an owned
	// address as sender IP, broadcast one announcement of the address, at
	// most once per DefendInterval per address. Off by default: the
	// probes of other hosts are always answered (that defence needs no
	// option), but a host that already uses the address wins or loses by
	// the last announcement, and announcing back and forth makes it worse.
	Defend bool
}

// config is Config with the defaults applied.
type config struct {
	log                 *slog.Logger
	announceCount       int
	announceInterval    time.Duration
	requesterRate       float64
	requesterBurst      int
	slots               int
	globalRate          float64
	globalBurst         int
	conflictLogInterval time.Duration
	defend              bool
}

func (c *Config) resolve() (config, error) {
	if c == nil {
		c = &Config{}
	}
	r := config{
		log:                 c.Logger,
		announceCount:       c.AnnounceCount,
		announceInterval:    c.AnnounceInterval,
		requesterRate:       c.RequesterRate,
		requesterBurst:      c.RequesterBurst,
		slots:               c.RateLimitSlots,
		globalRate:          c.GlobalRate,
		globalBurst:         c.GlobalBurst,
		conflictLogInterval: c.ConflictLogInterval,
		defend:              c.Defend,
	}
	if math.IsNaN(r.requesterRate) || math.IsNaN(r.globalRate) {
		return config{}, errors.New("arpproxy: invalid config: rate is NaN")
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.announceCount == 0 {
		r.announceCount = DefaultAnnounceCount
	}
	if r.announceInterval <= 0 {
		r.announceInterval = DefaultAnnounceInterval
	}
	if r.requesterRate == 0 {
		r.requesterRate = DefaultRequesterRate
	}
	if r.requesterBurst <= 0 {
		r.requesterBurst = DefaultRequesterBurst
	}
	if r.slots <= 0 {
		r.slots = DefaultRateLimitSlots
	}
	r.slots = min(r.slots, maxRateLimitSlots)
	if r.globalRate == 0 {
		r.globalRate = DefaultGlobalRate
	}
	if r.globalBurst <= 0 {
		r.globalBurst = DefaultGlobalBurst
	}
	if r.conflictLogInterval == 0 {
		r.conflictLogInterval = DefaultConflictLogInterval
	}
	return r, nil
}

// Errors returned by the Responder.
var (
	// ErrClosed is returned by Add and Announce after Close.
	ErrClosed = errors.New("arpproxy: responder closed")
	// ErrInvalidAddr is wrapped by the error Add returns for an address
	// a host cannot own: not IPv4, in 0.0.0.0/8, loopback, multicast, the
	// reserved 240.0.0.0/4 or the limited broadcast address (the rule of
	// vif.IsHostAddr).
	ErrInvalidAddr = errors.New("arpproxy: invalid address")
	// ErrNotOwned is returned by Announce for an address that was not
	// added.
	ErrNotOwned = errors.New("arpproxy: address not owned")
	// ErrInterface is wrapped by the error New and Listen return for an
	// interface without a unicast 6-byte Ethernet hardware address.
	ErrInterface = errors.New("arpproxy: not an Ethernet interface")
)

// A Responder answers ARP on one Ethernet interface for a changing set of
// owned IPv4 addresses, announces them when they are added, and counts and
// reports conflicts. It serves every vif on that interface. Its methods are
// safe for concurrent use.
type Responder struct {
	mac  net.HardwareAddr // 6 bytes, private copy
	conn net.PacketConn
	io   frameIO // used by the serve goroutine only
	cfg  config
	log  *slog.Logger

	// owned is read on every frame without a lock; it is replaced, never
	// modified, under mu.
	owned atomic.Pointer[table]

	mu     sync.Mutex
	closed bool                      // guarded by mu
	addrs  map[netip.Addr]*addrState // guarded by mu

	closing   atomic.Bool
	ctx       context.Context // canceled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // serve and announcer goroutines
	closeOnce sync.Once

	stats counters

	// Used by the serve goroutine only.
	start       time.Time
	lim         *limiter
	out         []byte // reply buffer
	defendBuf   []byte
	conflictLog logLimiter
	errLog      logLimiter
}

// table is an immutable snapshot of the owned addresses: states[i] belongs
// to the i-th address of set.
type table struct {
	set    *AddrSet
	states []*addrState
}

// addrState is the per-address state, shared by successive tables.
type addrState struct {
	addr netip.Addr

	// The running announcer, if any; guarded by Responder.mu.
	stopAnnounce context.CancelFunc
	announceDone chan struct{}

	// Last defensive announcement; serve goroutine only.
	defended   bool
	defendedAt int64
}

// Listen opens an AF_PACKET socket for ARP on ifi (which requires
// CAP_NET_RAW), with the kernel filter returned by Filter so that only ARP
// for IPv4 over Ethernet reaches the process, and returns a Responder
// serving it, as New does. The socket is closed by Close.
//
// A nil *Config applies the default configuration.
func Listen(ifi *net.Interface, cfg *Config) (*Responder, error) {
	if err := checkInterface(ifi); err != nil {
		return nil, err
	}
	conn, err := packet.Listen(ifi, packet.Raw, EtherTypeARP, &packet.Config{Filter: Filter()})
	if err != nil {
		return nil, fmt.Errorf("arpproxy: listen on %s: %w", ifi.Name, err)
	}
	r, err := New(ifi, conn, cfg)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return r, nil
}

// New returns a Responder that reads Ethernet frames from conn and answers
// ARP with the hardware address of ifi, and starts serving in a goroutine.
// It owns no address until Add. The Responder takes ownership of conn and
// closes it in Close; if New fails, conn is left open.
//
// conn must deliver whole Ethernet frames, as a *packet.Conn of type
// packet.Raw does. Frames are written with WriteTo to a *packet.Addr
// holding the Ethernet destination. Other conns, such as test doubles, are
// used the same way. With a *packet.Conn, New also asks the kernel not to
// loop our own frames back (PACKET_IGNORE_OUTGOING) and reads and writes
// through its raw file descriptor, which avoids allocating per frame.
//
// The hardware address is read from ifi once. A nil *Config applies the
// default configuration.
func New(ifi *net.Interface, conn net.PacketConn, cfg *Config) (*Responder, error) {
	return newResponder(ifi, conn, cfg, nil)
}

// newResponder is New with the serve goroutine's frameIO; nil means the
// one for conn.
func newResponder(ifi *net.Interface, conn net.PacketConn, cfg *Config, io frameIO) (*Responder, error) {
	if err := checkInterface(ifi); err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, errors.New("arpproxy: nil connection")
	}
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	r := &Responder{
		mac:   bytes.Clone(ifi.HardwareAddr),
		conn:  conn,
		cfg:   c,
		log:   c.log.With("iface", ifi.Name),
		addrs: make(map[netip.Addr]*addrState),
		start: time.Now(),
		lim: newLimiter(c.requesterRate, c.requesterBurst, c.slots,
			c.globalRate, c.globalBurst),
		out:         make([]byte, FrameLen),
		defendBuf:   make([]byte, FrameLen),
		conflictLog: logLimiter{interval: int64(c.conflictLogInterval)},
		errLog:      logLimiter{interval: int64(10 * time.Second)},
	}
	r.owned.Store(&table{set: &AddrSet{}})
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.io = io
	if r.io == nil {
		r.io = newFrameIO(conn, r.log)
	}

	r.wg.Add(1)
	go r.serve()
	r.log.Info("ARP responder started", "mac", r.mac.String())
	return r, nil
}

func checkInterface(ifi *net.Interface) error {
	if ifi == nil {
		return fmt.Errorf("%w: nil interface", ErrInterface)
	}
	if len(ifi.HardwareAddr) != hardwareAddrLen || !isUnicast([6]byte(ifi.HardwareAddr)) {
		return fmt.Errorf("%w: %s has hardware address %q", ErrInterface, ifi.Name, ifi.HardwareAddr.String())
	}
	return nil
}

// checkAddr returns an error wrapping ErrInvalidAddr if a cannot be owned:
// the rule vif.IsHostAddr applies too.
func checkAddr(a netip.Addr) error {
	if why := inet.Why(a); why != "" {
		return fmt.Errorf("%w %s: %s", ErrInvalidAddr, a, why)
	}
	return nil
}

// HardwareAddr returns the hardware address the Responder answers with.
func (r *Responder) HardwareAddr() net.HardwareAddr { return bytes.Clone(r.mac) }

// Add makes the Responder answer ARP for addr and announces it in the
// background (Config.AnnounceCount announcements, Config.AnnounceInterval
// apart, the first at once); Add does not wait for them. Adding an address
// already owned does nothing. Add returns an error wrapping ErrInvalidAddr
// for an address that is not a unicast IPv4 address, and ErrClosed after
// Close.
func (r *Responder) Add(addr netip.Addr) error {
	if err := checkAddr(addr); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if _, ok := r.addrs[addr]; ok {
		return nil
	}
	st := &addrState{addr: addr}
	r.addrs[addr] = st
	old := r.owned.Load()
	set, i := old.set.with(addr)
	r.owned.Store(&table{set: set, states: slices.Insert(slices.Clone(old.states), i, st)})
	r.startAnnouncer(st)
	r.log.Debug("ARP address added", "addr", addr)
	return nil
}

// Remove stops answering for addr and stops its announcements; when Remove
// returns, no frame for addr is being sent. Removing an address not owned
// does nothing.
func (r *Responder) Remove(addr netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.addrs[addr]
	if !ok {
		return
	}
	delete(r.addrs, addr)
	old := r.owned.Load()
	i := old.set.index(addr)
	r.owned.Store(&table{set: old.set.without(i), states: slices.Delete(slices.Clone(old.states), i, i+1)})
	r.stopAnnouncer(st)
	r.log.Debug("ARP address removed", "addr", addr)
}

// Announce announces an owned address again, as Add does (for example
// after the interface's link comes back up), replacing announcements of
// addr still in progress; it does nothing if Config.AnnounceCount is
// negative. It returns an error wrapping ErrNotOwned if addr was not added,
// and ErrClosed after Close.
func (r *Responder) Announce(addr netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	st, ok := r.addrs[addr]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotOwned, addr)
	}
	r.stopAnnouncer(st)
	r.startAnnouncer(st)
	return nil
}

// Addrs returns the owned addresses in ascending order.
func (r *Responder) Addrs() []netip.Addr { return r.owned.Load().set.Addrs() }

// Stats returns a snapshot of the Responder's counters.
func (r *Responder) Stats() Stats {
	if pc, ok := r.conn.(*packet.Conn); ok {
		// The kernel resets its counters when they are read: add them up.
		if st, err := pc.Stats(); err == nil {
			r.stats.socketDrops.Add(uint64(st.Drops))
		}
	}
	return r.stats.snapshot()
}

// Close stops the Responder: it stops announcements, closes the
// connection and waits for every goroutine of the Responder to exit. The
// first call returns the error from closing the connection; later calls
// do nothing and return nil.
func (r *Responder) Close() error {
	var err error
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		r.closing.Store(true)
		r.cancel()
		err = r.conn.Close()
		r.wg.Wait()
		r.log.Info("ARP responder stopped")
	})
	return err
}

// startAnnouncer starts announcing st.addr unless announcements are
// disabled. r.mu must be held and no announcer of st may be running.
func (r *Responder) startAnnouncer(st *addrState) {
	if r.cfg.announceCount <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	st.stopAnnounce, st.announceDone = cancel, done
	r.wg.Add(1)
	go r.announce(ctx, st.addr, done)
}

// stopAnnouncer stops the announcer of st, if any, and waits for it. r.mu
// must be held (announcers never take it).
func (r *Responder) stopAnnouncer(st *addrState) {
	if st.stopAnnounce == nil {
		return
	}
	st.stopAnnounce()
	<-st.announceDone
	st.stopAnnounce, st.announceDone = nil, nil
}

// announce sends the announcements of addr (RFC 5227 section 2.3) until
// done or ctx is canceled.
func (r *Responder) announce(ctx context.Context, addr netip.Addr, done chan struct{}) {
	defer r.wg.Done()
	defer close(done)
	f := PutAnnouncement(make([]byte, FrameLen), r.mac, addr)
	dst := &packet.Addr{HardwareAddr: bytes.Clone(broadcast[:])}
	var t *time.Timer
	for i := range r.cfg.announceCount {
		if i > 0 {
			if t == nil {
				t = time.NewTimer(r.cfg.announceInterval)
				defer t.Stop()
			} else {
				t.Reset(r.cfg.announceInterval)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		if _, err := r.conn.WriteTo(f, dst); err != nil {
			r.stats.writeErrors.Add(1)
			if !r.closing.Load() {
				r.log.Warn("ARP announcement failed", "addr", addr, "err", err)
			}
			continue
		}
		r.stats.announcements.Add(1)
	}
}

// serve reads and answers frames until the connection is closed.
func (r *Responder) serve() {
	defer r.wg.Done()
	buf := make([]byte, readBufLen)
	var backoff time.Duration
	for {
		n, err := r.io.read(buf)
		if n > 0 {
			r.handle(Frame(buf[:n]))
		}
		if err == nil {
			backoff = 0
			continue
		}
		if r.closing.Load() {
			return
		}
		if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
			r.log.Warn("ARP connection closed under the responder; stopped serving", "err", err)
			return
		}
		r.stats.readErrors.Add(1)
		if ok, suppressed := r.errLog.allow(r.now()); ok {
			r.log.Warn("ARP read failed", "err", err, "suppressed", suppressed)
		}
		// Back off so that a persistent error (interface gone) does not
		// spin; a one-off error costs a millisecond.
		backoff = min(max(2*backoff, time.Millisecond), time.Second)
		t := time.NewTimer(backoff)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// now returns the serve goroutine's monotonic clock in nanoseconds.
func (r *Responder) now() int64 { return int64(time.Since(r.start)) }

// handle processes one frame. It does not allocate or log, except for
// rate-limited warnings. Frames is counted last, so that whoever sees
// Frames == n also sees every other counter updated for those n frames.
func (r *Responder) handle(f Frame) {
	r.process(f)
	r.stats.frames.Add(1)
}

func (r *Responder) process(f Frame) {
	tab := r.owned.Load()
	res := Respond(r.out, f, r.mac, tab.set)
	if res.Verdict == VerdictDrop {
		r.stats.drops[res.Reason].Add(1)
		return
	}
	if f.Op() == OpRequest {
		r.stats.requests.Add(1)
	}
	if res.Conflict {
		r.conflict(f, tab)
	}
	switch res.Verdict {
	case VerdictNotOwned:
		r.stats.notOwned.Add(1)
	case VerdictIgnore:
		r.stats.ignored.Add(1)
	case VerdictReply:
		reply := res.Reply
		if r.lim.enabled && !r.lim.allow([6]byte(reply.EthernetDst()), reply.SenderIP().As4(), r.now()) {
			r.stats.limited.Add(1)
			return
		}
		if err := r.io.write(reply, reply.EthernetDst()); err != nil {
			r.stats.writeErrors.Add(1)
			if ok, suppressed := r.errLog.allow(r.now()); ok {
				r.log.Warn("ARP reply failed", "err", err, "suppressed", suppressed)
			}
			return
		}
		r.stats.replies.Add(1)
		if res.Probe {
			r.stats.probes.Add(1)
		}
	}
}

// conflict counts, logs (rate-limited) and, with Config.Defend, defends
// against a frame from another host claiming an owned address.
func (r *Responder) conflict(f Frame, tab *table) {
	r.stats.conflicts.Add(1)
	now := r.now()
	addr := f.SenderIP()
	defended := false
	if r.cfg.defend {
		if i := tab.set.index(addr); i >= 0 {
			st := tab.states[i]
			if !st.defended || now-st.defendedAt >= int64(DefendInterval) {
				st.defended, st.defendedAt = true, now
				a := PutAnnouncement(r.defendBuf, r.mac, addr)
				if err := r.io.write(a, a.EthernetDst()); err != nil {
					r.stats.writeErrors.Add(1)
				} else {
					r.stats.announcements.Add(1)
					r.stats.defences.Add(1)
					defended = true
				}
			}
		}
	}
	if ok, suppressed := r.conflictLog.allow(now); ok {
		r.log.Warn("ARP address conflict: another host claims an owned address",
			"addr", addr,
			"mac", f.SenderHardwareAddr().String(),
			"op", f.Op().String(),
			"defended", defended,
			"suppressed", suppressed)
	}
}

// logLimiter lets one message through per interval and counts the others.
// A negative interval lets nothing through. Not safe for concurrent use.
type logLimiter struct {
	interval   int64
	last       int64
	logged     bool
	suppressed uint64
}

// allow reports whether to log at time now, and how many messages were
// suppressed since the last one logged.
func (l *logLimiter) allow(now int64) (bool, uint64) {
	if l.interval < 0 || (l.logged && now-l.last < l.interval) {
		l.suppressed++
		return false, 0
	}
	s := l.suppressed
	l.logged, l.last, l.suppressed = true, now, 0
	return true, s
}
