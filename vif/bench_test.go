package vif_test

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"golang.zx2c4.com/wireguard/tun"
)

// The benchmarks drive the packet loop over a non-allocating in-memory
// device pair: the source re-serves preloaded packets (copied from fixed
// buffers into the loop's, as a real read would), the sink counts and
// discards. So allocations and time are the loop's own, plus one copy per
// packet. viftest's doubles copy into fresh slices and would hide the
// loop's allocations.

// benchSource hands out a budget of packets, batch by batch, cycling
// through pkts, and blocks while the budget is empty.
type benchSource struct {
	pkts   [][]byte
	batch  int
	next   int
	budget chan int // packets to serve; a receive refills
	left   int
	closed chan struct{}
}

func newBenchSource(pkts [][]byte, batch int) *benchSource {
	return &benchSource{pkts: pkts, batch: batch, budget: make(chan int, 1), closed: make(chan struct{})}
}

func (s *benchSource) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for s.left == 0 {
		select {
		case n := <-s.budget:
			s.left = n
		case <-s.closed:
			return 0, os.ErrClosed
		}
	}
	n := min(s.batch, len(bufs), s.left)
	for j := 0; j < n; j++ {
		sizes[j] = copy(bufs[j][offset:], s.pkts[s.next])
		if s.next++; s.next == len(s.pkts) {
			s.next = 0
		}
	}
	s.left -= n
	return n, nil
}

// benchSink counts packets written and signals done when a target is
// reached.
type benchSink struct {
	n      atomic.Int64
	target atomic.Int64
	done   chan struct{}
}

func (s *benchSink) write(bufs [][]byte) (int, error) {
	if s.n.Add(int64(len(bufs))) == s.target.Load() {
		s.done <- struct{}{}
	}
	return len(bufs), nil
}

// benchTUN is a tun.Device: reads come from src (nil: block until closed),
// writes go to sink.
type benchTUN struct {
	src       *benchSource
	sink      *benchSink
	closed    chan struct{}
	closeOnce atomic.Bool
}

var _ tun.Device = (*benchTUN)(nil)

func (t *benchTUN) File() *os.File { return nil }
func (t *benchTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.src == nil {
		<-t.closed
		return 0, os.ErrClosed
	}
	return t.src.read(bufs, sizes, offset)
}
func (t *benchTUN) Write(bufs [][]byte, offset int) (int, error) { return t.sink.write(bufs) }
func (t *benchTUN) MTU() (int, error)                            { return 65515, nil }
func (t *benchTUN) Name() (string, error)                        { return "bench0", nil }
func (t *benchTUN) Events() <-chan tun.Event                     { return nil }
func (t *benchTUN) BatchSize() int                               { return 128 }
func (t *benchTUN) Close() error {
	if t.closeOnce.CompareAndSwap(false, true) {
		close(t.closed)
		if t.src != nil {
			close(t.src.closed)
		}
	}
	return nil
}

// benchUnderlay is a vif.Underlay: reads come from src (nil: block until
// closed), writes go to sink.
type benchUnderlay struct {
	src       *benchSource
	sink      *benchSink
	closed    chan struct{}
	closeOnce atomic.Bool
}

var _ vif.Underlay = (*benchUnderlay)(nil)

func (u *benchUnderlay) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if u.src == nil {
		<-u.closed
		return 0, os.ErrClosed
	}
	return u.src.read(bufs, sizes, offset)
}
func (u *benchUnderlay) Write(bufs [][]byte, offset int) (int, error) { return u.sink.write(bufs) }
func (u *benchUnderlay) BatchSize() int                               { return 128 }
func (u *benchUnderlay) Close() error {
	if u.closeOnce.CompareAndSwap(false, true) {
		close(u.closed)
		if u.src != nil {
			close(u.src.closed)
		}
	}
	return nil
}

// benchRig is an Interface over a bench device pair, with one direction
// fed.
type benchRig struct {
	ifc       *vif.Interface
	src       *benchSource
	sink      *benchSink
	perPacket int // packets written per packet fed (fragments); 0 is 1
}

