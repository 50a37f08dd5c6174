package vif

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vif-project/vif/internal/offload"
	"github.com/vif-project/vif/ipip"
)

// offloadState is the in-kernel fast path of an Interface made by Up with
// LinkConfig.Offload (package internal/offload): tc programs that do the
// loop's common case. The loop stays the reference and the slow path:
// what the programs are not sure about reaches it as before.
type offloadState struct {
	mu   sync.Mutex // serializes syncs: each applies the newest state
	off  *offload.Offload
	stop chan struct{} // ends probePaths
	done chan struct{}
}

// startOffload attaches the offload to the TUN (ifindex tun) and the
// slave (ifindex slave) and fills its maps. The loop must run already: it
// takes every packet the programs pass.
func (i *Interface) startOffload(tun, slave int) error {
	if i.under == nil {
		return fmt.Errorf("%w: the offload needs a tunnel (a peer or a local address)", ErrBadUnderlay)
	}
	c := &i.link.Config
	ttl := c.TTL
	if ttl == 0 {
		ttl = ipip.DefaultTTL
	}
	off, err := offload.Attach(offload.Config{
		TUN:        tun,
		Slave:      slave,
		Protocol:   i.proto,
		TTL:        ttl,
		InheritTTL: c.InheritTTL,
		Local:      i.Local(),
		MTU:        int(i.devMTU.Load()),
	})
	if err != nil {
		return fmt.Errorf("vif: offload: %w", err)
	}
	s := &offloadState{off: off, stop: make(chan struct{}), done: make(chan struct{})}
	i.off.Store(s)
	go i.probePaths(s)
	if err := i.syncOffload(); err != nil {
		i.closeOffload()
		return fmt.Errorf("vif: offload: %w", err)
	}
	i.log.Info("offload attached", "tun_ifindex", tun, "slave_ifindex", slave)
	return nil
}

// syncOffload makes the offload's maps hold the interface's state as it
// is now: addresses, peers and their tunnel MTUs, local address, MTU. The
// changes call it after they took effect in the loop; under mu, the last
// to run reads the newest state.
func (i *Interface) syncOffload() error {
	s := i.off.Load()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set, tab := i.addrs.Load(), i.peers.Load()
	st := offload.State{
		Own:     append(append([]netip.Prefix(nil), set.prefixes...), i.link.Ranges...),
		Exclude: i.link.Exclude,
		Forward: i.link.Forward,
	}
	for k, p := range st.Own[:len(set.prefixes)] {
		st.Own[k] = netip.PrefixFrom(p.Addr(), p.Addr().BitLen()) // the address, not its network
	}
	for _, p := range tab.list {
		st.Peers = append(st.Peers, offload.Peer{Addr: p.Addr, Prefixes: p.Prefixes, PathMTU: int(p.st.pmtu.Load())})
	}
	err := s.off.Sync(st)
	if e := s.off.SetLocal(i.Local()); err == nil {
		err = e
	}
	if e := s.off.SetMTU(int(i.devMTU.Load())); err == nil {
		err = e
	}
	return err
}

// offloadChanged is syncOffload for the changes that cannot fail
// anymore: an error is logged.
func (i *Interface) offloadChanged() {
	if err := i.syncOffload(); err != nil {
		i.log.Warn("offload: maps not updated; traffic may take the slow path", "err", err)
	}
}

// closeOffload detaches the offload, before the device goes: no packet is
// redirected to a TUN that is gone.
func (i *Interface) closeOffload() {
	if s := i.off.Load(); s != nil {
		select {
		case <-s.stop:
		default:
			close(s.stop)
		}
		<-s.done
		s.off.Close()
	}
}

// probePaths asks the kernel for the path MTU towards every peer every
// pmtuProbeInterval, as the loop does while it sends: with the offload
// the loop may send nothing, and the programs must learn of a path that
// shrank (a route's MTU, an ICMP "fragmentation needed" the kernel took)
// or grew back. Routers' ICMP errors reach the ICMP relay at once.
func (i *Interface) probePaths(s *offloadState) {
	defer close(s.done)
	t := time.NewTicker(pmtuProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			for _, p := range i.peers.Load().list {
				i.probePathMTU(p)
			}
		}
	}
}

// addOffloadStats adds the offloaded traffic to s.
func (i *Interface) addOffloadStats(s *Stats) {
	o := i.off.Load()
	if o == nil {
		return
	}
	c := o.off.Counters()
	for r, n := range o.off.Drops() {
		s.Drops[r] += n
	}
	s.Encapsulated += c.TxPackets
	s.EncapsulatedBytes += c.TxBytes
	s.Decapsulated += c.RxPackets
	s.DecapsulatedBytes += c.RxBytes
}

// addOffloadPeer adds the traffic offloaded with p to it.
func (i *Interface) addOffloadPeer(p *PeerStats) {
	o := i.off.Load()
	if o == nil {
		return
	}
	c := o.off.PeerCounters(p.Addr)
	p.Encapsulated += c.TxPackets
	p.EncapsulatedBytes += c.TxBytes
	p.Decapsulated += c.RxPackets
	p.DecapsulatedBytes += c.RxBytes
}

// offloadPassed returns why the offload handed packets to the loop, or
// nil without an offload.
func (i *Interface) offloadPassed() map[string]uint64 {
	o := i.off.Load()
	if o == nil {
		return nil
	}
	return o.off.Passed()
}
