package arpproxy

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
)

func TestAddrSetWithWithout(t *testing.T) {
	var s *AddrSet
	var want []netip.Addr
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(4)), byte(rng.IntN(256))})
		if s.Contains(a) {
			i := s.index(a)
			s = s.without(i)
			for j, w := range want {
				if w == a {
					want = append(want[:j], want[j+1:]...)
					break
				}
			}
		} else {
			var i int
			s, i = s.with(a)
			if s.Addrs()[i] != a {
				t.Fatalf("with(%v) returned index %d holding %v", a, i, s.Addrs()[i])
			}
			want = append(want, a)
		}
		if s.Len() != len(want) {
			t.Fatalf("Len = %d, want %d", s.Len(), len(want))
		}
		for _, w := range want {
			if !s.Contains(w) {
				t.Fatalf("%v missing", w)
			}
		}
	}
}

// discardIO is a packetio.IO whose reads block until done is closed and whose
// writes go nowhere.
type discardIO struct {
	done   chan struct{}
	writes int
}

func (d *discardIO) Read([]byte) (int, error)             { <-d.done; return 0, net.ErrClosed }
func (d *discardIO) Write([]byte, net.HardwareAddr) error { d.writes++; return nil }

// closeConn is a net.PacketConn that only closes a channel.
type closeConn struct {
	net.PacketConn
	done chan struct{}
}

func (c *closeConn) Close() error { close(c.done); return nil }

// newTestResponder returns a Responder whose serve goroutine is parked in
// a read that never returns a frame, so that the test may call handle
// itself, and the discardIO that handle writes to.
func newTestResponder(tb testing.TB, cfg *Config, addrs int) (*Responder, *discardIO) {
	tb.Helper()
	ifi := &net.Interface{Name: "bench0", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	done := make(chan struct{})
	io := &discardIO{done: done}
	r, err := newResponder(ifi, &closeConn{done: done}, cfg, io, true)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	for i := range addrs {
		if err := r.Add(netip.AddrFrom4([4]byte{192, 0, byte(2 + i/256), byte(i)})); err != nil {
			tb.Fatal(err)
		}
	}
	return r, io
}

// benchRequest is a padded broadcast request from 02:00:00:00:00:02 /
// 198.51.100.2 for 192.0.2.1.
func benchRequest(tpa [4]byte) Frame {
	b := make([]byte, 60)
	putHeader(b, broadcast, [6]byte{2, 0, 0, 0, 0, 2}, OpRequest)
	copy(b[shaOffset:], []byte{2, 0, 0, 0, 0, 2})
	copy(b[spaOffset:], []byte{198, 51, 100, 2})
	copy(b[tpaOffset:], tpa[:])
	return b
}

func TestHandleAllocs(t *testing.T) {
	r, io := newTestResponder(t, &Config{AnnounceCount: -1}, 300)
	frames := []Frame{
		benchRequest([4]byte{192, 0, 2, 1}),      // reply
		benchRequest([4]byte{192, 0, 9, 9}),      // not owned
		benchRequest([4]byte{192, 0, 2, 1})[:20], // short
		PutAnnouncement(make([]byte, 60), net.HardwareAddr{2, 0, 0, 0, 0, 3}, netip.AddrFrom4([4]byte{10, 0, 0, 1})), // ignored
		benchRequest([4]byte{203, 0, 113, 77}), // in a range
	}
	if err := r.AddRange(netip.MustParsePrefix("203.0.113.0/24"), []netip.Addr{netip.MustParseAddr("203.0.113.9")}); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if n := testing.AllocsPerRun(1000, func() { r.handle(f) }); n != 0 {
			t.Errorf("handle(% x) allocates %v times per frame, want 0", f, n)
		}
	}
	if io.writes == 0 {
		t.Error("no reply written")
	}
}

// BenchmarkHandle measures the Responder's whole per-frame path for a
// request it answers: core, address lookup among 300, rate limit,
// counters, write.
func BenchmarkHandleRange(b *testing.B) {
	r, _ := newTestResponder(b, &Config{AnnounceCount: -1, RequesterRate: -1, GlobalRate: -1}, 300)
	r.AddRange(netip.MustParsePrefix("10.0.0.0/8"), nil)
	f := benchRequest([4]byte{10, 1, 2, 3})
	b.ReportAllocs()
	for b.Loop() {
		r.handle(f)
	}
}

func BenchmarkHandle(b *testing.B) {
	r, io := newTestResponder(b, &Config{AnnounceCount: -1, RequesterRate: -1, GlobalRate: -1}, 300)
	f := benchRequest([4]byte{192, 0, 2, 200})
	b.ReportAllocs()
	for b.Loop() {
		r.handle(f)
	}
	if io.writes == 0 {
		b.Fatal("no reply written")
	}
}

// BenchmarkHandleRateLimited is BenchmarkHandle with the default rate
// limits, from 4096 different requesters.
func BenchmarkHandleRateLimited(b *testing.B) {
	r, _ := newTestResponder(b, &Config{AnnounceCount: -1}, 300)
	frames := make([]Frame, 4096)
	for i := range frames {
		f := benchRequest([4]byte{192, 0, 2, 200})
		f[ethSrcOffset+4], f[ethSrcOffset+5] = byte(i>>8), byte(i)
		f[shaOffset+4], f[shaOffset+5] = byte(i>>8), byte(i)
		frames[i] = f
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.handle(frames[i&4095])
		i++
	}
}
