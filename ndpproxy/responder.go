package ndpproxy

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
	"github.com/vif-project/vif/internal/logattr"
	"github.com/vif-project/vif/internal/packetio"
	"github.com/vif-project/vif/internal/ratelimit"
)

// MinRangeBits is the shortest prefix AddRange takes: a /48, the largest
// assignment to an end site that RFC 6177 considers. A range costs the same whatever
// its size, so the limit only keeps a typo from claiming more than a site
// can own.
const MinRangeBits = 48

// GroupRangeBits is the shortest range whose addresses' solicited-node
// multicast groups are joined one by one: a /120, at most 256 groups. A
// proxy joins the solicited-node group of every address it answers for
// (RFC 4861 section 7.2.8), which an interface holds easily for so few;
// a /64 would need all 16 million of them. For a range shorter than
// this, a Responder from Listen has the interface receive all multicast
// instead (Stats.AllMulticast), for as long as it owns such a range.
//
// That costs the host every multicast frame on the segment (the NIC
// filters none out; the kernel drops what no one listens to, and the
// Responder's socket filter keeps all but Neighbor Discovery out of the
// process, which then reads every solicitation on the segment, most of
// them counted as not owned), and it joins no group with MLD: a switch that snoops MLD
// forwards the solicitations for the range's addresses to the host only
// if it floods multicast it has no listener for. Neighbors' unicast
// solicitations (Neighbor Unreachability Detection) are not affected.
const GroupRangeBits = 120

// A Responder answers Neighbor Solicitations on one Ethernet interface for
// a changing set of owned IPv6 addresses, announces them when they are
// added, and counts and reports conflicts. It serves every vif on that
// interface. Its methods are safe for concurrent use.
type Responder struct {
	// self is what replies are made of, replaced (never modified) by
	// SetHardwareAddr and SetSourceAddr.
	self atomic.Pointer[Self]
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
	ranges map[netip.Prefix]bool     // guarded by mu
	groups *memberships              // guarded by mu
	probes []*prober                 // running Probe calls; guarded by mu

	// probing is probes, for the serve goroutine: nil when none runs.
	probing atomic.Pointer[[]*prober]

	pace pacer // spaces announcements of different addresses

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
}

// Listen opens an AF_PACKET socket for IPv6 on ifi (which requires
// CAP_NET_RAW), with the kernel filter returned by Filter so that only
// Neighbor Solicitations and Advertisements reach the process, and returns
// a Responder serving it, as New does, that also joins the solicited-node
// multicast group of every address it answers for, through ICMPv6 sockets
// of its own (mdlayher/ndp's Conn, with an ICMPv6 filter that lets no
// message in). The sockets are closed by Close.
//
// A packet socket rather than an ICMPv6 socket reads the solicitations:
// the kernel delivers a solicitation unicast to an address it does not
// have (Neighbor Unreachability Detection of a published address) to no
// ICMPv6 socket, and answering those is what keeps neighbours' entries
// alive.
//
// A nil *Config applies the default configuration.
func Listen(ifi *net.Interface, cfg *Config) (*Responder, error) {
	if err := checkInterface(ifi); err != nil {
		return nil, err
	}
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if !c.SourceAddr.IsValid() {
		ll, err := linkLocal(ifi)
		if err != nil {
			return nil, err
		}
		c.SourceAddr = ll
	}
	groups := newMemberships(openGroupConn(ifi))
	// Open the first group socket now: an interface without IPv6 fails
	// here rather than at the first Add.
	gc, err := groups.open()
	if err != nil {
		return nil, fmt.Errorf("ndpproxy: ICMPv6 socket on %s: %w", ifi.Name, err)
	}
	groups.conns = append(groups.conns, gc)
	conn, err := packet.Listen(ifi, packet.Raw, EtherTypeIPv6, &packet.Config{Filter: Filter()})
	if err != nil {
		groups.close()
		return nil, fmt.Errorf("ndpproxy: listen on %s: %w", ifi.Name, err)
	}
	// Log lines name the interface as it is called when they are logged:
	// the socket follows it through renames.
	if c.Logger != nil {
		index, first := ifi.Index, ifi.Name
		c.Logger = slog.New(logattr.Dynamic(c.Logger.Handler(), "iface", func() string {
			if ifi, err := net.InterfaceByIndex(index); err == nil {
				return ifi.Name
			}
			return first
		}))
	}
	groups.allMulti = allMulticast(conn, ifi.Index)
	r, err := newResponder(ifi, conn, &c, groups, nil, false)
	if err != nil {
		_ = conn.Close()
		groups.close()
		return nil, err
	}
	return r, nil
}

