package vif

import (
	"net/netip"
	"strings"
	"testing"
)

// TestOffloadSendsThroughXDP: with the offload and protocol 94, TCP's GSO
// packets are the loop's to send, and it sends them through the slave's
// AF_XDP socket, with no XDP program on the slave (the tc program on its
// ingress must see the peer's packets); the peer's offload decapsulates
// them, and the stream arrives whole. A vif of the same slave on AF_XDP
// brings the program, which leaves the offloaded vif's peer to the
// kernel; when it goes, the program goes.
func TestOffloadSendsThroughXDP(t *testing.T) {
	on := newOffloadNet(t, 94)
	for _, i := range []*Interface{on.ia, on.ib} {
		if u := i.Underlay(); u != (UnderlayInfo{Kind: UnderlayXDP, TransmitOnly: true}) {
			t.Errorf("underlay %+v, want xdp, transmit only", u)
		}
	}
	noXDP := func(what string) {
		t.Helper()
		for _, h := range []*Host{on.a, on.b} {
			if out := h.MustRun("ip", "-d", "link", "show"); strings.Contains(out, "xdp") {
				t.Errorf("%s: %v has an XDP program:\n%s", what, h, out)
			}
		}
	}
	noXDP("offloaded vifs")
	if err := on.a.Ping(offVifB.String(), 1); err != nil { // resolves the neighbours
		t.Fatal(err)
	}
	if err := on.b.Ping(offVifA.String(), 1); err != nil {
		t.Fatal(err)
	}
	xa := on.ia.under.(*XDPUnderlay)
	transferXDP := func(what string) {
		t.Helper()
		before := xa.Stats()
		pb := on.ib.Peers()[0]
		_, brx := loopCounts(on.ib)
		tcpTransfer(t, on.a, on.b, offVifB, 8<<20)
		after := xa.Stats()
		t.Logf("%s: a %+v", what, after)
		// 8 MiB are some 6000 segments, GSO packets the kernel
		// cannot segment once they are protocol 94.
		if tx := after.TxXDP - before.TxXDP; tx < 4000 {
			t.Errorf("%s: a's loop sent %d packets through AF_XDP, want 4000 or more", what, tx)
		}
		if tx := after.TxRaw - before.TxRaw; tx > 10 {
			t.Errorf("%s: a's loop sent %d packets through the raw socket", what, tx)
		}
		if rx := after.RxXDP - before.RxXDP; rx != 0 {
			t.Errorf("%s: a received %d packets through AF_XDP, want none (the kernel's)", what, rx)
		}
		// b's offload decapsulated them, not its loop.
		if p := on.ib.Peers()[0]; p.Decapsulated-pb.Decapsulated < 4000 {
			t.Errorf("%s: b decapsulated %d packets, want the transfer's", what, p.Decapsulated-pb.Decapsulated)
		}
		if _, rx := loopCounts(on.ib); rx-brx > 100 {
			t.Errorf("%s: b's loop decapsulated %d packets of the transfer; want the offload to", what, rx-brx)
		}
	}
	transferXDP("alone")

	// A vif on AF_XDP joins a's slave: the program steers its peer,
	// not the offloaded one's.
	other := netip.MustParseAddr("198.18.0.3")
	var iv *Interface
	cfg := LinkConfig{Name: "vif1", Slave: on.aIf.Name(),
		Config: Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.9/32")}, Peer: other}}
	if err := on.a.Do(func() (err error) { iv, err = Up(&cfg); return err }); err != nil {
		t.Fatal(err)
	}
	defer iv.Close()
	if u := iv.Underlay(); u != (UnderlayInfo{Kind: UnderlayXDP}) {
		t.Errorf("the other vif's underlay %+v, want xdp", u)
	}
	if out := on.a.MustRun("ip", "-d", "link", "show", on.aIf.Name()); !strings.Contains(out, "prog/xdp") {
		t.Errorf("no XDP program with a vif receiving through AF_XDP:\n%s", out)
	}
	transferXDP("beside a vif on AF_XDP")
	d0 := on.ia.Stats().Decapsulated
	if err := on.b.Ping(offVifA.String(), 3); err != nil {
		t.Fatal(err)
	}
	if d := on.ia.Stats().Decapsulated - d0; d < 3 {
		t.Errorf("a decapsulated %d of b's pings beside a vif on AF_XDP, want 3", d)
	}
	iv.Close()
	noXDP("the vif on AF_XDP gone")
	transferXDP("after the vif on AF_XDP went")
}
