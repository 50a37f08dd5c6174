package ndpproxy_test

import (
	"encoding/binary"
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
