package ndpproxy_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/vif-project/vif/ndpproxy"
)

// TestProbeQuiet checks the probes of RFC 4862 section 5.4.2 on the wire
// (three per address, source ::, to the target's solicited-node group,
// no source link-layer address) and that Probe reports no conflict when
// nobody answers, after listening for its wait.
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
		f := ndpproxy.Frame(w.frame)
		_, hasLL := f.LinkLayerAddr()
		if err := f.Validate(); err != nil || f.Type() != ndpproxy.TypeNeighborSolicitation || !f.Source().IsUnspecified() ||
			hasLL || f.Destination() != ndpproxy.SolicitedNode(f.Target()) ||
			f.EthernetSrc().String() != ourMAC.String() || f.EthernetDst().String() != snMAC(f.Target()).String() {
			t.Errorf("frame % x is not a DAD probe from us (%v)", w.frame, err)
		}
		if a, ok := w.addr.(*packet.Addr); !ok || a.HardwareAddr.String() != snMAC(f.Target()).String() {
			t.Errorf("probe sent to %v, want %v", w.addr, snMAC(f.Target()))
		}
		seen[f.Target()]++
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
// address (RFC 4862 sections 5.4.3 and 5.4.4), and that other frames are
// not conflicts.
func TestProbeConflicts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		frame    ndpSpec
		conflict bool
	}{
		{"advertisement answering our probe", advertise(peerMAC, peerLL, owned1), true},
		{"its probe for the address", dadProbe(peerMAC, owned1), true},
		{"its solicitation from the address", solicit(peerMAC, owned1, peerIP), true},
		{"a neighbour resolving the address", solicit(peerMAC, peerIP, owned1), false},
		{"advertisement for another address", advertise(peerMAC, peerLL, notOwned), false},
		{"probe for another address", dadProbe(peerMAC, notOwned), false},
		{"invalid advertisement (hop limit 64)", advertise(peerMAC, peerLL, owned1).with(func(s *ndpSpec) { s.hop = 64 }), false},
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
			conn.send(t, solicit(otherMAC, peerIP, notOwned).bytes(t))
			waitStats(t, r, func(s ndpproxy.Stats) bool { return s.Frames == 2 })
			var ce *ndpproxy.ConflictError
			switch {
			case !tc.conflict && err != nil:
				t.Fatalf("Probe: %v, want no conflict", err)
			case !tc.conflict:
			case !errors.As(err, &ce) || !errors.Is(err, ndpproxy.ErrInUse):
				t.Fatalf("Probe: %v, want a *ConflictError wrapping ErrInUse", err)
			case ce.Addr != owned1 || ce.HardwareAddr.String() != peerMAC.String():
				t.Errorf("conflict %v by %v, want %v by %v", ce.Addr, ce.HardwareAddr, owned1, peerMAC)
			case ce.Error() != owned1.String()+" is in use by "+peerMAC.String():
				t.Errorf("Error() = %q", ce.Error())
			}
		})
	}
}

// TestProbeEnds checks that Probe ends with its context and with Close,
// and refuses addresses no host can publish.
func TestProbeEnds(t *testing.T) {
	r, _ := newResponder(t, quiet())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.Probe(ctx, []netip.Addr{owned1}, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Probe past its context: %v, want context.DeadlineExceeded", err)
	}
	if err := r.Probe(context.Background(), []netip.Addr{allNodes}, 0); !errors.Is(err, ndpproxy.ErrInvalidAddr) {
		t.Errorf("Probe(ff02::1): %v, want ErrInvalidAddr", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Probe(context.Background(), []netip.Addr{owned1}, time.Hour) }()
	time.Sleep(10 * time.Millisecond)
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ndpproxy.ErrClosed) {
			t.Errorf("Probe during Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Probe did not return after Close")
	}
	if err := r.Probe(context.Background(), []netip.Addr{owned1}, 0); !errors.Is(err, ndpproxy.ErrClosed) {
		t.Errorf("Probe after Close: %v, want ErrClosed", err)
	}
}
