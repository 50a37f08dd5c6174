package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vif-project/vif/arpproxy"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/ndpproxy"
	"github.com/vif-project/vif/vif"
)

// Errors of the daemon's operations.
var (
	// ErrUnknown is returned for a vif name the daemon does not have.
	ErrUnknown = errors.New("no such vif")
	// ErrTaken is returned when a vif of that name already exists.
	ErrTaken = errors.New("a vif of that name already exists")
	// ErrOwned is returned for an address or range another vif has.
	ErrOwned = errors.New("owned by another vif")
)

// ownedError says that what belongs to the vif owner (ErrOwned).
type ownedError struct{ what, owner string }

func (e *ownedError) Error() string        { return e.what + " already belongs to " + e.owner }
func (e *ownedError) Is(target error) bool { return target == ErrOwned }

// Refused reports whether err refuses a request as bad input, such as an
// address another host or vif has, or a peer the vif library refuses,
// rather than failing on the host: the command can say what to fix.
func Refused(err error) bool {
	for _, e := range []error{ErrBadRequest, ErrUnknown, ErrTaken, ErrOwned, ErrMTU, arpproxy.ErrInUse, arpproxy.ErrInterface, ndpproxy.ErrInUse, ndpproxy.ErrInterface,
		vif.ErrNoAddress, vif.ErrBadAddress, vif.ErrBadProtocol, vif.ErrProtocolFamily, vif.ErrFamily, vif.ErrNoLocal, vif.ErrBadName, vif.ErrExists,
		vif.ErrNoSlave, vif.ErrBadMTU, vif.ErrBadRange, vif.ErrBadPeer, vif.ErrNoTunnel, vif.ErrNoPeer, vif.ErrBadUnderlay} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Daemon owns the vifs of one network namespace. Its methods are safe for
// concurrent use.
type Daemon struct {
	log *slog.Logger

	applyMu   sync.Mutex // one Apply at a time
	mu        sync.Mutex
	vifs      map[string]*entry // by the vif's name, as the kernel has it now (renamedLocked)
	arps      map[int]*arpEntry // by the slave's interface index
	pending   map[string]owned  // vifs being brought up: their addresses
	changed   chan struct{}     // receives when a vif goes
	closed    bool
	slaves    slaveWatch // removes the vifs of deleted slaves
	drift     driftWatch // follows addresses and routes removed from vifs
	driftDone chan struct{}
	// localPending is set while a look at the host's addresses for the
	// tunnels' local addresses is scheduled (local.go).
	localPending atomic.Bool
	// captures counts the capture streams being served (capture.go).
	captures atomic.Int32

	// What the daemon asks of the host: the vif library and the ARP
	// proxy; tests replace them with doubles that need no root.
	resolve   func(vif.LinkConfig) (vif.LinkConfig, error)
	up        func(*vif.LinkConfig) (link, error)
	listenARP func(slave string, log *slog.Logger) (responder, error)
	listenNDP func(slave string, log *slog.Logger) (ndpResponder, error)
	// Interfaces are known by index, which a rename keeps; names are
	// looked up when needed. ifNames returns every interface's name by
	// index (one dump); ifIndex one interface's index, 0 if there is none.
	ifNames func() map[int]string
	ifIndex func(name string) int
	// ifState returns whether interface index has a working link, and
	// its hardware address.
	ifState func(index int) (running bool, mac net.HardwareAddr)
	// ifMTU returns interface index's MTU, 0 if there is none.
	ifMTU func(index int) int
	// warnings returns what in the host keeps a vif from working.
	warnings func(vif.LinkConfig) []string
	// hostAddrs returns the host's IPv4 and IPv6 addresses by interface index, in
	// the kernel's order (primary first); linkRoutes the main table's
	// IPv4 and IPv6 routes by outgoing interface index. One dump each.
	hostAddrs  func() map[int][]netip.Prefix
	linkRoutes func() map[int][]netip.Prefix
	// neighbours returns the IPv6 addresses in interface index's
	// neighbour table (range6.go); nil: none.
	neighbours func(index int) []netip.Addr
}

// link is a running vif: a *vif.Interface.
type link interface {
	Addrs() []netip.Prefix
	Link() vif.LinkConfig
	Underlay() vif.UnderlayInfo
	Stats() vif.Stats
	XDPStats() (vif.XDPStats, bool)
	MTU() int
	SetAddrs([]netip.Prefix) error
	Local() netip.Addr
	SetLocal(netip.Addr) error
	Peers() []vif.PeerStats
	SetPeer(vif.Peer) error
	RemovePeer(netip.Addr) error
	AddAddr(netip.Prefix) error
	RemoveAddr(netip.Prefix) error
	AddRoute(netip.Prefix) error
	RemoveRoute(netip.Prefix) error
	RestoreRoutes() error
	SetMTU(int) error
	Done() <-chan struct{}
	Err() error
	Close() error
}

// responder is the ARP proxy of a slave: an *arpproxy.Responder.
type responder interface {
	vif.Publisher
	Probe(ctx context.Context, addrs []netip.Addr, wait time.Duration) error
	ProbeRange(ctx context.Context, p netip.Prefix, wait time.Duration) ([]netip.Addr, error)
	HardwareAddr() net.HardwareAddr
	SetHardwareAddr(net.HardwareAddr) error
	Announce(netip.Addr) error
	Addrs() []netip.Addr
	Stats() arpproxy.Stats
	Close() error
}

// ndpResponder is the NDP proxy of a slave: an *ndpproxy.Responder.
type ndpResponder interface {
	vif.Publisher
	Probe(ctx context.Context, addrs []netip.Addr, wait time.Duration) error
	ProbeAll(ctx context.Context, addrs []netip.Addr, wait time.Duration) ([]netip.Addr, error)
	ProbeRange(ctx context.Context, p netip.Prefix, wait time.Duration) ([]netip.Addr, error)
	HardwareAddr() net.HardwareAddr
	SetHardwareAddr(net.HardwareAddr) error
	Announce(netip.Addr) error
	Addrs() []netip.Addr
	Stats() ndpproxy.Stats
	Close() error
}

type entry struct {
	ifc  link
	name string // the key in Daemon.vifs
	// What other tools removed of what the vif installed (drift.go);
	// guarded by Daemon.mu.
	missingAddrs, missingRoutes map[netip.Prefix]bool
	addrs                       []netip.Prefix // as it came up
	index                       int            // the vif's interface index
	slaveIndex                  int            // 0 without a slave in use
	// localGiven is set when the operator chose the local address
	// (--local): it is never replaced by another one (local.go).
	localGiven bool
	// What the operator asked for besides: a slave by name (not the
	// default route's), an MTU (0: the default), no probe (Spec).
	slaveGiven bool
	mtu        int // guarded by Daemon.mu
	force      bool
	// outerFragments allows an MTU larger than the slave carries.
	outerFragments bool      // guarded by Daemon.mu
	arp            *arpEntry // nil without an ARP proxy
	gone           chan struct{}
	// down: the vif's device was last seen set down (slaves.go);
	// guarded by Daemon.mu.
	down bool
}

// arpEntry is what publishes the addresses of the vifs of one slave: its
// ARP proxy, and its NDP proxy, opened for the first IPv6 address. As a
// vif.Publisher it hands each address to the proxy of its family.
type arpEntry struct {
	slave   int // interface index
	r       responder
	refs    int
	running bool // the slave's link, as last seen; guarded by Daemon.mu

	ndpMu   sync.Mutex
	ndp     ndpResponder                 // nil until an IPv6 address is published
	openNDP func() (ndpResponder, error) // opens it on the slave
}

// ndpProxy returns the slave's NDP proxy, opening it if need be.
func (ae *arpEntry) ndpProxy() (ndpResponder, error) {
	ae.ndpMu.Lock()
	defer ae.ndpMu.Unlock()
	if ae.ndp == nil {
		n, err := ae.openNDP()
		if err != nil {
			return nil, err
		}
		ae.ndp = n
	}
	return ae.ndp, nil
}

// ndpIfOpen returns the slave's NDP proxy if it is open, else nil.
func (ae *arpEntry) ndpIfOpen() ndpResponder {
	ae.ndpMu.Lock()
	defer ae.ndpMu.Unlock()
	return ae.ndp
}

// Add publishes a: through the ARP proxy if IPv4, the NDP proxy if IPv6.
func (ae *arpEntry) Add(a netip.Addr) error {
	if !a.Is6() || a.Is4In6() {
		return ae.r.Add(a)
	}
	n, err := ae.ndpProxy()
	if err != nil {
		return err
	}
	return n.Add(a)
}

// Remove stops publishing a.
func (ae *arpEntry) Remove(a netip.Addr) {
	if !a.Is6() || a.Is4In6() {
		ae.r.Remove(a)
	} else if n := ae.ndpIfOpen(); n != nil {
		n.Remove(a)
	}
}

// AddRange publishes the range p but exclude.
func (ae *arpEntry) AddRange(p netip.Prefix, exclude []netip.Addr) error {
	if p.Addr().Is4() {
		return ae.r.AddRange(p, exclude)
	}
	n, err := ae.ndpProxy()
	if err != nil {
		return err
	}
	return n.AddRange(p, exclude)
}

// RemoveRange stops publishing the range p.
func (ae *arpEntry) RemoveRange(p netip.Prefix) {
	if p.Addr().Is4() {
		ae.r.RemoveRange(p)
	} else if n := ae.ndpIfOpen(); n != nil {
		n.RemoveRange(p)
	}
}

// New returns a Daemon that logs to log (nil discards).
func New(log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Daemon{
		log:     log,
		vifs:    map[string]*entry{},
		arps:    map[int]*arpEntry{},
		pending: map[string]owned{},
		changed: make(chan struct{}, 1),
		resolve: vif.LinkConfig.Resolve,
		up: func(c *vif.LinkConfig) (link, error) {
			ifc, err := vif.Up(c)
			if err != nil {
				return nil, err // not a non-nil link holding a nil pointer
			}
			return ifc, nil
		},
		listenNDP: func(slave string, log *slog.Logger) (ndpResponder, error) {
			ifi, err := net.InterfaceByName(slave)
			if err != nil {
				return nil, fmt.Errorf("%w: %s", vif.ErrNoSlave, slave)
			}
			r, err := ndpproxy.Listen(ifi, &ndpproxy.Config{Logger: log})
			if errors.Is(err, ndpproxy.ErrInterface) {
				return nil, fmt.Errorf("%s cannot publish IPv6 addresses: %w (IPv6 must be on with a link-local address: sysctl net.ipv6.conf.%s.disable_ipv6=0; or pass --no-arp-proxy)", slave, err, slave)
			}
			if err != nil {
				return nil, fmt.Errorf("NDP proxy on %s: %w", slave, err)
			}
			return r, nil
		},
		listenARP: func(slave string, log *slog.Logger) (responder, error) {
			ifi, err := net.InterfaceByName(slave)
			if err != nil {
				return nil, fmt.Errorf("%w: %s", vif.ErrNoSlave, slave)
			}
			r, err := arpproxy.Listen(ifi, &arpproxy.Config{Logger: log})
			if errors.Is(err, arpproxy.ErrInterface) {
				return nil, fmt.Errorf("%s cannot publish addresses: %w (pick an Ethernet --slave, or pass --no-arp-proxy)", slave, err)
			}
			if err != nil {
				return nil, fmt.Errorf("ARP proxy on %s: %w", slave, err)
			}
			return r, nil
		},
		ifNames: func() map[int]string {
			ifs, _ := net.Interfaces()
			m := make(map[int]string, len(ifs))
			for _, ifi := range ifs {
				m[ifi.Index] = ifi.Name
			}
			return m
		},
		ifIndex: func(name string) int {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return 0
			}
			return ifi.Index
		},
		ifState: func(index int) (bool, net.HardwareAddr) {
			ifi, err := net.InterfaceByIndex(index)
			if err != nil {
				return false, nil
			}
			return ifi.Flags&net.FlagRunning != 0, ifi.HardwareAddr
		},
		ifMTU: func(index int) int {
			ifi, err := net.InterfaceByIndex(index)
			if err != nil {
				return 0
			}
			return ifi.MTU
		},
		warnings:   vif.HostWarnings,
		hostAddrs:  hostAddrs,
		linkRoutes: linkRoutes,
		neighbours: neighbours,
	}
}

