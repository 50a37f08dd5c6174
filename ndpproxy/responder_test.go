package ndpproxy_test

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/packet"
	"go.uber.org/goleak"

	"github.com/vif-project/vif/ndpproxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func addrsEqual(a, b netip.Addr) bool { return a == b }

func dropped(r ndpproxy.DropReason) map[string]uint64 {
	return map[string]uint64{r.Name(): 1}
}

// TestResponderFrames sends one frame to a Responder owning owned1 and
// owned2 and checks what it writes and counts.
func TestResponderFrames(t *testing.T) {
	tests := []struct {
		name  string
		frame ndpSpec
		reply bool
		want  ndpproxy.Stats // Frames is always 1 and not set here
	}{
		{name: "solicitation owned", frame: solicit(peerMAC, peerIP, owned1), reply: true,
			want: ndpproxy.Stats{Solicitations: 1, Replies: 1}},
		{name: "unicast solicitation owned", frame: unicastSolicit(peerMAC, peerIP, owned2, ourMAC), reply: true,
			want: ndpproxy.Stats{Solicitations: 1, Replies: 1}},
		{name: "DAD probe owned", frame: dadProbe(peerMAC, owned2), reply: true,
			want: ndpproxy.Stats{Solicitations: 1, Replies: 1, DADAnswered: 1}},
		{name: "not owned", frame: solicit(peerMAC, peerIP, notOwned),
			want: ndpproxy.Stats{Solicitations: 1, NotOwned: 1}},
		{name: "advertisement by another host", frame: advertise(otherMAC, peerLL, peerIP),
			want: ndpproxy.Stats{Advertisements: 1, Ignored: 1}},
		{name: "advertisement claiming owned", frame: advertise(otherMAC, peerLL, owned1),
			want: ndpproxy.Stats{Advertisements: 1, Ignored: 1, Conflicts: 1}},
		{name: "solicitation from a host using an owned address", frame: solicit(otherMAC, owned2, owned1), reply: true,
			want: ndpproxy.Stats{Solicitations: 1, Replies: 1, Conflicts: 1}},
		{name: "hop limit 254", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.hop = 254 }),
			want: ndpproxy.Stats{Drops: dropped(ndpproxy.DropHopLimit)}},
		{name: "bad checksum", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.raw, s.keepChecksum = func(b []byte) []byte { b[56] ^= 0x80; return b }, true
		}), want: ndpproxy.Stats{Drops: dropped(ndpproxy.DropChecksum)}},
		{name: "from self", frame: solicit(ourMAC, peerIP, owned1),
			want: ndpproxy.Stats{Drops: dropped(ndpproxy.DropFromSelf)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, conn := newResponder(t, quiet(), owned1, owned2)
			conn.send(t, tt.frame.bytes(t))
			if tt.reply {
				w := conn.next(t, 5*time.Second)
				checkReply(t, w.frame, tt.frame)
				want := tt.frame.ethSrc
				if tt.frame.lladdr != nil {
					want = tt.frame.lladdr
				}
				if tt.frame.src.IsUnspecified() {
					want = nodesMAC
				}
				if a, ok := w.addr.(*packet.Addr); !ok || a.HardwareAddr.String() != want.String() {
					t.Errorf("WriteTo address = %v, want *packet.Addr %v", w.addr, want)
				}
			}
			waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 1 })
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
		})
	}
}

