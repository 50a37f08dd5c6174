package vif

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gaissmai/bart"
	"github.com/vif-project/vif/ipip"
	"golang.zx2c4.com/wireguard/tun"
)

// Headroom is the number of bytes the packet loop leaves in front of every
// packet it reads, so that the outer header (20 bytes over IPv4, 40 over
// IPv6) and the TUN's virtio header (10 bytes) are written in place.
const Headroom = 64

// MinMTU and MaxMTU bound a vif's MTU: the IPv4 minimum (RFC 791) and the
// largest inner packet that still fits in an outer IPv4 packet.
const (
	MinMTU = 68
	MaxMTU = 65535 - 20
)

// maxPacket is the largest packet a buffer holds after its headroom. TUN
// writes coalesce TCP segments (GRO) into the first buffer of a flow, so
// every buffer is sized for the largest IPv4 packet.
const maxPacket = ipip.MaxPacketLen

// An Underlay carries encapsulated packets to and from the tunnel peer. It
// mirrors tun.Device's batch interface. In production it is a raw IP socket
// on the slave interface (ListenUnderlay); tests use viftest.Underlay.
//
// Read and Write are called from one goroutine each and may run
// concurrently with each other; Close is called once, concurrently with
// both, and must make them return an error that wraps net.ErrClosed or
// os.ErrClosed.
type Underlay interface {
	// Read reads up to len(bufs) packets, outer header included, into
	// bufs[i][offset:] and sets sizes[i]. The outer header is IPv4, or
	// IPv6 for a tunnel whose local address is IPv6 (the loop leaves
	// Headroom, at least 40 bytes, in front). It blocks until at least
	// one packet is available and returns the number read.
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	// Write sends the complete IP packets bufs[i][offset:], any number
	// of them, and returns how many were sent. When it fails on one packet
	// it returns the count sent before it and the error; the loop drops
	// that packet and calls Write again with the rest.
	Write(bufs [][]byte, offset int) (int, error)
	// BatchSize is the largest number of packets Read returns in one
	// call; the loop allocates that many receive buffers.
	BatchSize() int
	// Close unblocks Read and Write and releases the underlay.
	Close() error
}

// An Interface is a running vif: a packet loop between a TUN device and an
// underlay. Its methods are safe for concurrent use.
type Interface struct {
	dev      tun.Device
	under    Underlay // nil without a peer
	underlay UnderlayInfo
	log      *slog.Logger

	link  LinkConfig // as resolved: what Link returns, but Peer and Peers
	proto uint8
	// under6 says the underlay is IPv6 (RFC 2473): the local address
	// and every peer's are, and the outer header is 40 bytes long.
	under6 bool
	addrs  atomic.Pointer[addrSet]

	// peers is read by the loop per batch; SetPeer and RemovePeer
	// replace it under peersMu, and tell peerRoutes (set by Up) which
	// prefixes come and go. forward is Config.Forward, or nil.
	peers      atomic.Pointer[peerTable]
	peersMu    sync.Mutex
	peerRoutes func(add, del []netip.Prefix) error
	forward    *bart.Lite

	// routes are LinkConfig.Routes as they change (AddRoute); changeMu
	// serializes the changes of a running interface, host (set by Up)
	// makes them on the host, pub publishes the addresses (with Publish).
	routes   atomic.Pointer[[]netip.Prefix]
	changeMu sync.Mutex
	host     *hostOps
	pub      Publisher

	// local is the outer source in use, the zero Addr while the tunnel
	// is paused (SetLocal). rebind binds the underlay and its helpers
	// to a new one; bound is the last address they were bound to.
	local   atomic.Pointer[netip.Addr]
	localMu sync.Mutex // serializes SetLocal
	rebind  []func(netip.Addr) error
	bound   netip.Addr

	tx txCounters
	rx rxCounters

	// off is the in-kernel fast path (LinkConfig.Offload), nil without.
	off atomic.Pointer[offloadState]

	capt captures // the running captures (capture.go)

	// Path MTU soft state (RFC 2003 section 5.1): devMTU is the device's,
	// as it changes (followDevice); each peer has its own tunnel MTU (<=
	// devMTU).
	devMTU      atomic.Int32
	grow        atomic.Pointer[growReq] // SetMTU's request to the tx loop (growTxBuffers)
	pathMTU     func(peer netip.Addr) (int, error)
	pmtuLogged  atomic.Int64 // nanotime of the last log line about it
	pmtuChanges atomic.Uint64

	// ICMP errors sent back into the TUN, and outer fragments, by the tx
	// goroutine only.
	icmpLim  icmpLimiter
	icmpBufs [][]byte
	frags    fragPool

	wg       sync.WaitGroup
	done     chan struct{}
	followed chan struct{}         // closed when followDevice has returned
	failed   atomic.Pointer[error] // why the loop stopped by itself

	// The device as the kernel has it now: Up sets these to look it up
	// by interface index, which a rename keeps (tun.Device.MTU asks by
	// the name it first had); New leaves the device's own.
	deviceMTU func() (int, error)
	mtuHook   func()        // after an MTU change, before traffic resumes
	upHook    func()        // after the device came up again
	tunDrops  func() uint64 // the device's tx_dropped; nil if unknown
	closeOnce sync.Once
	stopOnce  sync.Once
	closers   []func() error // undone in reverse order by Close
	closeErr  error
}

