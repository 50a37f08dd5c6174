package vif_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/nstest"
)

// underlayPair opens the raw-socket underlays of two hosts joined by a veth
// (198.18.0.1 in a, 198.18.0.2 in b). It skips without root.
func underlayPair(tb testing.TB) (a, b *vif.RawUnderlay) {
	tb.Helper()
	a, b, _ = underlayHosts(tb)
	return a, b
}

// underlayHosts is underlayPair, with b's host.
func underlayHosts(tb testing.TB) (a, b *vif.RawUnderlay, hb *nstest.Host) {
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
	return a, b, hb
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

// BenchmarkRawUnderlayIPv6 is BenchmarkRawUnderlay over an IPv6 underlay
// (6in6): the kernel's raw IPv6 path, and the header Read rebuilds.
func BenchmarkRawUnderlayIPv6(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(map[int]string{64: "size=64", 1400: "size=1400"}[size], func(b *testing.B) {
			ua, ub, _ := underlayHosts6(b)
			la, lb := netip.MustParseAddr("2001:db8:ffff:1::1"), netip.MustParseAddr("2001:db8:ffff:1::2")
			e := &ipip.Encapsulator{Src: la, Dst: lb}
			var pkts, rbufs [][]byte
			for range 64 {
				inner := benchUDP6(b, own6, hostB6, size)
				buf := make([]byte, vif.Headroom+len(inner))
				copy(buf[vif.Headroom:], inner)
				if _, err := e.EncapIPv6(buf, vif.Headroom); err != nil {
					b.Fatal(err)
				}
				pkts = append(pkts, buf)
				rbufs = append(rbufs, make([]byte, vif.Headroom+2048))
			}
			sizes := make([]int, len(pkts))
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for done := 0; done < b.N; done += len(pkts) {
				n := min(len(pkts), b.N-done)
				if k, err := ua.Write(pkts[:n], vif.Headroom-ipip.IPv6HeaderLen); err != nil || k != n {
					b.Fatalf("Write = %d, %v", k, err)
				}
				for got := 0; got < n; {
					k, err := ub.Read(rbufs[got:n], sizes[got:n], vif.Headroom)
					if err != nil {
						b.Fatal(err)
					}
					got += k
				}
			}
		})
	}
}

// underlayHosts6 opens the raw-socket underlays of two hosts joined by a
// veth with IPv6 addresses (2001:db8:ffff:1::1 in a, ::2 in b).
func underlayHosts6(tb testing.TB) (a, b *vif.RawUnderlay, hb *nstest.Host) {
	tb.Helper()
	n := nstest.New(tb)
	ha, hb := n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, bIf := n.Link(ha, hb, "2001:db8:ffff:1::1/64", "2001:db8:ffff:1::2/64")
	open := func(h *nstest.Host, slave, local string) *vif.RawUnderlay {
		var u *vif.RawUnderlay
		if err := h.Do(func() (err error) {
			u, err = vif.ListenUnderlay(slave, ipip.ProtoIPinIP, netip.MustParseAddr(local))
			return err
		}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { u.Close() })
		return u
	}
	a, b = open(ha, aIf.Name(), "2001:db8:ffff:1::1"), open(hb, bIf.Name(), "2001:db8:ffff:1::2")
	if out, err := ha.Run("ping", "-6", "-c", "1", "-W", "2", "2001:db8:ffff:1::2"); err != nil {
		tb.Fatalf("%v\n%s", err, out)
	}
	return a, b, hb
}

// TestRawUnderlay6in4 checks that one Read receives both the tunnel's
// protocol and 6in4 (protocol 41), and that SetLocal keeps both.
func TestRawUnderlay6in4(t *testing.T) {
	a, b, hb := underlayHosts(t)
	la, lb := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	pkts, rbufs, sizes := underlayBatch(t, 2, 200)
	inner := udp6(t, hostB6, own6, "six")
	six := make([]byte, vif.Headroom+len(inner))
	copy(six[vif.Headroom:], inner)
	if _, err := (&ipip.Encapsulator{Src: la, Dst: lb}).EncapIPv6(six, vif.Headroom); err != nil {
		t.Fatal(err)
	}
	pkts = append(pkts, six)
	rbufs = append(rbufs, make([]byte, vif.Headroom+2048))
	sizes = append(sizes, 0)
	check := func() {
		t.Helper()
		roundTrip(t, a, b, pkts, rbufs, sizes)
		protos := map[uint8]int{}
		for k := range pkts {
			protos[ipip.IPv4(rbufs[k][vif.Headroom:vif.Headroom+sizes[k]]).Protocol()]++
		}
		if protos[ipip.ProtoIPIP] != 2 || protos[ipip.ProtoIPv6] != 1 {
			t.Errorf("received protocols %v, want 94: 2, 41: 1", protos)
		}
	}
	check()
	if err := hb.Do(func() error { return b.SetLocal(lb) }); err != nil {
		t.Fatal(err)
	}
	check()
	if d := b.Drops(); d != 0 {
		t.Errorf("drops %d", d)
	}
}

// flowLabel is the flow label TestRawUnderlayIPv6 sends packet k with.
func flowLabel(k int) uint32 {
	if k == 3 {
		return 0
	}
	return uint32(0xabcde+k*0x1111) & 0xfffff
}