// TestEveryDropReasonCounted sends one frame per drop reason and checks
// each counter and the Drops map.
func TestEveryDropReasonCounted(t *testing.T) {
	r, conn := newResponder(t, quiet(), owned1)
	ns := func(f func(*ndpSpec)) []byte { return solicit(peerMAC, peerIP, owned1).with(f).bytes(t) }
	setByte := func(off int, v byte) func(*ndpSpec) {
		return func(s *ndpSpec) { s.raw = func(b []byte) []byte { b[off] = v; return b } }
	}
	frames := map[ndpproxy.DropReason][]byte{
		ndpproxy.DropShort:      solicit(peerMAC, peerIP, owned1).bytes(t)[:60],
		ndpproxy.DropEtherType:  ns(func(s *ndpSpec) { s.ethType = 0x0800 }),
		ndpproxy.DropVersion:    ns(setByte(14, 0x40)),
		ndpproxy.DropNextHeader: ns(setByte(20, 60)),
		ndpproxy.DropICMPType:   ns(setByte(54, 129)),
		ndpproxy.DropHopLimit:   ns(func(s *ndpSpec) { s.hop = 64 }),
		ndpproxy.DropICMPLength: ns(func(s *ndpSpec) {
			s.lladdr = nil
			s.raw = func(b []byte) []byte { b[19] = 16; return b[:70] }
		}),
		ndpproxy.DropChecksum:     ns(func(s *ndpSpec) { s.raw, s.keepChecksum = func(b []byte) []byte { b[57]++; return b }, true }),
		ndpproxy.DropCode:         ns(func(s *ndpSpec) { s.code = 9 }),
		ndpproxy.DropTarget:       solicit(peerMAC, peerIP, netip.MustParseAddr("ff05::2")).bytes(t),
		ndpproxy.DropOptionLength: ns(setByte(79, 0)),
		ndpproxy.DropLinkLayerOption: ns(func(s *ndpSpec) {
			s.lladdr, s.raw = nil, appendOpt(append([]byte{1, 2}, make([]byte, 14)...))
		}),
		ndpproxy.DropDADDestination:     dadProbe(peerMAC, owned1).with(func(s *ndpSpec) { s.dst, s.ethDst = allNodes, nodesMAC }).bytes(t),
		ndpproxy.DropDADOption:          dadProbe(peerMAC, owned1).with(func(s *ndpSpec) { s.lladdr = peerMAC }).bytes(t),
		ndpproxy.DropSolicitedMulticast: advertise(otherMAC, peerLL, peerIP).with(func(s *ndpSpec) { s.flags = 0x40 }).bytes(t),
		ndpproxy.DropSenderMAC:          ns(func(s *ndpSpec) { s.ethSrc, s.lladdr = bcastMAC, bcastMAC }),
		ndpproxy.DropSourceMismatch:     ns(func(s *ndpSpec) { s.lladdr = otherMAC }),
		ndpproxy.DropSource:             solicit(peerMAC, netip.MustParseAddr("ff02::fb"), owned1).bytes(t),
		ndpproxy.DropDestination:        ns(func(s *ndpSpec) { s.dst = ndpproxy.SolicitedNode(owned2) }),
		ndpproxy.DropOtherHost:          ns(func(s *ndpSpec) { s.ethDst = otherMAC }),
		ndpproxy.DropFromSelf:           solicit(ourMAC, peerIP, owned1).bytes(t),
	}
	if len(frames) != int(ndpproxy.NumDropReasons)-1 {
		t.Fatalf("test covers %d reasons, package has %d", len(frames), ndpproxy.NumDropReasons-1)
	}
	for _, reason := range ndpproxy.DropReasons() {
		conn.send(t, frames[reason])
	}
	s := waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == uint64(len(frames)) })
	conn.none(t, 50*time.Millisecond)
	want := map[string]uint64{}
	for _, reason := range ndpproxy.DropReasons() {
		want[reason.Name()] = 1
	}
	if diff := cmp.Diff(want, s.Drops); diff != "" {
		t.Errorf("Drops (-want +got):\n%s", diff)
	}
	if s.Dropped() != uint64(len(frames)) || s.Replies != 0 {
		t.Errorf("Dropped() = %d, Replies = %d; want %d, 0", s.Dropped(), s.Replies, len(frames))
	}
}