// New returns a Responder that reads Ethernet frames from conn and answers
// Neighbor Solicitations with the hardware address of ifi, and starts
// serving in a goroutine. It owns no address until Add. The Responder
// takes ownership of conn and closes it in Close; if New fails, conn is
// left open.
//
// conn must deliver whole Ethernet frames, as a *packet.Conn of type
// packet.Raw does. Frames are written with WriteTo to a *packet.Addr
// holding the Ethernet destination. Other conns, such as test doubles, are
// used the same way. With a *packet.Conn, New also asks the kernel not to
// loop our own frames back (PACKET_IGNORE_OUTGOING) and reads and writes
// through its raw file descriptor, which avoids allocating per frame.
//
// New joins no multicast group: on a real interface, use Listen, or join
// the solicited-node groups (SolicitedNode) of the addresses yourself.
// Advertisements are sent from Config.SourceAddr or, without it, from the
// link-local address of ifi. The hardware address is read from ifi once.
// A nil *Config applies the default configuration.
func New(ifi *net.Interface, conn net.PacketConn, cfg *Config) (*Responder, error) {
	if err := checkInterface(ifi); err != nil {
		return nil, err
	}
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if !c.SourceAddr.IsValid() {
		ll, err := linkLocal(ifi)
		if err != nil {
			return nil, err
		}
		c.SourceAddr = ll
	}
	return newResponder(ifi, conn, &c, newMemberships(nil, nil), nil, true)
}

// newResponder is New with the groups to join, the serve goroutine's
// packetio.IO (nil means the one for conn), and whether to name the
// interface in log lines (Listen's logger does it already). cfg's
// SourceAddr is set.
func newResponder(ifi *net.Interface, conn net.PacketConn, cfg *Config, groups *memberships, io packetio.IO, nameIface bool) (*Responder, error) {
	if err := checkInterface(ifi); err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, errors.New("ndpproxy: nil connection")
	}
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	log := c.log
	if nameIface {
		log = log.With("iface", ifi.Name)
	}
	r := &Responder{
		conn:   conn,
		cfg:    c,
		log:    log,
		addrs:  make(map[netip.Addr]*addrState),
		ranges: make(map[netip.Prefix]bool),
		groups: groups,
		start:  time.Now(),
		lim: ratelimit.NewLimiter(c.requesterRate, c.requesterBurst, c.slots,
			c.globalRate, c.globalBurst),
		out:         make([]byte, ReplyLen),
		conflictLog: ratelimit.NewLogLimiter(int64(c.conflictLogInterval)),
		errLog:      ratelimit.NewLogLimiter(int64(10 * time.Second)),
	}
	r.self.Store(&Self{
		HardwareAddr: bytes.Clone(ifi.HardwareAddr),
		Addr:         c.source,
		Router:       c.router,
		Proxy:        c.proxy,
	})
	r.owned.Store(&table{set: &AddrSet{}})
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.io = io
	if r.io == nil {
		r.io = packetio.New(conn, r.log)
	}

	r.wg.Add(1)
	go r.serve()
	r.log.Info("NDP responder started", "mac", ifi.HardwareAddr.String(), "source", c.source)
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

// linkLocal returns the first IPv6 link-local address of ifi.
func linkLocal(ifi *net.Interface) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: addresses of %s: %v", ErrInterface, ifi.Name, err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if ok && ip.Is6() && !ip.Is4In6() && ip.IsLinkLocalUnicast() {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: %s has no IPv6 link-local address to send advertisements from (is IPv6 disabled on it?)", ErrInterface, ifi.Name)
}

// isHostMAC reports whether mac can be an Ethernet interface's own
// address: 6 bytes, unicast, not zero.
func isHostMAC(mac net.HardwareAddr) bool {
	return len(mac) == hardwareAddrLen && isUnicast([6]byte(mac))
}

// HardwareAddr returns the hardware address the Responder answers with.
func (r *Responder) HardwareAddr() net.HardwareAddr {
	return bytes.Clone(r.self.Load().HardwareAddr)
}

