package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/vif-project/vif/vif"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A vif whose slave interface is deleted (or moved to another network
// namespace) is removed, with everything it installed, and a warning says
// why. Its underlay socket and the slave's ARP responder are bound to the
// deleted interface and would never work again, even if an interface of
// the same name came back (it has another index); keeping the vif would
// only blackhole what is routed into it. A slave that merely goes down
// keeps its vifs: they resume when it comes back up.
//
// slaveWatch follows link deletions over rtnetlink. It starts with the
// first vif that has a slave and stops with Daemon.Close.
type slaveWatch struct {
	once sync.Once

	mu     sync.Mutex
	done   chan struct{} // closed to end the subscription
	closed bool
}

// watchSlave makes sure the watch runs, and returns the index of the
// slave interface the vif r uses (for its tunnel or its ARP proxy), or 0
// if it uses none. The watch subscribes before the index is read, so a
// deletion after that is never missed.
func (d *Daemon) watchSlave(r vif.LinkConfig) int {
	d.slaves.once.Do(func() {
		if err := d.subscribeLinks(); err != nil {
			d.log.Warn("cannot watch links; a deleted slave, a renamed vif or a new slave MAC goes unnoticed", "err", err)
		}
	})
	if r.Slave == "" || !r.HasTunnel() && !r.Publish {
		return 0
	}
	return d.ifIndex(r.Slave)
}

// checkSlave checks that the slave of e, whose index was read after the
// watch subscribed, still exists: if it was deleted while the vif came
// up, the vif is removed and an error returned.
func (d *Daemon) checkSlave(e *entry) error {
	if e.slaveIndex == 0 || d.ifNames()[e.slaveIndex] != "" {
		return nil
	}
	d.remove(e)
	return fmt.Errorf("slave interface %s was deleted while %s came up", e.ifc.Link().Slave, e.name)
}

// subscribeLinks subscribes to link changes and serves them in a
// goroutine; when the subscription fails (the socket overflowed, say), it
// subscribes again and checks every slave.
func (d *Daemon) subscribeLinks() error {
	w := &d.slaves
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errors.New("daemon closed")
	}
	w.done = done
	w.mu.Unlock()
	if err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { d.log.Debug("link watch", "err", err) },
	}); err != nil {
		return err
	}
	go func() {
		for u := range ch {
			switch u.Header.Type {
			case unix.RTM_DELLINK:
				d.removeOrphans(int(u.Index))
			case unix.RTM_NEWLINK:
				d.vifLinkChanged(int(u.Index), u.Attrs().Name)
				d.vifUpChanged(int(u.Index), u.Flags&unix.IFF_UP != 0)
				d.linkState(int(u.Index), u.Flags&unix.IFF_RUNNING != 0, u.Attrs().HardwareAddr)
			}
		}
		w.mu.Lock()
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return
		}
		time.Sleep(100 * time.Millisecond)
		if err := d.subscribeLinks(); err != nil {
			d.log.Warn("cannot watch for deleted slave interfaces any more", "err", err)
			return
		}
		// Events were lost (the socket overflowed): deletions, link
		// changes, new hardware addresses.
		d.log.Warn("the kernel's link events overflowed; checked every slave again")
		d.removeOrphans(0)
		d.mu.Lock()
		idxs := slices.Collect(maps.Keys(d.arps))
		d.mu.Unlock()
		for _, idx := range idxs {
			running, mac := d.ifState(idx)
			d.linkState(idx, running, mac)
		}
	}()
	return nil
}

