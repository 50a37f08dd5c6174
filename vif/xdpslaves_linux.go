package vif

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vif-project/vif/ipip"
	"golang.org/x/sys/unix"
)

// xdpSlaves is what the vifs of this process do with each slave, by
// network namespace and interface index: its AF_XDP port (sockets and XDP
// program, xdpPort) and the vifs using it, and the tunnels of the vifs on
// raw sockets. Its lock comes before an XDPUnderlay's mu.
//
// The program steers the union of the (peer, local, protocol) of the vifs
// that receive through AF_XDP, but it must not take a packet another vif
// needs: the packets of a (peer, local, protocol) that two vifs of the
// slave receive are left to the kernel (XDP_PASS), where every raw socket
// of that protocol bound to local gets a copy, the AF_XDP vifs' own
// included (their underlays read both), and each vif's loop keeps what is
// its own. So are those of a vif on raw sockets and of one that only
// sends through AF_XDP (LinkConfig.Offload: the tc program on the slave's
// ingress takes them). The port lives while a vif uses it.
var xdpSlaves = struct {
	sync.Mutex
	m map[xdpSlave]*slaveUse
}{m: map[xdpSlave]*slaveUse{}}

type xdpSlave struct {
	netns   uint64
	ifindex int
}

// slaveUse is the vifs on one slave.
type slaveUse struct {
	port *xdpPort // nil while no vif uses AF_XDP on the slave
	xdp  map[*XDPUnderlay]struct{}
	raw  map[*rawMember]struct{}
}

// slaveKey returns the registry's key of the slave with index ifindex in
// the calling thread's network namespace.
func slaveKey(ifindex int) (xdpSlave, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return xdpSlave{}, fmt.Errorf("vif: network namespace: %w", err)
	}
	return xdpSlave{st.Ino, ifindex}, nil
}

// slaveUseLocked returns key's entry, made if there is none; xdpSlaves is
// locked.
func slaveUseLocked(key xdpSlave) *slaveUse {
	u := xdpSlaves.m[key]
	if u == nil {
		u = &slaveUse{xdp: map[*XDPUnderlay]struct{}{}, raw: map[*rawMember]struct{}{}}
		xdpSlaves.m[key] = u
	}
	return u
}

// tidyLocked forgets key's entry when nothing uses the slave; xdpSlaves is
// locked.
func tidyLocked(key xdpSlave) {
	if u := xdpSlaves.m[key]; u != nil && u.port == nil && len(u.xdp) == 0 && len(u.raw) == 0 {
		delete(xdpSlaves.m, key)
	}
}

// resteerLocked recomputes the steering of the slave's port after a
// vif's tunnel changed, or a vif came or went; xdpSlaves is locked.
func resteerLocked(key xdpSlave) error {
	u := xdpSlaves.m[key]
	if u == nil || u.port == nil {
		return nil
	}
	var errs []error
	for x := range u.xdp {
		x.mu.Lock()
		errs = append(errs, x.steerLocked())
		x.mu.Unlock()
	}
	errs = append(errs, u.port.applyLocked(u))
	return errors.Join(errs...)
}

