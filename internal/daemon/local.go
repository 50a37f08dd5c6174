package daemon

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/vif-project/vif/vif"
	"github.com/vishvananda/netlink"
)

// A tunnel's local address (the outer source, which the peer sends to)
// follows the host. Without --local, vif chose the slave's first IPv4
// address (its first global IPv6 address for a tunnel over IPv6), and
// keeps using the slave's, of that family: when DHCP or an operator
// renumbers the slave, the tunnel moves to its new address (the peer must
// be told; nothing in IPIP can). With --local, the operator chose the
// address, and vif never picks another: while it is gone from the host the
// tunnel is paused (packets to the peer are dropped and counted as
// tx_no_local, senders get ICMP "host unreachable"), and it resumes when
// the address returns. Each change is logged at WARN (INFO when the
// tunnel resumes), and vif show says local_missing while paused.

// followLocal brings the local address of every tunnel in es in line
// with the host's addresses (hostAddrs' answer).
func (d *Daemon) followLocal(es []*entry, host map[int][]netip.Prefix) {
	if host == nil { // the dump failed: no news
		return
	}
	names := d.ifNames()
	for _, e := range es {
		l := e.ifc.Link() // Local: the last address bound
		if !l.HasTunnel() {
			continue
		}
		if n := names[e.slaveIndex]; n != "" {
			l.Slave = n // as it is called now
		}
		cur := e.ifc.Local() // zero while paused
		// The slave's addresses of the underlay's family, primary
		// first: IPv4, or global IPv6 ones (not link-local).
		v6 := l.Local.Is6()
		slave := slices.DeleteFunc(slices.Clone(host[e.slaveIndex]), func(p netip.Prefix) bool {
			return p.Addr().Is6() != v6 || !vif.IsHostAddr(p.Addr())
		})
		var want netip.Addr
		switch {
		case e.localGiven:
			if hasAddr(host, l.Local) {
				want = l.Local
			}
		case slices.ContainsFunc(slave, func(p netip.Prefix) bool { return p.Addr() == l.Local }):
			want = l.Local
		case len(slave) > 0:
			want = slave[0].Addr()
		}
		if want == cur {
			continue
		}
		if err := e.ifc.SetLocal(want); err != nil {
			d.log.Warn("cannot move the tunnel to the slave's new address; it stays paused", "vif", e.name, "local", want, "err", err)
			if cur.IsValid() {
				_ = e.ifc.SetLocal(netip.Addr{})
			}
			continue
		}
		switch {
		case !want.IsValid() && e.localGiven:
			d.log.Warn("local address gone from the host: tunnel paused until it returns (packets to the peer are dropped as tx_no_local)",
				"vif", e.name, "local", l.Local)
		case !want.IsValid():
			fam := "IPv4"
			if v6 {
				fam = "global IPv6"
			}
			d.log.Warn("slave has no "+fam+" address left: tunnel paused until it gets one (packets to the peer are dropped as tx_no_local)",
				"vif", e.name, "slave", l.Slave, "local", l.Local)
		case want == l.Local:
			d.log.Info("local address back: tunnel resumed", "vif", e.name, "local", want)
		default:
			d.log.Warn("slave renumbered: the tunnel now sends from its new address; its peers must send to it (vif set ... peer "+want.String()+" there)",
				"vif", e.name, "slave", l.Slave, "from", l.Local, "to", want)
		}
	}
}

// followLocalDelay gathers a burst of address events (a DHCP client
// renumbering, a script adding thousands) into one look at the host.
const followLocalDelay = 50 * time.Millisecond

// scheduleFollowLocal makes the daemon follow the local addresses of all
// tunnels with the host's addresses, soon: once per burst of events.
func (d *Daemon) scheduleFollowLocal() {
	if !d.localPending.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(followLocalDelay, func() {
		d.localPending.Store(false) // events from now on schedule again
		d.mu.Lock()
		es := slices.Collect(maps.Values(d.vifs))
		closed := d.closed
		d.mu.Unlock()
		if !closed {
			d.followLocal(es, d.hostAddrs())
		}
	})
}

// localConcerned returns the tunnels whose local address an address event
// on interface idx for a may change.
func (d *Daemon) localConcerned(idx int, a netip.Addr) []*entry {
	d.mu.Lock()
	defer d.mu.Unlock()
	var es []*entry
	for _, e := range d.vifs {
		if l := e.ifc.Link(); l.HasTunnel() && (l.Local == a || !e.localGiven && e.slaveIndex == idx) {
			es = append(es, e)
		}
	}
	return es
}

func hasAddr(host map[int][]netip.Prefix, a netip.Addr) bool {
	for _, ps := range host {
		for _, p := range ps {
			if p.Addr() == a {
				return true
			}
		}
	}
	return false
}

// hostAddrs is Daemon.hostAddrs on the host: one dump of the IPv4 and
// IPv6 addresses.
func hostAddrs() map[int][]netip.Prefix {
	list, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	m := map[int][]netip.Prefix{}
	for _, a := range list {
		if p, ok := prefixOf(a.IPNet); ok {
			m[a.LinkIndex] = append(m[a.LinkIndex], p)
		}
	}
	return m
}

// linkRoutes is Daemon.linkRoutes on the host: one dump of the main
// table's IPv4 and IPv6 routes.
func linkRoutes() map[int][]netip.Prefix {
	list, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	m := map[int][]netip.Prefix{}
	for _, r := range list {
		if p, ok := prefixOf(r.Dst); ok {
			m[r.LinkIndex] = append(m[r.LinkIndex], p)
		}
	}
	return m
}
