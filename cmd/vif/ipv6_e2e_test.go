//go:build linux

package main

// IPv6 vif addresses (issue 14): the seed's scenario with IPv6, the
// segment finding the addresses through the NDP proxy.

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vif-project/vif/vif/nstest"
)

// ipv6Segment is hosts a (vif) and c (a neighbour) on one segment, IPv6
// on, with addresses of their own in 2001:db8:ff::/64 so that c's
// packets have a source and a's answers a way back.
func ipv6Segment(t *testing.T) (a, c *nstest.Host, aIf, cIf *nstest.Iface) {
	t.Helper()
	n := nstest.New(t)
	a, c = n.Host("a", nstest.WithIPv6()), n.Host("c", nstest.WithIPv6())
	seg := n.Segment()
	aIf = seg.Attach(a, "198.18.1.1/24")
	cIf = seg.Attach(c, "198.18.1.3/24")
	a.IP("-6", "addr", "add", "2001:db8:ff::1/64", "dev", aIf.Name(), "nodad")
	c.IP("-6", "addr", "add", "2001:db8:ff::3/64", "dev", cIf.Name(), "nodad")
	// The neighbour knows the vif addresses are on its cable.
	c.IP("-6", "route", "add", "2001:db8::/64", "dev", cIf.Name())
	// The NDP proxy answers from the slave's link-local address: wait
	// until it is no longer tentative (duplicate address detection).
	for _, end := range []struct {
		h   *nstest.Host
		if_ *nstest.Iface
	}{{a, aIf}, {c, cIf}} {
		if _, ok := waitFor(5*time.Second, func() bool {
			out := end.h.IP("-6", "addr", "show", "dev", end.if_.Name(), "scope", "link")
			return strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative")
		}); !ok {
			t.Fatalf("no link-local address on %v: %s", end.if_, end.h.IP("-6", "addr"))
		}
	}
	return a, c, aIf, cIf
}

// A neighbour resolves a vif's IPv6 address through the NDP proxy (the
// kernel does not answer for it: it is not on the slave) and pings it;
// an address the vif does not own gets no answer; vif show lists it.
func TestIPv6SeedScenario(t *testing.T) {
	a, c, aIf, cIf := ipv6Segment(t)
	vifCmd(t, a, "up", "vif0", "2001:db8::10", "192.0.2.1", "--slave", aIf.Name())
	t.Cleanup(func() { stopDaemon(a) })
	if out, err := c.Run("ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", "2001:db8::10"); err != nil {
		t.Fatalf("ping -6 2001:db8::10 from the neighbour: %v\n%s\n%s", err, out, a.IP("-6", "addr"))
	}
	neigh := c.IP("-6", "neigh", "show", "2001:db8::10", "dev", cIf.Name())
	if !strings.Contains(neigh, aIf.MAC().String()) {
		t.Errorf("the neighbour resolved 2001:db8::10 to %q, want the slave's MAC %s", neigh, aIf.MAC())
	}
	if out, err := c.Run("ping", "-6", "-n", "-c", "1", "-W", "1", "2001:db8::11"); err == nil {
		t.Errorf("an address the vif does not own answered:\n%s", out)
	}
	st := vifStatus(t, a, "vif0")
	if len(st.Addrs) != 2 || st.Addrs[0].String() != "2001:db8::10/128" && st.Addrs[1].String() != "2001:db8::10/128" {
		t.Errorf("vif show addrs %v", st.Addrs)
	}
	if st.NDP == nil || st.NDP.Replies == 0 {
		t.Errorf("vif show NDP counters %+v: no reply counted", st.NDP)
	}
	// Added and removed in place, like IPv4 addresses.
	vifCmd(t, a, "set", "vif0", "addr", "add", "2001:db8::12")
	if !pingOnce6(c, "2001:db8::12", 3*time.Second) {
		t.Error("the added IPv6 address does not answer")
	}
	vifCmd(t, a, "set", "vif0", "addr", "del", "2001:db8::12")
	c.IP("-6", "neigh", "flush", "dev", cIf.Name())
	if pingOnce6(c, "2001:db8::12", time.Second) {
		t.Error("the removed IPv6 address still answers")
	}
	// The host's own IPv6 address, a prefix and a second vif's address
	// are refused, in one line, exit status 2.
	for _, bad := range []struct{ args, want string }{
		{"2001:db8:ff::1", "already an address of " + aIf.Name()},
		{"2001:db8::30/64", "give an IPv6 address as /128"},
		{"2001:db8::10", "already belongs to vif0"},
	} {
		out, err := a.Run(vifBin, "up", "vif1", bad.args, "--slave", aIf.Name())
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(out, bad.want) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("vif up vif1 %s: %v, %q; want exit status 2 and %q", bad.args, err, out, bad.want)
		}
	}
	vifCmd(t, a, "down", "vif0")
	assertNothingLeft(t, a)
}

func pingOnce6(h *nstest.Host, addr string, timeout time.Duration) bool {
	_, err := h.Run("ping", "-6", "-n", "-c", "1", "-W", fmt.Sprintf("%.1f", timeout.Seconds()), addr)
	return err == nil
}

// On an IPv6-only host (no IPv4 default route), vif up without --slave
// publishes an IPv6 address on the interface of the IPv6 default route.
func TestIPv6OnlyHostDefaultSlave(t *testing.T) {
	n := nstest.New(t)
	a, b := n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, _ := n.Link(a, b, "2001:db8:ff::1/64", "2001:db8:ff::2/64")
	a.IP("-6", "route", "add", "default", "via", "2001:db8:ff::2", "dev", aIf.Name())
	out := vifCmd(t, a, "up", "v6", "2001:db8::10")
	t.Cleanup(func() { stopDaemon(a) })
	if !strings.Contains(out, "on "+aIf.Name()) {
		t.Errorf("vif up printed %q; want the IPv6 default route's interface %s as the slave", out, aIf.Name())
	}
	if st := vifStatus(t, a, "v6"); st.Slave != aIf.Name() {
		t.Errorf("slave %q, want %s", st.Slave, aIf.Name())
	}
}
