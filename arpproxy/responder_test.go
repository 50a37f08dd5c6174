package arpproxy_test

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/packet"
	"go.uber.org/goleak"

	"github.com/vif-project/vif/arpproxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func addrsEqual(a, b netip.Addr) bool { return a == b }

// TestResponderFrames sends one frame to a Responder owning owned1 and
// owned2 and checks what it writes and counts.
func TestResponderFrames(t *testing.T) {
	tests := []struct {
		name  string
		frame arpSpec
		raw   func([]byte) []byte // optional mutation of the serialized frame
		reply bool
		want  arpproxy.Stats // Frames is always 1 and not set here
	}{
		{
			name: "request owned", frame: request(peerMAC, peerIP, owned1), reply: true,
			want: arpproxy.Stats{Requests: 1, Replies: 1},
		},
		{
			name: "probe owned", frame: request(peerMAC, zeroIP, owned2), reply: true,
			want: arpproxy.Stats{Requests: 1, Replies: 1, ProbesAnswered: 1},
		},
		{
			name: "request not owned", frame: request(peerMAC, peerIP, notOwned),
			want: arpproxy.Stats{Requests: 1, NotOwned: 1},
		},
		{
			name: "announcement by another host", frame: request(otherMAC, owned1, owned1),
			want: arpproxy.Stats{Requests: 1, Ignored: 1, Conflicts: 1},
		},
		{
			name: "gratuitous ARP for another address", frame: request(peerMAC, peerIP, peerIP),
			want: arpproxy.Stats{Requests: 1, Ignored: 1},
		},
		{
			name: "reply claiming owned", frame: reply(otherMAC, owned2, bcastMAC, peerIP),
			want: arpproxy.Stats{Ignored: 1, Conflicts: 1},
		},
		{
			name: "request from a host using an owned address", frame: request(otherMAC, owned2, owned1), reply: true,
			want: arpproxy.Stats{Requests: 1, Replies: 1, Conflicts: 1},
		},
		{
			name: "short", frame: request(peerMAC, peerIP, owned1), raw: func(b []byte) []byte { return b[:30] },
			want: arpproxy.Stats{Drops: dropped(arpproxy.DropShort)},
		},
		{
			name: "opcode", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.op = 4 }),
			want: arpproxy.Stats{Drops: dropped(arpproxy.DropOpcode)},
		},
		{
			name: "source mismatch", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethSrc = otherMAC }),
			want: arpproxy.Stats{Drops: dropped(arpproxy.DropSourceMismatch)},
		},
		{
			name: "from self", frame: request(ourMAC, owned1, owned1),
			want: arpproxy.Stats{Drops: dropped(arpproxy.DropFromSelf)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, conn := newResponder(t, quiet(), owned1, owned2)
			b := tt.frame.bytes(t)
			if tt.raw != nil {
				b = tt.raw(b)
			}
			conn.send(t, b)
			if tt.reply {
				w := conn.next(t, 5*time.Second)
				checkReply(t, w.frame, tt.frame)
				if a, ok := w.addr.(*packet.Addr); !ok || a.HardwareAddr.String() != tt.frame.sha.String() {
					t.Errorf("WriteTo address = %v, want *packet.Addr %v", w.addr, tt.frame.sha)
				}
			}
			got := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 1 })
			// Close, so that nothing can be written or counted any more.
			if err := r.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if !tt.reply {
				conn.none(t, 0)
			}
			tt.want.Frames = 1
			if diff := cmp.Diff(tt.want, r.Stats(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
			_ = got
		})
	}
}

func dropped(r arpproxy.DropReason) map[string]uint64 {
	return map[string]uint64{r.Name(): 1}
}

