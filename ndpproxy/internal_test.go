package ndpproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
)

// fakeGroups is a groupConn that records its groups and refuses more
// than max (ENOBUFS, as a socket whose option memory is spent).
type fakeGroups struct {
	mu     sync.Mutex
	max    int
	groups []netip.Addr
	closed bool
	err    error // returned by JoinGroup when set
}

func (f *fakeGroups) JoinGroup(g netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if slices.Contains(f.groups, g) {
		return syscall.EADDRINUSE
	}
	if len(f.groups) >= f.max {
		return fmt.Errorf("setsockopt: %w", syscall.ENOBUFS)
	}
	f.groups = append(f.groups, g)
	return nil
}

func (f *fakeGroups) LeaveGroup(g netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.Index(f.groups, g)
	if i < 0 {
		return syscall.EADDRNOTAVAIL
	}
	f.groups = slices.Delete(f.groups, i, i+1)
	return nil
}

func (f *fakeGroups) Close() error { f.closed = true; return nil }

// opener returns an open function for memberships that hands out
// fakeGroups of max groups each, and the list of those opened.
func opener(max int) (func() (groupConn, error), *[]*fakeGroups) {
	var opened []*fakeGroups
	return func() (groupConn, error) {
		f := &fakeGroups{max: max}
		opened = append(opened, f)
		return f, nil
	}, &opened
}

func TestMemberships(t *testing.T) {
	open, opened := opener(2)
	m := newMemberships(open, nil)
	a := netip.MustParseAddr("2001:db8::10")
	b := netip.MustParseAddr("2001:db8:1::10") // same low 24 bits: same group
	c := netip.MustParseAddr("2001:db8::20")
	d := netip.MustParseAddr("2001:db8::30")
	for _, x := range []netip.Addr{a, b, c, d} {
		if err := m.join(x); err != nil {
			t.Fatalf("join(%v): %v", x, err)
		}
	}
	// a and b share ff02::1:ff00:10; the third group did not fit in the
	// first socket.
	if m.groups() != 3 || len(*opened) != 2 {
		t.Fatalf("%d groups on %d sockets, want 3 on 2", m.groups(), len(*opened))
	}
	first := (*opened)[0]
	if want := []netip.Addr{SolicitedNode(a), SolicitedNode(c)}; !slices.Equal(first.groups, want) {
		t.Errorf("first socket holds %v, want %v", first.groups, want)
	}
	if want := []netip.Addr{SolicitedNode(d)}; !slices.Equal((*opened)[1].groups, want) {
		t.Errorf("second socket holds %v, want %v", (*opened)[1].groups, want)
	}
	// The shared group stays until both addresses leave it.
	m.leave(a)
	if !slices.Contains(first.groups, SolicitedNode(a)) {
		t.Error("group left while b still needs it")
	}
	m.leave(b)
	m.leave(b) // once too often: nothing
	if slices.Contains(first.groups, SolicitedNode(a)) || m.groups() != 2 {
		t.Errorf("group kept after its last address left: %v, %d groups", first.groups, m.groups())
	}
	if err := m.close(); err != nil || !first.closed || !(*opened)[1].closed || m.groups() != 0 {
		t.Errorf("close = %v; sockets closed %v %v; %d groups", err, first.closed, (*opened)[1].closed, m.groups())
	}

	// A join error other than a full socket is returned.
	m = newMemberships(func() (groupConn, error) { return &fakeGroups{max: 9, err: syscall.ENODEV}, nil }, nil)
	if err := m.join(a); !errors.Is(err, syscall.ENODEV) || m.groups() != 0 {
		t.Errorf("join on a broken socket = %v, %d groups", err, m.groups())
	}
	// Without an opener (New), nothing is joined.
	m = newMemberships(nil, nil)
	if err := m.join(a); err != nil || m.groups() != 0 {
		t.Errorf("join without opener = %v, %d groups", err, m.groups())
	}
}

// discardIO is a packetio.IO whose reads block until done is closed and
// whose writes go nowhere.
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

