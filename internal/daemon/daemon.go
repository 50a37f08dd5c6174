package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vif-project/vif/arpproxy"
	"github.com/vif-project/vif/vif"
)

// Errors of the daemon's operations.
var (
	// ErrUnknown is returned for a vif name the daemon does not have.
	ErrUnknown = errors.New("no such vif")
	// ErrTaken is returned when a vif of that name already exists.
	ErrTaken = errors.New("a vif of that name already exists")
)

// Daemon owns the vifs of one network namespace. Its methods are safe for
// concurrent use.
type Daemon struct {
	log *slog.Logger

	mu      sync.Mutex
	vifs    map[string]*entry
	arps    map[string]*arpEntry // by slave name
	pending map[string]bool      // names being brought up
	changed chan struct{}        // receives when a vif goes
	closed  bool
	slaves  slaveWatch // removes the vifs of deleted slaves

	// What the daemon asks of the host: the vif library and the ARP
	// proxy; tests replace them with doubles that need no root.
	resolve   func(vif.LinkConfig) (vif.LinkConfig, error)
	up        func(*vif.LinkConfig) (link, error)
	listenARP func(slave string, log *slog.Logger) (responder, error)
}

// link is a running vif: a *vif.Interface.
type link interface {
	Addrs() []netip.Prefix
	Link() vif.LinkConfig
	Stats() vif.Stats
	MTU() int
	Done() <-chan struct{}
	Err() error
	Close() error
}

// responder is the ARP proxy of a slave: an *arpproxy.Responder.
type responder interface {
	vif.Publisher
	Stats() arpproxy.Stats
	Close() error
}

type entry struct {
	ifc  link
	arp  *arpEntry // nil without an ARP proxy
	gone chan struct{}
}

type arpEntry struct {
	slave string
	r     responder
	refs  int
}

// New returns a Daemon that logs to log (nil discards).
func New(log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Daemon{
		log:     log,
		vifs:    map[string]*entry{},
		arps:    map[string]*arpEntry{},
		pending: map[string]bool{},
		changed: make(chan struct{}, 1),
		resolve: vif.LinkConfig.Resolve,
		up: func(c *vif.LinkConfig) (link, error) {
			ifc, err := vif.Up(c)
			if err != nil {
				return nil, err // not a non-nil link holding a nil pointer
			}
			return ifc, nil
		},
		listenARP: func(slave string, log *slog.Logger) (responder, error) {
			ifi, err := net.InterfaceByName(slave)
			if err != nil {
				return nil, fmt.Errorf("%w: %s", vif.ErrNoSlave, slave)
			}
			r, err := arpproxy.Listen(ifi, &arpproxy.Config{Logger: log})
			if err != nil {
				return nil, fmt.Errorf("ARP proxy on %s: %w", slave, err)
			}
			return r, nil
		},
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

// Up creates a vif as cfg describes, its defaults resolved by the vif
// library, and returns its status once it serves: addresses installed,
// packet loop running, addresses published. The vifs of one slave share
// its ARP responder.
func (d *Daemon) Up(cfg vif.LinkConfig) (VifStatus, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return VifStatus{}, errors.New("the daemon is shutting down")
	}
	if d.vifs[cfg.Name] != nil || d.pending[cfg.Name] {
		d.mu.Unlock()
		return VifStatus{}, fmt.Errorf("%w: %s (remove it with \"vif down %s\")", ErrTaken, cfg.Name, cfg.Name)
	}
	for name, e := range d.vifs {
		for _, a := range e.ifc.Addrs() {
			for _, b := range cfg.Addrs {
				if a.Addr() == b.Addr() {
					d.mu.Unlock()
					return VifStatus{}, fmt.Errorf("address %s already belongs to %s", b.Addr(), name)
				}
			}
		}
	}
	d.pending[cfg.Name] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, cfg.Name)
		d.mu.Unlock()
	}()

	cfg.Logger = d.log
	cfg.Publisher = nil
	c, err := d.resolve(cfg)
	if err != nil {
		return VifStatus{}, err
	}
	slaveIdx := d.watchSlave(c)
	var ae *arpEntry
	if c.Publish {
		if ae, err = d.acquireARP(c.Slave); err != nil {
			return VifStatus{}, err
		}
		c.Publisher = ae.r
	}
	ifc, err := d.up(&c)
	if err != nil {
		if ae != nil {
			d.releaseARP(ae)
		}
		return VifStatus{}, err
	}
	e := &entry{ifc: ifc, arp: ae, gone: make(chan struct{})}
	d.mu.Lock()
	d.vifs[c.Name] = e
	d.mu.Unlock()
	go d.watch(c.Name, e)
	if err := d.recordSlave(c.Name, c.Slave, slaveIdx); err != nil {
		return VifStatus{}, err
	}
	return d.status(e), nil
}

