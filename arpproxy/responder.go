package arpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vif-project/vif/internal/inet"
	"github.com/vif-project/vif/internal/logattr"
	"github.com/vif-project/vif/internal/packetio"
	"github.com/vif-project/vif/internal/ratelimit"
)

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
	// mac is the hardware address answered with, replaced (never
	// modified) by SetHardwareAddr: 6 bytes.
	mac  atomic.Pointer[net.HardwareAddr]
	conn net.PacketConn
	io   packetio.IO // used by the serve goroutine only
	cfg  config
	log  *slog.Logger

	// owned is read on every frame without a lock; it is replaced, never
	// modified, under mu.
	owned atomic.Pointer[table]

	mu     sync.Mutex
	closed bool                      // guarded by mu
	addrs  map[netip.Addr]*addrState // guarded by mu
	probes []*prober                 // running Probe calls; guarded by mu

	// probing is probes, for the serve goroutine: nil when none runs.
	probing atomic.Pointer[[]*prober]

	closing   atomic.Bool
	ctx       context.Context // canceled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // serve and announcer goroutines
	closeOnce sync.Once

	stats counters

	// Used by the serve goroutine only.
	start       time.Time
	lim         *ratelimit.Limiter
	limKey      ratelimit.Key
	out         []byte // reply buffer
	defendBuf   []byte
	conflictLog ratelimit.LogLimiter
	errLog      ratelimit.LogLimiter
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
	// Log lines name the interface as it is called when they are logged:
	// the socket follows it through renames.
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.Logger != nil {
		index, first := ifi.Index, ifi.Name
		c.Logger = slog.New(logattr.Dynamic(c.Logger.Handler(), "iface", func() string {
			if ifi, err := net.InterfaceByIndex(index); err == nil {
				return ifi.Name
			}
			return first
		}))
	}
	r, err := newResponder(ifi, conn, &c, nil, false)
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
	return newResponder(ifi, conn, cfg, nil, true)
}

// newResponder is New with the serve goroutine's packetio.IO (nil means the
// one for conn), and whether to name the interface in log lines (Listen's
// logger does it already).
func newResponder(ifi *net.Interface, conn net.PacketConn, cfg *Config, io packetio.IO, nameIface bool) (*Responder, error) {
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
	mac := net.HardwareAddr(bytes.Clone(ifi.HardwareAddr))
	log := c.log
	if nameIface {
		log = log.With("iface", ifi.Name)
	}
	r := &Responder{
		conn:  conn,
		cfg:   c,
		log:   log,
		addrs: make(map[netip.Addr]*addrState),
		start: time.Now(),
		lim: ratelimit.NewLimiter(c.requesterRate, c.requesterBurst, c.slots,
			c.globalRate, c.globalBurst),
		out:         make([]byte, FrameLen),
		defendBuf:   make([]byte, FrameLen),
		conflictLog: ratelimit.NewLogLimiter(int64(c.conflictLogInterval)),
		errLog:      ratelimit.NewLogLimiter(int64(10 * time.Second)),
	}
	r.mac.Store(&mac)
	r.owned.Store(&table{set: &AddrSet{}})
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.io = io
	if r.io == nil {
		r.io = packetio.New(conn, r.log)
	}

	r.wg.Add(1)
	go r.serve()
	r.log.Info("ARP responder started", "mac", mac.String())
	return r, nil
}

func checkInterface(ifi *net.Interface) error {
	if ifi == nil {
		return fmt.Errorf("%w: nil interface", ErrInterface)
	}
	if !isHostMAC(ifi.HardwareAddr) {
		return fmt.Errorf("%w: %s has hardware address %q", ErrInterface, ifi.Name, ifi.HardwareAddr.String())
	}
	return nil
}

// isHostMAC reports whether mac can be an Ethernet interface's own
// address: 6 bytes, unicast, not zero.
func isHostMAC(mac net.HardwareAddr) bool {
	return len(mac) == hardwareAddrLen && isUnicast([6]byte(mac))
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
func (r *Responder) HardwareAddr() net.HardwareAddr { return bytes.Clone(*r.mac.Load()) }

// SetHardwareAddr makes the Responder answer with mac from now on: the
// interface's address changed (a bond failed over to another port, an
// operator ran "ip link set dev eth0 address ..."). When mac differs from
// the address in use, every owned address is announced again with it
// (RFC 5227 section 2.3), so that neighbours replace the address they
// cached. It returns an error wrapping ErrInterface if mac is not a 6-byte
// unicast address, and ErrClosed after Close.
func (r *Responder) SetHardwareAddr(mac net.HardwareAddr) error {
	if !isHostMAC(mac) {
		return fmt.Errorf("%w: hardware address %q", ErrInterface, mac.String())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	old := *r.mac.Load()
	if bytes.Equal(old, mac) {
		return nil
	}
	mac = bytes.Clone(mac)
	r.mac.Store(&mac)
	for _, st := range r.addrs {
		r.stopAnnouncer(st)
		r.startAnnouncer(st)
	}
	r.log.Info("interface hardware address changed: answering with the new one, owned addresses announced again",
		"from", old.String(), "to", mac.String(), "addrs", len(r.addrs))
	return nil
}

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

// AddRange makes the Responder answer ARP for every address of the prefix
// p (an IPv4 prefix, at least /8) but the network and broadcast addresses
// of a prefix shorter than /31 and the addresses in exclude: those other
// hosts on the segment use (see Probe), which the caller found before
// claiming the range. A range costs the same whatever its size: no state
// is kept per address, and nothing is announced (gratuitous ARP for a
// whole prefix would flood the segment); neighbours learn the addresses
// as they ask. Another host's ARP from an address of the range is counted
// and logged as a conflict, as for an added address. Adding a range owned
// already adds its exclusions. It returns an error wrapping
// ErrInvalidAddr for a prefix that is not a valid IPv4 prefix of /8 or
// longer, or whose network address a host cannot own, and ErrClosed after
// Close.
func (r *Responder) AddRange(p netip.Prefix, exclude []netip.Addr) error {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() < 8 {
		return fmt.Errorf("%w: range %v: give an IPv4 prefix of /8 or longer", ErrInvalidAddr, p)
	}
	if why := inet.Why(p.Masked().Addr()); why != "" {
		return fmt.Errorf("%w: range %v: %s", ErrInvalidAddr, p, why)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	old := r.owned.Load()
	r.owned.Store(&table{set: old.set.withRange(p, exclude), states: old.states})
	r.log.Debug("ARP range added", "range", p.Masked(), "excluded", len(exclude))
	return nil
}

// RemoveRange stops answering for the range p (its exclusions go too).
// Removing a range not owned does nothing.
func (r *Responder) RemoveRange(p netip.Prefix) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.owned.Load()
	r.owned.Store(&table{set: old.set.withoutRange(p), states: old.states})
	r.log.Debug("ARP range removed", "range", p.Masked())
}

// Ranges returns the owned ranges in ascending order.
func (r *Responder) Ranges() []netip.Prefix { return r.owned.Load().set.Ranges() }

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