var (
	testMAC = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	testLL  = netip.MustParseAddr("fe80::1")
)

// newTestResponder returns a Responder whose serve goroutine is parked in
// a read that never returns a frame, so that the test may call handle
// itself, with groups joined through fakeGroups, owning addrs addresses
// 2001:db8::N, and the discardIO that handle writes to.
func newTestResponder(tb testing.TB, cfg *Config, addrs int) (*Responder, *discardIO) {
	tb.Helper()
	ifi := &net.Interface{Name: "bench0", HardwareAddr: testMAC}
	done := make(chan struct{})
	io := &discardIO{done: done}
	c := *cfg
	c.SourceAddr = testLL
	open, _ := opener(1 << 20)
	r, err := newResponder(ifi, &closeConn{done: done}, &c, newMemberships(open, nil), io, true)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	for i := range addrs {
		if err := r.Add(benchAddr(i)); err != nil {
			tb.Fatal(err)
		}
	}
	return r, io
}

// benchAddr returns 2001:db8::i (i < 65536).
func benchAddr(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
}

// benchSolicitation is a multicast solicitation from 02:00:00:00:00:02 /
// 2001:db8:ffff::2 for target.
func benchSolicitation(target netip.Addr) Frame {
	return PutSolicitation(make([]byte, ReplyLen), net.HardwareAddr{2, 0, 0, 0, 0, 2},
		netip.MustParseAddr("2001:db8:ffff::2"), target)
}

// TestHandleAllocs checks that the whole per-frame path (core, lookup,
// rate limit, counters, write) does not allocate, for a reply above all.
func TestHandleAllocs(t *testing.T) {
	r, io := newTestResponder(t, &Config{AnnounceCount: -1}, 300)
	if err := r.AddRange(netip.MustParsePrefix("2001:db8:5::/120"), nil); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRange(netip.MustParsePrefix("2001:db8:6::/64"), []netip.Addr{netip.MustParseAddr("2001:db8:6::5")}); err != nil {
		t.Fatal(err)
	}
	dad := PutSolicitation(make([]byte, ReplyLen), net.HardwareAddr{2, 0, 0, 0, 0, 2}, netip.IPv6Unspecified(), benchAddr(7))
	advert := PutAdvertisement(make([]byte, ReplyLen), net.HardwareAddr{2, 0, 0, 0, 0, 3}, netip.MustParseAddr("fe80::3"), benchAddr(9), FlagOverride)
	frames := map[string]Frame{
		"reply":         benchSolicitation(benchAddr(200)),
		"DAD reply":     dad,
		"range reply":   benchSolicitation(netip.MustParseAddr("2001:db8:5::77")),
		"/64 reply":     benchSolicitation(netip.MustParseAddr("2001:db8:6::9e37:79b9:7f4a:7c15")),
		"excluded":      benchSolicitation(netip.MustParseAddr("2001:db8:6::5")),
		"not owned":     benchSolicitation(netip.MustParseAddr("2001:db8:9::9")),
		"short":         benchSolicitation(benchAddr(1))[:60],
		"conflict":      advert,
		"bad hop limit": func() Frame { f := benchSolicitation(benchAddr(1)); f[hopLimitOffset] = 64; return f }(),
	}
	for name, f := range frames {
		if n := testing.AllocsPerRun(1000, func() { r.handle(f) }); n != 0 {
			t.Errorf("%s: handle allocates %v times per frame, want 0", name, n)
		}
	}
	if io.writes == 0 {
		t.Error("no reply written")
	}
	s := r.Stats()
	if s.Replies == 0 || s.DADAnswered == 0 || s.Conflicts == 0 || s.NotOwned == 0 || s.Dropped() == 0 {
		t.Errorf("stats %+v: some path was not taken", s)
	}
}