func TestAnnounceOnAdd(t *testing.T) {
	const interval = 30 * time.Millisecond
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: 3, AnnounceInterval: interval})
	start := time.Now()
	if err := r.Add(owned1); err != nil {
		t.Fatalf("Add: %v", err)
	}
	var times []time.Duration
	for range 3 {
		w := conn.next(t, 5*time.Second)
		times = append(times, time.Since(start))
		checkAnnouncement(t, w.frame, owned1)
		if a, ok := w.addr.(*packet.Addr); !ok || a.HardwareAddr.String() != nodesMAC.String() {
			t.Errorf("announcement sent to %v, want %v", w.addr, nodesMAC)
		}
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i] - times[i-1]; gap < interval*8/10 {
			t.Errorf("announcements %d and %d %v apart, want at least %v", i-1, i, gap, interval)
		}
	}
	conn.none(t, 3*interval)
	waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Announcements == 3 })

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

// TestAnnouncePaced checks that the announcements of many addresses added
// at once are spread AnnounceGap apart (RFC 4861 section 7.2.6: "the node
// SHOULD introduce a small delay between the sending of each
// advertisement").
func TestAnnouncePaced(t *testing.T) {
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: 1})
	addrs := manyAddrs(10)
	start := time.Now()
	for _, a := range addrs {
		if err := r.Add(a); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[netip.Addr]bool{}
	for range addrs {
		w := conn.next(t, 5*time.Second)
		seen[ndpproxy.Frame(w.frame).Target()] = true
	}
	if took, least := time.Since(start), 9*ndpproxy.AnnounceGap; took < least {
		t.Errorf("10 announcements in %v, want at least %v", took, least)
	}
	if len(seen) != len(addrs) {
		t.Errorf("announced %d distinct addresses, want %d", len(seen), len(addrs))
	}
	r.Close()
}

// TestAnnounceInBackground checks that Add neither waits for the
// announcements nor delays the first one, and that Remove stops the rest.
func TestAnnounceInBackground(t *testing.T) {
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: 3, AnnounceInterval: time.Hour})
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
	// RFC 4861 section 10: MAX_NEIGHBOR_ADVERTISEMENT 3, RETRANS_TIMER 1s.
	if ndpproxy.DefaultAnnounceCount != 3 || ndpproxy.DefaultAnnounceInterval != time.Second {
		t.Error("RFC 4861 constants changed")
	}
	r, conn := newResponder(t, nil, owned1)
	checkAnnouncement(t, conn.next(t, 5*time.Second).frame, owned1)
	conn.none(t, 500*time.Millisecond) // the second one is 1s later
	r.Remove(owned1)                   // and stopped
}

func TestRemoveStopsAnnouncements(t *testing.T) {
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: 5, AnnounceInterval: 20 * time.Millisecond}, owned1, owned2)
	for range 2 {
		conn.next(t, 5*time.Second)
	}
	r.Remove(owned1)
	// Drain what owned2 still sends; owned1 must not appear.
	deadline := time.After(200 * time.Millisecond)
	for done := false; !done; {
		select {
		case w := <-conn.out:
			if a := ndpproxy.Frame(w.frame).Target(); a == owned1 {
				t.Fatalf("announcement of %v after Remove", a)
			}
		case <-deadline:
			done = true
		}
	}
	if diff := cmp.Diff([]netip.Addr{owned2}, r.Addrs(), cmp.Comparer(addrsEqual)); diff != "" {
		t.Errorf("Addrs (-want +got):\n%s", diff)
	}
	if err := r.Announce(owned1); !errors.Is(err, ndpproxy.ErrNotOwned) {
		t.Errorf("Announce(removed) = %v, want ErrNotOwned", err)
	}
}

func TestRemoveStopsReplies(t *testing.T) {
	r, conn := newResponder(t, quiet(), owned1, owned2)
	req := solicit(peerMAC, peerIP, owned1)
	conn.send(t, req.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, req)

	r.Remove(owned1)
	r.Remove(notOwned) // not owned: nothing happens
	conn.send(t, req.bytes(t))
	conn.send(t, dadProbe(peerMAC, owned1).bytes(t))
	conn.send(t, unicastSolicit(peerMAC, peerIP, owned1, ourMAC).bytes(t))
	s := waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 4 })
	conn.none(t, 50*time.Millisecond)
	if s.Replies != 1 || s.NotOwned != 3 {
		t.Errorf("Replies = %d, NotOwned = %d; want 1, 3", s.Replies, s.NotOwned)
	}
	// owned2 is still served.
	req2 := solicit(peerMAC, peerIP, owned2)
	conn.send(t, req2.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, req2)
}