// TestRawUnderlayIPv6 checks the IPv6 underlay (RFC 2473): one Read
// receives 4in6 and 6in6 as complete outer packets, the IPv6 header
// rebuilt from the socket's control messages (addresses, next header,
// traffic class with ECN, flow label, hop limit) in front of the payload,
// the bytes that were sent; protocol 94
// is refused; SetLocal stays within the family; no allocations.
func TestRawUnderlayIPv6(t *testing.T) {
	n := nstest.New(t)
	ha, hb := n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, bIf := n.Link(ha, hb, "2001:db8:ffff:1::1/64", "2001:db8:ffff:1::2/64")
	la, lb := netip.MustParseAddr("2001:db8:ffff:1::1"), netip.MustParseAddr("2001:db8:ffff:1::2")
	open := func(h *nstest.Host, slave string, local netip.Addr) *vif.RawUnderlay {
		var u *vif.RawUnderlay
		if err := h.Do(func() (err error) {
			u, err = vif.ListenUnderlay(slave, ipip.ProtoIPinIP, local)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		return u
	}
	a, b := open(ha, aIf.Name(), la), open(hb, bIf.Name(), lb)
	if err := ha.Do(func() error {
		_, err := vif.ListenUnderlay(aIf.Name(), ipip.ProtoIPIP, la)
		return err
	}); !errors.Is(err, vif.ErrProtocolFamily) {
		t.Errorf("protocol 94 over IPv6: %v", err)
	}

	e := &ipip.Encapsulator{Src: la, Dst: lb, TTL: 33}
	var pkts, rbufs, inners [][]byte
	for k := range 8 {
		// Payloads of their own, to tell the packets apart.
		inner := udp(t, addrA, addrB, "four"+strconv.Itoa(k))
		inner[1] = 0xb8 | byte(ipip.ECT0) // DSCP 46, ECT(0)
		ipip.IPv4(inner).SetChecksum()
		if k%2 == 1 {
			inner = udp6(t, own6, hostB6, "six"+strconv.Itoa(k))
		}
		buf := make([]byte, vif.Headroom+len(inner))
		copy(buf[vif.Headroom:], inner)
		var err error
		if k%2 == 1 {
			_, err = e.EncapIPv6(buf, vif.Headroom)
		} else {
			_, err = e.Encap(buf, vif.Headroom)
		}
		if err != nil {
			t.Fatal(err)
		}
		// A flow label of its own on the wire (RFC 6437), 0 for one.
		w := buf[vif.Headroom-ipip.IPv6HeaderLen:]
		binary.BigEndian.PutUint32(w, binary.BigEndian.Uint32(w)&^0xfffff|flowLabel(k))
		pkts, inners = append(pkts, buf), append(inners, inner)
		rbufs = append(rbufs, make([]byte, vif.Headroom+2048))
	}
	sizes := make([]int, len(pkts))
	trip := func() {
		t.Helper()
		if k, err := a.Write(pkts, vif.Headroom-ipip.IPv6HeaderLen); err != nil || k != len(pkts) {
			t.Fatalf("Write = %d, %v", k, err)
		}
		for got := 0; got < len(pkts); {
			k, err := b.Read(rbufs[got:], sizes[got:], vif.Headroom)
			if err != nil {
				t.Fatal(err)
			}
			got += k
		}
	}
	trip()
	protos := map[uint8]int{}
	for k := range pkts {
		h := ipip.IPv6(rbufs[k][vif.Headroom : vif.Headroom+sizes[k]])
		if h.Valid() != nil || h.Src() != la || h.Dst() != lb || h.HopLimit() != 33 || h.Len() != len(h) {
			t.Fatalf("packet %d: rebuilt header %x", k, h[:40])
		}
		in := h[ipip.IPv6HeaderLen:]
		j := slices.IndexFunc(inners, func(b []byte) bool { return bytes.Equal(b, in) })
		if j < 0 {
			t.Fatalf("packet %d: payload not one that was sent", k)
		}
		// The header as it was sent, byte for byte (the flow label
		// too, from IPV6_FLOWINFO): what the AF_XDP underlay reads.
		if sent := pkts[j][vif.Headroom-ipip.IPv6HeaderLen : vif.Headroom]; !bytes.Equal(h[:ipip.IPv6HeaderLen], sent) {
			t.Errorf("packet %d: rebuilt header\n %x\nwant\n %x", k, h[:ipip.IPv6HeaderLen], sent)
		}
		if h.NextHeader() == ipip.ProtoIPinIP && (h.TrafficClass() != 0xba || h.ECN() != ipip.ECT0) {
			t.Errorf("4in6 traffic class %#x, want the inner TOS 0xba", h.TrafficClass())
		}
		protos[h.NextHeader()]++
	}
	if protos[ipip.ProtoIPinIP] != 4 || protos[ipip.ProtoIPv6] != 4 {
		t.Errorf("received next headers %v, want 4: 4, 41: 4", protos)
	}
	if allocs := testing.AllocsPerRun(50, trip); allocs != 0 {
		t.Errorf("%v allocations per batch of %d packets, want 0", allocs, len(pkts))
	}
	if err := hb.Do(func() error { return b.SetLocal(netip.MustParseAddr("198.18.0.2")) }); !errors.Is(err, vif.ErrBadAddress) {
		t.Errorf("SetLocal to an IPv4 address: %v", err)
	}
	if err := hb.Do(func() error { return b.SetLocal(lb) }); err != nil {
		t.Fatal(err)
	}
	trip()
}