// SourceAddr returns the address advertisements are sent from.
func (r *Responder) SourceAddr() netip.Addr { return r.self.Load().Addr }

// SetHardwareAddr makes the Responder answer with mac from now on: the
// interface's address changed (a bond failed over to another port, an
// operator ran "ip link set dev eth0 address ..."). When mac differs from
// the address in use, every owned address is announced again with it (RFC
// 4861 section 7.2.6: "a node may be able to determine that its link-layer
// address has changed ... and may wish to inform its neighbors of the new
// link-layer address quickly"). It returns an error wrapping ErrInterface
// if mac is not a 6-byte unicast address, and ErrClosed after Close.
func (r *Responder) SetHardwareAddr(mac net.HardwareAddr) error {
	if !isHostMAC(mac) {
		return fmt.Errorf("%w: hardware address %q", ErrInterface, mac.String())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	old := r.self.Load()
	if bytes.Equal(old.HardwareAddr, mac) {
		return nil
	}
	s := *old
	s.HardwareAddr = bytes.Clone(mac)
	r.self.Store(&s)
	for _, st := range r.addrs {
		r.stopAnnouncer(st)
		r.startAnnouncer(st)
	}
	r.log.Info("interface hardware address changed: answering with the new one, owned addresses announced again",
		"from", old.HardwareAddr.String(), "to", mac.String(), "addrs", len(r.addrs))
	return nil
}

// SetSourceAddr makes the Responder send advertisements from addr from
// now on: the interface's link-local address changed (with
// addr_gen_mode eui64 it follows the hardware address). It returns an
// error wrapping ErrInvalidAddr if addr is not an IPv6 unicast address,
// and ErrClosed after Close.
func (r *Responder) SetSourceAddr(addr netip.Addr) error {
	if err := checkSource(addr); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	s := *r.self.Load()
	s.Addr = addr
	r.self.Store(&s)
	return nil
}

// Add makes the Responder answer Neighbor Solicitations for addr, joins
// its solicited-node multicast group (Listen only) and announces it in the
// background (Config.AnnounceCount unsolicited advertisements,
// Config.AnnounceInterval apart, the first at once); Add does not wait for
// them. Adding an address already owned does nothing. Add returns an
// error wrapping ErrInvalidAddr for an address a host cannot publish (see
// ErrInvalidAddr), the error of joining the group (the address is then
// not added), and ErrClosed after Close.
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
	if err := r.groups.join(addr); err != nil {
		return err
	}
	st := &addrState{addr: addr}
	r.addrs[addr] = st
	old := r.owned.Load()
	set, i := old.set.with(addr)
	r.owned.Store(&table{set: set, states: slices.Insert(slices.Clone(old.states), i, st)})
	r.startAnnouncer(st)
	r.log.Debug("NDP address added", "addr", addr)
	return nil
}

// Remove stops answering for addr, stops its announcements and leaves its
// solicited-node group unless another owned address needs it; when Remove
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
	if err := r.groups.leave(addr); err != nil {
		r.log.Warn("NDP address removed, but its multicast group was not left", "addr", addr, "err", err)
	}
	r.log.Debug("NDP address removed", "addr", addr)
}

