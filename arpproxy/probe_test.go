package arpproxy_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/mdlayher/packet"

	"github.com/vif-project/vif/arpproxy"
)

// TestProbeQuiet checks the probes of RFC 5227 section 2.1.1 on the wire
// (three per address, sender IP 0.0.0.0, broadcast) and that Probe
// reports no conflict when nobody answers, after listening for its wait.
func TestProbeQuiet(t *testing.T) {
	r, conn := newResponder(t, quiet())
	const wait = 200 * time.Millisecond
	start := time.Now()
	addrs := []netip.Addr{owned1, owned2}
	if err := r.Probe(context.Background(), addrs, wait); err != nil {
		t.Fatalf("Probe with no answer: %v", err)
	}
	if took := time.Since(start); took < wait*9/10 {
		t.Errorf("Probe returned after %v, want it to listen for %v", took, wait)
	}
	seen := map[netip.Addr]int{}
	for range 3 * len(addrs) {
		w := conn.next(t, time.Second)
		d := decode(t, w.frame)
		if d.arp.Operation != layers.ARPRequest || d.spa() != zeroIP ||
			d.arp.SourceHwAddress == nil || string(d.arp.SourceHwAddress) != string(ourMAC) ||
			string(d.arp.DstHwAddress) != string(zeroMAC) || d.eth.DstMAC.String() != bcastMAC.String() {
			t.Errorf("frame %d is not an RFC 5227 probe from us: %+v", len(seen), d.arp)
		}
		if a, ok := w.addr.(*packet.Addr); !ok || a.HardwareAddr.String() != bcastMAC.String() {
			t.Errorf("probe sent to %v, want broadcast", w.addr)
		}
		seen[d.tpa()]++
	}
	for _, a := range addrs {
		if seen[a] != 3 {
			t.Errorf("%d probes for %v, want 3", seen[a], a)
		}
	}
	conn.none(t, 50*time.Millisecond)
	if got := r.Addrs(); len(got) != 0 {
		t.Errorf("Probe added addresses: %v", got)
	}
}

// TestProbeConflicts checks each way another host shows that it uses an
// address, and that unrelated frames are not conflicts.
func TestProbeConflicts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		frame    arpSpec
		conflict bool
	}{
		{"reply to our probe", reply(peerMAC, owned1, ourMAC, zeroIP), true},
		{"its own request", request(peerMAC, owned1, peerIP), true},
		{"its announcement", request(peerMAC, owned1, owned1), true},
		{"its probe for the address", request(peerMAC, zeroIP, owned1), true},
		{"request for the address", request(peerMAC, peerIP, owned1), false},
		{"reply about another address", reply(peerMAC, notOwned, ourMAC, zeroIP), false},
		{"probe for another address", request(peerMAC, zeroIP, notOwned), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, conn := newResponder(t, quiet())
			// A conflict ends Probe at once, long before its wait.
			wait := 300 * time.Millisecond
			if tc.conflict {
				wait = time.Minute
			}
			errc := make(chan error, 1)
			go func() { errc <- r.Probe(context.Background(), []netip.Addr{owned1}, wait) }()
			conn.next(t, time.Second) // the first probe: Probe listens
			conn.send(t, tc.frame.bytes(t))
			var err error
			select {
			case err = <-errc:
			case <-time.After(5 * time.Second):
				t.Fatal("Probe did not return within 5s")
			}
			// The next frame read goes where the first one was: the
			// error must not share its bytes.
			conn.send(t, request(otherMAC, peerIP, notOwned).bytes(t))
			waitStats(t, r, func(s arpproxy.Stats) bool { return s.Frames == 2 })
			var ce *arpproxy.ConflictError
			switch {
			case !tc.conflict && err != nil:
				t.Fatalf("Probe: %v, want no conflict", err)
			case !tc.conflict:
			case !errors.As(err, &ce) || !errors.Is(err, arpproxy.ErrInUse):
				t.Fatalf("Probe: %v, want a *ConflictError wrapping ErrInUse", err)
			case ce.Addr != owned1 || ce.HardwareAddr.String() != peerMAC.String():
				t.Errorf("conflict %v by %v, want %v by %v", ce.Addr, ce.HardwareAddr, owned1, peerMAC)
			}
		})
	}
}