// Changed returns a channel that receives after a vif has gone (down, or
// deleted from outside): the moment to ask Len whether any is left.
func (d *Daemon) Changed() <-chan struct{} { return d.changed }

// Len returns the number of vifs, counting those being brought up.
func (d *Daemon) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.vifs) + len(d.pending)
}

// Up creates a vif as s describes, its defaults resolved by the vif
// library, and returns its status once it serves: addresses installed,
// packet loop running, addresses published. The vifs of one slave share
// its ARP responder. Addresses to publish are first probed for on the
// slave's segment (RFC 5227 section 2.1.1) and refused if another host
// uses one, unless s.Force is set. A tunnel's MTU larger than its slave
// carries is refused unless s.OuterFragments is set (checkMTU).
func (d *Daemon) Up(s Spec) (VifStatus, error) {
	return d.bringUp(s, true)
}

// bringUp is Up; without probe, addresses are not probed for (they were
// the vif's a moment ago).
func (d *Daemon) bringUp(s Spec, probe bool) (VifStatus, error) {
	cfg, force := s.LinkConfig, s.Force || !probe
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return VifStatus{}, errors.New("the daemon is shutting down")
	}
	d.renamedLocked(d.ifNames())
	if _, pending := d.pending[cfg.Name]; d.vifs[cfg.Name] != nil || pending {
		d.mu.Unlock()
		return VifStatus{}, fmt.Errorf("%w: %s (remove it with \"vif down %s\")", ErrTaken, cfg.Name, cfg.Name)
	}
	// Addresses of vifs being brought up count too: two "vif up" at once
	// must not both take one.
	owners := make(map[string]owned, len(d.vifs)+len(d.pending))
	for name, e := range d.vifs {
		owners[name] = owned{e.ifc.Addrs(), e.ifc.Link().Ranges}
	}
	maps.Copy(owners, d.pending)
	mine := owned{cfg.Addrs, cfg.Ranges}
	for name, o := range owners {
		if what := o.clash(mine); what != "" {
			d.mu.Unlock()
			return VifStatus{}, &ownedError{what, name}
		}
		peers := cfg.Peers
		if cfg.Peer.IsValid() {
			peers = append(slices.Clone(peers), vif.Peer{Addr: cfg.Peer})
		}
		if err := o.takes(peers); err != nil {
			d.mu.Unlock()
			return VifStatus{}, fmt.Errorf("%w, which belongs to %s", err, name)
		}
	}
	d.pending[cfg.Name] = mine
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, cfg.Name)
		d.mu.Unlock()
	}()

	cfg.Logger = d.log
	cfg.Publisher = nil
	localGiven := cfg.Local.IsValid()
	c, err := d.resolve(cfg)
	if err != nil {
		return VifStatus{}, err
	}
	slaveIdx := d.watchSlave(c)
	if cfg.MTU != 0 && c.HasTunnel() {
		if err := d.checkMTU(c.Slave, slaveIdx, cfg.MTU, &c, s.OuterFragments); err != nil {
			return VifStatus{}, err
		}
	}
	d.watchDrift()
	var ae *arpEntry
	if c.Publish {
		if ae, err = d.acquireARP(slaveIdx, c.Slave); err != nil {
			return VifStatus{}, err
		}
		if !force {
			if err := d.probe(ae, &c); err != nil {
				d.releaseARP(ae)
				return VifStatus{}, err
			}
		}
		c.Publisher = ae
	}
	ifc, err := d.up(&c)
	if err != nil {
		if ae != nil {
			d.releaseARP(ae)
		}
		return VifStatus{}, err
	}
	e := &entry{ifc: ifc, name: c.Name, addrs: c.Addrs, index: d.ifIndex(c.Name), slaveIndex: slaveIdx,
		localGiven: localGiven, slaveGiven: cfg.Slave != "", mtu: cfg.MTU, force: s.Force, outerFragments: s.OuterFragments,
		arp: ae, gone: make(chan struct{})}
	d.mu.Lock()
	d.vifs[c.Name] = e
	d.mu.Unlock()
	go d.watch(e)
	if err := d.checkSlave(e); err != nil {
		return VifStatus{}, err
	}
	st := d.status(e, d.ifNames())
	st.Warnings = d.warnings(c)
	return st, nil
}

