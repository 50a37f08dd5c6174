package vif_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/nstest"
)

// transfer sends n random bytes over TCP from src on host from to dst on
// host to, and returns an error unless the same arrived (by their sha256).
func transfer(from, to *nstest.Host, src, dst netip.Addr, port, n int) error {
	var ln net.Listener
	if err := to.Do(func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(dst, uint16(port)).String())
		return err
	}); err != nil {
		return err
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	var c net.Conn
	if err := from.Do(func() (err error) {
		c, err = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 10 * time.Second}).Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		return fmt.Errorf("connect %s to %v: %w", src, ln.Addr(), err)
	}
	data := make([]byte, n)
	rand.Read(data)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	_, err := c.Write(data)
	c.Close()
	if err != nil {
		return fmt.Errorf("send %s to %s: %w", src, dst, err)
	}
	select {
	case h, ok := <-got:
		if !ok || h != sha256.Sum256(data) {
			return fmt.Errorf("%s to %s: the stream arrived changed", src, dst)
		}
	case <-time.After(60 * time.Second):
		return fmt.Errorf("%s to %s: the stream did not arrive", src, dst)
	}
	return nil
}

// sharedPort is host a with vifs on one slave, each tunnelling to a vif of
// its own peer host on a segment.
type sharedPort struct {
	seg    *nstest.Segment
	ha     *nstest.Host
	slave  string
	peers  []*nstest.Host
	vifs   []*vif.Interface // a's
	remote []*vif.Interface // the peers'
	mine   []netip.Addr     // a's vifs' addresses
	theirs []netip.Addr     // the peers' vifs' addresses
}

// newSharedPort brings up n vifs on a's slave, the second on protocol 4,
// the others on 94, each with a peer of its own (198.18.0.2, .3, ...).
func newSharedPort(t *testing.T, n int) *sharedPort {
	t.Helper()
	nt := nstest.New(t)
	s := &sharedPort{seg: nt.Segment(), ha: nt.Host("a")}
	s.slave = s.seg.Attach(s.ha, "198.18.0.1/24").Name()
	pfx := netip.MustParsePrefix
	for k := range n {
		h := nt.Host(fmt.Sprintf("p%d", k))
		ifc := s.seg.Attach(h, fmt.Sprintf("198.18.0.%d/24", k+2))
		peer := netip.AddrFrom4([4]byte{198, 18, 0, byte(k + 2)})
		mine := netip.AddrFrom4([4]byte{192, 0, 2, byte(k + 1)})
		theirs := netip.AddrFrom4([4]byte{198, 51, 100, byte(k + 1)})
		proto := uint8(ipip.ProtoIPIP)
		if k == 1 {
			proto = ipip.ProtoIPinIP
		}
		s.peers = append(s.peers, h)
		s.mine, s.theirs = append(s.mine, mine), append(s.theirs, theirs)
		s.vifs = append(s.vifs, upIn(t, s.ha, vif.LinkConfig{Name: fmt.Sprintf("v%d", k), Slave: s.slave,
			Config: vif.Config{Addrs: []netip.Prefix{netip.PrefixFrom(mine, 32)}, Protocol: proto,
				Peers: []vif.Peer{{Addr: peer, Prefixes: []netip.Prefix{netip.PrefixFrom(theirs, 32)}}}}}))
		s.remote = append(s.remote, upIn(t, h, vif.LinkConfig{Name: "v0", Slave: ifc.Name(),
			Config: vif.Config{Addrs: []netip.Prefix{netip.PrefixFrom(theirs, 32)}, Protocol: proto,
				Peers: []vif.Peer{{Addr: xdpA, Prefixes: []netip.Prefix{pfx(mine.String() + "/32")}}}}}))
	}
	return s
}

// xdpPrograms counts the XDP programs on h's interface ifname.
func xdpPrograms(t *testing.T, h *nstest.Host, ifname string) int {
	t.Helper()
	return strings.Count(h.MustRun("ip", "-d", "link", "show", ifname), "prog/xdp")
}

