package vif_test

import (
	"net/netip"
	"testing"

	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/nstest"
)

// underlayPair opens the raw-socket underlays of two hosts joined by a veth
// (198.18.0.1 in a, 198.18.0.2 in b). It skips without root.
func underlayPair(tb testing.TB) (a, b *vif.RawUnderlay) {
	tb.Helper()
	n := nstest.New(tb)
	ha, hb := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(ha, hb, "198.18.0.1/24", "198.18.0.2/24")
	la, lb := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	open := func(h *nstest.Host, slave string, local, peer netip.Addr) *vif.RawUnderlay {
		var u *vif.RawUnderlay
		if err := h.Do(func() (err error) {
			u, err = vif.ListenUnderlay(slave, ipip.ProtoIPIP, local)
			return err
		}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { u.Close() })
		return u
	}
	a = open(ha, aIf.Name(), la, lb)
	b = open(hb, bIf.Name(), lb, la)
	// Resolve the neighbour before anything is timed or counted.
	if err := ha.Ping("198.18.0.2", 1); err != nil {
		tb.Fatal(err)
	}
	return a, b
}

// underlayBatch builds n encapsulated packets of size bytes from a to b,
// each at offset Headroom-ipip.IPv4MinLen of its buffer, and receive buffers.
func underlayBatch(tb testing.TB, n, size int) (pkts, rbufs [][]byte, sizes []int) {
	e := &ipip.Encapsulator{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2")}
	for range n {
		inner := benchUDP(tb, addrA, addrB, size)
		buf := make([]byte, vif.Headroom+len(inner))
		copy(buf[vif.Headroom:], inner)
		if _, err := e.Encap(buf, vif.Headroom); err != nil {
			tb.Fatal(err)
		}
		pkts = append(pkts, buf)
		rbufs = append(rbufs, make([]byte, vif.Headroom+2048))
	}
	return pkts, rbufs, make([]int, n)
}

// roundTrip writes pkts from a and reads them all at b.
func roundTrip(tb testing.TB, a, b *vif.RawUnderlay, pkts, rbufs [][]byte, sizes []int) {
	if k, err := a.Write(pkts, vif.Headroom-ipip.IPv4MinLen); err != nil || k != len(pkts) {
		tb.Fatalf("Write = %d, %v; want %d", k, err, len(pkts))
	}
	for got := 0; got < len(pkts); {
		k, err := b.Read(rbufs[got:], sizes[got:], vif.Headroom)
		if err != nil {
			tb.Fatal(err)
		}
		got += k
	}
}

// TestRawUnderlayZeroAllocs checks that the raw-socket underlay moves
// packets without allocating.
func TestRawUnderlayZeroAllocs(t *testing.T) {
	a, b := underlayPair(t)
	pkts, rbufs, sizes := underlayBatch(t, 32, 1400)
	roundTrip(t, a, b, pkts, rbufs, sizes)
	if allocs := testing.AllocsPerRun(50, func() { roundTrip(t, a, b, pkts, rbufs, sizes) }); allocs != 0 {
		t.Errorf("%v allocations per batch of 32 packets, want 0", allocs)
	}
}

// BenchmarkRawUnderlay measures the kernel path every tunnelled packet
// takes: sendmmsg on a raw socket in one namespace, the veth, and recvmmsg
// in the other. One op is one packet; the sending and the receiving
// thread's work both count.
func BenchmarkRawUnderlay(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(map[int]string{64: "size=64", 1400: "size=1400"}[size], func(b *testing.B) {
			ua, ub := underlayPair(b)
			pkts, rbufs, sizes := underlayBatch(b, 64, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for done := 0; done < b.N; done += len(pkts) {
				n := min(len(pkts), b.N-done)
				roundTrip(b, ua, ub, pkts[:n], rbufs[:n], sizes[:n])
			}
		})
	}
}
