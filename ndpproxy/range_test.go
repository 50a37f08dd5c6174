package ndpproxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vif-project/vif/ndpproxy"
)

// TestRangeWide checks a /64 range, too large to join a group per
// address: solicitations for addresses all over it are answered (DAD
// probes too), the excluded addresses, the Subnet-Router anycast address
// and addresses outside it are not, and another host using an address of
// it is a conflict.
func TestRangeWide(t *testing.T) {
	r, conn := newResponder(t, quiet())
	p := netip.MustParsePrefix("2001:db8:1::/64")
	excluded := []netip.Addr{netip.MustParseAddr("2001:db8:1::77"), netip.MustParseAddr("2001:db8:1:0:ffff:ffff:ffff:fffe")}
	if err := r.AddRange(p, excluded); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		b := p.Addr().As16()
		binary.BigEndian.PutUint64(b[8:], rnd.Uint64()|1)
		req := solicit(peerMAC, peerIP, netip.AddrFrom16(b))
		conn.send(t, req.bytes(t))
		checkReply(t, conn.next(t, 5*time.Second).frame, req)
	}
	last := netip.MustParseAddr("2001:db8:1:0:ffff:ffff:ffff:ffff")
	req := solicit(peerMAC, peerIP, last)
	conn.send(t, req.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, req)
	dad := dadProbe(peerMAC, netip.MustParseAddr("2001:db8:1::abcd"))
	conn.send(t, dad.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, dad)
	for _, a := range append(slices.Clone(excluded), p.Addr(), netip.MustParseAddr("2001:db8:2::1"), netip.MustParseAddr("2001:db8::1")) {
		conn.send(t, solicit(peerMAC, peerIP, a).bytes(t))
	}
	conn.none(t, 50*time.Millisecond)
	before := r.Stats().Conflicts
	conn.send(t, solicit(otherMAC, netip.MustParseAddr("2001:db8:1::99"), owned1).bytes(t))
	waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Conflicts == before+1 })
	if s := r.Stats(); s.Groups != 0 || s.AllMulticast {
		t.Errorf("a Responder from New: %d groups, all multicast %v; want none", s.Groups, s.AllMulticast)
	}
	r.RemoveRange(p)
	conn.send(t, req.bytes(t))
	conn.none(t, 50*time.Millisecond)
}

// TestProbeRange checks that ProbeRange probes every address of a small
// range but its anycast address, listens to the end and returns every
// address another host answered for; that ProbeAll does the same for a
// list; and that ranges larger than GroupRangeBits are refused.
func TestProbeRange(t *testing.T) {
	r, conn := newResponder(t, quiet())
	p := netip.MustParsePrefix("2001:db8:3::/124")
	used := []netip.Addr{netip.MustParseAddr("2001:db8:3::5"), netip.MustParseAddr("2001:db8:3::c")}
	type result struct {
		addrs []netip.Addr
		err   error
	}
	done := make(chan result, 1)
	go func() {
		a, err := r.ProbeRange(context.Background(), p, 200*time.Millisecond)
		done <- result{a, err}
	}()
	probed := map[netip.Addr]int{}
	for range 3 * 15 {
		f := ndpproxy.Frame(conn.next(t, time.Second).frame)
		probed[f.Target()]++
		if slices.Contains(used, f.Target()) && probed[f.Target()] == 1 {
			conn.send(t, advertise(otherMAC, peerLL, f.Target()).bytes(t))
		}
	}
	res := <-done
	if res.err != nil || !slices.Equal(res.addrs, used) {
		t.Errorf("ProbeRange = %v, %v; want %v", res.addrs, res.err, used)
	}
	if len(probed) != 15 || probed[p.Addr()] != 0 {
		t.Errorf("probed %d addresses (anycast %d times), want the 15 but the anycast one", len(probed), probed[p.Addr()])
	}
	go func() {
		a, err := r.ProbeAll(context.Background(), []netip.Addr{owned1, owned2}, 200*time.Millisecond)
		done <- result{a, err}
	}()
	for range 6 {
		if f := ndpproxy.Frame(conn.next(t, time.Second).frame); f.Target() == owned2 {
			conn.send(t, advertise(otherMAC, peerLL, owned2).bytes(t))
		}
	}
	if res := <-done; res.err != nil || !slices.Equal(res.addrs, []netip.Addr{owned2}) {
		t.Errorf("ProbeAll = %v, %v; want [%v]", res.addrs, res.err, owned2)
	}
	for _, bad := range []string{"2001:db8::/64", "2001:db8::/119", "192.0.2.0/24"} {
		if _, err := r.ProbeRange(context.Background(), netip.MustParsePrefix(bad), 0); !errors.Is(err, ndpproxy.ErrInvalidAddr) {
			t.Errorf("ProbeRange(%s) = %v, want ErrInvalidAddr", bad, err)
		}
	}
	if _, err := r.ProbeAll(context.Background(), make([]netip.Addr, ndpproxy.MaxProbe+1), 0); !errors.Is(err, ndpproxy.ErrInvalidAddr) {
		t.Errorf("ProbeAll of %d addresses = %v, want ErrInvalidAddr", ndpproxy.MaxProbe+1, err)
	}
}
