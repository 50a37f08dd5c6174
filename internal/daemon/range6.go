package daemon

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/vif-project/vif/arpproxy"
	"github.com/vif-project/vif/ndpproxy"
	"github.com/vif-project/vif/vif"
	"github.com/vishvananda/netlink"
)

// probeRange6 asks the slave's segment which addresses of the IPv6 range
// p other hosts use, and excludes them from c (RFC 4862 section 5.4:
// Duplicate Address Detection, three solicitations from the unspecified
// address per address). A range of ndpproxy.GroupRangeBits or longer (at
// most 256 addresses) is probed whole, as IPv4 ranges up to a /22 are. A
// larger one cannot be: a /64 holds 2^64 addresses. Of it, only the
// addresses in the slave's neighbour table are probed, those of hosts
// this host has heard from on the segment (at most ndpproxy.MaxProbe); any
// other host that uses an address of it shows as a conflict when it
// speaks (logged).
func (d *Daemon) probeRange6(ae *arpEntry, c *vif.LinkConfig, p netip.Prefix) error {
	n, err := ae.ndpProxy()
	if err != nil {
		return err
	}
	var used []netip.Addr
	if p.Bits() >= ndpproxy.GroupRangeBits {
		used, err = n.ProbeRange(context.Background(), p, arpproxy.DefaultProbeWait)
		if err != nil {
			return probeError(err, c.Slave)
		}
		usable := 1 << (128 - p.Bits())
		if p.Bits() <= 126 {
			usable-- // the Subnet-Router anycast address
		}
		if len(used) >= usable {
			return fmt.Errorf("every address of range %s is in use on %s's segment: nothing is left to claim (see \"ip -6 neigh show dev %s\"; to take it anyway: pass --force)", p, c.Slave, c.Slave)
		}
	} else {
		var known []netip.Addr
		if d.neighbours != nil {
			for _, a := range d.neighbours(ae.slave) {
				if p.Contains(a) && a != p.Addr() && len(known) < ndpproxy.MaxProbe {
					known = append(known, a)
				}
			}
		}
		d.log.Info("range too large to probe whole: probing only its addresses in the slave's neighbour table; another host using one of the others shows as a conflict when it speaks (exclude such addresses with the library's Exclude)",
			"range", p, "neighbours", len(known))
		if len(known) > 0 {
			used, err = n.ProbeAll(context.Background(), known, arpproxy.DefaultProbeWait)
			if err != nil {
				return probeError(err, c.Slave)
			}
		}
	}
	if len(used) > 0 {
		d.log.Warn("addresses of the range in use by other hosts: excluded", "range", p, "addrs", used)
		c.Exclude = append(c.Exclude, used...)
	}
	return nil
}

// neighbours is Daemon.neighbours on the host: the IPv6 addresses of
// interface index's neighbour table that have a link-layer address, those
// of hosts that answered this host or spoke to it.
func neighbours(index int) []netip.Addr {
	list, err := netlink.NeighList(index, netlink.FAMILY_V6)
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, n := range list {
		const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT
		a, ok := netip.AddrFromSlice(n.IP)
		if ok && a.Is6() && !a.Is4In6() && n.State&usable != 0 && len(n.HardwareAddr) > 0 {
			out = append(out, a)
		}
	}
	return out
}