func TestAddInvalid(t *testing.T) {
	r, _ := newResponder(t, quiet())
	for _, s := range []string{"", "192.0.2.1", "::", "::1", "ff02::1", "ff02::1:ff00:10", "fe80::10", "::ffff:192.0.2.1"} {
		var a netip.Addr
		if s != "" {
			a = netip.MustParseAddr(s)
		}
		t.Run(fmt.Sprintf("%q", s), func(t *testing.T) {
			err := r.Add(a)
			if !errors.Is(err, ndpproxy.ErrInvalidAddr) {
				t.Fatalf("Add(%v) = %v, want ErrInvalidAddr", a, err)
			}
			if !strings.HasPrefix(err.Error(), "ndpproxy: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	if n := len(r.Addrs()); n != 0 {
		t.Errorf("Addrs has %d addresses after invalid Adds", n)
	}
	// Unique local and global addresses are fine.
	for _, s := range []string{"fd00::1", "2001:db8::1"} {
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
		cfg  *ndpproxy.Config
		is   error
	}{
		{"nil interface", nil, newMemConn(), quiet(), ndpproxy.ErrInterface},
		{"no hardware address", &net.Interface{Name: "tun0"}, newMemConn(), quiet(), ndpproxy.ErrInterface},
		{"zero address", &net.Interface{Name: "lo", HardwareAddr: zeroMAC}, newMemConn(), quiet(), ndpproxy.ErrInterface},
		{"InfiniBand address", &net.Interface{Name: "ib0", HardwareAddr: make(net.HardwareAddr, 20)}, newMemConn(), quiet(), ndpproxy.ErrInterface},
		{"no link-local address", &net.Interface{Index: 1 << 30, Name: "gone0", HardwareAddr: ourMAC}, newMemConn(), nil, ndpproxy.ErrInterface},
		{"multicast source", ourIfi, newMemConn(), &ndpproxy.Config{SourceAddr: allNodes}, ndpproxy.ErrInvalidAddr},
		{"IPv4 source", ourIfi, newMemConn(), &ndpproxy.Config{SourceAddr: netip.MustParseAddr("192.0.2.1")}, ndpproxy.ErrInvalidAddr},
		{"nil conn", ourIfi, nil, quiet(), nil},
		{"NaN rate", ourIfi, newMemConn(), &ndpproxy.Config{SourceAddr: ourLL, GlobalRate: math.NaN()}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ndpproxy.New(tt.ifi, tt.conn, tt.cfg)
			if err == nil {
				r.Close()
				t.Fatal("New succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("New = %v, want %v", err, tt.is)
			}
			if !strings.HasPrefix(err.Error(), "ndpproxy: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	if _, err := ndpproxy.Listen(nil, nil); !errors.Is(err, ndpproxy.ErrInterface) {
		t.Errorf("Listen(nil) = %v, want ErrInterface", err)
	}
}

func TestHardwareAndSourceAddr(t *testing.T) {
	ifi := *ourIfi
	ifi.HardwareAddr = append(net.HardwareAddr(nil), ourMAC...)
	r, err := ndpproxy.New(&ifi, newMemConn(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ifi.HardwareAddr[5] = 0x99 // the Responder keeps its own copy
	got := r.HardwareAddr()
	got[0] = 0x99 // and hands out copies
	if r.HardwareAddr().String() != ourMAC.String() || r.SourceAddr() != ourLL {
		t.Errorf("HardwareAddr, SourceAddr = %v, %v; want %v, %v", r.HardwareAddr(), r.SourceAddr(), ourMAC, ourLL)
	}
	if err := r.SetSourceAddr(allNodes); !errors.Is(err, ndpproxy.ErrInvalidAddr) {
		t.Errorf("SetSourceAddr(multicast) = %v, want ErrInvalidAddr", err)
	}
}

// TestSetAddrs checks that a new hardware address is answered with and
// announced for every address (RFC 4861 section 7.2.6), and that a new
// source address is used from then on.
func TestSetAddrs(t *testing.T) {
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: 1}, owned1, owned2)
	for range 2 {
		conn.next(t, 5*time.Second)
	}
	newMAC := mustMAC("02:00:00:00:00:99")
	newLL := netip.MustParseAddr("fe80::99")
	if err := r.SetSourceAddr(newLL); err != nil {
		t.Fatal(err)
	}
	if err := r.SetHardwareAddr(newMAC); err != nil {
		t.Fatal(err)
	}
	got := map[netip.Addr]bool{}
	for range 2 {
		w := conn.next(t, 5*time.Second)
		f := ndpproxy.Frame(w.frame)
		checkReplyFrom(t, w.frame, ndpSpec{src: unspec, target: f.Target()}, newMAC, newLL, 0x20)
		got[f.Target()] = true
	}
	if !got[owned1] || !got[owned2] {
		t.Errorf("announced %v after the new hardware address, want both owned addresses", got)
	}
	// The same address again changes nothing.
	if err := r.SetHardwareAddr(newMAC); err != nil {
		t.Fatal(err)
	}
	conn.none(t, 50*time.Millisecond)
	req := solicit(peerMAC, peerIP, owned1)
	conn.send(t, req.bytes(t))
	checkReplyFrom(t, conn.next(t, 5*time.Second).frame, req, newMAC, newLL, 0x20)
	// Our old hardware address is someone else's now.
	conn.send(t, solicit(ourMAC, peerIP, owned1).bytes(t))
	checkReplyFrom(t, conn.next(t, 5*time.Second).frame, solicit(ourMAC, peerIP, owned1), newMAC, newLL, 0x20)
	for _, bad := range []net.HardwareAddr{nil, zeroMAC, bcastMAC, nodesMAC, make(net.HardwareAddr, 8)} {
		if err := r.SetHardwareAddr(bad); !errors.Is(err, ndpproxy.ErrInterface) {
			t.Errorf("SetHardwareAddr(%v) = %v, want ErrInterface", bad, err)
		}
	}
	r.Close()
	if err := r.SetHardwareAddr(ourMAC); !errors.Is(err, ndpproxy.ErrClosed) {
		t.Errorf("SetHardwareAddr after Close = %v, want ErrClosed", err)
	}
	if err := r.SetSourceAddr(ourLL); !errors.Is(err, ndpproxy.ErrClosed) {
		t.Errorf("SetSourceAddr after Close = %v, want ErrClosed", err)
	}
}

func TestRateLimitPerRequester(t *testing.T) {
	// Practically no refill: exactly the burst is answered.
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: -1, RequesterRate: 1e-6, RequesterBurst: 3}, owned1, owned2)
	for range 10 {
		conn.send(t, solicit(peerMAC, peerIP, owned1).bytes(t))
	}
	s := waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 10 })
	if s.Replies != 3 || s.RateLimited != 7 {
		t.Errorf("Replies = %d, RateLimited = %d; want 3, 7", s.Replies, s.RateLimited)
	}
	// Another requester, and the same requester for another address, have
	// their own buckets; a DAD probe counts for its Ethernet source.
	conn.send(t, solicit(otherMAC, peerIP, owned1).bytes(t))
	conn.send(t, solicit(peerMAC, peerIP, owned2).bytes(t))
	conn.send(t, dadProbe(peerMAC, owned1).bytes(t))
	s = waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 13 })
	if s.Replies != 5 || s.RateLimited != 8 {
		t.Errorf("Replies = %d, RateLimited = %d; want 5, 8", s.Replies, s.RateLimited)
	}
	if got := len(conn.out); got != 5 {
		t.Errorf("%d frames written, want 5", got)
	}
}

