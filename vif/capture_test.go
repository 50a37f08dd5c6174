package vif_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
)

// recvCaptured returns the next captured packet, waiting up to wait.
func recvCaptured(t *testing.T, c *vif.Capture) vif.CapturedPacket {
	t.Helper()
	select {
	case p, ok := <-c.Packets():
		if !ok {
			t.Fatal("capture ended early")
		}
		return p
	case <-time.After(wait):
		t.Fatal("nothing captured")
	}
	panic("unreachable")
}

// noCaptured checks that c has nothing more for a moment.
func noCaptured(t *testing.T, c *vif.Capture) {
	t.Helper()
	select {
	case p := <-c.Packets():
		t.Fatalf("captured %v %x, want nothing", p.Direction, p.Data)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestCaptureBothDirections(t *testing.T) {
	r := newRig(t, tunnelCfg())
	c, err := r.ifc.Capture(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	before := time.Now()
	r.tun.Inject(udp(t, addrA, other, "out through the tunnel"))
	sent, ok := r.under.Recv(wait)
	if !ok {
		t.Fatal("nothing sent on the underlay")
	}
	p := recvCaptured(t, c)
	if p.Direction != vif.Out || !bytes.Equal(p.Data, sent) || p.Length != len(sent) {
		t.Errorf("captured %v %x (length %d), want out %x", p.Direction, p.Data, p.Length, sent)
	}
	if p.Time.Before(before) || p.Time.After(time.Now()) {
		t.Errorf("time stamp %v not within the test", p.Time)
	}

	// What arrives from the wire is captured before it is checked:
	// also what the loop then drops.
	in := encap(t, localB, localA, ipip.ProtoIPIP, udp(t, other, addrA, "in from the peer"))
	stranger := encap(t, stray, localA, ipip.ProtoIPIP, udp(t, other, addrA, "not from the peer"))
	r.under.Inject(in)
	if _, ok := r.tun.Recv(wait); !ok {
		t.Fatal("decapsulated packet not delivered")
	}
	r.under.Inject(stranger)
	for _, want := range [][]byte{in, stranger} {
		p := recvCaptured(t, c)
		if p.Direction != vif.In || !bytes.Equal(p.Data, want) {
			t.Errorf("captured %v %x, want in %x", p.Direction, p.Data, want)
		}
	}
	waitStats(t, r.ifc, "the stranger dropped", func(s vif.Stats) bool { return s.Dropped() == 1 })
	if c.Captured() != 3 || c.Dropped() != 0 {
		t.Errorf("Captured, Dropped = %d, %d, want 3, 0", c.Captured(), c.Dropped())
	}
	// Looped packets never cross the underlay.
	r.tun.Inject(udp(t, other, addrA, "looped"))
	if _, ok := r.tun.Recv(wait); !ok {
		t.Fatal("not looped")
	}
	noCaptured(t, c)
}

func TestCaptureDirection(t *testing.T) {
	r := newRig(t, tunnelCfg())
	in, err := r.ifc.Capture(&vif.CaptureOptions{Direction: vif.In})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := r.ifc.Capture(&vif.CaptureOptions{Direction: vif.Out, SnapLen: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	r.tun.Inject(udp(t, addrA, other, "out"))
	sent, _ := r.under.Recv(wait)
	r.under.Inject(encap(t, localB, localA, ipip.ProtoIPIP, udp(t, other, addrA, "in")))
	r.tun.Recv(wait)

	if p := recvCaptured(t, out); p.Direction != vif.Out || len(p.Data) != 20 || p.Length != len(sent) || !bytes.Equal(p.Data, sent[:20]) {
		t.Errorf("out capture got %v %x (length %d), want the outer header of %x", p.Direction, p.Data, p.Length, sent)
	}
	if p := recvCaptured(t, in); p.Direction != vif.In {
		t.Errorf("in capture got %v", p.Direction)
	}
	noCaptured(t, in)
	noCaptured(t, out)
}

func TestCaptureDropsWhenFull(t *testing.T) {
	r := newRig(t, tunnelCfg())
	c, err := r.ifc.Capture(&vif.CaptureOptions{Buffer: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 5
	for k := 0; k < n; k++ {
		r.tun.Inject(udp(t, addrA, other, "x"))
		if _, ok := r.under.Recv(wait); !ok {
			t.Fatalf("packet %d not sent: a full capture must not hold the loop up", k)
		}
	}
	waitFor(t, "every packet captured or dropped", func() bool { return c.Captured()+c.Dropped() == n })
	if c.Captured() != 2 || c.Dropped() != n-2 {
		t.Errorf("Captured, Dropped = %d, %d, want 2, %d", c.Captured(), c.Dropped(), n-2)
	}
}

func TestCaptureEnds(t *testing.T) {
	r := newRig(t, tunnelCfg())
	c, err := r.ifc.Capture(nil)
	if err != nil {
		t.Fatal(err)
	}
	r.tun.Inject(udp(t, addrA, other, "buffered"))
	r.under.Recv(wait)
	waitFor(t, "the packet captured", func() bool { return c.Captured() == 1 })
	c.Close()
	c.Close()
	// What was buffered is still delivered, then the channel closes.
	if p := recvCaptured(t, c); p.Direction != vif.Out {
		t.Errorf("got %v", p.Direction)
	}
	if _, ok := <-c.Packets(); ok {
		t.Fatal("Packets not closed after Close")
	}
	if c.Err() != nil {
		t.Errorf("Err after Close = %v, want nil", c.Err())
	}
	r.tun.Inject(udp(t, addrA, other, "after"))
	r.under.Recv(wait)
	if c.Captured() != 1 {
		t.Errorf("captured %d packets, want 1: the capture was closed", c.Captured())
	}

	// The interface stopping ends a capture with ErrStopped.
	c2, err := r.ifc.Capture(nil)
	if err != nil {
		t.Fatal(err)
	}
	r.ifc.Close()
	select {
	case _, ok := <-c2.Packets():
		if ok {
			t.Fatal("captured a packet")
		}
	case <-time.After(wait):
		t.Fatal("capture not ended by the interface's Close")
	}
	if !errors.Is(c2.Err(), vif.ErrStopped) {
		t.Errorf("Err = %v, want ErrStopped", c2.Err())
	}
	if _, err := r.ifc.Capture(nil); !errors.Is(err, vif.ErrStopped) {
		t.Errorf("Capture of a closed interface: %v, want ErrStopped", err)
	}
}

func TestCaptureRefused(t *testing.T) {
	r := newRig(t, vif.Config{Addrs: hosts(addrA)})
	if _, err := r.ifc.Capture(nil); !errors.Is(err, vif.ErrNoTunnel) {
		t.Errorf("Capture without a tunnel: %v, want ErrNoTunnel", err)
	}
	r = newRig(t, tunnelCfg())
	var cs []*vif.Capture
	for range vif.MaxCaptures {
		c, err := r.ifc.Capture(nil)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	if _, err := r.ifc.Capture(nil); !errors.Is(err, vif.ErrCaptureBusy) {
		t.Errorf("Capture past MaxCaptures: %v, want ErrCaptureBusy", err)
	}
	cs[0].Close()
	c, err := r.ifc.Capture(nil)
	if err != nil {
		t.Fatalf("Capture after one closed: %v", err)
	}
	cs = append(cs[1:], c)
	// Every capture sees every packet.
	r.tun.Inject(udp(t, addrA, other, "to all"))
	r.under.Recv(wait)
	for _, c := range cs {
		recvCaptured(t, c)
		c.Close()
	}
	if _, err := r.ifc.Capture(&vif.CaptureOptions{Direction: 4}); err == nil {
		t.Error("Capture with a bad direction succeeded")
	}
}

func TestParseDirection(t *testing.T) {
	for s, want := range map[string]vif.Direction{"": vif.Both, "both": vif.Both, "in": vif.In, "out": vif.Out} {
		if d, err := vif.ParseDirection(s); err != nil || d != want {
			t.Errorf("ParseDirection(%q) = %v, %v, want %v", s, d, err, want)
		}
		if s != "" && want.String() != s {
			t.Errorf("%v.String() = %q, want %q", want, want.String(), s)
		}
	}
	if _, err := vif.ParseDirection("up"); err == nil {
		t.Error("ParseDirection(up) succeeded")
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