// linkState follows the link of the slave with index idx: when it comes
// back up, the addresses published on it are announced again (RFC 5227
// section 2.3), so that neighbours whose caches went stale while it was
// down, or that moved, learn them anew; when its hardware address changes
// (a bond failed over, an operator set another), the ARP proxy answers
// with the new one and announces every address with it.
func (d *Daemon) linkState(idx int, running bool, mac net.HardwareAddr) {
	d.mu.Lock()
	ae := d.arps[idx]
	back := ae != nil && running && !ae.running
	if ae != nil {
		ae.running = running
	}
	d.mu.Unlock()
	if ae == nil {
		return
	}
	if len(mac) > 0 && !bytes.Equal(mac, ae.r.HardwareAddr()) {
		old := ae.r.HardwareAddr()
		if n := ae.ndpIfOpen(); n != nil {
			if err := n.SetHardwareAddr(mac); err != nil {
				d.log.Warn("slave's new hardware address cannot be advertised for the IPv6 addresses", "slave", d.ifNames()[idx], "mac", mac.String(), "err", err)
			}
		}
		if err := ae.r.SetHardwareAddr(mac); err != nil {
			d.log.Warn("slave's new hardware address cannot be answered with; neighbours keep the old one", "slave", d.ifNames()[idx], "mac", mac.String(), "err", err)
		} else {
			d.log.Warn("slave's hardware address changed: answering and announcing with the new one", "slave", d.ifNames()[idx], "from", old.String(), "to", mac.String())
			return // SetHardwareAddr announced every address
		}
	}
	if !back {
		return
	}
	addrs := ae.r.Addrs()
	for _, a := range addrs {
		ae.r.Announce(a)
	}
	if n := ae.ndpIfOpen(); n != nil {
		for _, a := range n.Addrs() {
			n.Announce(a)
			addrs = append(addrs, a)
		}
	}
	d.log.Info("slave link back up: addresses announced again", "slave", d.ifNames()[idx], "addrs", len(addrs))
}

// vifLinkChanged follows a change of the vif with interface index idx, if
// it is one: a new name is taken at once (so that "vif up" of the old
// name is free again and log lines use the new one), and routes the
// kernel removed without telling (it flushes them silently when a link
// goes down) are noted.
func (d *Daemon) vifLinkChanged(idx int, name string) {
	d.mu.Lock()
	e := d.entryAtLocked(idx)
	if e != nil && e.name != name && name != "" {
		d.renamedLocked(d.ifNames())
	}
	d.mu.Unlock()
	if e != nil {
		d.checkRoutes(e, d.linkRoutes())
	}
}

// vifUpChanged follows the vif device with index idx, if it is one, being
// set down and up: the kernel flushed its routes when it went down, and
// they are put back when it comes up (vif.Interface.RestoreRoutes).
func (d *Daemon) vifUpChanged(idx int, up bool) {
	d.mu.Lock()
	e := d.entryAtLocked(idx)
	back := e != nil && e.down && up
	if e != nil {
		e.down = !up
	}
	d.mu.Unlock()
	if !back {
		return
	}
	if err := e.ifc.RestoreRoutes(); err != nil {
		d.log.Warn("the vif is up again, but its routes could not all be put back", "vif", e.name, "err", err)
		return
	}
	d.log.Info("the vif is up again: its routes are back", "vif", e.name)
}

// removeOrphans removes the vifs whose slave had index idx (any index
// when idx is 0) if that interface no longer exists.
func (d *Daemon) removeOrphans(idx int) {
	names := d.ifNames()
	var orphans []*entry
	d.mu.Lock()
	for _, e := range d.vifs {
		if i := e.slaveIndex; i != 0 && (idx == 0 || i == idx) && names[i] == "" {
			orphans = append(orphans, e)
		}
	}
	d.mu.Unlock()
	for _, e := range orphans {
		d.log.Warn("slave interface deleted: removing the vif", "vif", e.name, "slave", e.ifc.Link().Slave)
		if err := d.remove(e); err != nil && !errors.Is(err, ErrUnknown) {
			d.log.Warn("removing the vif of a deleted slave", "vif", e.name, "err", err)
		}
	}
}

// stopSlaveWatch ends the watch, if it runs.
func (d *Daemon) stopSlaveWatch() {
	w := &d.slaves
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if w.done != nil {
		close(w.done)
	}
}