func TestRateLimitRefill(t *testing.T) {
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: -1, RequesterRate: 20, RequesterBurst: 1}, owned1)
	req := solicit(peerMAC, peerIP, owned1).bytes(t)
	conn.send(t, req)
	conn.send(t, req)
	waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 2 && s.Replies == 1 && s.RateLimited == 1 })
	time.Sleep(100 * time.Millisecond) // two tokens at 20/s; the bucket holds one
	conn.send(t, req)
	conn.send(t, req)
	waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 4 && s.Replies == 2 && s.RateLimited == 2 })
}

func TestRateLimitGlobal(t *testing.T) {
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: -1, RequesterRate: -1, GlobalRate: 1e-6, GlobalBurst: 5}, owned1)
	for i := range 10 {
		mac := net.HardwareAddr{0x02, 0, 0, 1, 0, byte(i)}
		conn.send(t, solicit(mac, peerIP, owned1).bytes(t))
	}
	s := waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 10 })
	if s.Replies != 5 || s.RateLimited != 5 {
		t.Errorf("Replies = %d, RateLimited = %d; want 5, 5", s.Replies, s.RateLimited)
	}
}

// TestManyRequestersDefaults checks that the default limits do not get in
// the way of normal traffic: many hosts, each resolving several addresses
// a few times, are all answered.
func TestManyRequestersDefaults(t *testing.T) {
	addrs := manyAddrs(50)
	r, conn := newResponder(t, quiet(), addrs...)
	const hosts = 300
	n := 0
	for h := range hosts {
		mac := net.HardwareAddr{0x02, 0xaa, 0, 0, byte(h >> 8), byte(h)}
		ip := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 14: byte(h >> 8), 15: byte(h)})
		for k := range 3 { // a neighbour sends up to 3 solicitations (MAX_MULTICAST_SOLICIT)
			conn.send(t, solicit(mac, ip, addrs[(h+k)%len(addrs)]).bytes(t))
			n++
		}
	}
	for _, a := range addrs { // one neighbour resolving every address at once
		conn.send(t, solicit(peerMAC, peerIP, a).bytes(t))
		n++
	}
	s := waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == uint64(n) })
	if s.Replies != uint64(n) || s.RateLimited != 0 {
		t.Errorf("Replies = %d, RateLimited = %d; want %d, 0", s.Replies, s.RateLimited, n)
	}
}