// BenchmarkHandle measures the Responder's whole per-frame path for a
// solicitation it answers: core, address lookup among 300, counters,
// write (to nowhere).
func BenchmarkHandle(b *testing.B) {
	r, io := newTestResponder(b, &Config{AnnounceCount: -1, RequesterRate: -1, GlobalRate: -1}, 300)
	f := benchSolicitation(benchAddr(200))
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
		f := benchSolicitation(benchAddr(200))
		f[ethSrcOffset+4], f[ethSrcOffset+5] = byte(i>>8), byte(i)
		f[optionsOffset+6], f[optionsOffset+7] = byte(i>>8), byte(i)
		setChecksum(f)
		frames[i] = f
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.handle(frames[i&4095])
		i++
	}
}

// BenchmarkHandleRange answers for an address of a range: a /120, and a
// /64 with 100 exclusions.
func BenchmarkHandleRange(b *testing.B) {
	r, _ := newTestResponder(b, &Config{AnnounceCount: -1, RequesterRate: -1, GlobalRate: -1}, 300)
	if err := r.AddRange(netip.MustParsePrefix("2001:db8:5::/120"), nil); err != nil {
		b.Fatal(err)
	}
	var exclude []netip.Addr
	for i := range 100 {
		exclude = append(exclude, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 6, 15: byte(2 * i)}))
	}
	if err := r.AddRange(netip.MustParsePrefix("2001:db8:6::/64"), exclude); err != nil {
		b.Fatal(err)
	}
	for name, target := range map[string]string{"120": "2001:db8:5::77", "64": "2001:db8:6::9e37:79b9:7f4a:7c15"} {
		b.Run(name, func(b *testing.B) {
			f := benchSolicitation(netip.MustParseAddr(target))
			b.ReportAllocs()
			for b.Loop() {
				r.handle(f)
			}
		})
	}
}

// TestRangeAllMulticast checks that a range shorter than GroupRangeBits
// joins no group but has the interface receive all multicast, once for
// all such ranges, until the last of them goes; that a /120 joins its
// groups instead; and that a failure to ask for all multicast leaves the
// range out.
func TestRangeAllMulticast(t *testing.T) {
	r, _ := newTestResponder(t, &Config{AnnounceCount: -1}, 0)
	var calls []bool
	fail := false
	r.mu.Lock()
	r.groups.allMulti = func(on bool) error {
		if fail {
			return syscall.EPERM
		}
		calls = append(calls, on)
		return nil
	}
	r.mu.Unlock()
	p64, p56 := netip.MustParsePrefix("2001:db8:1::/64"), netip.MustParsePrefix("2001:db8:100::/56")
	for _, p := range []netip.Prefix{p64, p56, p64} { // p64 twice: once
		if err := r.AddRange(p, nil); err != nil {
			t.Fatal(err)
		}
	}
	if s := r.Stats(); !s.AllMulticast || s.Groups != 0 || !slices.Equal(calls, []bool{true}) {
		t.Fatalf("two wide ranges: all multicast %v, %d groups, calls %v; want on, 0, [true]", s.AllMulticast, s.Groups, calls)
	}
	p120 := netip.MustParsePrefix("2001:db8:2::/120")
	if err := r.AddRange(p120, nil); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.Groups != 255 {
		t.Errorf("a /120: %d groups joined, want 255 (all but the anycast address's)", s.Groups)
	}
	r.RemoveRange(p64)
	if s := r.Stats(); !s.AllMulticast || len(calls) != 1 {
		t.Errorf("one wide range left: all multicast %v, calls %v", s.AllMulticast, calls)
	}
	r.RemoveRange(p56)
	if s := r.Stats(); s.AllMulticast || !slices.Equal(calls, []bool{true, false}) {
		t.Errorf("no wide range left: all multicast %v, calls %v; want off, [true false]", s.AllMulticast, calls)
	}
	r.RemoveRange(p120)
	if s := r.Stats(); s.Groups != 0 {
		t.Errorf("%d groups after the /120 went", s.Groups)
	}
	fail = true
	if err := r.AddRange(p64, nil); !errors.Is(err, syscall.EPERM) || len(r.Ranges()) != 0 {
		t.Errorf("AddRange when all multicast is refused: %v, ranges %v", err, r.Ranges())
	}
}