// TestXDPSharedPort brings up two and three vifs on one slave, each with
// its own peer (and the second on another protocol): all of them run on
// the slave's one AF_XDP port at once, proven by their counters while TCP
// streams go both ways through each, their peers changing meanwhile. The
// first vif, which opened the port, goes: the others keep on through
// AF_XDP. The last one going leaves no program, socket or BPF object.
func TestXDPSharedPort(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d vifs", n), func(t *testing.T) {
			s := newSharedPort(t, n)
			for k, i := range s.vifs {
				if u := i.Underlay(); u != (vif.UnderlayInfo{Kind: vif.UnderlayXDP}) {
					t.Errorf("v%d: underlay %+v, want xdp alone", k, u)
				}
			}
			if got := xdpPrograms(t, s.ha, s.slave); got != 1 {
				t.Errorf("%d XDP programs on the slave, want 1", got)
			}
			for _, a := range s.theirs {
				if err := s.ha.Ping(a.String(), 1); err != nil { // resolves the next hops
					t.Fatal(err)
				}
			}
			time.Sleep(200 * time.Millisecond)
			before := make([]vif.XDPStats, n)
			for k, i := range s.vifs {
				before[k], _ = vif.XDPStatsOf(i)
			}

			// Streams both ways through every vif at once, while
			// their peers are set again and again (steering anew).
			const size = 4 << 20
			var wg sync.WaitGroup
			errs := make(chan error, 2*n)
			stop := make(chan struct{})
			for k := range s.vifs {
				wg.Add(2)
				go func() {
					defer wg.Done()
					errs <- transfer(s.ha, s.peers[k], s.mine[k], s.theirs[k], 5001, size)
				}()
				go func() {
					defer wg.Done()
					errs <- transfer(s.peers[k], s.ha, s.theirs[k], s.mine[k], 5002, size)
				}()
			}
			churn := make(chan struct{})
			go func() {
				defer close(churn)
				for {
					for k, i := range s.vifs {
						select {
						case <-stop:
							return
						default:
						}
						p := vif.Peer{Addr: netip.AddrFrom4([4]byte{198, 18, 0, byte(k + 2)}), Prefixes: []netip.Prefix{netip.PrefixFrom(s.theirs[k], 32)}}
						if err := i.SetPeer(p); err != nil {
							errs <- err
						}
						i.Stats()
						vif.XDPStatsOf(i)
						time.Sleep(5 * time.Millisecond)
					}
				}
			}()
			wg.Wait()
			close(stop)
			<-churn
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			handed := uint64(0)
			for k, i := range s.vifs {
				st, _ := vif.XDPStatsOf(i)
				handed += vif.XDPInboxOf(i)
				t.Logf("v%d: %+v, %d of them taken from the rings by another vif", k, st, vif.XDPInboxOf(i))
				// 4 MB are some 3000 segments each way.
				if rx, tx := st.RxXDP-before[k].RxXDP, st.TxXDP-before[k].TxXDP; rx < 2500 || tx < 2500 {
					t.Errorf("v%d received %d and sent %d packets through AF_XDP, want 2500 or more each way", k, rx, tx)
				}
				if st.TxRaw-before[k].TxRaw > 10 {
					t.Errorf("v%d sent %d packets through the raw socket", k, st.TxRaw-before[k].TxRaw)
				}
			}
			// The vifs read the rings in turn: each takes the
			// others' packets too, and hands them on.
			if handed == 0 {
				t.Errorf("no vif received a packet another vif took from the rings: no demultiplexing")
			}
			t.Run("first goes", func(t *testing.T) { sharedFirstGoes(t, s) })
			if t.Failed() {
				return
			}
			for _, i := range s.vifs {
				i.Close()
			}
			if got := xdpPrograms(t, s.ha, s.slave); got != 0 {
				t.Errorf("%d XDP programs left on the slave after its last vif went", got)
			}
			for _, i := range s.remote {
				i.Close()
			}
			checkNoXDP(t, append([]*nstest.Host{s.ha}, s.peers...)...)
		})
	}
}

// sharedFirstGoes closes the first vif of s: the others keep their
// tunnels on AF_XDP, and the program stays.
func sharedFirstGoes(t *testing.T, s *sharedPort) {
	s.vifs[0].Close()
	if got := xdpPrograms(t, s.ha, s.slave); got != 1 {
		t.Errorf("%d XDP programs on the slave after the first vif went, want 1", got)
	}
	for k, i := range s.vifs[1:] {
		k++
		if u := i.Underlay(); u != (vif.UnderlayInfo{Kind: vif.UnderlayXDP}) {
			t.Errorf("v%d: underlay %+v, want xdp alone", k, u)
		}
		before, _ := vif.XDPStatsOf(i)
		if err := s.ha.Ping(s.theirs[k].String(), 3); err != nil {
			t.Fatalf("v%d: %v", k, err)
		}
		if err := transfer(s.ha, s.peers[k], s.mine[k], s.theirs[k], 5003, 1<<20); err != nil {
			t.Error(err)
		}
		if err := transfer(s.peers[k], s.ha, s.theirs[k], s.mine[k], 5004, 1<<20); err != nil {
			t.Error(err)
		}
		after, _ := vif.XDPStatsOf(i)
		if rx, tx := after.RxXDP-before.RxXDP, after.TxXDP-before.TxXDP; rx < 600 || tx < 600 {
			t.Errorf("v%d received %d and sent %d packets through AF_XDP after the first vif went, want 600 or more", k, rx, tx)
		}
	}
}