// TestEveryDropReasonCounted sends one frame per drop reason and checks
// each counter and the Drops map.
func TestEveryDropReasonCounted(t *testing.T) {
	r, conn := newResponder(t, quiet(), owned1)
	frames := map[arpproxy.DropReason][]byte{
		arpproxy.DropShort:          request(peerMAC, peerIP, owned1).bytes(t)[:41],
		arpproxy.DropEtherType:      request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethType = 0x86dd }).bytes(t),
		arpproxy.DropHardwareType:   request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.hwType = 6 }).bytes(t),
		arpproxy.DropProtocolType:   request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.proto = 0x86dd }).bytes(t),
		arpproxy.DropHardwareLen:    request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.hwLen = 16 }).bytes(t),
		arpproxy.DropProtocolLen:    request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.protLen = 6 }).bytes(t),
		arpproxy.DropOpcode:         request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.op = 10 }).bytes(t),
		arpproxy.DropSenderMAC:      request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethSrc, s.sha = bcastMAC, bcastMAC }).bytes(t),
		arpproxy.DropSourceMismatch: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.sha = otherMAC }).bytes(t),
		arpproxy.DropSenderIP:       request(peerMAC, netip.MustParseAddr("239.1.2.3"), owned1).bytes(t),
		arpproxy.DropOtherHost:      request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethDst = otherMAC }).bytes(t),
		arpproxy.DropFromSelf:       request(ourMAC, peerIP, owned1).bytes(t),
	}
	if len(frames) != int(arpproxy.NumDropReasons)-1 {
		t.Fatalf("test covers %d reasons, package has %d", len(frames), arpproxy.NumDropReasons-1)
	}
	for _, reason := range arpproxy.DropReasons() {
		conn.send(t, frames[reason])
	}
	s := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == uint64(len(frames)) })
	conn.none(t, 50*time.Millisecond)
	want := map[string]uint64{}
	for _, reason := range arpproxy.DropReasons() {
		if s.Drops[reason.Name()] != 1 {
			t.Errorf("Drops[%v] = %d, want 1", reason, s.Drops[reason.Name()])
		}
		want[reason.Name()] = 1
	}
	if diff := cmp.Diff(want, s.Drops); diff != "" {
		t.Errorf("Drops() (-want +got):\n%s", diff)
	}
	if s.Dropped() != uint64(len(frames)) || s.Replies != 0 {
		t.Errorf("Dropped() = %d, Replies = %d; want %d, 0", s.Dropped(), s.Replies, len(frames))
	}
}

func TestAnnounceOnAdd(t *testing.T) {
	const interval = 30 * time.Millisecond
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: 3, AnnounceInterval: interval})
	start := time.Now()
	if err := r.Add(owned1); err != nil {
		t.Fatalf("Add: %v", err)
	}
	var times []time.Duration
	for range 3 {
		w := conn.next(t, 5*time.Second)
		times = append(times, time.Since(start))
		checkAnnouncement(t, w.frame, owned1)
		if a, ok := w.addr.(*packet.Addr); !ok || a.HardwareAddr.String() != bcastMAC.String() {
			t.Errorf("announcement sent to %v, want broadcast", w.addr)
		}
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i] - times[i-1]; gap < interval*8/10 {
			t.Errorf("announcements %d and %d %v apart, want at least %v", i-1, i, gap, interval)
		}
	}
	conn.none(t, 3*interval)
	waitStats(t, r, func(s arpproxy.Stats) bool { return s.Announcements == 3 })

	// Adding it again does nothing; Announce starts over.
	if err := r.Add(owned1); err != nil {
		t.Fatalf("Add again: %v", err)
	}
	conn.none(t, 2*interval)
	if err := r.Announce(owned1); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	for range 3 {
		checkAnnouncement(t, conn.next(t, 5*time.Second).frame, owned1)
	}
}

// TestAnnounceInBackground checks that Add neither waits for the
// announcements nor delays the first one, and that Remove stops the rest.
func TestAnnounceInBackground(t *testing.T) {
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: 3, AnnounceInterval: time.Hour})
	done := make(chan error)
	go func() { done <- r.Add(owned1) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Add: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Add blocked")
	}
	checkAnnouncement(t, conn.next(t, 5*time.Second).frame, owned1)
	conn.none(t, 50*time.Millisecond)
	r.Remove(owned1) // returns once the announcer has stopped
	if s := r.Stats(); s.Announcements != 1 {
		t.Errorf("Announcements = %d, want 1", s.Announcements)
	}
}