// owned is what a vif claims: addresses and ranges.
type owned struct {
	addrs  []netip.Prefix
	ranges []netip.Prefix
}

// clash names what of m o claims already ("address 192.0.2.1", "range
// 192.0.2.0/24"), or returns "".
func (o owned) clash(m owned) string {
	for _, b := range m.addrs {
		for _, a := range o.addrs {
			if a.Addr() == b.Addr() {
				return "address " + b.Addr().String()
			}
		}
		for _, r := range o.ranges {
			if r.Contains(b.Addr()) {
				return fmt.Sprintf("address %s (in range %s)", b.Addr(), r)
			}
		}
	}
	for _, q := range m.ranges {
		for _, a := range o.addrs {
			if q.Contains(a.Addr()) {
				return fmt.Sprintf("range %s (it holds %s)", q, a.Addr())
			}
		}
		for _, r := range o.ranges {
			if r.Overlaps(q) {
				return fmt.Sprintf("range %s (it overlaps %s)", q, r)
			}
		}
	}
	return ""
}

// takes returns an error if a peer's prefix overlaps a range of o (routed
// into a tunnel, a range's addresses would loop: a range is local), or a
// peer's address is one of o's (it would be reached through the vif).
func (o owned) takes(peers []vif.Peer) error {
	for _, p := range peers {
		for _, r := range o.ranges {
			if r.Contains(p.Addr) {
				return fmt.Errorf("%w: %s is in range %s", vif.ErrBadPeer, p.Addr, r)
			}
		}
		for _, a := range o.addrs {
			if a.Addr() == p.Addr {
				return fmt.Errorf("%w: %s is the address of a vif", vif.ErrBadPeer, p.Addr)
			}
		}
		for _, pfx := range p.Prefixes {
			for _, r := range o.ranges {
				if pfx.Bits() > 0 && pfx.Overlaps(r) {
					return fmt.Errorf("%w %s: prefix %s overlaps range %s", vif.ErrBadPeer, p.Addr, pfx.Masked(), r)
				}
			}
		}
	}
	return nil
}

