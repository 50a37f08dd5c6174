//go:build linux

// Package offload is vif's in-kernel fast path: two tc programs, attached
// with TCX links, that do the packet loop's common case and hand
// everything else to it. On the vif's TUN egress a packet for a peer's
// prefix is encapsulated (protocol 94 or 4, the outer header by RFC 2003
// and RFC 6040's normal mode) and sent out of the slave; on the slave's
// ingress a peer's packet for one of the vif's addresses, or a forwarded
// prefix, is checked as the loop checks it, decapsulated and handed to
// the TUN's ingress, as if the loop had written it.
//
// A packet the programs are not sure about goes on as if they were not
// there (TCX_NEXT): to the TUN's queue, which the loop reads, or to the
// raw socket the loop receives from. The loop then decides, answers with
// ICMP where due and counts the drop: rejected packets are never
// delivered by the programs and never dropped by them either, so every
// drop has one place and one name (but DropError, Drops). Passed reports
// why packets were passed.
//
// The daemon owns all state: the maps are filled from the interface's
// configuration (Sync, SetLocal, SetMTU) and their counters read back
// (Counters, PeerCounters). Nothing is pinned: the programs go with the
// links' file descriptors, at Close or when the process dies.
package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Config is the tunnel the programs carry.
type Config struct {
	// TUN and Slave are the interface indexes of the vif and of the
	// underlay interface.
	TUN, Slave int
	// Protocol is the outer protocol, 94 or 4.
	Protocol uint8
	// TTL is the outer TTL; InheritTTL copies the inner one instead.
	TTL        uint8
	InheritTTL bool
	// Local is the outer source; the zero Addr pauses the tunnel (every
	// packet goes to the loop).
	Local netip.Addr
	// MTU is the vif's MTU.
	MTU int
}

// Peer is a peer as the programs see it.
type Peer struct {
	Addr     netip.Addr
	Prefixes []netip.Prefix // IPv6 ones are left to the loop
	// PathMTU is the tunnel MTU towards the peer (inner packets): larger
	// packets go to the loop, which fragments them or answers ICMP.
	PathMTU int
}

// State is what the interface owns and whom it talks to.
type State struct {
	// Own are the vif's addresses and ranges; Exclude the addresses of
	// the ranges that are not its.
	Own     []netip.Prefix
	Exclude []netip.Addr
	// Forward are the inner destinations handed on besides Own.
	Forward []netip.Prefix
	Peers   []Peer
}

// Counters counts offloaded packets: tx encapsulated (outer bytes), rx
// decapsulated and delivered (inner bytes). A GSO packet counts as the
// segments it becomes on the wire.
type Counters struct {
	TxPackets, TxBytes uint64
	RxPackets, RxBytes uint64
}

// An Offload is the programs attached to one vif. Its methods are safe
// for concurrent use.
type Offload struct {
	mu     sync.Mutex
	objs   offloadObjects
	links  []link.Link // referenced until Close: an unreferenced link detaches
	tunnel offloadTunnel
	closed bool
	// The counters as Close left them, which the methods return after.
	final      Counters
	finalPeers map[uint32]Counters
	finalPass  map[string]uint64

	// What the maps hold, to change only what changed.
	own     map[offloadLpmKey]uint8
	forward map[offloadLpmKey]bool
	routes  map[offloadLpmKey]uint32
	peers   map[uint32]uint32 // peer -> tunnel MTU
}

// ErrUnsupported is wrapped by Attach's error when the kernel cannot load
// or attach the programs (no BPF, no TCX, not privileged).
var ErrUnsupported = errors.New("offload: not supported here")

// Attach loads the programs, fills the tunnel's configuration and attaches
// them to the TUN's egress and the slave's ingress, last in each chain.
// The peers and addresses are empty until Sync: until then every packet
// goes to the loop. It needs CAP_BPF and CAP_NET_ADMIN.
func Attach(cfg Config) (*Offload, error) {
	o, err := load(cfg)
	if err != nil {
		return nil, err
	}
	for _, a := range []struct {
		prog   *ebpf.Program
		ifi    int
		attach ebpf.AttachType
		what   string
	}{
		{o.objs.VifSlaveIngress, cfg.Slave, ebpf.AttachTCXIngress, "slave ingress"},
		{o.objs.VifTunEgress, cfg.TUN, ebpf.AttachTCXEgress, "TUN egress"},
	} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: a.ifi, Program: a.prog, Attach: a.attach, Anchor: link.Tail()})
		if err != nil {
			o.Close()
			return nil, fmt.Errorf("%w: attach to the %s (ifindex %d): %v", ErrUnsupported, a.what, a.ifi, err)
		}
		o.links = append(o.links, l)
	}
	return o, nil
}