func TestAnnounceDefaults(t *testing.T) {
	// RFC 5227: ANNOUNCE_NUM 2, ANNOUNCE_INTERVAL 2 seconds.
	if arpproxy.DefaultAnnounceCount != 2 || arpproxy.DefaultAnnounceInterval != 2*time.Second ||
		arpproxy.DefendInterval != 10*time.Second {
		t.Error("RFC 5227 constants changed")
	}
	r, conn := newResponder(t, nil, owned1)
	checkAnnouncement(t, conn.next(t, 5*time.Second).frame, owned1)
	conn.none(t, time.Second) // the second one is 2s later
	r.Remove(owned1)          // and stopped
}

func TestRemoveStopsAnnouncements(t *testing.T) {
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: 5, AnnounceInterval: 20 * time.Millisecond}, owned1, owned2)
	got := map[netip.Addr]int{}
	for range 2 {
		w := conn.next(t, 5*time.Second)
		got[decode(t, w.frame).spa()]++
	}
	r.Remove(owned1)
	// Drain what owned2 still sends; owned1 must not appear.
	deadline := time.After(200 * time.Millisecond)
	for done := false; !done; {
		select {
		case w := <-conn.out:
			if a := decode(t, w.frame).spa(); a == owned1 {
				t.Fatalf("announcement of %v after Remove", a)
			}
		case <-deadline:
			done = true
		}
	}
	if diff := cmp.Diff([]netip.Addr{owned2}, r.Addrs(), cmp.Comparer(addrsEqual)); diff != "" {
		t.Errorf("Addrs (-want +got):\n%s", diff)
	}
	if err := r.Announce(owned1); !errors.Is(err, arpproxy.ErrNotOwned) {
		t.Errorf("Announce(removed) = %v, want ErrNotOwned", err)
	}
}

func TestRemoveStopsReplies(t *testing.T) {
	r, conn := newResponder(t, quiet(), owned1, owned2)
	req := request(peerMAC, peerIP, owned1)
	conn.send(t, req.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, req)

	r.Remove(owned1)
	r.Remove(notOwned) // not owned: nothing happens
	conn.send(t, req.bytes(t))
	conn.send(t, request(peerMAC, zeroIP, owned1).bytes(t))
	s := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 3 })
	conn.none(t, 50*time.Millisecond)
	if s.Replies != 1 || s.NotOwned != 2 {
		t.Errorf("Replies = %d, NotOwned = %d; want 1, 2", s.Replies, s.NotOwned)
	}
	// owned2 is still served.
	req2 := request(peerMAC, peerIP, owned2)
	conn.send(t, req2.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, req2)
}

