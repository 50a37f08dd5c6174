//go:build linux

package main

// IPv6 ranges (issue 14): a whole /64 on one NIC, with one local route,
// published by the NDP proxy.

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/vif/nstest"
)

// A /64 on one NIC: a neighbour resolves and pings random addresses of
// it, the NDP proxy answering (the kernel does not: the range is not on
// the slave, and a's kernel never answers solicitations for addresses
// that are not the slave's); the address another host holds, found in
// a's neighbour table and probed at vif up, is left to that host, and
// its Subnet-Router anycast address and addresses outside it get no
// advertisement from a; vif down removes the route and the answers stop.
func TestIPv6RangeOnSegment(t *testing.T) {
	n := nstest.New(t)
	a, c, d := n.Host("a", nstest.WithIPv6()), n.Host("c", nstest.WithIPv6()), n.Host("d", nstest.WithIPv6())
	seg := n.Segment()
	aIf := seg.Attach(a, "198.18.1.1/24")
	cIf := seg.Attach(c, "198.18.1.3/24")
	dIf := seg.Attach(d, "198.18.1.4/24")
	for _, x := range []struct {
		h    *nstest.Host
		ifc  *nstest.Iface
		addr string
	}{{a, aIf, "2001:db8:ff::1/64"}, {c, cIf, "2001:db8:ff::3/64"}, {d, dIf, "2001:db8:ff::4/64"}} {
		x.h.IP("-6", "addr", "add", x.addr, "dev", x.ifc.Name(), "nodad")
		// The neighbours know the range is on their cable.
		x.h.IP("-6", "route", "add", "2001:db8::/32", "dev", x.ifc.Name())
	}
	// d holds an address of the range, and a has talked to it: it is in
	// a's neighbour table, which is what vif up probes of a /64.
	const taken = "2001:db8:1::77"
	d.IP("-6", "addr", "add", taken+"/128", "dev", dIf.Name(), "nodad")
	for _, end := range []struct {
		h   *nstest.Host
		ifc *nstest.Iface
	}{{a, aIf}, {c, cIf}, {d, dIf}} {
		if _, ok := waitFor(5*time.Second, func() bool {
			out := end.h.IP("-6", "addr", "show", "dev", end.ifc.Name(), "scope", "link")
			return strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative")
		}); !ok {
			t.Fatalf("no link-local address on %v: %s", end.ifc, end.h.IP("-6", "addr"))
		}
	}
	if !pingOnce6(a, taken, 3*time.Second) {
		t.Fatalf("a cannot reach %s, d's", taken)
	}

	out := vifCmd(t, a, "up", "vif0", "2001:db8:1::/64", "--range", "--slave", aIf.Name())
	t.Cleanup(func() { stopDaemon(a) })
	if !strings.Contains(out, "2001:db8:1::/64") || !strings.Contains(out, "but 1 addresses other hosts use") {
		t.Errorf("vif up says: %q", out)
	}
	st := vifStatus(t, a, "vif0")
	if len(st.Ranges) != 1 || st.Ranges[0].String() != "2001:db8:1::/64" || len(st.Exclude) != 1 || st.Exclude[0].String() != taken {
		t.Fatalf("vif show: ranges %v, exclude %v; want [2001:db8:1::/64], [%s]", st.Ranges, st.Exclude, taken)
	}
	if routes := a.IP("-6", "route", "show", "table", "local"); !strings.Contains(routes, "local 2001:db8:1::/64 dev vif0") {
		t.Errorf("no local route for the range:\n%s", routes)
	}

	capture := cIf.Capture("icmp6")
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 14))
	var pinged []string
	for range 8 {
		b := netip.MustParseAddr("2001:db8:1::").As16()
		binary.BigEndian.PutUint64(b[8:], rnd.Uint64()|1)
		addr := netip.AddrFrom16(b).String()
		pinged = append(pinged, addr)
		if !pingOnce6(c, addr, 3*time.Second) {
			t.Errorf("ping %s in the range failed", addr)
			continue
		}
		if neigh := c.IP("-6", "neigh", "show", addr, "dev", cIf.Name()); !strings.Contains(neigh, aIf.MAC().String()) {
			t.Errorf("c resolved %s to %q, want a's MAC %s", addr, neigh, aIf.MAC())
		}
	}
	// d's address is d's: c resolves it to d, and a's kernel sends its
	// packets for it to the segment, not into the vif.
	if !pingOnce6(c, taken, 3*time.Second) {
		t.Errorf("ping %s, d's, failed", taken)
	}
	if neigh := c.IP("-6", "neigh", "show", taken, "dev", cIf.Name()); !strings.Contains(neigh, dIf.MAC().String()) {
		t.Errorf("c resolved %s to %q, want d's MAC %s", taken, neigh, dIf.MAC())
	}
	if !pingOnce6(a, taken, 3*time.Second) {
		t.Errorf("a cannot reach %s, d's, with the range up", taken)
	}
	// Neither the anycast address nor addresses outside the range are
	// a's.
	for _, addr := range []string{"2001:db8:1::", "2001:db8:2::5", "2001:db8::1"} {
		if pingOnce6(c, addr, time.Second) {
			t.Errorf("ping %s answered", addr)
		}
	}
	time.Sleep(200 * time.Millisecond) // the last solicitations' answers, if any
	naFromA := func(target string) func(gopacket.Packet) bool {
		return func(p gopacket.Packet) bool {
			eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
			return eth != nil && na != nil && net.HardwareAddr(eth.SrcMAC).String() == aIf.MAC().String() &&
				(target == "" || na.TargetAddress.String() == target)
		}
	}
	capture.Stop()
	for _, addr := range []string{taken, "2001:db8:1::", "2001:db8:2::5", "2001:db8::1"} {
		if n := capture.Count(naFromA(addr)); n != 0 {
			t.Errorf("a advertised %s %d times", addr, n)
		}
	}
	answered := 0
	for _, addr := range pinged {
		if capture.Count(naFromA(addr)) > 0 {
			answered++
		}
	}
	st = vifStatus(t, a, "vif0")
	if answered != len(pinged) || st.NDP == nil || st.NDP.Replies < uint64(answered) {
		t.Errorf("%d of %d pinged addresses advertised by a; NDP counters %+v", answered, len(pinged), st.NDP)
	}
	if st.NDP == nil || !st.NDP.AllMulticast || st.NDP.Groups != 0 {
		t.Errorf("NDP proxy of a /64: %+v; want all multicast and no group", st.NDP)
	}
	text := vifCmd(t, a, "show", "vif0")
	for _, want := range []string{"vif0: 2001:db8:1::/64 (range)", "range 2001:db8:1::/64 but " + taken + " (other hosts')", "all multicast received"} {
		if !strings.Contains(text, want) {
			t.Errorf("vif show lacks %q:\n%s", want, text)
		}
	}

	// The kernel flushes a device's IPv6 routes when it goes down, or its
	// MTU below 1280 (IPv4 local routes stay): the range is made local
	// again when it comes back.
	localRoute := func() bool {
		return strings.Contains(a.IP("-6", "route", "show", "table", "local"), "local 2001:db8:1::/64 dev vif0")
	}
	a.IP("link", "set", "vif0", "down")
	a.IP("link", "set", "vif0", "up")
	if _, ok := waitFor(3*time.Second, localRoute); !ok || !pingOnce6(c, pinged[0], 3*time.Second) {
		t.Errorf("after a link flap: local route %v, ping %s failed", ok, pinged[0])
	}
	a.IP("link", "set", "vif0", "mtu", "1200")
	a.IP("link", "set", "vif0", "mtu", "1480")
	if _, ok := waitFor(3*time.Second, localRoute); !ok || !pingOnce6(c, pinged[1], 3*time.Second) {
		t.Errorf("after the MTU went below 1280 and back: local route %v, ping %s failed", ok, pinged[1])
	}

	// A range holding the host's own address, and one larger than a /48,
	// are refused.
	for _, bad := range []struct{ rng, want string }{
		{"2001:db8:ff::/64", "an address of " + aIf.Name()},
		{"2001:db8:100::/40", "larger than a /48"},
	} {
		if out, err := a.Run(vifBin, "up", "vif1", bad.rng, "--range", "--slave", aIf.Name()); err == nil || !strings.Contains(out, bad.want) {
			t.Errorf("vif up vif1 %s --range: %v, %q; want %q", bad.rng, err, out, bad.want)
		}
	}

	vifCmd(t, a, "down", "vif0")
	if routes := a.IP("-6", "route", "show", "table", "all"); strings.Contains(routes, "2001:db8:1:") {
		t.Errorf("routes left after vif down:\n%s", routes)
	}
	c.IP("-6", "neigh", "flush", "dev", cIf.Name())
	if slices.ContainsFunc(pinged[:2], func(addr string) bool { return pingOnce6(c, addr, time.Second) }) {
		t.Error("an address of the range still answers after vif down")
	}
	assertNothingLeft(t, a)
}
