//go:build linux

package ndpproxy_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vif-project/vif/ndpproxy"
	"github.com/vif-project/vif/vif/nstest"
)

// TestNamespaceRange publishes a /64 with a Responder from Listen on one
// end of a veth pair: the interface receives all multicast (ALLMULTI)
// while the range is owned, and not after; a neighbour's kernel resolves
// and pings addresses all over the range, which a's kernel holds through
// a local route on lo and so never answers solicitations for on the
// veth. (A veth filters no multicast, so this shows the flag, not that a
// real NIC needs it.)
func TestNamespaceRange(t *testing.T) {
	n := nstest.New(t) // skips unless root
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		t.Skip("requires IPv6 in the kernel")
	}
	a, b := n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	for _, h := range []*nstest.Host{a, b} {
		h.Sysctl("net.ipv6.conf.default.accept_dad", "0")
		h.Sysctl("net.ipv6.conf.all.accept_dad", "0")
	}
	aIf, bIf := n.Link(a, b, "", "2001:db8::2/64")
	b.Sysctl("net.ipv6.neigh."+bIf.Name()+".retrans_time_ms", "100")
	rng := netip.MustParsePrefix("2001:db8:1::/64")
	a.MustRun("ip", "-6", "route", "add", "local", rng.String(), "dev", "lo")
	a.AddRoute("2001:db8::/64", "dev", aIf.Name())
	b.AddRoute(rng.String(), "dev", bIf.Name())
	// The kernel counts the interface's all-multicast users ("ip -d
	// link": allmulti N); the ALLMULTI flag shows only the operator's.
	allMulti := func() bool {
		out := a.MustRun("ip", "-d", "link", "show", aIf.Name())
		return !strings.Contains(out, " allmulti 0 ")
	}
	if out := a.MustRun("ip", "-d", "link", "show", aIf.Name()); !strings.Contains(out, " allmulti ") {
		t.Skip("requires an ip command and kernel that show the all-multicast count (ip -d link: allmulti N)")
	}
	if allMulti() {
		t.Fatalf("%v receives all multicast before the Responder starts", aIf)
	}
	// The kernel holds the range local but answers no solicitation for
	// it on the veth: without the Responder, nobody does.
	if err := b.Ping("2001:db8:1::1234", 1); err == nil {
		t.Fatal("ping of an address of the range answered before the Responder publishes it: the kernel answers for it")
	}
	b.MustRun("ip", "-6", "neigh", "flush", "dev", bIf.Name())
	var r *ndpproxy.Responder
	if err := a.Do(func() error {
		ifi, err := net.InterfaceByName(aIf.Name())
		if err != nil {
			return err
		}
		r, err = ndpproxy.Listen(ifi, nil)
		return err
	}); err != nil {
		t.Fatalf("Listen in %v: %v", a, err)
	}
	t.Cleanup(func() { r.Close() })
	excluded := netip.MustParseAddr("2001:db8:1::77")
	if err := r.AddRange(rng, []netip.Addr{excluded}); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); !allMulti() || !s.AllMulticast || s.Groups != 0 {
		t.Fatalf("/64 owned: ALLMULTI %v, Stats.AllMulticast %v, %d groups; want on, on, 0", allMulti(), s.AllMulticast, s.Groups)
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 5 {
		b16 := rng.Addr().As16()
		binary.BigEndian.PutUint64(b16[8:], rnd.Uint64()|1)
		dst := netip.AddrFrom16(b16)
		if err := b.Ping(dst.String(), 1); err != nil {
			t.Errorf("ping %v: %v", dst, err)
		}
		if mac := b.NeighborMAC(dst.String()); mac.String() != aIf.MAC().String() {
			t.Errorf("b resolved %v to %v, want %v", dst, mac, aIf.MAC())
		}
	}
	if err := b.Ping(excluded.String(), 1); err == nil {
		t.Errorf("ping %v, excluded, answered", excluded)
	}
	r.RemoveRange(rng)
	if allMulti() || r.Stats().AllMulticast {
		t.Errorf("%v still receives all multicast after the range went", aIf)
	}
	if err := r.AddRange(rng, nil); err != nil || !allMulti() {
		t.Fatalf("AddRange again: %v, ALLMULTI %v", err, allMulti())
	}
	// Closing the socket releases it, as a crash would.
	r.Close()
	if allMulti() {
		t.Errorf("%v still receives all multicast after Close", aIf)
	}
}