func TestAddInvalid(t *testing.T) {
	r, _ := newResponder(t, quiet())
	for _, s := range []string{"", "2001:db8::1", "::ffff:192.0.2.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "239.255.255.250", "127.0.0.1", "127.1.2.3", "240.0.0.1", "0.1.2.3"} {
		var a netip.Addr
		if s != "" {
			a = netip.MustParseAddr(s)
		}
		t.Run(fmt.Sprintf("%q", s), func(t *testing.T) {
			err := r.Add(a)
			if !errors.Is(err, arpproxy.ErrInvalidAddr) {
				t.Fatalf("Add(%v) = %v, want ErrInvalidAddr", a, err)
			}
			if msg := err.Error(); msg[:len("arpproxy: ")] != "arpproxy: " {
				t.Errorf("error %q lacks the package prefix", msg)
			}
		})
	}
	if n := len(r.Addrs()); n != 0 {
		t.Errorf("Addrs has %d addresses after invalid Adds", n)
	}
	// Link-local is fine; the reserved 240/4 and 0/8 are not, as for vif
	// (vif.IsHostAddr).
	for _, s := range []string{"169.254.1.1", "10.0.0.1"} {
		if err := r.Add(netip.MustParseAddr(s)); err != nil {
			t.Errorf("Add(%s) = %v", s, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		ifi  *net.Interface
		conn net.PacketConn
		cfg  *arpproxy.Config
		is   error
	}{
		{"nil interface", nil, newMemConn(), nil, arpproxy.ErrInterface},
		{"no hardware address", &net.Interface{Name: "tun0"}, newMemConn(), nil, arpproxy.ErrInterface},
		{"loopback zero address", &net.Interface{Name: "lo", HardwareAddr: zeroMAC}, newMemConn(), nil, arpproxy.ErrInterface},
		{"InfiniBand address", &net.Interface{Name: "ib0", HardwareAddr: make(net.HardwareAddr, 20)}, newMemConn(), nil, arpproxy.ErrInterface},
		{"nil conn", ourIfi, nil, nil, nil},
		{"NaN rate", ourIfi, newMemConn(), &arpproxy.Config{GlobalRate: math.NaN()}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := arpproxy.New(tt.ifi, tt.conn, tt.cfg)
			if err == nil {
				r.Close()
				t.Fatal("New succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("New = %v, want %v", err, tt.is)
			}
			if msg := err.Error(); msg[:len("arpproxy: ")] != "arpproxy: " {
				t.Errorf("error %q lacks the package prefix", msg)
			}
		})
	}
	if _, err := arpproxy.Listen(nil, nil); !errors.Is(err, arpproxy.ErrInterface) {
		t.Errorf("Listen(nil) = %v, want ErrInterface", err)
	}
}

func TestHardwareAddr(t *testing.T) {
	ifi := *ourIfi
	ifi.HardwareAddr = append(net.HardwareAddr(nil), ourMAC...)
	r, err := arpproxy.New(&ifi, newMemConn(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ifi.HardwareAddr[5] = 0x99 // the Responder keeps its own copy
	got := r.HardwareAddr()
	got[0] = 0x99 // and hands out copies
	if r.HardwareAddr().String() != ourMAC.String() {
		t.Errorf("HardwareAddr = %v, want %v", r.HardwareAddr(), ourMAC)
	}
}

func TestRateLimitPerRequester(t *testing.T) {
	// Practically no refill: exactly the burst is answered.
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: -1, RequesterRate: 1e-6, RequesterBurst: 3}, owned1, owned2)
	for range 10 {
		conn.send(t, request(peerMAC, peerIP, owned1).bytes(t))
	}
	s := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 10 })
	if s.Replies != 3 || s.RateLimited != 7 {
		t.Errorf("Replies = %d, RateLimited = %d; want 3, 7", s.Replies, s.RateLimited)
	}
	// Another requester, and the same requester for another address, have
	// their own buckets.
	conn.send(t, request(otherMAC, peerIP, owned1).bytes(t))
	conn.send(t, request(peerMAC, peerIP, owned2).bytes(t))
	s = waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 12 })
	if s.Replies != 5 || s.RateLimited != 7 {
		t.Errorf("Replies = %d, RateLimited = %d; want 5, 7", s.Replies, s.RateLimited)
	}
	if got := len(conn.out); got != 5 {
		t.Errorf("%d frames written, want 5", got)
	}
}

func TestRateLimitRefill(t *testing.T) {
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: -1, RequesterRate: 20, RequesterBurst: 1}, owned1)
	req := request(peerMAC, peerIP, owned1).bytes(t)
	conn.send(t, req)
	conn.send(t, req)
	waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 2 && s.Replies == 1 && s.RateLimited == 1 })
	time.Sleep(100 * time.Millisecond) // two tokens at 20/s; the bucket holds one
	conn.send(t, req)
	conn.send(t, req)
	waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 4 && s.Replies == 2 && s.RateLimited == 2 })
}

func TestRateLimitGlobal(t *testing.T) {
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: -1, RequesterRate: -1, GlobalRate: 1e-6, GlobalBurst: 5}, owned1)
	for i := range 10 {
		mac := net.HardwareAddr{0x02, 0, 0, 1, 0, byte(i)}
		conn.send(t, request(mac, peerIP, owned1).bytes(t))
	}
	s := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 10 })
	if s.Replies != 5 || s.RateLimited != 5 {
		t.Errorf("Replies = %d, RateLimited = %d; want 5, 5", s.Replies, s.RateLimited)
	}
}