// sharersLocked returns the vifs other than x that receive the packets
// from peer to local of protocol proto; xdpSlaves is locked.
func (u *slaveUse) sharersLocked(x *XDPUnderlay, peer, local netip.Addr, proto uint8) []string {
	var out []string
	add := func(name string, mlocal netip.Addr, mproto uint8, peers []netip.Addr) {
		if mlocal == local && (mproto == proto || proto == ipip.ProtoIPv6) && slices.Contains(peers, peer) && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for m := range u.raw {
		add(m.name, m.local, m.proto, m.peers)
	}
	for m := range u.xdp {
		if m != x && !m.unsteered {
			add(m.name, m.local, m.proto, m.peers)
		}
	}
	slices.Sort(out)
	return out
}

// xdpPair is an (outer source, outer destination) the program steers.
type xdpPair struct{ peer, local netip.Addr }

// steerLocked computes what x has the program steer (x.steer), from the
// peers, the local address and the other vifs of the slave: the packets of
// each peer to local of the tunnel's protocol and of IPv6 inside (41:
// 6in4, or 6in6 over IPv6) go to the sockets unless another vif receives
// them too; the port's applyLocked puts the program's map in step.
// xdpSlaves and x.mu are locked.
func (x *XDPUnderlay) steerLocked() error {
	if !x.receives() {
		clear(x.steer)
		x.shared = ""
		return nil
	}
	u := xdpSlaves.m[x.key]
	want := map[xdpPair][]uint8{}
	var shared []string
	if x.local.IsValid() {
		// The tunnel's protocol and 6in4, or over IPv6 (RFC 2473)
		// 4in6 (the tunnel's protocol is 4 there) and 6in6: both 41.
		protos := []uint8{x.proto}
		if x.proto != ipip.ProtoIPv6 {
			protos = append(protos, ipip.ProtoIPv6)
		}
		for _, p := range x.peers {
			if p.Is4() != x.local.Is4() {
				continue
			}
			var steer []uint8
			var with, sharedProtos []string
			for _, pr := range protos {
				var ws []string
				if u != nil {
					ws = u.sharersLocked(x, p, x.local, pr)
				}
				if len(ws) == 0 {
					steer = append(steer, pr)
				} else {
					sharedProtos = append(sharedProtos, strconv.Itoa(int(pr)))
				}
				for _, w := range ws {
					if !slices.Contains(with, w) {
						with = append(with, w)
					}
				}
			}
			if len(steer) > 0 {
				want[xdpPair{p, x.local}] = steer
			}
			if len(with) > 0 {
				slices.Sort(with)
				shared = append(shared, fmt.Sprintf("%s protocol %s (with vif %s)", p, strings.Join(sharedProtos, " and "), strings.Join(with, ", ")))
			}
		}
	}
	x.steer = want
	x.shared = ""
	if len(shared) > 0 {
		x.shared = "peer " + strings.Join(shared, ", ") + " shared with another vif on the slave: those packets go through the kernel, not AF_XDP"
	}
	return nil
}

// sharedNote says which peers' packets the program leaves to the kernel
// because another vif receives them too, or "".
func (x *XDPUnderlay) sharedNote() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.shared
}

// A rawMember is the raw underlay of a vif that does not use its slave's
// AF_XDP port (it runs on raw sockets by choice, or AF_XDP cannot run):
// it tells the registry its tunnel, so that the port's program leaves
// the packets it needs to the kernel.
type rawMember struct {
	*RawUnderlay
	key   xdpSlave
	name  string
	proto uint8
	log   *slog.Logger
	// guarded by xdpSlaves
	local netip.Addr
	peers []netip.Addr
	gone  bool
}

// joinRaw registers ru, the raw underlay of the vif name, and returns it
// wrapped. It works in the calling thread's network namespace.
func joinRaw(name string, ru *RawUnderlay, proto uint8, local netip.Addr, peers []netip.Addr, log *slog.Logger) (*rawMember, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key, err := slaveKey(ru.slave)
	if err != nil {
		return nil, err
	}
	m := &rawMember{RawUnderlay: ru, key: key, name: name, proto: proto, log: log, local: local, peers: slices.Clone(peers)}
	xdpSlaves.Lock()
	defer xdpSlaves.Unlock()
	slaveUseLocked(key).raw[m] = struct{}{}
	if err := resteerLocked(key); err != nil {
		log.Warn("XDP steering failed", "err", err)
	}
	return m, nil
}

// SetPeers implements peerFollower.
func (m *rawMember) SetPeers(peers []netip.Addr) {
	xdpSlaves.Lock()
	defer xdpSlaves.Unlock()
	if m.gone {
		return
	}
	m.peers = slices.Clone(peers)
	m.resteerLocked()
}

// SetLocal binds the raw underlay to local (RawUnderlay.SetLocal) and
// tells the registry.
func (m *rawMember) SetLocal(local netip.Addr) error {
	if err := m.RawUnderlay.SetLocal(local); err != nil {
		return err
	}
	xdpSlaves.Lock()
	defer xdpSlaves.Unlock()
	if !m.gone {
		m.local = local
		m.resteerLocked()
	}
	return nil
}

// Close implements Underlay: the vif leaves the registry, and the raw
// underlay is closed.
func (m *rawMember) Close() error {
	xdpSlaves.Lock()
	if !m.gone {
		m.gone = true
		if u := xdpSlaves.m[m.key]; u != nil {
			delete(u.raw, m)
			m.resteerLocked()
			tidyLocked(m.key)
		}
	}
	xdpSlaves.Unlock()
	return m.RawUnderlay.Close()
}

// resteerLocked has the port steer again after m's tunnel changed;
// xdpSlaves is locked.
func (m *rawMember) resteerLocked() {
	if err := resteerLocked(m.key); err != nil {
		m.log.Warn("XDP steering failed", "err", err)
	}
}