func TestConflict(t *testing.T) {
	h := &recordHandler{}
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: -1, Logger: slog.New(h)}, owned1)
	// A flood of advertisements for our address: counted, logged once.
	for range 100 {
		conn.send(t, advertise(otherMAC, peerLL, owned1).bytes(t))
	}
	s := waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 100 })
	if s.Conflicts != 100 || s.Replies != 0 || s.Announcements != 0 {
		t.Errorf("Conflicts = %d, Replies = %d, Announcements = %d; want 100, 0, 0", s.Conflicts, s.Replies, s.Announcements)
	}
	warns := h.at(slog.LevelWarn)
	if len(warns) != 1 {
		t.Fatalf("%d warnings logged for 100 conflicts, want 1", len(warns))
	}
	if got, want := attrs(warns[0]), "addr="+owned1.String()+" mac="+otherMAC.String()+" type=neighbor_advertisement suppressed=0"; got != want {
		t.Errorf("warning %q, want %q", got, want)
	}

	// The other host running Duplicate Address Detection for our address
	// is told it is taken (RFC 4862 section 5.4.4).
	probe := dadProbe(otherMAC, owned1)
	conn.send(t, probe.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, probe)
	s = waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 101 })
	if s.DADAnswered != 1 || s.Replies != 1 || s.Conflicts != 100 {
		t.Errorf("DADAnswered = %d, Replies = %d, Conflicts = %d; want 1, 1, 100", s.DADAnswered, s.Replies, s.Conflicts)
	}
}