// TestManyRequestersDefaults checks that the default limits do not get in
// the way of normal traffic: many hosts, each resolving several addresses
// a few times, are all answered.
func TestManyRequestersDefaults(t *testing.T) {
	addrs := make([]netip.Addr, 50)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
	}
	r, conn := newResponder(t, quiet(), addrs...)
	const hosts = 400
	n := 0
	for h := range hosts {
		mac := net.HardwareAddr{0x02, 0xaa, 0, 0, byte(h >> 8), byte(h)}
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(h)})
		for k := range 3 { // a neighbour retries up to 3 times
			conn.send(t, request(mac, ip, addrs[(h+k)%len(addrs)]).bytes(t))
			n++
		}
	}
	// One neighbour resolving every address at once.
	for _, a := range addrs {
		conn.send(t, request(peerMAC, peerIP, a).bytes(t))
		n++
	}
	s := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == uint64(n) })
	if s.Replies != uint64(n) || s.RateLimited != 0 {
		t.Errorf("Replies = %d, RateLimited = %d; want %d, 0", s.Replies, s.RateLimited, n)
	}
}

func TestConflict(t *testing.T) {
	h := &recordHandler{}
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: -1, Logger: slog.New(h)}, owned1)
	// A flood of conflicting announcements: counted, logged once.
	for range 100 {
		conn.send(t, request(otherMAC, owned1, owned1).bytes(t))
	}
	s := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 100 })
	if s.Conflicts != 100 || s.Replies != 0 || s.Announcements != 0 {
		t.Errorf("Conflicts = %d, Replies = %d, Announcements = %d; want 100, 0, 0", s.Conflicts, s.Replies, s.Announcements)
	}
	warns := h.at(slog.LevelWarn)
	if len(warns) != 1 {
		t.Fatalf("%d warnings logged for 100 conflicts, want 1", len(warns))
	}
	if got := attr(warns[0], "addr"); got != owned1.String() {
		t.Errorf("warning addr = %q, want %v", got, owned1)
	}
	if got := attr(warns[0], "mac"); got != otherMAC.String() {
		t.Errorf("warning mac = %q, want %v", got, otherMAC)
	}

	// The other host probing for our address gets the RFC 5227 defence: a
	// reply.
	probe := request(otherMAC, zeroIP, owned1)
	conn.send(t, probe.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, probe)
	s = waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 101 })
	if s.ProbesAnswered != 1 || s.Replies != 1 || s.Conflicts != 100 {
		t.Errorf("ProbesAnswered = %d, Replies = %d, Conflicts = %d; want 1, 1, 100", s.ProbesAnswered, s.Replies, s.Conflicts)
	}
}

func TestConflictLogInterval(t *testing.T) {
	h := &recordHandler{}
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: -1, Logger: slog.New(h), ConflictLogInterval: 20 * time.Millisecond}, owned1)
	conn.send(t, request(otherMAC, owned1, owned1).bytes(t))
	conn.send(t, request(otherMAC, owned1, owned1).bytes(t))
	waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 2 })
	time.Sleep(40 * time.Millisecond)
	conn.send(t, request(otherMAC, owned1, owned1).bytes(t))
	waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 3 })
	warns := h.at(slog.LevelWarn)
	if len(warns) != 2 {
		t.Fatalf("%d warnings, want 2", len(warns))
	}
	if got := attr(warns[1], "suppressed"); got != "1" {
		t.Errorf("second warning suppressed = %q, want 1", got)
	}

	// A negative interval never logs.
	h2 := &recordHandler{}
	r2, conn2 := newResponder(t, &arpproxy.Config{AnnounceCount: -1, Logger: slog.New(h2), ConflictLogInterval: -1}, owned1)
	conn2.send(t, request(otherMAC, owned1, owned1).bytes(t))
	waitStats(t, r2, func(s arpproxy.Stats) bool { return s.Conflicts == 1 })
	if n := len(h2.at(slog.LevelWarn)); n != 0 {
		t.Errorf("%d warnings with logging disabled", n)
	}
}

func TestDefend(t *testing.T) {
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: -1, Defend: true}, owned1, owned2)
	for range 5 {
		conn.send(t, request(otherMAC, owned1, owned1).bytes(t))
	}
	conn.send(t, reply(otherMAC, owned2, bcastMAC, owned2).bytes(t))
	checkAnnouncement(t, conn.next(t, 5*time.Second).frame, owned1)
	checkAnnouncement(t, conn.next(t, 5*time.Second).frame, owned2)
	s := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 6 })
	conn.none(t, 50*time.Millisecond) // once per DefendInterval per address
	if s.Conflicts != 6 || s.Defences != 2 || s.Announcements != 2 {
		t.Errorf("Conflicts = %d, Defences = %d, Announcements = %d; want 6, 2, 2", s.Conflicts, s.Defences, s.Announcements)
	}
}