// load loads the programs and maps and writes the tunnel's configuration,
// attaching nothing.
func load(cfg Config) (*Offload, error) {
	o := &Offload{
		own:     map[offloadLpmKey]uint8{},
		forward: map[offloadLpmKey]bool{},
		routes:  map[offloadLpmKey]uint32{},
		peers:   map[uint32]uint32{},
	}
	if err := loadOffloadObjects(&o.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("offload: the verifier refused the programs: %+v", ve)
		}
		return nil, fmt.Errorf("%w: load: %v", ErrUnsupported, err)
	}
	o.tunnel = offloadTunnel{
		TunIfindex:   uint32(cfg.TUN),
		SlaveIfindex: uint32(cfg.Slave),
		DevMtu:       uint32(cfg.MTU),
		Proto:        cfg.Protocol,
		Ttl:          cfg.TTL,
	}
	if cfg.InheritTTL {
		o.tunnel.InheritTtl = 1
	}
	if cfg.Local.Is4() {
		o.tunnel.Local = addrKey(cfg.Local)
	}
	if err := o.writeTunnel(); err != nil {
		o.objs.Close()
		return nil, err
	}
	return o, nil
}

// Close detaches the programs and releases the maps. It is idempotent.
func (o *Offload) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.final, o.finalPass = o.counters(), o.passed()
	o.finalPeers = map[uint32]Counters{}
	for k := range o.peers {
		o.finalPeers[k] = o.peerCounters(k)
	}
	o.closed = true
	var errs []error
	// The TUN's first: nothing new is sent while the slave's goes.
	for k := len(o.links) - 1; k >= 0; k-- {
		errs = append(errs, o.links[k].Close())
	}
	o.links = nil
	errs = append(errs, o.objs.Close())
	return errors.Join(errs...)
}

// SetLocal changes the outer source; the zero Addr pauses the tunnel.
func (o *Offload) SetLocal(local netip.Addr) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tunnel.Local = 0
	if local.Is4() {
		o.tunnel.Local = addrKey(local)
	}
	return o.writeTunnel()
}

// SetMTU records the vif's MTU.
func (o *Offload) SetMTU(mtu int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tunnel.DevMtu = uint32(mtu)
	return o.writeTunnel()
}

func (o *Offload) writeTunnel() error {
	if o.closed {
		return nil
	}
	if err := o.objs.Config.Put(uint32(0), &o.tunnel); err != nil {
		return fmt.Errorf("offload: write the tunnel's configuration: %w", err)
	}
	return nil
}

// Sync makes the maps hold s, changing only what changed. The order keeps
// the programs on the safe side while it runs: new peers first, then
// what is gone is removed (addresses, forwarded prefixes, routes), then
// what is new is added, and the peers that are gone last, with their
// counters.
func (o *Offload) Sync(s State) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	own := map[offloadLpmKey]uint8{}
	for _, p := range s.Own {
		if p.Addr().Is4() {
			own[lpmKey(p.Masked())] = 1
		}
	}
	for _, a := range s.Exclude {
		if a.Is4() {
			own[lpmKey(netip.PrefixFrom(a, 32))] = 0
		}
	}
	fwd := map[offloadLpmKey]bool{}
	for _, p := range s.Forward {
		if p.Addr().Is4() {
			fwd[lpmKey(p.Masked())] = true
		}
	}
	routes := map[offloadLpmKey]uint32{}
	peers := map[uint32]uint32{}
	for _, p := range s.Peers {
		if !p.Addr.Is4() {
			continue
		}
		k := addrKey(p.Addr)
		peers[k] = uint32(max(p.PathMTU, 0))
		for _, pfx := range p.Prefixes {
			if pfx.Addr().Is4() {
				routes[lpmKey(pfx.Masked())] = k
			}
		}
	}

	var errs []error
	put := func(m *ebpf.Map, k, v any) {
		if err := m.Put(k, v); err != nil {
			errs = append(errs, err)
		}
	}
	del := func(m *ebpf.Map, k any) {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	for k, mtu := range peers {
		if old, ok := o.peers[k]; !ok || old != mtu {
			put(o.objs.Peers, k, offloadPeer{Pmtu: mtu})
		}
	}
	for k := range o.own {
		if _, ok := own[k]; !ok {
			del(o.objs.Own, k)
		}
	}
	for k := range o.forward {
		if !fwd[k] {
			del(o.objs.Forward, k)
		}
	}
	for k := range o.routes {
		if _, ok := routes[k]; !ok {
			del(o.objs.Routes, k)
		}
	}
	for k, v := range own {
		if old, ok := o.own[k]; !ok || old != v {
			put(o.objs.Own, k, v)
		}
	}
	for k := range fwd {
		if !o.forward[k] {
			put(o.objs.Forward, k, uint8(1))
		}
	}
	for k, v := range routes {
		if old, ok := o.routes[k]; !ok || old != v {
			put(o.objs.Routes, k, v)
		}
	}
	for k := range o.peers {
		if _, ok := peers[k]; !ok {
			del(o.objs.Peers, k)
			del(o.objs.PeerStats, k)
		}
	}
	o.own, o.forward, o.routes, o.peers = own, fwd, routes, peers
	if len(errs) > 0 {
		// What the maps hold is unknown now: the next Sync writes all.
		o.own, o.forward, o.routes, o.peers = map[offloadLpmKey]uint8{}, map[offloadLpmKey]bool{}, map[offloadLpmKey]uint32{}, map[uint32]uint32{}
		return fmt.Errorf("offload: update the maps: %w", errors.Join(errs...))
	}
	return nil
}