// probe asks the slave's segment whether another host uses an address of
// c before c claims them: an address is refused, an address of a range is
// excluded from it (c.Exclude). IPv4 ranges of more than 1024 addresses
// are not probed: that would flood the segment; IPv6 ranges are probed as
// probeRange6 says.
func (d *Daemon) probe(ae *arpEntry, c *vif.LinkConfig) error {
	r := ae.r
	for _, p := range c.Ranges {
		if p.Addr().Is6() {
			if err := d.probeRange6(ae, c, p); err != nil {
				return err
			}
			continue
		}
		if p.Bits() < 22 {
			d.log.Warn("range too large to probe before claiming it: an address another host uses is answered for too, until that host's ARP shows (logged as a conflict); exclude such addresses with the library's Exclude", "range", p)
			continue
		}
		used, err := r.ProbeRange(context.Background(), p, arpproxy.DefaultProbeWait)
		if err != nil {
			return probeError(err, c.Slave)
		}
		usable := 1 << (32 - p.Bits())
		if p.Bits() <= 30 {
			usable -= 2
		}
		if len(used) >= usable {
			return fmt.Errorf("every address of range %s is in use on %s's segment: nothing is left to claim (see \"arping -D -I %s ADDR\"; to take it anyway: pass --force)", p, c.Slave, c.Slave)
		}
		if len(used) > 0 {
			d.log.Warn("addresses of the range in use by other hosts: excluded", "range", p, "addrs", used)
			c.Exclude = append(c.Exclude, used...)
		}
	}
	var v4, v6 []netip.Addr
	for _, p := range c.Addrs {
		if p.Addr().Is4() {
			v4 = append(v4, p.Addr())
		} else {
			v6 = append(v6, p.Addr())
		}
	}
	if len(v4) > 0 {
		err := r.Probe(context.Background(), v4, arpproxy.DefaultProbeWait)
		if ce, ok := errors.AsType[*arpproxy.ConflictError](err); ok {
			return fmt.Errorf("address %s is in use on %s's segment by %s (see \"arping -D -I %s %s\"; to take it anyway: pass --force)",
				ce.Addr, c.Slave, ce.HardwareAddr, c.Slave, ce.Addr)
		}
		if err != nil {
			return probeError(err, c.Slave)
		}
	}
	if len(v6) > 0 {
		// Duplicate Address Detection (RFC 4862 section 5.4).
		n, err := ae.ndpProxy()
		if err != nil {
			return err
		}
		err = n.Probe(context.Background(), v6, arpproxy.DefaultProbeWait)
		if ce, ok := errors.AsType[*ndpproxy.ConflictError](err); ok {
			return fmt.Errorf("address %s is in use on %s's segment by %s (see \"ndisc6 %s %s\"; to take it anyway: pass --force): %w",
				ce.Addr, c.Slave, ce.HardwareAddr, ce.Addr, c.Slave, ndpproxy.ErrInUse)
		}
		if err != nil {
			return probeError(err, c.Slave)
		}
	}
	return nil
}