// attrs returns the attributes of r as "k=v" separated by spaces.
func attrs(r slog.Record) string {
	var b []string
	r.Attrs(func(a slog.Attr) bool {
		b = append(b, a.Key+"="+a.Value.String())
		return true
	})
	return strings.Join(b, " ")
}

func TestConflictLogInterval(t *testing.T) {
	h := &recordHandler{}
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: -1, Logger: slog.New(h), ConflictLogInterval: 20 * time.Millisecond}, owned1)
	conn.send(t, solicit(otherMAC, owned1, peerIP).bytes(t))
	conn.send(t, solicit(otherMAC, owned1, peerIP).bytes(t))
	waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 2 })
	time.Sleep(40 * time.Millisecond)
	conn.send(t, solicit(otherMAC, owned1, peerIP).bytes(t))
	waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 3 })
	warns := h.at(slog.LevelWarn)
	if len(warns) != 2 {
		t.Fatalf("%d warnings, want 2", len(warns))
	}
	if got := attrs(warns[1]); !strings.Contains(got, "suppressed=1") || !strings.Contains(got, "type=neighbor_solicitation") {
		t.Errorf("second warning %q, want suppressed=1 and the solicitation", got)
	}

	// A negative interval never logs.
	h2 := &recordHandler{}
	r2, conn2 := newResponder(t, &ndpproxy.Config{AnnounceCount: -1, Logger: slog.New(h2), ConflictLogInterval: -1}, owned1)
	conn2.send(t, advertise(otherMAC, peerLL, owned1).bytes(t))
	waitStats(t, r2, func(s ndpproxy.Stats) bool { return s.Conflicts == 1 })
	if n := len(h2.at(slog.LevelWarn)); n != 0 {
		t.Errorf("%d warnings with logging disabled", n)
	}
}

func TestReadErrorsAreTransient(t *testing.T) {
	h := &recordHandler{}
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceCount: -1, Logger: slog.New(h)}, owned1)
	for range 3 {
		select {
		case conn.inErr <- errors.New("transient"):
		case <-time.After(5 * time.Second):
			t.Fatal("responder stopped reading")
		}
	}
	req := solicit(peerMAC, peerIP, owned1)
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
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceInterval: time.Millisecond})
	conn.setWriteErr(errors.New("no buffer space"))
	if err := r.Add(owned1); err != nil {
		t.Fatal(err)
	}
	waitStats(t, r, func(s ndpproxy.Stats) bool { return s.WriteErrors == 3 }) // every announcement
	conn.send(t, solicit(peerMAC, peerIP, owned1).bytes(t))
	s := waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 1 })
	if s.WriteErrors != 4 || s.Replies != 0 || s.Announcements != 0 {
		t.Errorf("WriteErrors = %d, Replies = %d, Announcements = %d; want 4, 0, 0", s.WriteErrors, s.Replies, s.Announcements)
	}
	conn.setWriteErr(nil)
	req := solicit(peerMAC, peerIP, owned1)
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
	r, err := ndpproxy.New(ourIfi, conn, &ndpproxy.Config{SourceAddr: ourLL, AnnounceInterval: time.Hour, AnnounceCount: 5})
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
	for name, err := range map[string]error{
		"Add":      r.Add(notOwned),
		"AddRange": r.AddRange(netip.MustParsePrefix("2001:db8:9::/124"), nil),
		"Announce": r.Announce(owned1),
	} {
		if !errors.Is(err, ndpproxy.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	r.Remove(owned1) // harmless
	r.RemoveRange(netip.MustParsePrefix("2001:db8:9::/124"))
	_ = r.Stats()
	goleak.VerifyNone(t)
}

// TestConcurrentAddRemove changes the address set while frames flow; run
// with -race.
func TestConcurrentAddRemove(t *testing.T) {
	r, conn := newResponder(t, &ndpproxy.Config{AnnounceInterval: time.Millisecond, RequesterRate: -1, GlobalRate: -1})
	go func() { // drain the announcements
		for {
			select {
			case <-conn.out:
			case <-conn.closed:
				return
			}
		}
	}()
	addr := func(g, i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 3, 13: byte(g), 14: byte(i >> 8), 15: byte(i)})
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				a := addr(g, i)
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
			conn.send(t, solicit(peerMAC, peerIP, addr(i%4, i)).bytes(t))
		}
	})
	wg.Wait()
	if got, want := len(r.Addrs()), 4*(200-67); got != want {
		t.Errorf("%d addresses owned, want %d", got, want)
	}
	s := waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 500 })
	if s.Replies+s.NotOwned != 500 {
		t.Errorf("Replies %d + NotOwned %d != 500", s.Replies, s.NotOwned)
	}
}