// sharedUnderlays opens, on a, two XDP underlays on one slave, local
// addresses 198.18.0.1 and .11, both with peer b (198.18.0.2), and on b
// one with both as peers.
func sharedUnderlays(t testing.TB) (x1, x2, xb *vif.XDPUnderlay, ha *nstest.Host) {
	return sharedUnderlaysN(t, true)
}

// sharedUnderlaysN is sharedUnderlays; without second, x2 is nil.
func sharedUnderlaysN(t testing.TB, second bool) (x1, x2, xb *vif.XDPUnderlay, ha *nstest.Host) {
	t.Helper()
	n := nstest.New(t)
	ha, hb := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
	ha.AddAddr(aIf.Name(), "198.18.0.11/24")
	for _, a := range []string{"198.18.0.1", "198.18.0.11"} {
		if err := hb.Ping(a, 1); err != nil {
			t.Fatal(err)
		}
	}
	x1 = openXDP(t, ha, "v1", aIf.Name(), ipip.ProtoIPIP, xdpA, nil, xdpB)
	if second {
		x2 = openXDP(t, ha, "v2", aIf.Name(), ipip.ProtoIPIP, xdpA11, nil, xdpB)
	}
	xb = openXDP(t, hb, "vb", bIf.Name(), ipip.ProtoIPIP, xdpB, nil, xdpA, xdpA11)
	return x1, x2, xb, ha
}

var xdpA11 = netip.MustParseAddr("198.18.0.11")

// sharedBatch builds n packets from b, alternately to 198.18.0.1 and .11.
func sharedBatch(t testing.TB, n int) (pkts, rbufs [][]byte, sizes []int) {
	pkts, rbufs, sizes = underlayBatch(t, n, 1000)
	for k, p := range pkts {
		dst := xdpA
		if k%2 == 1 {
			dst = xdpA11
		}
		e := &ipip.Encapsulator{Src: xdpB, Dst: dst}
		if _, err := e.Encap(p, vif.Headroom); err != nil {
			t.Fatal(err)
		}
	}
	return pkts, rbufs, sizes
}

// TestXDPSharedPortDemux sends batches from b to two underlays of one
// slave on a: whichever reads the rings hands the other's packets on,
// each gets its own, whole, and moving them does not allocate.
func TestXDPSharedPortDemux(t *testing.T) {
	x1, x2, xb, _ := sharedUnderlays(t)
	const n = 32
	pkts, rbufs, sizes := sharedBatch(t, n)
	round := func(check bool) {
		if k, err := xb.Write(pkts, vif.Headroom-ipip.IPv4MinLen); err != nil || k != n {
			t.Fatalf("Write = %d, %v", k, err)
		}
		for i, x := range []*vif.XDPUnderlay{x1, x2} {
			for got := 0; got < n/2; {
				k, err := x.Read(rbufs[got:n/2], sizes[got:n/2], vif.Headroom)
				if err != nil {
					t.Fatal(err)
				}
				got += k
			}
			if !check {
				continue
			}
			// Its own, whole, in order.
			for k := range n / 2 {
				want := pkts[2*k+i][vif.Headroom-ipip.IPv4MinLen:]
				if got := rbufs[k][vif.Headroom : vif.Headroom+sizes[k]]; !bytes.Equal(got, want) {
					t.Fatalf("v%d's packet %d: got %d bytes to %v, want %d to %v", i+1, k, len(got), ipip.IPv4(got).Dst(), len(want), ipip.IPv4(want).Dst())
				}
			}
		}
	}
	round(true)
	// The next hops' refresh (every second, for each underlay) allocates
	// meanwhile: the fewest of three runs.
	allocs := testing.AllocsPerRun(50, func() { round(false) })
	for try := 1; try < 3 && allocs != 0; try++ {
		allocs = min(allocs, testing.AllocsPerRun(50, func() { round(false) }))
	}
	if allocs != 0 {
		t.Errorf("%v allocations per batch of %d packets, want 0", allocs, n)
	}
	round(true)
	s1, s2, sb := x1.Stats(), x2.Stats(), xb.Stats()
	t.Logf("v1 %+v, v2 %+v", s1, s2)
	const want = (1 + 1 + 1 + 50) * n / 2 // at least
	if sb.TxXDP < 2*want || s1.RxXDP != sb.TxXDP/2 || s2.RxXDP != sb.TxXDP/2 {
		t.Errorf("b sent %d through AF_XDP, a's vifs received %d and %d; want %d, %d, %d", sb.TxXDP, s1.RxXDP, s2.RxXDP, 2*want, want, want)
	}
	if s1.InboxDropped+s2.InboxDropped+s1.Unclaimed != 0 || s1.RxRaw+s2.RxRaw != 0 {
		t.Errorf("dropped or through the kernel: v1 %+v, v2 %+v", s1, s2)
	}
}