// probeError says what a failed probe on slave means, and how to go on.
func probeError(err error, slave string) error {
	if errors.Is(err, syscall.ENETDOWN) {
		return fmt.Errorf("cannot ask %s's segment whether the addresses are free: its link is down (ip link set %s up), or pass --force", slave, slave)
	}
	if err != nil {
		return fmt.Errorf("probing %s's segment for the addresses: %w (to skip the probe: pass --force)", slave, err)
	}
	return nil
}

// watch removes a vif whose interface went away from outside (for
// example "ip link del vif0"), or whose loop failed.
func (d *Daemon) watch(e *entry) {
	select {
	case <-e.ifc.Done():
		if err := e.ifc.Err(); err != nil {
			d.log.Error("the packet loop failed; removing the vif", "vif", e.name, "err", err)
		} else {
			d.log.Warn("interface went away from outside; removing it", "vif", e.name)
		}
		d.remove(e)
	case <-e.gone:
	}
}

// Down removes the vif the kernel now calls name, and everything it
// installed.
func (d *Daemon) Down(name string) error {
	e, err := d.find(name)
	if err != nil {
		return err
	}
	return d.remove(e)
}

// remove removes the vif of e, unless it is already gone.
func (d *Daemon) remove(e *entry) error {
	d.mu.Lock()
	if d.vifs[e.name] != e {
		d.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknown, e.name)
	}
	delete(d.vifs, e.name)
	d.mu.Unlock()
	close(e.gone)
	err := e.ifc.Close()
	if e.arp != nil {
		d.releaseARP(e.arp)
	}
	d.log.Info("vif down", "vif", e.name)
	select {
	case d.changed <- struct{}{}:
	default:
	}
	return err
}

// find is lookup for an operation on the vif name: an error wrapping
// ErrUnknown if there is none.
func (d *Daemon) find(name string) (*entry, error) {
	if e := d.lookup(name, d.ifNames()); e != nil {
		return e, nil
	}
	return nil, fmt.Errorf("%w: %s (see \"vif show\")", ErrUnknown, name)
}

// lookup returns the vif the kernel now calls name, after following
// renames (names is ifNames' answer); nil if there is none. A vif renamed
// from outside is not found by its old name, which may be another's now.
func (d *Daemon) lookup(name string, names map[int]string) *entry {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.renamedLocked(names)
	return d.vifs[name]
}

