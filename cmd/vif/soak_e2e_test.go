//go:build linux

package main

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/vif-project/vif/internal/soak"
	"github.com/vif-project/vif/vif/nstest"
)

// TestSoakShort is the CI version of internal/cmd/vifsoak: hosts a and b on
// one segment run background vif daemons tunnelling to each other, with
// their ARP proxies on; for half a minute iperf3 pushes TCP through the
// tunnel from a to b while c floods the segment with ARP requests from
// random MACs (2000/s, one in 16 for an owned address). The daemons'
// goroutines and RSS, sampled after a warm-up and at the end, must stay
// flat, traffic must have flowed, and both proxies must still answer.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak takes half a minute; run without -short")
	}
	const (
		load   = 26 * time.Second
		warmup = 5 * time.Second
		every  = 5 * time.Second
	)
	// Bounds for a 20-second window of a -race daemon: goroutines do not
	// drift, RSS grows less than 16 MiB.
	bounds := soak.Bounds{RSSKiB: 16 << 10, Goroutines: 3}

	n := nstest.New(t)
	a, b, c := n.Host("a"), n.Host("b"), n.Host("c")
	seg := n.Segment()
	aIf := seg.Attach(a, underA.String()+"/24")
	bIf := seg.Attach(b, underB.String()+"/24")
	cIf := seg.Attach(c, underM.String()+"/24")
	for _, h := range []struct {
		h   *nstest.Host
		ifc *nstest.Iface
	}{{a, aIf}, {b, bIf}} {
		// Only the proxies answer for the vif addresses.
		h.h.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
		h.h.Sysctl("net.ipv4.conf."+h.ifc.Name()+".arp_ignore", "1")
	}
	// Background daemons, as in production.
	vifCmd(t, a, "up", "vif0", vifA.String(), "--slave", aIf.Name(), "--peer", underB.String(), "--route", "198.51.100.0/24")
	t.Cleanup(func() { stopDaemon(a) })
	vifCmd(t, b, "up", "vif0", vifB.String(), "--slave", bIf.Name(), "--peer", underA.String(), "--route", "192.0.2.0/24")
	t.Cleanup(func() { stopDaemon(b) })
	if err := a.Ping(vifB.String(), 1); err != nil {
		t.Fatalf("tunnel a-b does not work: %v", err)
	}
	pidA, _ := daemonPID(t, a)
	pidB, _ := daemonPID(t, b)
	encapBefore := vifStatus(t, a, "vif0").Counters.EncapsulatedBytes

	srv := b.Start("iperf3", "-s", "-B", vifB.String(), "--forceflush")
	if err := srv.WaitFor("Server listening", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var flood *soak.Flood
	if err := c.Do(func() (err error) {
		flood, err = soak.ListenFlood(cIf.Name(), &soak.FloodConfig{Rate: 2000, Owned: []netip.Addr{vifA, vifB}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer flood.Close()

	start := time.Now()
	client := a.Start("iperf3", "-c", vifB.String(), "-t", strconv.Itoa(int(load.Seconds())), "-J")
	ctx, cancel := context.WithTimeout(context.Background(), load)
	defer cancel()
	floodErr := make(chan error, 1)
	go func() { floodErr <- flood.Run(ctx) }()

	sample := func(h *nstest.Host) soak.Sample {
		d := show(t, h).Daemon
		if d == nil {
			t.Fatalf("vif show on %v names no daemon", h)
		}
		return soak.Sample{At: time.Since(start).Round(100 * time.Millisecond), PID: d.PID, Goroutines: d.Goroutines, RSSKiB: d.RSSKiB}
	}
	var sa, sb []soak.Sample
	for at := warmup; at < load; at += every {
		time.Sleep(time.Until(start.Add(at)))
		sa, sb = append(sa, sample(a)), append(sb, sample(b))
		st := flood.Stats()
		t.Logf("%5v  a: RSS %6d KiB, %3d goroutines   b: RSS %6d KiB, %3d goroutines   ARP sent %d, answered %d",
			sa[len(sa)-1].At, sa[len(sa)-1].RSSKiB, sa[len(sa)-1].Goroutines, sb[len(sb)-1].RSSKiB, sb[len(sb)-1].Goroutines, st.Sent, st.Replies)
	}
	if err := <-floodErr; err != nil {
		t.Errorf("ARP flood: %v", err)
	}
	if err := client.Wait(20 * time.Second); err != nil {
		t.Fatalf("iperf3 -c: %v\n%s", err, client.Output())
	}
	time.Sleep(300 * time.Millisecond) // the last ARP replies
	st := flood.Stats()

	for _, s := range []struct {
		name    string
		samples []soak.Sample
		pid     int
	}{{"a", sa, pidA}, {"b", sb, pidB}} {
		if len(s.samples) < 2 {
			t.Fatalf("only %d samples of %s", len(s.samples), s.name)
		}
		first, last := s.samples[0], s.samples[len(s.samples)-1]
		v := soak.Compare(first, last, bounds)
		t.Logf("daemon %s from %v to %v: %v", s.name, first.At, last.At, v)
		if !v.OK() {
			t.Errorf("daemon %s grows under load: %v", s.name, v)
		}
		for _, x := range s.samples {
			if x.PID != s.pid {
				t.Errorf("daemon %s was pid %d, then %d at %v", s.name, s.pid, x.PID, x.At)
			}
		}
	}

	// Traffic flowed through the tunnel.
	res, err := soak.ParseIperf([]byte(client.Output()))
	if err != nil {
		t.Fatalf("iperf3 -J: %v\n%s", err, client.Output())
	}
	encap := vifStatus(t, a, "vif0").Counters.EncapsulatedBytes - encapBefore
	t.Logf("TCP: %d MiB at %.2f Gbit/s; a encapsulated %d MiB", res.Bytes>>20, res.BitsPerSecond/1e9, encap>>20)
	if res.Bytes == 0 || encap < res.Bytes {
		t.Errorf("iperf3 received %d bytes, a encapsulated %d: want > 0 and at least as much", res.Bytes, encap)
	}

	// The proxies answered the flood and still answer.
	t.Logf("ARP flood: %d requests sent (%d refused by c's kernel), %d for owned addresses, %d answered", st.Sent, st.Dropped, st.Owned, st.Replies)
	if st.Sent < 2000*uint64(load/time.Second)*8/10 || st.Replies == 0 {
		t.Errorf("flood sent %d requests and saw %d replies: want about %d and some", st.Sent, st.Replies, 2000*uint64(load/time.Second))
	}
	for _, q := range []struct {
		addr netip.Addr
		ifc  *nstest.Iface
	}{{vifA, aIf}, {vifB, bIf}} {
		if mac, ok := arping(c, cIf.Name(), q.addr.String()); !ok || mac.String() != q.ifc.MAC().String() {
			t.Errorf("after the soak, c's arping for %v answered by %v (ok=%v), want %v", q.addr, mac, ok, q.ifc.MAC())
		}
	}
	if err := a.Ping(vifB.String(), 3); err != nil {
		t.Errorf("after the soak, no ping through the tunnel: %v", err)
	}
}