// watch removes a vif whose interface went away from outside (for
// example "ip link del vif0").
func (d *Daemon) watch(name string, e *entry) {
	select {
	case <-e.ifc.Done():
		d.mu.Lock()
		still := d.vifs[name] == e
		d.mu.Unlock()
		if !still {
			return
		}
		if err := e.ifc.Err(); err != nil {
			d.log.Error("the packet loop failed; removing the vif", "vif", name, "err", err)
		} else {
			d.log.Warn("interface went away from outside; removing it", "vif", name)
		}
		d.Down(name)
	case <-e.gone:
	}
}

// Down removes the vif name and everything it installed.
func (d *Daemon) Down(name string) error {
	d.mu.Lock()
	e := d.vifs[name]
	if e == nil {
		d.mu.Unlock()
		return fmt.Errorf("%w: %s (see \"vif show\")", ErrUnknown, name)
	}
	delete(d.vifs, name)
	d.mu.Unlock()
	close(e.gone)
	err := e.ifc.Close()
	if e.arp != nil {
		d.releaseARP(e.arp)
	}
	d.log.Info("vif down", "vif", name)
	select {
	case d.changed <- struct{}{}:
	default:
	}
	return err
}

// Show returns the status of the vif name, or of every vif when name is
// empty, sorted by name.
func (d *Daemon) Show(name string) ([]VifStatus, error) {
	d.mu.Lock()
	var es []*entry
	if name != "" {
		e := d.vifs[name]
		if e == nil {
			d.mu.Unlock()
			return nil, fmt.Errorf("%w: %s (see \"vif show\")", ErrUnknown, name)
		}
		es = append(es, e)
	} else {
		for _, e := range d.vifs {
			es = append(es, e)
		}
	}
	d.mu.Unlock()
	out := make([]VifStatus, 0, len(es))
	for _, e := range es {
		out = append(out, d.status(e))
	}
	slices.SortFunc(out, func(a, b VifStatus) int { return compareNames(a.Name, b.Name) })
	return out, nil
}

// Close removes every vif.
func (d *Daemon) Close() error {
	d.stopSlaveWatch()
	d.mu.Lock()
	d.closed = true
	var names []string
	for n := range d.vifs {
		names = append(names, n)
	}
	d.mu.Unlock()
	var errs []error
	for _, n := range names {
		if err := d.Down(n); err != nil && !errors.Is(err, ErrUnknown) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Daemon) acquireARP(slave string) (*arpEntry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ae := d.arps[slave]; ae != nil {
		ae.refs++
		return ae, nil
	}
	r, err := d.listenARP(slave, d.log.With("arp", slave))
	if err != nil {
		return nil, err
	}
	ae := &arpEntry{slave: slave, r: r, refs: 1}
	d.arps[slave] = ae
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
	}
}

func (d *Daemon) status(e *entry) VifStatus {
	s := e.ifc.Stats()
	l := e.ifc.Link()
	st := VifStatus{
		Name: l.Name, Addrs: l.Addrs, Slave: l.Slave, Local: l.Local, Peer: l.Peer,
		Protocol: l.Protocol, MTU: e.ifc.MTU(), Routes: l.Routes, ARPProxy: e.arp != nil,
		Counters: Counters{
			LoopedPackets: s.Looped, LoopedBytes: s.LoopedBytes,
			EncapsulatedPackets: s.Encapsulated, EncapsulatedBytes: s.EncapsulatedBytes,
			DecapsulatedPackets: s.Decapsulated, DecapsulatedBytes: s.DecapsulatedBytes,
			Dropped: s.Dropped(), Drops: s.Drops,
			ICMPSent: s.ICMPSent, ICMPLimited: s.ICMPLimited,
		},
	}
	if st.Routes == nil {
		st.Routes = []netip.Prefix{}
	}
	if e.arp != nil {
		a := e.arp.r.Stats()
		st.ARP = &ARPCounters{
			Requests: a.Requests, Replies: a.Replies, ProbesAnswered: a.ProbesAnswered,
			Announcements: a.Announcements, NotOwned: a.NotOwned, Conflicts: a.Conflicts,
			RateLimited: a.RateLimited, SocketDrops: a.SocketDrops, Dropped: a.Dropped(), Drops: a.Drops,
		}
	}
	return st
}

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