// renamedLocked re-keys the vifs renamed from outside ("ip link set vif0
// name x") under their new names, swaps included. A vif whose interface
// is gone keeps its key unless another vif has taken that name; then it
// waits for removal under a key no interface can have. d.mu is held.
func (d *Daemon) renamedLocked(names map[int]string) {
	moved := false
	for key, e := range d.vifs {
		if n := names[e.index]; n != "" && n != key {
			moved = true
		}
	}
	if !moved {
		return
	}
	vifs := make(map[string]*entry, len(d.vifs))
	var gone []*entry
	for key, e := range d.vifs {
		n := names[e.index]
		if n == "" {
			gone = append(gone, e)
			continue
		}
		if n != key {
			d.log.Info("vif renamed from outside; following it", "from", key, "to", n)
		}
		e.name = n
		vifs[n] = e
	}
	for _, e := range gone {
		if vifs[e.name] != nil {
			e.name = "(gone) " + e.name
		}
		vifs[e.name] = e
	}
	d.vifs = vifs
}

// Show returns the status of the vif name, or of every vif when name is
// empty, sorted by name.
func (d *Daemon) Show(name string) ([]VifStatus, error) {
	return d.show(name, false)
}

// ShowConfig is Show with each vif's Spec in VifStatus.Config.
func (d *Daemon) ShowConfig(name string) ([]VifStatus, error) {
	return d.show(name, true)
}

func (d *Daemon) show(name string, config bool) ([]VifStatus, error) {
	names := d.ifNames()
	var es []*entry
	if name != "" {
		e := d.lookup(name, names)
		if e == nil {
			return nil, fmt.Errorf("%w: %s (see \"vif show\")", ErrUnknown, name)
		}
		es = append(es, e)
	} else {
		d.mu.Lock()
		d.renamedLocked(names)
		for _, e := range d.vifs {
			es = append(es, e)
		}
		d.mu.Unlock()
	}
	out := make([]VifStatus, 0, len(es))
	for _, e := range es {
		st := d.status(e, names)
		if config {
			s := d.spec(e, names)
			st.Config = &s
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b VifStatus) int { return compareNames(a.Name, b.Name) })
	return out, nil
}