// AddRange makes the Responder answer for every address of the prefix p
// (an IPv6 prefix of MinRangeBits or longer, a /64 say) but the addresses
// in exclude, which other hosts on the segment use, and but the range's
// Subnet-Router anycast address (the all-zeros one, RFC 4291 section
// 2.6.1: "Packets sent to the Subnet-Router anycast address will be
// delivered to one router on the subnet") when p is shorter than /127.
// With a Responder from Listen, it joins the solicited-node groups of the
// range's addresses for a range of GroupRangeBits or longer, and else has
// the interface receive all multicast while the range is owned (see
// GroupRangeBits for the cost). Nothing is announced (unsolicited
// advertisements for a whole range would flood the segment); neighbours
// learn the addresses as they ask. Another host's solicitation from an
// address of the range, or advertisement for one, is counted and logged
// as a conflict, as for an added address. Adding a range owned already
// adds its exclusions. It returns an error wrapping ErrInvalidAddr for a
// prefix that is not a valid IPv6 prefix of MinRangeBits or longer, or
// whose addresses a host cannot publish, the error of joining a group or
// of asking for all multicast (the range is then not added), and
// ErrClosed after Close.
func (r *Responder) AddRange(p netip.Prefix, exclude []netip.Addr) error {
	if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() < MinRangeBits {
		return fmt.Errorf("%w: range %v: give an IPv6 prefix of /%d or longer", ErrInvalidAddr, p, MinRangeBits)
	}
	p = p.Masked()
	if why := checkAddr(p.Addr()); why != nil {
		return fmt.Errorf("%w: range %v: %v", ErrInvalidAddr, p, why)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if !r.ranges[p] && p.Bits() < GroupRangeBits {
		if err := r.groups.joinAll(); err != nil {
			return err
		}
		r.ranges[p] = true
	}
	if !r.ranges[p] {
		var joined []netip.Addr
		for a := range rangeAddrs(p) {
			if err := r.groups.join(a); err != nil {
				for _, j := range joined {
					r.groups.leave(j)
				}
				return err
			}
			joined = append(joined, a)
		}
		r.ranges[p] = true
	}
	old := r.owned.Load()
	r.owned.Store(&table{set: old.set.withRange(p, exclude), states: old.states})
	r.log.Debug("NDP range added", "range", p, "excluded", len(exclude))
	return nil
}

// rangeAddrs yields the addresses of p that a range answers for, but for
// exclusions: all of them but the Subnet-Router anycast address of a
// prefix shorter than /127. p is masked.
func rangeAddrs(p netip.Prefix) func(func(netip.Addr) bool) {
	return func(yield func(netip.Addr) bool) {
		a := p.Addr()
		if p.Bits() <= 126 {
			a = a.Next()
		}
		for ; a.IsValid() && p.Contains(a); a = a.Next() {
			if !yield(a) {
				return
			}
		}
	}
}

// RemoveRange stops answering for the range p (its exclusions go too) and
// leaves the groups it joined. Removing a range not owned does nothing.
func (r *Responder) RemoveRange(p netip.Prefix) {
	if !p.IsValid() {
		return
	}
	p = p.Masked()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ranges[p] {
		return
	}
	delete(r.ranges, p)
	old := r.owned.Load()
	r.owned.Store(&table{set: old.set.withoutRange(p), states: old.states})
	if p.Bits() < GroupRangeBits {
		if err := r.groups.leaveAll(); err != nil {
			r.log.Warn("NDP range removed, but the interface still receives all multicast", "range", p, "err", err)
		}
	} else {
		for a := range rangeAddrs(p) {
			r.groups.leave(a)
		}
	}
	r.log.Debug("NDP range removed", "range", p)
}

// Ranges returns the owned ranges in ascending order.
func (r *Responder) Ranges() []netip.Prefix { return r.owned.Load().set.Ranges() }

// Announce announces an owned address again, as Add does, replacing
// announcements of addr still in progress: call it when the interface's
// link comes back up, so that neighbours whose entries went stale while
// it was down learn the address anew (the vif daemon does so for the ARP
// proxy, from its link events). It does nothing if Config.AnnounceCount is negative. It returns
// an error wrapping ErrNotOwned if addr was not added, and ErrClosed after
// Close.
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

// Addrs returns the owned addresses in ascending order (ranges are not
// expanded).
func (r *Responder) Addrs() []netip.Addr { return r.owned.Load().set.Addrs() }

// Stats returns a snapshot of the Responder's counters.
func (r *Responder) Stats() Stats {
	if pc, ok := r.conn.(*packet.Conn); ok {
		// The kernel resets its counters when they are read: add them up.
		if st, err := pc.Stats(); err == nil {
			r.stats.socketDrops.Add(uint64(st.Drops))
		}
	}
	s := r.stats.snapshot()
	r.mu.Lock()
	s.Groups = r.groups.groups()
	s.AllMulticast = r.groups.allMulticast()
	r.mu.Unlock()
	return s
}

// Close stops the Responder: it stops announcements, closes the
// connection and the group sockets (leaving the groups) and waits for
// every goroutine of the Responder to exit. The first call returns the
// error from closing the connection; later calls do nothing and return
// nil.
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
		r.mu.Lock()
		gerr := r.groups.close()
		r.mu.Unlock()
		err = errors.Join(err, gerr)
		r.log.Info("NDP responder stopped")
	})
	return err
}