// TestProbeEnds checks that Probe ends with its context and with Close,
// and refuses addresses no host can own.
func TestProbeEnds(t *testing.T) {
	r, _ := newResponder(t, quiet())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.Probe(ctx, []netip.Addr{owned1}, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Probe past its context: %v, want context.DeadlineExceeded", err)
	}
	if err := r.Probe(context.Background(), []netip.Addr{netip.MustParseAddr("224.0.0.1")}, 0); !errors.Is(err, arpproxy.ErrInvalidAddr) {
		t.Errorf("Probe(224.0.0.1): %v, want ErrInvalidAddr", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Probe(context.Background(), []netip.Addr{owned1}, time.Hour) }()
	time.Sleep(10 * time.Millisecond)
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, arpproxy.ErrClosed) {
			t.Errorf("Probe during Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Probe did not return after Close")
	}
	if err := r.Probe(context.Background(), []netip.Addr{owned1}, 0); !errors.Is(err, arpproxy.ErrClosed) {
		t.Errorf("Probe after Close: %v, want ErrClosed", err)
	}
}

// TestSetHardwareAddr checks that a new interface address is answered
// with and announced, and that a bad one is refused.
func TestSetHardwareAddr(t *testing.T) {
	const interval = 20 * time.Millisecond
	r, conn := newResponder(t, &arpproxy.Config{AnnounceCount: 2, AnnounceInterval: interval}, owned1, owned2)
	for range 4 {
		conn.next(t, time.Second)
	}
	if err := r.SetHardwareAddr(ourMAC); err != nil {
		t.Fatalf("SetHardwareAddr(same): %v", err)
	}
	conn.none(t, 3*interval) // nothing changed, nothing announced

	newMAC := mustMAC("02:00:00:00:00:09")
	if err := r.SetHardwareAddr(newMAC); err != nil {
		t.Fatalf("SetHardwareAddr: %v", err)
	}
	if got := r.HardwareAddr(); got.String() != newMAC.String() {
		t.Errorf("HardwareAddr() = %v, want %v", got, newMAC)
	}
	announced := map[netip.Addr]int{}
	for range 4 {
		d := decode(t, conn.next(t, time.Second).frame)
		if d.spa() != d.tpa() || string(d.arp.SourceHwAddress) != string(newMAC) || d.eth.SrcMAC.String() != newMAC.String() {
			t.Errorf("after the change, frame %+v is not an announcement by %v", d.arp, newMAC)
		}
		announced[d.spa()]++
	}
	if announced[owned1] != 2 || announced[owned2] != 2 {
		t.Errorf("announcements after the change: %v, want 2 of each address", announced)
	}

	req := request(peerMAC, peerIP, owned1)
	conn.send(t, req.bytes(t))
	d := decode(t, conn.next(t, time.Second).frame)
	if d.arp.Operation != layers.ARPReply || string(d.arp.SourceHwAddress) != string(newMAC) || d.eth.SrcMAC.String() != newMAC.String() {
		t.Errorf("reply %+v not from the new address %v", d.arp, newMAC)
	}
	// Frames from the old address are another host's now; from the new
	// one, our own.
	conn.send(t, request(newMAC, peerIP, owned1).bytes(t))
	conn.none(t, 3*interval)

	for _, bad := range []string{"ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "01:00:5e:00:00:01"} {
		if err := r.SetHardwareAddr(mustMAC(bad)); !errors.Is(err, arpproxy.ErrInterface) {
			t.Errorf("SetHardwareAddr(%s): %v, want ErrInterface", bad, err)
		}
	}
	if err := r.SetHardwareAddr(newMAC[:4]); !errors.Is(err, arpproxy.ErrInterface) {
		t.Errorf("SetHardwareAddr(4 bytes): %v, want ErrInterface", err)
	}
	r.Close()
	if err := r.SetHardwareAddr(ourMAC); !errors.Is(err, arpproxy.ErrClosed) {
		t.Errorf("SetHardwareAddr after Close: %v, want ErrClosed", err)
	}
}

