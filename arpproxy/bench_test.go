package arpproxy_test

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/vif-project/vif/arpproxy"
)

// manyAddrs returns n owned addresses in 10.0.0.0/8.
func manyAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return out
}

func benchmarkRespond(b *testing.B, frame []byte, owned *arpproxy.AddrSet, inPlace bool, want arpproxy.Verdict) {
	out := make([]byte, 64)
	f := arpproxy.Frame(append([]byte(nil), frame...))
	if inPlace {
		out = f
	}
	if res := arpproxy.Respond(out, f, ourMAC, owned); res.Verdict != want {
		b.Fatalf("verdict %v, want %v", res.Verdict, want)
	}
	if inPlace {
		copy(f, frame)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if inPlace {
			// Restore the request (a reply is not answered); this copy is
			// part of what an in-place user would pay anyway.
			copy(f, frame)
		}
		arpproxy.Respond(out, f, ourMAC, owned)
	}
}

// BenchmarkRespond measures the core on the reply path: a request for one
// of 500 owned addresses, answered into a separate buffer.
func BenchmarkRespond(b *testing.B) {
	addrs := manyAddrs(500)
	benchmarkRespond(b, request(peerMAC, peerIP, addrs[321]).bytes(b), arpproxy.NewAddrSet(addrs...), false, arpproxy.VerdictReply)
}

// BenchmarkRespondInPlace is BenchmarkRespond with the reply written over
// the request.
func BenchmarkRespondInPlace(b *testing.B) {
	addrs := manyAddrs(500)
	benchmarkRespond(b, request(peerMAC, peerIP, addrs[321]).bytes(b), arpproxy.NewAddrSet(addrs...), true, arpproxy.VerdictReply)
}

// BenchmarkRespondProbe answers an RFC 5227 probe.
func BenchmarkRespondProbe(b *testing.B) {
	addrs := manyAddrs(500)
	benchmarkRespond(b, request(peerMAC, zeroIP, addrs[7]).bytes(b), arpproxy.NewAddrSet(addrs...), false, arpproxy.VerdictReply)
}

// BenchmarkRespondNotOwned is the common case on a busy segment: a request
// for someone else's address.
func BenchmarkRespondNotOwned(b *testing.B) {
	benchmarkRespond(b, request(peerMAC, peerIP, notOwned).bytes(b), arpproxy.NewAddrSet(manyAddrs(500)...), false, arpproxy.VerdictNotOwned)
}

// BenchmarkRespondMalformed drops a frame with a bad opcode.
func BenchmarkRespondMalformed(b *testing.B) {
	f := request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.op = 9 }).bytes(b)
	benchmarkRespond(b, f, arpproxy.NewAddrSet(owned1), false, arpproxy.VerdictDrop)
}

func BenchmarkAddrSetContains(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			addrs := manyAddrs(n)
			s := arpproxy.NewAddrSet(addrs...)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if !s.Contains(addrs[i%n]) {
					b.Fatal("missing")
				}
				i++
			}
		})
	}
}