// TestXDPSharedPortConcurrent runs two underlays of one slave at once:
// each reads in its own goroutine while both write to b, b writes to
// both, and their peers are set again and again (for the race detector).
// The first closes meanwhile: the other keeps receiving its own packets.
func TestXDPSharedPortConcurrent(t *testing.T) {
	x1, x2, xb, _ := sharedUnderlays(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	got := map[netip.Addr]int{}
	wrong := 0
	read := func(x vif.Underlay, local netip.Addr) {
		defer wg.Done()
		bufs, sizes := make([][]byte, 64), make([]int, 64)
		for k := range bufs {
			bufs[k] = make([]byte, vif.Headroom+2048)
		}
		for {
			n, err := x.Read(bufs, sizes, vif.Headroom)
			if err != nil {
				return
			}
			mu.Lock()
			for k := range n {
				if ipip.IPv4(bufs[k][vif.Headroom:vif.Headroom+sizes[k]]).Dst() != local {
					wrong++
				}
			}
			got[local] += n
			mu.Unlock()
		}
	}
	write := func(x vif.Underlay, pkts [][]byte) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := x.Write(pkts, vif.Headroom-ipip.IPv4MinLen); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	toA, _, _ := sharedBatch(t, 32)
	toB1, _, _ := underlayBatch(t, 16, 1000) // from 198.18.0.1
	toB2, _, _ := underlayBatch(t, 16, 1000)
	for _, p := range toB2 {
		if _, err := (&ipip.Encapsulator{Src: xdpA11, Dst: xdpB}).Encap(p, vif.Headroom); err != nil {
			t.Fatal(err)
		}
	}
	wg.Add(6)
	go read(x1, xdpA)
	go read(x2, xdpA11)
	go read(xb, xdpB)
	go write(xb, toA)
	go write(x1, toB1)
	go write(x2, toB2)
	churn := make(chan struct{})
	go func() {
		defer close(churn)
		for {
			select {
			case <-stop:
				return
			default:
			}
			x1.SetPeers([]netip.Addr{xdpB})
			x2.SetPeers([]netip.Addr{xdpB})
			x1.Stats()
			x2.Drops()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	count := func(a netip.Addr) int {
		mu.Lock()
		defer mu.Unlock()
		return got[a]
	}
	time.Sleep(time.Second)
	x1.Close()
	mid := count(xdpA11)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-churn
	x2.Close()
	xb.Close()
	wg.Wait()
	s2 := x2.Stats()
	t.Logf("received: %v; v2 %+v", got, s2)
	if got[xdpA] < 1000 || got[xdpA11] < 1000 || got[xdpB] < 1000 {
		t.Errorf("received %v, want 1000 or more at each", got)
	}
	if got[xdpA11]-mid < 500 {
		t.Errorf("v2 received %d packets after v1 closed, want 500 or more", got[xdpA11]-mid)
	}
	if wrong != 0 {
		t.Errorf("%d packets reached an underlay not theirs", wrong)
	}
}

// BenchmarkXDPSharedPort moves batches from b to one underlay on a, alone
// on its slave's port, and beside another underlay that reads the rings
// too (idle: every packet is the first's), which then takes some of them
// and hands them on.
func BenchmarkXDPSharedPort(b *testing.B) {
	for _, second := range []bool{false, true} {
		name := "alone"
		if second {
			name = "beside an idle vif"
		}
		b.Run(name, func(b *testing.B) {
			x1, x2, xb, _ := sharedUnderlaysN(b, second)
			if second {
				go func() {
					bufs, sizes := make([][]byte, 64), make([]int, 64)
					for k := range bufs {
						bufs[k] = make([]byte, vif.Headroom+2048)
					}
					for {
						if _, err := x2.Read(bufs, sizes, vif.Headroom); err != nil {
							return
						}
					}
				}()
			}
			pkts, rbufs, sizes := underlayBatch(b, 32, 1400)
			for _, p := range pkts { // from b to the first
				if _, err := (&ipip.Encapsulator{Src: xdpB, Dst: xdpA}).Encap(p, vif.Headroom); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(32 * 1400)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				xdpRoundTrip(b, xb, x1, pkts, rbufs, sizes)
			}
			b.StopTimer()
			if second {
				b.ReportMetric(float64(vif.XDPInboxOfUnderlay(x1))/float64(b.N*32), "handed/pkt")
			}
		})
	}
}