func TestReadErrorsAreTransient(t *testing.T) {
	h := &recordHandler{}
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: -1, Logger: slog.New(h)}, owned1)
	for range 3 {
		select {
		case conn.inErr <- errors.New("transient"):
		case <-time.After(5 * time.Second):
			t.Fatal("responder stopped reading")
		}
	}
	req := request(peerMAC, peerIP, owned1)
	conn.send(t, req.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, req)
	if s := r.Stats(); s.ReadErrors != 3 {
		t.Errorf("ReadErrors = %d, want 3", s.ReadErrors)
	}
	if n := len(h.at(slog.LevelWarn)); n != 1 {
		t.Errorf("%d warnings for 3 read errors, want 1 (rate-limited)", n)
	}
}

func TestWriteErrors(t *testing.T) {
	r, conn := newResponder(t, &arpproxy.Config{AnnounceInterval: time.Millisecond})
	conn.setWriteErr(errors.New("no buffer space"))
	if err := r.Add(owned1); err != nil {
		t.Fatal(err)
	}
	waitStats(t, r, func(s arpproxy.Stats) bool { return s.WriteErrors == 2 }) // both announcements
	conn.send(t, request(peerMAC, peerIP, owned1).bytes(t))
	s := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 1 })
	if s.WriteErrors != 3 || s.Replies != 0 || s.Announcements != 0 {
		t.Errorf("WriteErrors = %d, Replies = %d, Announcements = %d; want 3, 0, 0", s.WriteErrors, s.Replies, s.Announcements)
	}
	conn.setWriteErr(nil)
	req := request(peerMAC, peerIP, owned1)
	conn.send(t, req.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, req)
}

// TestConnClosedUnderneath checks that the serve loop exits quietly when
// its connection is closed by someone else, and that Close still works.
func TestConnClosedUnderneath(t *testing.T) {
	r, conn := newResponder(t, quiet(), owned1)
	conn.Close()
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	conn := newMemConn()
	r, err := arpproxy.New(ourIfi, conn, &arpproxy.Config{AnnounceInterval: time.Hour, AnnounceCount: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{owned1, owned2} {
		if err := r.Add(a); err != nil {
			t.Fatal(err)
		}
	}
	// Announcers are now waiting for an hour; Close must stop them.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	if err := r.Add(netip.MustParseAddr("192.0.2.3")); !errors.Is(err, arpproxy.ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
	if err := r.Announce(owned1); !errors.Is(err, arpproxy.ErrClosed) {
		t.Errorf("Announce after Close = %v, want ErrClosed", err)
	}
	r.Remove(owned1) // harmless
	_ = r.Stats()
	goleak.VerifyNone(t)
}

// TestConcurrentAddRemove changes the address set while frames flow; run
// with -race.
func TestConcurrentAddRemove(t *testing.T) {
	r, conn := newResponder(t, &arpproxy.Config{AnnounceInterval: time.Millisecond, RequesterRate: -1, GlobalRate: -1})
	go func() { // drain the announcements
		for {
			select {
			case <-conn.out:
			case <-conn.closed:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				a := netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)})
				if err := r.Add(a); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					r.Remove(a)
				}
				_ = r.Addrs()
			}
		})
	}
	wg.Go(func() {
		for i := range 500 {
			conn.send(t, request(peerMAC, peerIP, netip.AddrFrom4([4]byte{10, byte(i % 4), 0, byte(i)})).bytes(t))
		}
	})
	wg.Wait()
	if got, want := len(r.Addrs()), 4*(200-67); got != want {
		t.Errorf("%d addresses owned, want %d", got, want)
	}
	s := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 500 })
	if s.Replies+s.NotOwned != 500 {
		t.Errorf("Replies %d + NotOwned %d != 500", s.Replies, s.NotOwned)
	}
}