// TestRange checks AddRange: every address of the range is answered but
// the excluded ones and the Subnet-Router anycast address (RFC 4291
// section 2.6.1), nothing is announced, and ranges wider than
// MinRangeBits are refused.
func TestRange(t *testing.T) {
	r, conn := newResponder(t, &ndpproxy.Config{SourceAddr: ourLL})
	p := netip.MustParsePrefix("2001:db8:5::/120")
	excluded := netip.MustParseAddr("2001:db8:5::7")
	if err := r.AddRange(p, []netip.Addr{excluded}); err != nil {
		t.Fatal(err)
	}
	conn.none(t, 50*time.Millisecond) // no announcement
	if diff := cmp.Diff([]netip.Prefix{p}, r.Ranges(), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("Ranges (-want +got):\n%s", diff)
	}
	for a, want := range map[string]bool{
		"2001:db8:5::1": true, "2001:db8:5::ff": true, "2001:db8:5::80": true,
		"2001:db8:5::":  false, // Subnet-Router anycast
		"2001:db8:5::7": false, "2001:db8:5::100": false, "2001:db8:6::1": false,
	} {
		req := solicit(peerMAC, peerIP, netip.MustParseAddr(a))
		conn.send(t, req.bytes(t))
		if want {
			checkReply(t, conn.next(t, 5*time.Second).frame, req)
		} else {
			conn.none(t, 20*time.Millisecond)
		}
	}
	// An advertisement for an address of the range is a conflict.
	conn.send(t, advertise(otherMAC, peerLL, netip.MustParseAddr("2001:db8:5::9")).bytes(t))
	waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Conflicts == 1 })
	// A /127 has no anycast address to leave out.
	p127 := netip.MustParsePrefix("2001:db8:7::/127")
	if err := r.AddRange(p127, nil); err != nil {
		t.Fatal(err)
	}
	req := solicit(peerMAC, peerIP, p127.Addr())
	conn.send(t, req.bytes(t))
	checkReply(t, conn.next(t, 5*time.Second).frame, req)

	r.RemoveRange(p)
	r.RemoveRange(p) // again: nothing
	conn.send(t, solicit(peerMAC, peerIP, netip.MustParseAddr("2001:db8:5::1")).bytes(t))
	conn.none(t, 50*time.Millisecond)
	if diff := cmp.Diff([]netip.Prefix{p127}, r.Ranges(), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("Ranges after RemoveRange (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"2001:db8::/47", "2001:db8::/32", "192.0.2.0/24", "ff02::/120", "fe80::/120", "::ffff:192.0.2.0/120", "fe80::/64"} {
		if err := r.AddRange(netip.MustParsePrefix(bad), nil); !errors.Is(err, ndpproxy.ErrInvalidAddr) {
			t.Errorf("AddRange(%s) = %v, want ErrInvalidAddr", bad, err)
		}
	}
	if err := r.AddRange(netip.Prefix{}, nil); !errors.Is(err, ndpproxy.ErrInvalidAddr) {
		t.Errorf("AddRange(invalid prefix) = %v, want ErrInvalidAddr", err)
	}
}
