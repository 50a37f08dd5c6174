package vif

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// manyPeers returns n peers with m /24 prefixes each, all distinct.
func manyPeers(n, m int) []Peer {
	peers := make([]Peer, n)
	for k := range peers {
		peers[k].Addr = netip.AddrFrom4([4]byte{198, 18, byte(k >> 8), byte(k)})
		for j := range m {
			x := k*m + j
			peers[k].Prefixes = append(peers[k].Prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(x >> 8), byte(x), 0}), 24))
		}
	}
	return peers
}

func TestPeerTableLookup(t *testing.T) {
	peers := manyPeers(100, 10)
	peers = append(peers, Peer{Addr: netip.MustParseAddr("198.19.0.1"), Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
		Peer{Addr: netip.MustParseAddr("198.19.0.2"), Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.5.128/25")}})
	if err := checkPeers(peers, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	tab := newPeerTable(peers, 1480)
	for _, tc := range []struct{ dst, peer string }{
		{"10.0.0.1", "198.18.0.0"},    // first prefix of the first peer
		{"10.0.12.9", "198.18.0.1"},   // 10.0.12.0/24: peer 1
		{"10.0.5.200", "198.19.0.2"},  // the longer prefix wins
		{"10.0.5.100", "198.18.0.0"},  // the /24 around it
		{"203.0.113.9", "198.19.0.1"}, // nobody's: the default peer
	} {
		p := tab.lookup(netip.MustParseAddr(tc.dst).As4())
		if p == nil || p.Addr.String() != tc.peer {
			t.Errorf("lookup(%s) = %v, want %s", tc.dst, p, tc.peer)
		}
	}
	// Set and remove share the rest of the table and keep the counters.
	p0 := tab.byAddr(0xc6120000)
	p0.st.txPkts.Add(7)
	changed := tab.with(Peer{Addr: p0.Addr, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, 1480)
	if q := changed.lookup([4]byte{192, 0, 2, 1}); q == nil || q.Addr != p0.Addr || q.st.txPkts.Load() != 7 {
		t.Errorf("after with: lookup(192.0.2.1) = %v", q)
	}
	if q := changed.lookup([4]byte{10, 0, 0, 1}); q == nil || q.Addr.String() != "198.19.0.1" {
		t.Errorf("after with: a prefix the peer gave up still goes to %v", q)
	}
	if q := tab.lookup([4]byte{10, 0, 0, 1}); q != p0 {
		t.Errorf("with changed the old table: %v", q)
	}
	gone := changed.without(changed.byAddr(0xc6120001))
	if gone.byAddr(0xc6120001) != nil || len(gone.list) != len(changed.list)-1 {
		t.Errorf("without: peer still there")
	}
	if q := gone.lookup([4]byte{10, 0, 12, 9}); q == nil || q.Addr.String() != "198.19.0.1" {
		t.Errorf("without: its prefix still goes to %v", q)
	}
	if err := checkPeers(append(peers, Peer{Addr: netip.MustParseAddr("198.19.0.3"), Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}), netip.Addr{}); err == nil {
		t.Error("a prefix given to two peers is accepted")
	}
	if err := checkPeers([]Peer{{Addr: netip.MustParseAddr("198.19.0.1")}, {Addr: netip.MustParseAddr("198.19.0.1")}}, netip.Addr{}); err == nil {
		t.Error("a peer given twice is accepted")
	}
	pfx := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	local := netip.MustParseAddr("198.18.0.1")
	for name, peers := range map[string][]Peer{
		"the local address":          {{Addr: local}},
		"a prefix twice":             {{Addr: netip.MustParseAddr("198.18.0.2"), Prefixes: pfx("10.0.0.0/24", "10.0.0.0/24")}},
		"loopback":                   {{Addr: netip.MustParseAddr("198.18.0.2"), Prefixes: pfx("127.0.0.0/8")}},
		"multicast":                  {{Addr: netip.MustParseAddr("198.18.0.2"), Prefixes: pfx("224.0.0.0/4")}},
		"a peer's underlay address":  {{Addr: netip.MustParseAddr("198.18.0.2"), Prefixes: pfx("10.0.0.0/24")}, {Addr: netip.MustParseAddr("198.18.0.3"), Prefixes: pfx("198.18.0.2/32")}},
		"the local underlay address": {{Addr: netip.MustParseAddr("198.18.0.2"), Prefixes: pfx("198.18.0.0/24")}},
	} {
		if err := checkPeers(peers, local); !errors.Is(err, ErrBadPeer) {
			t.Errorf("%s: %v, want ErrBadPeer", name, err)
		}
	}
	// A split default (as wg-quick routes) holds the peer itself: routed
	// into the vif, the tunnel's own packets would enter it. 0.0.0.0/0 is
	// never routed, so it may.
	if err := checkPeers([]Peer{{Addr: netip.MustParseAddr("198.18.0.2"), Prefixes: pfx("0.0.0.0/1", "128.0.0.0/1")}}, local); !errors.Is(err, ErrBadPeer) {
		t.Errorf("a split default holding the peer: %v", err)
	}
	if err := checkPeers([]Peer{{Addr: netip.MustParseAddr("198.18.0.2"), Prefixes: pfx("0.0.0.0/0")}}, local); err != nil {
		t.Errorf("a catch-all peer: %v", err)
	}
}

// The figures: 1000 peers with 10 000 prefixes on one vif, a
// lookup per packet (<= 100 ns, 0 allocs) and adding a peer (<= 1 ms).
func BenchmarkPeerLookup(b *testing.B) {
	tab := newPeerTable(manyPeers(1000, 10), 1480)
	dsts := make([][4]byte, 4096)
	for k := range dsts {
		x := rand.IntN(10000)
		dsts[k] = [4]byte{10, byte(x >> 8), byte(x), byte(rand.IntN(256))}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for k := 0; k < b.N; k++ {
		if tab.lookup(dsts[k&4095]) == nil {
			b.Fatal("no peer")
		}
	}
}

func BenchmarkPeerByAddr(b *testing.B) {
	tab := newPeerTable(manyPeers(1000, 10), 1480)
	b.ReportAllocs()
	for k := 0; k < b.N; k++ {
		if tab.byAddr(0xc6120000|uint32(k%1000)) == nil {
			b.Fatal("no peer")
		}
	}
}

func BenchmarkSetPeer(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			tab := newPeerTable(manyPeers(n, 10), 1480)
			p := Peer{Addr: netip.MustParseAddr("198.19.0.1")}
			for j := range 10 {
				p.Prefixes = append(p.Prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(j), 0}), 24))
			}
			b.ReportAllocs()
			for b.Loop() {
				t := tab.with(p, 1480)
				_ = t.without(t.byAddr(0xc6130001))
			}
		})
	}
}