// A range is answered for every address in it but its network and
// broadcast addresses and the excluded ones, at no cost per address: 1000
// random addresses of a /16 get 1000 replies.
func TestRange(t *testing.T) {
	r, conn := newResponder(t, quiet())
	rng := netip.MustParsePrefix("10.20.0.0/16")
	inUse := netip.MustParseAddr("10.20.7.7")
	if err := r.AddRange(rng, []netip.Addr{inUse}); err != nil {
		t.Fatal(err)
	}
	asked := map[netip.Addr]bool{}
	for len(asked) < 1000 {
		a := netip.AddrFrom4([4]byte{10, 20, byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
		if a == inUse || asked[a] {
			continue
		}
		asked[a] = true
		conn.send(t, request(peerMAC, peerIP, a).bytes(t))
		d := decode(t, conn.next(t, time.Second).frame)
		if d.arp.Operation != layers.ARPReply || d.spa() != a || string(d.arp.SourceHwAddress) != string(ourMAC) {
			t.Fatalf("request for %v: reply %+v", a, d.arp)
		}
	}
	for _, a := range []string{"10.20.0.0", "10.20.255.255", "10.20.7.7", "10.21.0.1"} {
		conn.send(t, request(peerMAC, peerIP, netip.MustParseAddr(a)).bytes(t))
		conn.none(t, 20*time.Millisecond)
	}
	st := waitStats(t, r, func(s arpproxy.Stats) bool { return s.Replies == 1000 && s.NotOwned == 4 })
	if st.Announcements != 0 {
		t.Errorf("a range was announced: %d announcements", st.Announcements)
	}
	if got := r.Ranges(); len(got) != 1 || got[0] != rng {
		t.Errorf("Ranges() = %v", got)
	}
	// Another host's ARP from an address of the range is a conflict.
	conn.send(t, request(otherMAC, netip.MustParseAddr("10.20.1.1"), peerIP).bytes(t))
	waitStats(t, r, func(s arpproxy.Stats) bool { return s.Conflicts == 1 })

	r.RemoveRange(rng)
	conn.send(t, request(peerMAC, peerIP, netip.MustParseAddr("10.20.1.1")).bytes(t))
	conn.none(t, 20*time.Millisecond)
	for _, bad := range []string{"0.0.0.0/0", "224.0.0.0/8", "10.0.0.0/7", "127.0.0.0/8"} {
		if err := r.AddRange(netip.MustParsePrefix(bad), nil); !errors.Is(err, arpproxy.ErrInvalidAddr) {
			t.Errorf("AddRange(%s): %v, want ErrInvalidAddr", bad, err)
		}
	}
}

// ProbeRange finds every address of a range another host uses, and
// listens to the end.
func TestProbeRange(t *testing.T) {
	r, conn := newResponder(t, quiet())
	res := make(chan []netip.Addr, 1)
	go func() {
		used, err := r.ProbeRange(context.Background(), netip.MustParsePrefix("192.0.2.0/29"), 300*time.Millisecond)
		if err != nil {
			t.Error(err)
		}
		res <- used
	}()
	probed := map[netip.Addr]bool{}
	for range 6 { // the first round: .1 to .6
		probed[decode(t, conn.next(t, time.Second).frame).tpa()] = true
	}
	if len(probed) != 6 || probed[netip.MustParseAddr("192.0.2.0")] || probed[netip.MustParseAddr("192.0.2.7")] {
		t.Errorf("probed %v, want 192.0.2.1 to .6", probed)
	}
	conn.send(t, reply(peerMAC, netip.MustParseAddr("192.0.2.3"), ourMAC, zeroIP).bytes(t))
	conn.send(t, request(otherMAC, netip.MustParseAddr("192.0.2.5"), peerIP).bytes(t))
	if used := <-res; len(used) != 2 || used[0].String() != "192.0.2.3" || used[1].String() != "192.0.2.5" {
		t.Errorf("in use: %v, want 192.0.2.3 and .5", used)
	}
	if _, err := r.ProbeRange(context.Background(), netip.MustParsePrefix("10.0.0.0/16"), 0); !errors.Is(err, arpproxy.ErrInvalidAddr) {
		t.Errorf("ProbeRange of a /16: %v", err)
	}
}