// benchUDP builds an IPv4/UDP packet of size bytes.
func benchUDP(tb testing.TB, src, dst netip.Addr, size int) []byte {
	tb.Helper()
	ip := &layers.IPv4{
		Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		Flags: layers.IPv4DontFragment, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
	}
	u := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, u, gopacket.Payload(make([]byte, size-28))); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// benchUDP6 builds an IPv6/UDP packet of size bytes.
func benchUDP6(tb testing.TB, src, dst netip.Addr, size int) []byte {
	tb.Helper()
	return udp6(tb, src, dst, string(make([]byte, size-48)))
}

// newBenchRig starts an interface whose direction dir ("encap", "decap"
// or "loopback") is fed with packets of size bytes (inner size), batch
// packets per read.
func newBenchRig(tb testing.TB, dir string, size, batch int) *benchRig {
	tb.Helper()
	const npkts = 256 // distinct buffers, more than one batch
	r := &benchRig{sink: &benchSink{done: make(chan struct{}, 1)}}
	pkts := make([][]byte, npkts)
	tunDev := &benchTUN{closed: make(chan struct{})}
	under := &benchUnderlay{closed: make(chan struct{})}
	for j := range pkts {
		switch dir {
		case "encap":
			pkts[j] = benchUDP(tb, addrA, other, size)
		case "fragment": // no DF, over a path MTU of 1000: two fragments each
			pkts[j] = benchUDP(tb, addrA, other, size)
			pkts[j][6] &^= 0x40
			ipip.IPv4(pkts[j]).SetChecksum()
		case "encap6":
			pkts[j] = benchUDP6(tb, own6, hostB6, size)
		case "decap6":
			pkts[j] = encap6(tb, localB, localA, benchUDP6(tb, hostB6, own6, size))
		case "encap4in6":
			pkts[j] = benchUDP(tb, addrA, other, size)
		case "encap6in6":
			pkts[j] = benchUDP6(tb, own6, hostB6, size)
		case "fragment6in6": // over a path MTU of 1280: two fragments each
			pkts[j] = benchUDP6(tb, own6, hostB6, 1280)
		case "decap4in6":
			pkts[j] = encapOver6(tb, peer6B, local6A, benchUDP(tb, addrB, addrA, size))
		case "decap6in6":
			pkts[j] = encapOver6(tb, peer6B, local6A, benchUDP6(tb, hostB6, own6, size))
		case "loopback":
			pkts[j] = benchUDP(tb, other, addrA, size)
		case "range6": // to addresses all over an IPv6 range, looped back
			pkts[j] = benchUDP6(tb, hostB6, range6Addr(j), size)
		case "decaprange6":
			pkts[j] = encap6(tb, localB, localA, benchUDP6(tb, hostB6, range6Addr(j), size))
		case "decap":
			inner := benchUDP(tb, addrB, addrA, size)
			buf := make([]byte, ipip.IPv4MinLen+len(inner))
			copy(buf[ipip.IPv4MinLen:], inner)
			e := &ipip.Encapsulator{Src: localB, Dst: localA}
			out, err := e.Encap(buf, ipip.IPv4MinLen)
			if err != nil {
				tb.Fatal(err)
			}
			pkts[j] = out
		}
	}
	r.src = newBenchSource(pkts, batch)
	cfg := &vif.Config{Addrs: hosts(addrA), Local: localA, Peer: localB}
	if dir == "encap6" || dir == "decap6" {
		cfg = &vif.Config{Addrs: hosts(addrA, own6), Local: localA,
			Peers: []vif.Peer{{Addr: localB, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:b::/64")}}}}
	}
	if strings.HasSuffix(dir, "in6") {
		cfg = over6Cfg()
	}
	if dir == "range6" || dir == "decaprange6" {
		cfg = &vif.Config{Ranges: []netip.Prefix{range6}, Exclude: []netip.Addr{range6Excluded}, Local: localA,
			Peers: []vif.Peer{{Addr: localB, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:b::/64")}}}}
	}
	switch dir {
	case "encap", "encap6", "encap4in6", "encap6in6":
		tunDev.src, under.sink = r.src, r.sink
	case "fragment6in6":
		tunDev.src, under.sink = r.src, r.sink
		cfg.PathMTU = func(netip.Addr) (int, error) { return 1280, nil }
		r.perPacket = 2
	case "fragment":
		tunDev.src, under.sink = r.src, r.sink
		cfg.PathMTU = func(netip.Addr) (int, error) { return 1000, nil }
		r.perPacket = 2
	case "loopback", "range6":
		tunDev.src, tunDev.sink = r.src, r.sink
	case "decap", "decap6", "decap4in6", "decap6in6", "decaprange6":
		under.src, tunDev.sink = r.src, r.sink
	}
	ifc, err := vif.New(tunDev, under, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	r.ifc = ifc
	// Warm up: the loop allocates its buffers when it starts.
	r.run(tb, 4*batch)
	return r
}

// run feeds n packets and waits until all of them have been written.
func (r *benchRig) run(tb testing.TB, n int) {
	r.sink.n.Store(0)
	r.sink.target.Store(int64(n * max(r.perPacket, 1)))
	r.src.budget <- n
	<-r.sink.done
}

func (r *benchRig) close(tb testing.TB) {
	if err := r.ifc.Close(); err != nil {
		tb.Error(err)
	}
	if s := r.ifc.Stats(); s.Dropped() != 0 {
		tb.Errorf("drops in the benchmark: %v", s.Drops)
	}
}

// BenchmarkLoop measures the packet loop per packet, in each direction,
// for small and full-size packets. One op is one packet.
func BenchmarkLoop(b *testing.B) {
	for _, dir := range []string{"encap", "decap", "loopback", "encap6", "decap6", "range6", "decaprange6", "encap4in6", "decap4in6", "encap6in6", "decap6in6"} {
		for _, size := range []int{64, 1400} {
			for _, batch := range []int{1, 128} {
				b.Run(fmt.Sprintf("%s/size=%d/batch=%d", dir, size, batch), func(b *testing.B) {
					r := newBenchRig(b, dir, size, batch)
					defer r.close(b)
					b.ReportAllocs()
					b.SetBytes(int64(size))
					b.ResetTimer()
					r.run(b, b.N)
				})
			}
		}
	}
}

// TestLoopZeroAllocs checks that the packet loop does not allocate in the
// steady state, in each direction.
func TestLoopZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counting runs batches through the loop")
	}
	for _, dir := range []string{"encap", "fragment", "decap", "loopback", "encap6", "decap6",
		"encap4in6", "decap4in6", "encap6in6", "decap6in6", "fragment6in6", "range6", "decaprange6"} {
		t.Run(dir, func(t *testing.T) {
			r := newBenchRig(t, dir, 1400, 64)
			defer r.close(t)
			allocs := testing.AllocsPerRun(200, func() { r.run(t, 64) })
			if allocs != 0 {
				t.Errorf("%v allocations per batch of 64 packets, want 0", allocs)
			}
		})
	}
}

// TestLoopZeroAllocsCaptureOff checks that a capture that has ended
// leaves the loop as it was: no allocation, whatever the direction.
func TestLoopZeroAllocsCaptureOff(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counting runs batches through the loop")
	}
	for _, dir := range []string{"encap", "decap"} {
		t.Run(dir, func(t *testing.T) {
			r := newBenchRig(t, dir, 1400, 64)
			defer r.close(t)
			c, err := r.ifc.Capture(nil)
			if err != nil {
				t.Fatal(err)
			}
			r.run(t, 64)
			c.Close()
			if c.Captured() != 64 {
				t.Errorf("captured %d packets, want 64", c.Captured())
			}
			allocs := testing.AllocsPerRun(200, func() { r.run(t, 64) })
			if allocs != 0 {
				t.Errorf("%v allocations per batch of 64 packets after the capture, want 0", allocs)
			}
		})
	}
}

// BenchmarkLoopCapture measures the loop with a capture running, its
// reader keeping up (one copy and one channel send per packet).
func BenchmarkLoopCapture(b *testing.B) {
	for _, dir := range []string{"encap", "decap"} {
		b.Run(dir, func(b *testing.B) {
			r := newBenchRig(b, dir, 1400, 64)
			defer r.close(b)
			c, err := r.ifc.Capture(nil)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				for range c.Packets() {
				}
				close(done)
			}()
			b.ReportAllocs()
			b.SetBytes(1400)
			b.ResetTimer()
			r.run(b, b.N)
			b.StopTimer()
			c.Close()
			<-done
			b.ReportMetric(float64(c.Dropped())/float64(b.N), "dropped/op")
		})
	}
}