// Counters returns the interface's offloaded traffic, summed over CPUs;
// after Close, as it was then.
func (o *Offload) Counters() Counters {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return o.final
	}
	return o.counters()
}

func (o *Offload) counters() Counters {
	var per []offloadCounters
	if o.objs.Totals == nil || o.objs.Totals.Lookup(uint32(0), &per) != nil {
		return Counters{}
	}
	return sum(per)
}

// PeerCounters returns the offloaded traffic with the peer addr (since
// it became a peer).
func (o *Offload) PeerCounters(addr netip.Addr) Counters {
	if !addr.Is4() {
		return Counters{}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return o.finalPeers[addrKey(addr)]
	}
	return o.peerCounters(addrKey(addr))
}

func (o *Offload) peerCounters(k uint32) Counters {
	var per []offloadCounters
	if o.objs.PeerStats == nil || o.objs.PeerStats.Lookup(k, &per) != nil {
		return Counters{}
	}
	return sum(per)
}

func sum(per []offloadCounters) Counters {
	var c Counters
	for _, p := range per {
		c.TxPackets += p.TxPkts
		c.TxBytes += p.TxBytes
		c.RxPackets += p.RxPkts
		c.RxBytes += p.RxBytes
	}
	return c
}

// passNames names the reasons of enum pass_reason in bpf/offload.c, in
// its order.
var passNames = []string{
	"tx_not_ipv4", "tx_malformed", "tx_loopback", "tx_icmp_redirect", "tx_no_peer", "tx_to_peer",
	"tx_no_local", "tx_ttl", "tx_too_big", "tx_gso", "tx_error",
	"rx_not_peer", "rx_outer", "rx_inner", "rx_ttl", "rx_nested", "rx_ecn", "rx_not_local",
	"rx_bad_source", "rx_gso", "rx_error", DropError,
}

// DropError is the one reason the programs drop a packet themselves, a
// key of Drops: a helper failed on a packet they had begun to change
// (out of memory), which can go neither on nor back.
const DropError = "tx_offload_error"

// Drops returns the packets the programs dropped, by reason (DropError).
func (o *Offload) Drops() map[string]uint64 {
	out := map[string]uint64{}
	if n := o.counts()[DropError]; n > 0 {
		out[DropError] = n
	}
	return out
}

// Passed returns how many packets the programs handed to the loop, by
// reason (only reasons with a non-zero count). These are not drops: the
// loop decides, and counts its drops itself.
func (o *Offload) Passed() map[string]uint64 {
	out := o.counts()
	delete(out, DropError)
	return out
}

// counts returns the array passed by name, or as Close left it.
func (o *Offload) counts() map[string]uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return maps.Clone(o.finalPass)
	}
	return o.passed()
}

func (o *Offload) passed() map[string]uint64 {
	out := map[string]uint64{}
	if o.objs.Passed == nil {
		return out
	}
	for k, name := range passNames {
		var per []uint64
		if o.objs.Passed.Lookup(uint32(k), &per) != nil {
			continue
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		if n > 0 {
			out[name] = n
		}
	}
	return out
}

// addrKey is an IPv4 address as the programs hold it: in network byte
// order in a host-order word.
func addrKey(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func lpmKey(p netip.Prefix) offloadLpmKey {
	return offloadLpmKey{Prefixlen: uint32(p.Bits()), Addr: addrKey(p.Addr())}
}