// Close removes every vif.
func (d *Daemon) Close() error {
	d.stopSlaveWatch()
	d.mu.Lock()
	if d.driftDone != nil {
		close(d.driftDone)
		d.driftDone = nil
	}
	d.mu.Unlock()
	d.mu.Lock()
	d.closed = true
	var es []*entry
	for _, e := range d.vifs {
		es = append(es, e)
	}
	d.mu.Unlock()
	var errs []error
	for _, e := range es {
		if err := d.remove(e); err != nil && !errors.Is(err, ErrUnknown) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// acquireARP returns the ARP responder of the slave with index idx (name
// is its name now), opening it for the slave's first vif. Responders are
// found by index: an interface that takes the name of a renamed one is
// another interface, on another segment.
func (d *Daemon) acquireARP(idx int, name string) (*arpEntry, error) {
	if idx == 0 {
		return nil, fmt.Errorf("%w: %s", vif.ErrNoSlave, name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ae := d.arps[idx]; ae != nil {
		ae.refs++
		return ae, nil
	}
	r, err := d.listenARP(name, d.log)
	if err != nil {
		return nil, err
	}
	running, _ := d.ifState(idx)
	ae := &arpEntry{slave: idx, r: r, refs: 1, running: running}
	ae.openNDP = func() (ndpResponder, error) {
		name := d.ifNames()[idx]
		if name == "" {
			return nil, fmt.Errorf("%w: index %d", vif.ErrNoSlave, idx)
		}
		return d.listenNDP(name, d.log)
	}
	d.arps[idx] = ae
	return ae, nil
}

func (d *Daemon) releaseARP(ae *arpEntry) {
	d.mu.Lock()
	ae.refs--
	last := ae.refs == 0
	if last {
		delete(d.arps, ae.slave)
	}
	d.mu.Unlock()
	if last {
		ae.r.Close()
		if n := ae.ndpIfOpen(); n != nil {
			n.Close()
		}
	}
}

// status reports e with the interface names the kernel has now (names is
// ifNames' answer).
func (d *Daemon) status(e *entry, names map[int]string) VifStatus {
	s := e.ifc.Stats()
	l := e.ifc.Link()
	if n := names[e.index]; n != "" {
		l.Name = n
	}
	if n := names[e.slaveIndex]; n != "" {
		l.Slave = n
	}
	d.mu.Lock()
	addrs, addrsGone := present(e.addrs, e.missingAddrs)
	routes, routesGone := present(installedRoutes(l), e.missingRoutes)
	d.mu.Unlock()
	l.Addrs, l.Routes = addrs, routes
	st := VifStatus{
		Name: l.Name, Addrs: l.Addrs, Slave: l.Slave, Local: l.Local, Forward: l.Forward,
		Ranges: l.Ranges, Exclude: l.Exclude,
		Protocol: l.Protocol, MTU: e.ifc.MTU(), Routes: l.Routes, ARPProxy: e.arp != nil,
		Underlay: e.ifc.Underlay(), Offload: l.Offload,
		LocalMissing: l.HasTunnel() && !e.ifc.Local().IsValid(),
		AddrsMissing: addrsGone, RoutesMissing: routesGone,
		Counters: Counters{
			LoopedPackets: s.Looped, LoopedBytes: s.LoopedBytes,
			EncapsulatedPackets: s.Encapsulated, EncapsulatedBytes: s.EncapsulatedBytes, FragmentedPackets: s.Fragmented,
			DecapsulatedPackets: s.Decapsulated, DecapsulatedBytes: s.DecapsulatedBytes,
			Dropped: s.Dropped(), Drops: s.Drops,
			ICMPSent: s.ICMPSent, ICMPLimited: s.ICMPLimited,
		},
	}
	if x, ok := e.ifc.XDPStats(); ok {
		st.XDP = &XDPCounters{RxXDP: x.RxXDP, TxXDP: x.TxXDP, RxRaw: x.RxRaw, TxRaw: x.TxRaw, Dropped: x.Dropped}
	}
	peers := e.ifc.Peers()
	for _, p := range peers {
		if len(peers) == 1 || len(p.Prefixes) == 1 && p.Prefixes[0].Bits() == 0 {
			st.Peer = p.Addr // the only one, or the peer of everything ("vif up --peer ADDR")
		}
		st.Peers = append(st.Peers, PeerStatus{
			Addr: p.Addr, Prefixes: p.Prefixes, PathMTU: p.PathMTU,
			EncapsulatedPackets: p.Encapsulated, EncapsulatedBytes: p.EncapsulatedBytes,
			DecapsulatedPackets: p.Decapsulated, DecapsulatedBytes: p.DecapsulatedBytes,
		})
	}
	if e.arp != nil {
		if n := e.arp.ndpIfOpen(); n != nil {
			s := n.Stats()
			st.NDP = &NDPCounters{
				Solicitations: s.Solicitations, Replies: s.Replies, DADAnswered: s.DADAnswered,
				Announcements: s.Announcements, NotOwned: s.NotOwned, Conflicts: s.Conflicts,
				RateLimited: s.RateLimited, Dropped: s.Dropped(), Drops: s.Drops,
				Groups: s.Groups, AllMulticast: s.AllMulticast,
			}
		}
		a := e.arp.r.Stats()
		st.ARP = &ARPCounters{
			Requests: a.Requests, Replies: a.Replies, ProbesAnswered: a.ProbesAnswered,
			Announcements: a.Announcements, NotOwned: a.NotOwned, Conflicts: a.Conflicts,
			RateLimited: a.RateLimited, SocketDrops: a.SocketDrops, Dropped: a.Dropped(), Drops: a.Drops,
		}
	}
	return st
}

// SetPeer adds the peer p to the vif name, or gives an existing peer p's
// prefixes; traffic to the other peers goes on undisturbed.
func (d *Daemon) SetPeer(name string, p vif.Peer) error {
	e, err := d.find(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	for name, o := range d.vifs {
		if o != e {
			if err := (owned{o.ifc.Addrs(), o.ifc.Link().Ranges}).takes([]vif.Peer{p}); err != nil {
				d.mu.Unlock()
				return fmt.Errorf("%w, which belongs to %s", err, name)
			}
		}
	}
	d.mu.Unlock()
	if err := e.ifc.SetPeer(p); err != nil {
		if errors.Is(err, vif.ErrNoTunnel) {
			return fmt.Errorf("%s has no tunnel: it came up without a peer or --local (vif down %s, and up again with --peer or --local)", name, name)
		}
		return err
	}
	d.log.Info("peer set", "vif", e.name, "peer", p.Addr, "prefixes", p.Prefixes)
	return nil
}

// ChangeAddr adds the address p to the vif name, or removes it: the
// addresses of other vifs are refused, and one to publish is probed for
// on the segment first (RFC 5227) unless force is set. Traffic to the
// vif's other addresses goes on.
func (d *Daemon) ChangeAddr(name string, p netip.Prefix, remove, force bool) error {
	e, err := d.find(name)
	if err != nil {
		return err
	}
	if remove {
		if err := e.ifc.RemoveAddr(p); err != nil {
			return err
		}
		d.mu.Lock()
		e.addrs = slices.DeleteFunc(slices.Clone(e.addrs), func(q netip.Prefix) bool { return q.Addr() == p.Addr() })
		d.mu.Unlock()
		d.log.Info("address removed", "vif", e.name, "addr", p)
		return nil
	}
	d.mu.Lock()
	for other, o := range d.vifs {
		if o == e {
			continue
		}
		if what := (owned{o.ifc.Addrs(), o.ifc.Link().Ranges}).clash(owned{addrs: []netip.Prefix{p}}); what != "" {
			d.mu.Unlock()
			return &ownedError{what, other}
		}
	}
	d.mu.Unlock()
	// The host's own address is refused before the segment is asked
	// (AddAddr refuses it too, after the probe would have gone out).
	names := d.ifNames()
	for idx, ps := range d.hostAddrs() {
		if idx != e.index && slices.ContainsFunc(ps, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
			return fmt.Errorf("%w: %s is already an address of %s on this host (pick another, or remove it there)", vif.ErrBadAddress, p.Addr(), names[idx])
		}
	}
	if e.arp != nil && !force && !slices.ContainsFunc(e.ifc.Addrs(), func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
		l := e.ifc.Link()
		l.Addrs, l.Ranges = []netip.Prefix{p}, nil
		if err := d.probe(e.arp, &l); err != nil {
			return err
		}
	}
	if err := e.ifc.AddAddr(p); err != nil {
		return err
	}
	d.mu.Lock()
	if !slices.ContainsFunc(e.addrs, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
		e.addrs = append(slices.Clone(e.addrs), p)
	}
	d.mu.Unlock()
	d.log.Info("address added", "vif", e.name, "addr", p)
	return nil
}

// ChangeRoute routes p into the vif name, or removes that route.
func (d *Daemon) ChangeRoute(name string, p netip.Prefix, remove bool) error {
	e, err := d.find(name)
	if err != nil {
		return err
	}
	if remove {
		err = e.ifc.RemoveRoute(p)
	} else {
		err = e.ifc.AddRoute(p)
	}
	if err != nil {
		return err
	}
	d.mu.Lock()
	delete(e.missingRoutes, p.Masked())
	d.mu.Unlock()
	d.log.Info("route changed", "vif", e.name, "route", p, "removed", remove)
	return nil
}

// SetMTU sets the MTU of the vif name. A tunnel's MTU larger than its
// slave carries is refused unless outerFragments is set (checkMTU).
func (d *Daemon) SetMTU(name string, mtu int, outerFragments bool) error {
	e, err := d.find(name)
	if err != nil {
		return err
	}
	if l := e.ifc.Link(); l.HasTunnel() {
		if err := d.checkMTU(l.Slave, e.slaveIndex, mtu, &l, outerFragments); err != nil {
			return err
		}
	}
	if err := e.ifc.SetMTU(mtu); err != nil {
		return err
	}
	d.mu.Lock()
	e.mtu, e.outerFragments = mtu, outerFragments
	d.mu.Unlock()
	d.log.Info("MTU set", "vif", e.name, "mtu", mtu)
	return nil
}

// RemovePeer removes the peer with address addr from the vif name.
func (d *Daemon) RemovePeer(name string, addr netip.Addr) error {
	e, err := d.find(name)
	if err != nil {
		return err
	}
	if err := e.ifc.RemovePeer(addr); err != nil {
		return err
	}
	d.log.Info("peer removed", "vif", e.name, "peer", addr)
	return nil
}

// ErrMTU is returned for a tunnel's MTU larger than its slave carries.
var ErrMTU = errors.New("MTU larger than the slave carries")

// checkMTU refuses the MTU mtu for the tunnel l over the slave name
// (index idx) if its packets, with the outer header (20 bytes over IPv4,
// 40 over IPv6), would not fit the slave's MTU: each would go in outer
// fragments (RFC 2003 section 5.1, RFC 2473 section 7), or be refused
// with DF set. allow accepts it, and so does the default MTU of a tunnel
// carrying IPv6 (at least 1280: vif.LinkConfig.DefaultMTU).
func (d *Daemon) checkMTU(name string, idx, mtu int, l *vif.LinkConfig, allow bool) error {
	m := d.ifMTU(idx)
	if allow || m == 0 || mtu <= l.DefaultMTU(m) {
		return nil
	}
	outer := outerLen(l.Local)
	return mtuError(fmt.Sprintf("MTU %d is more than %s carries inside a tunnel (%d: its MTU %d minus the %d-byte outer header), so larger packets would go in outer fragments; use an MTU of %d or less, or pass --outer-fragments if that is what you want",
		mtu, name, m-outer, m, outer, max(m-outer, l.DefaultMTU(m))))
}

// outerLen returns the length of the outer header of a tunnel whose
// local address is local: 20 bytes over IPv4, 40 over IPv6 (RFC 2473).
func outerLen(local netip.Addr) int {
	if local.Is6() {
		return ipip.IPv6HeaderLen
	}
	return ipip.IPv4MinLen
}

// mtuError is an ErrMTU that says what to do.
type mtuError string

func (e mtuError) Error() string        { return string(e) }
func (e mtuError) Is(target error) bool { return target == ErrMTU }

// compareNames orders interface names naturally: vif2 before vif10.
func compareNames(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
