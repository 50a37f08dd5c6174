package vif

import (
	"time"

	"github.com/vif-project/vif/ipip"
)

// Path MTU soft state (RFC 2003 section 5.1). The tunnel MTU (inner
// packets) is the device's MTU, lowered to the underlay's path MTU towards
// the peer minus the outer header (20 bytes over IPv4, 40 over IPv6, RFC
// 2473 section 6.7), as routers inside the tunnel report it (learnPathMTU)
// and the kernel's path MTU cache confirms (probePathMTU).

// minPathMTU is the smallest underlay path MTU the tunnel adopts: Linux's
// own floor (net.ipv4.route.min_pmtu, 552), so that a forged
// "fragmentation needed" cannot shrink the tunnel below what the kernel
// would allow for any socket of this host.
const minPathMTU = 552

// pmtuProbeInterval is how often a lowered path MTU is looked up again.
const pmtuProbeInterval = 5 * time.Second

// pmtuLogEvery bounds the log lines about path MTU changes: a path that
// flaps, or forged ICMP, costs one line per interval.
const pmtuLogEvery = 10 * time.Second

// probePathMTU asks the underlay's path MTU towards p, updates p's soft
// state, and returns p's tunnel MTU.
func (i *Interface) probePathMTU(p *peer) int {
	cur := int(p.st.pmtu.Load())
	if i.pathMTU == nil {
		return cur
	}
	m, err := i.pathMTU(p.Addr)
	if err != nil {
		return cur
	}
	t := min(max(m-i.outer(), MinMTU), int(i.devMTU.Load()))
	i.setPathMTU(p, cur, t)
	return t
}

// learnPathMTU adopts a path MTU towards p reported by a router in the
// tunnel (outer packet size; 0 from routers predating RFC 1191), no lower
// than minPathMTU, asks the kernel too, and returns p's tunnel MTU.
func (i *Interface) learnPathMTU(p *peer, reported int) int {
	t := i.probePathMTU(p)
	if reported > 0 {
		floor := minPathMTU
		if i.under6 {
			// No IPv6 link is smaller (RFC 8200 section 5); a Packet
			// Too Big below it is ignored (RFC 8201 section 4).
			floor = ipip.IPv6MinMTU
		}
		if r := min(max(reported, floor)-i.outer(), int(i.devMTU.Load())); r < t {
			i.setPathMTU(p, t, r)
			t = r
		}
	}
	return t
}

// setPathMTU changes p's tunnel MTU from cur to t and logs it, at most
// once per pmtuLogEvery for the whole interface. Called from both loop
// directions.
func (i *Interface) setPathMTU(p *peer, cur, t int) {
	if t == cur {
		return
	}
	p.st.pmtu.Store(int32(t))
	i.offloadChanged()
	n := i.pmtuChanges.Add(1)
	now := nanotime()
	last := i.pmtuLogged.Load()
	if now-last < int64(pmtuLogEvery) && last != 0 || !i.pmtuLogged.CompareAndSwap(last, now) {
		return
	}
	i.pmtuChanges.Store(0)
	i.log.Info("tunnel path MTU changed", "peer", p.Addr, "from", cur, "to", t, "changes", n)
}