// New starts the packet loop of an interface over dev and under and
// returns it. under may be nil when cfg has no Peer. The Interface takes
// ownership of dev and under: Close closes them.
//
// The loop runs one goroutine per direction. Reading from dev: packets for
// one of cfg.Addrs are written back into dev, others are encapsulated to
// cfg.Peer and written to under, or dropped when there is no peer. Reading
// from under: packets are decapsulated only when their outer source is
// cfg.Peer and their inner destination one of cfg.Addrs, then written into
// dev. Every dropped packet is counted by reason (Stats).
func New(dev tun.Device, under Underlay, cfg *Config) (*Interface, error) {
	i, err := newInterface(dev, under, cfg)
	if err != nil {
		return nil, err
	}
	i.start()
	return i, nil
}

// newInterface is New without starting the goroutines: Up completes the
// Interface first.
func newInterface(dev tun.Device, under Underlay, cfg *Config) (*Interface, error) {
	if cfg == nil {
		return nil, ErrNoAddress
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.HasTunnel() && under == nil {
		return nil, errors.New("vif: a peer needs an underlay")
	}
	set := newAddrSet(cfg.Addrs, cfg.Ranges, cfg.Exclude)
	proto := cfg.protocol()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	i := &Interface{
		dev:    dev,
		under:  under,
		log:    log,
		proto:  proto,
		under6: cfg.underlay6(),
		done:   make(chan struct{}),
	}
	i.deviceMTU = dev.MTU
	i.link.Config = *cfg
	i.link.Protocol = proto
	i.link.Peer, i.link.Peers = netip.Addr{}, nil // the table's
	i.link = i.link.clone()
	i.routes.Store(new([]netip.Prefix)) // Up sets LinkConfig.Routes
	i.addrs.Store(set)
	mtu := MaxMTU
	if m, err := dev.MTU(); err == nil && m >= MinMTU {
		mtu = m
	}
	i.devMTU.Store(int32(mtu))
	i.pathMTU = cfg.PathMTU
	tab := newPeerTable(cfg.peers(), mtu)
	i.peers.Store(tab)
	for _, p := range tab.list {
		i.probePathMTU(p) // the first packet to a peer meets the path's MTU
	}
	if len(cfg.Forward) > 0 {
		i.forward = new(bart.Lite)
		for _, p := range cfg.Forward {
			i.forward.Insert(p.Masked())
		}
	}
	i.icmpBufs = [][]byte{make([]byte, Headroom+max(ipip.ICMPMaxErrorLen, ipip.ICMPv6MaxErrorLen))}
	local := netip.Addr{}
	if cfg.HasTunnel() {
		local = cfg.Local
		if r, ok := under.(interface{ SetLocal(netip.Addr) error }); ok {
			i.rebind = append(i.rebind, r.SetLocal)
		}
	}
	i.local.Store(&local)
	i.bound = local
	return i, nil
}

// outer returns the length of the outer header: ipip.IPv4MinLen, or
// ipip.IPv6HeaderLen over an IPv6 underlay.
func (i *Interface) outer() int {
	if i.under6 {
		return ipip.IPv6HeaderLen
	}
	return ipip.IPv4MinLen
}

// start starts the packet loop and the device's follower.
func (i *Interface) start() {
	c := &i.link.Config
	enc := &ipip.Encapsulator{
		Protocol:   i.proto,
		Src:        c.Local,
		TTL:        c.TTL,
		InheritTTL: c.InheritTTL,
	}
	i.wg.Add(1)
	go i.txLoop(enc)
	if i.under != nil {
		i.wg.Add(1)
		go i.rxLoop()
	}
	go func() {
		i.wg.Wait()
		close(i.done)
	}()
	i.followed = make(chan struct{})
	if ev := i.dev.Events(); ev != nil {
		go i.followDevice(ev)
	} else {
		close(i.followed)
	}
}

// SetAddrs replaces the interface's own addresses in the packet loop (not
// on the device). It is safe to call while the loop runs; the loop sees
// either the old or the new set. No addresses leave the interface only
// its ranges: nothing else is looped back or decapsulated to, as when
// another tool removed every address from the device.
func (i *Interface) SetAddrs(addrs []netip.Prefix) error {
	if len(addrs) > 0 {
		c := Config{Addrs: addrs}
		if err := c.check(); err != nil {
			return err
		}
	}
	i.changeMu.Lock()
	defer i.changeMu.Unlock()
	i.addrs.Store(newAddrSet(addrs, i.link.Ranges, i.link.Exclude))
	return i.syncOffload()
}

// SetLocal changes the tunnel's local underlay address, the outer source
// of encapsulated packets, while the loop runs: the slave was renumbered
// (DHCP, an operator). The underlay is bound to the new address when it
// can be (RawUnderlay can: SetLocal). The zero Addr pauses the tunnel
// while the host has no address to send from: packets to the peer are
// dropped, counted as tx_no_local and answered with ICMP "host
// unreachable", until an address is set again. The peer must send to the
// new address; nothing tells it.
//
// It returns ErrNoTunnel for an interface without a tunnel, an error
// wrapping ErrBadAddress for an address that is not a unicast address of
// the underlay's family (IPv4, or IPv6 for a tunnel made with an IPv6
// local address), or the underlay's error binding to it, in which case
// the previous address stays in use.
func (i *Interface) SetLocal(local netip.Addr) error {
	if i.under == nil {
		return ErrNoTunnel
	}
	if local.IsValid() && (!IsHostAddr(local) || local.Is6() != i.under6 || local.Zone() != "") {
		return fmt.Errorf("%w: local %s (the tunnel's underlay is %s)", ErrBadAddress, local, family(i.under6))
	}
	i.localMu.Lock()
	defer i.localMu.Unlock()
	if local.IsValid() && local != i.bound {
		for _, f := range i.rebind {
			if err := f(local); err != nil {
				return fmt.Errorf("vif: bind the underlay to %s: %w", local, err)
			}
		}
		i.bound = local
	}
	i.local.Store(&local)
	return i.syncOffload()
}

// UnderlayInfo tells what carries a vif's tunnel (LinkConfig.Underlay).
type UnderlayInfo struct {
	// Kind is UnderlayXDP or UnderlayRaw; empty without a tunnel, or for
	// an Underlay given to New.
	Kind string `json:"kind,omitempty"`
	// Fallback says why the tunnel is not on UnderlayXDP when it was
	// left to choose (UnderlayAuto).
	Fallback string `json:"fallback,omitempty"`
	// TransmitOnly is set when UnderlayXDP only sends: with
	// LinkConfig.Offload the loop's packets leave through AF_XDP, and
	// the peers' packets come through the kernel, where the offload's
	// program on the slave's ingress takes them, and the raw sockets
	// what it passes.
	TransmitOnly bool `json:"transmit_only,omitempty"`
	// Shared names the peers whose packets another vif on the slave
	// receives too (same peer, local address and protocol): UnderlayXDP
	// leaves them to the kernel, where both vifs' raw sockets get them.
	Shared string `json:"shared,omitempty"`
}

// Underlay returns what carries the tunnel's outer packets.
func (i *Interface) Underlay() UnderlayInfo {
	u := i.underlay
	if s, ok := i.under.(interface{ sharedNote() string }); ok {
		u.Shared = s.sharedNote()
	}
	return u
}

// Local returns the tunnel's local underlay address in use: the zero Addr
// without a peer, or while the tunnel is paused (SetLocal).
func (i *Interface) Local() netip.Addr { return *i.local.Load() }

// Addrs returns the interface's own addresses.
func (i *Interface) Addrs() []netip.Prefix {
	return slices.Clone(i.addrs.Load().prefixes)
}

// Link returns the interface's configuration as resolved: the defaults
// that Up (Resolve) or New filled in, the addresses as SetAddrs last set
// them. Functions and the logger are left out.
func (i *Interface) Link() LinkConfig {
	l := i.link.clone()
	l.Addrs = i.Addrs()
	l.Routes = slices.Clone(*i.routes.Load())
	if i.under != nil {
		i.localMu.Lock()
		l.Local = i.bound
		i.localMu.Unlock()
	}
	l.Peers = i.peers.Load().peers()
	l.PathMTU, l.Logger, l.Publisher = nil, nil, nil
	return l
}

// MTU returns the MTU of the interface's device (0 if it can't be read).
func (i *Interface) MTU() int {
	m, err := i.deviceMTU()
	if err != nil {
		return 0
	}
	return m
}

// Done returns a channel that is closed when the packet loop has stopped,
// either through Close, because the TUN device went away (for example
// `ip link del`), or because reading it kept failing (see Err). Call Close
// afterwards to release everything else.
func (i *Interface) Done() <-chan struct{} { return i.done }

// Err returns why the packet loop stopped by itself, when reading the
// device kept failing; nil while it runs, after Close, and when the
// device went away.
func (i *Interface) Err() error {
	if e := i.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// Close stops the packet loop, closes the device and the underlay, and
// undoes everything the interface installed (addresses, routes, ARP
// registrations), in reverse order. It waits for the loop's goroutines to
// exit. Calling Close more than once is safe; later calls return the first
// call's result.
func (i *Interface) Close() error {
	i.closeOnce.Do(func() {
		i.closeOffload() // before the device goes: the programs redirect to it
		i.stop()
		<-i.done
		<-i.followed
		var errs []error
		for k := len(i.closers) - 1; k >= 0; k-- {
			if err := i.closers[k](); err != nil {
				errs = append(errs, err)
			}
		}
		i.closeErr = errors.Join(errs...)
		i.log.Info("vif closed")
	})
	return i.closeErr
}

// followDevice follows the device's events until the device is closed:
// an MTU raised from outside ("ip link set vif0 mtu 9000") is carried, not
// a reason to stop. The device's event channel must be read anyway: a
// Linux TUN's netlink listener blocks once it is full.
func (i *Interface) followDevice(events <-chan tun.Event) {
	defer close(i.followed)
	for ev := range events {
		if ev&tun.EventMTUUpdate != 0 {
			if m, err := i.deviceMTU(); err == nil {
				old := int(i.devMTU.Load())
				i.setDevMTU(m)
				if m > old {
					// Raised from outside: wake the tx loop, which
					// waits in a read with buffers of the old MTU,
					// to take larger ones (see growTxBuffers).
					// Packets sent before it has them can still
					// meet the old buffers.
					i.wakeTxLoop()
				}
			}
			if i.mtuHook != nil {
				i.mtuHook()
			}
		}
		if ev&tun.EventUp != 0 && i.upHook != nil {
			i.upHook()
		}
	}
}

// setDevMTU takes m as the device's MTU: the transmit loop grows its
// buffers to it, and the tunnel MTU follows, up to the path's.
func (i *Interface) setDevMTU(m int) {
	if m < MinMTU || m > MaxMTU {
		return
	}
	old := int(i.devMTU.Swap(int32(m)))
	if old == m {
		return
	}
	for _, p := range i.peers.Load().list {
		p.st.pmtu.Store(int32(m))
		i.probePathMTU(p)
	}
	i.offloadChanged()
	i.log.Info("device MTU changed", "from", old, "to", m)
}

// stop closes the device and the underlay, which ends both loops. It may
// be called from a loop that hit a fatal error.
func (i *Interface) stop() {
	i.stopOnce.Do(func() {
		if i.under != nil {
			i.under.Close()
		}
		i.dev.Close()
	})
}
