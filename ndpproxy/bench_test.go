package ndpproxy_test

import (
	"strconv"
	"testing"

	"github.com/vif-project/vif/ndpproxy"
)

func benchmarkRespond(b *testing.B, frame []byte, owned *ndpproxy.AddrSet, inPlace bool, want ndpproxy.Verdict) {
	out := make([]byte, 128)
	f := ndpproxy.Frame(append(append([]byte(nil), frame...), make([]byte, 16)...))[:len(frame)]
	if inPlace {
		out = f[:cap(f)]
	}
	if res := ndpproxy.Respond(out, f, ourSelf, owned); res.Verdict != want {
		b.Fatalf("verdict %v, want %v", res.Verdict, want)
	}
	if inPlace {
		copy(f, frame)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if inPlace {
			// Restore the solicitation; this copy is part of what an
			// in-place user would pay anyway.
			copy(f, frame)
		}
		ndpproxy.Respond(out, f, ourSelf, owned)
	}
}

// BenchmarkRespond measures the core on the reply path: a solicitation for
// one of 500 owned addresses, answered into a separate buffer.
func BenchmarkRespond(b *testing.B) {
	addrs := manyAddrs(500)
	benchmarkRespond(b, solicit(peerMAC, peerIP, addrs[321]).bytes(b), ndpproxy.NewAddrSet(addrs...), false, ndpproxy.VerdictReply)
}

// BenchmarkRespondInPlace is BenchmarkRespond with the advertisement
// written over the solicitation.
func BenchmarkRespondInPlace(b *testing.B) {
	addrs := manyAddrs(500)
	benchmarkRespond(b, solicit(peerMAC, peerIP, addrs[321]).bytes(b), ndpproxy.NewAddrSet(addrs...), true, ndpproxy.VerdictReply)
}

// BenchmarkRespondDAD answers a Duplicate Address Detection probe.
func BenchmarkRespondDAD(b *testing.B) {
	addrs := manyAddrs(500)
	benchmarkRespond(b, dadProbe(peerMAC, addrs[7]).bytes(b), ndpproxy.NewAddrSet(addrs...), false, ndpproxy.VerdictReply)
}

// BenchmarkRespondNotOwned is the common case on a busy segment: a
// solicitation for someone else's address.
func BenchmarkRespondNotOwned(b *testing.B) {
	benchmarkRespond(b, solicit(peerMAC, peerIP, notOwned).bytes(b), ndpproxy.NewAddrSet(manyAddrs(500)...), false, ndpproxy.VerdictNotOwned)
}

// BenchmarkRespondMalformed drops a frame with a bad hop limit.
func BenchmarkRespondMalformed(b *testing.B) {
	f := solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.hop = 64 }).bytes(b)
	benchmarkRespond(b, f, ndpproxy.NewAddrSet(owned1), false, ndpproxy.VerdictDrop)
}

func BenchmarkAddrSetContains(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			addrs := manyAddrs(n)
			s := ndpproxy.NewAddrSet(addrs...)
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
