package vif

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A Direction says which way a captured packet crossed the underlay.
type Direction uint8

// Directions of captured packets, and the selections of
// CaptureOptions.Direction.
const (
	// In is a packet read from the underlay, before it is checked and
	// decapsulated: what arrived from the wire, dropped or not.
	In Direction = 1 << iota
	// Out is a packet the underlay took to send, after encapsulation
	// (each outer fragment on its own).
	Out
	// Both selects In and Out.
	Both = In | Out
)

// String returns "in", "out" or "both".
func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// ParseDirection parses "in", "out" or "both" (or "" for both).
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "in":
		return In, nil
	case "out":
		return Out, nil
	case "", "both":
		return Both, nil
	}
	return 0, fmt.Errorf("vif: bad capture direction %q: use in, out or both", s)
}

// Limits of captures.
const (
	// DefaultCaptureBuffer is the number of packets a capture buffers
	// for its reader unless CaptureOptions.Buffer says otherwise.
	DefaultCaptureBuffer = 4096
	// MaxCaptures is the number of captures an Interface runs at once;
	// Capture refuses more with ErrCaptureBusy.
	MaxCaptures = 8
)

// Errors of Capture.
var (
	// ErrCaptureBusy is returned by Capture when MaxCaptures run
	// already.
	ErrCaptureBusy = errors.New("vif: too many captures of this interface at once")
	// ErrStopped is returned by Capture, and by Capture.Err, when the
	// interface's packet loop has stopped (Close, or the device went
	// away).
	ErrStopped = errors.New("vif: the interface has stopped")
)

// CaptureOptions configure a capture. A nil *CaptureOptions captures whole
// packets in both directions with DefaultCaptureBuffer.
type CaptureOptions struct {
	// Direction selects In, Out or Both (zero is Both).
	Direction Direction
	// Buffer is the number of packets held for the reader (zero is
	// DefaultCaptureBuffer). When it is full, further packets are
	// dropped and counted (Capture.Dropped): the packet loop never
	// waits for a reader.
	Buffer int
	// SnapLen, if positive, keeps at most that many bytes of each
	// packet (CapturedPacket.Length has the packet's length).
	SnapLen int
}

// A CapturedPacket is an outer packet as it crossed the underlay.
type CapturedPacket struct {
	// Time is when the loop handed the packet over (one reading per
	// batch of packets).
	Time time.Time
	// Direction is In or Out.
	Direction Direction
	// Data is a copy of the packet from its outer IP header on (IPv4,
	// or IPv6 for a tunnel over IPv6), at most CaptureOptions.SnapLen
	// bytes; it belongs to the receiver.
	Data []byte
	// Length is the packet's length, which is len(Data) unless SnapLen
	// cut it.
	Length int
}

// A Capture copies the outer packets of an interface's tunnel, as the
// underlay sends and receives them, to a channel (Interface.Capture). Its
// methods are safe for concurrent use.
type Capture struct {
	i    *Interface
	dir  Direction
	snap int
	ch   chan CapturedPacket

	// mu is held by a loop while it hands a batch over, and by end,
	// which closes ch under it: no loop sends on a closed channel.
	mu     sync.Mutex
	closed bool

	captured, dropped atomic.Uint64
	stop              chan struct{}
	stopOnce, endOnce sync.Once
	err               error // set by end, before ch is closed
}

// captures are an interface's running captures: list is read by the
// loops once per batch, nil when none runs, and replaced under mu.
type captures struct {
	list atomic.Pointer[[]*Capture]
	mu   sync.Mutex
}

// Capture starts copying the interface's outer packets, as the underlay
// takes them to send (after encapsulation) and hands them over (before
// decapsulation), to the channel of the returned Capture, whatever the
// underlay: what goes on the wire. Captures cost the loops nothing while
// none runs; while one runs, each packet is copied with a time stamp,
// and dropped (counted) when the reader lags behind by opts.Buffer
// packets. Several captures may run at once, up to MaxCaptures.
//
// The capture ends when Close is called or when the interface's loop
// stops; then Packets is closed, after the packets still buffered. It
// returns ErrNoTunnel for an interface without a tunnel, ErrStopped
// when its loop has stopped, or ErrCaptureBusy.
func (i *Interface) Capture(opts *CaptureOptions) (*Capture, error) {
	if opts == nil {
		opts = &CaptureOptions{}
	}
	if i.under == nil {
		return nil, ErrNoTunnel
	}
	dir := opts.Direction
	if dir == 0 {
		dir = Both
	}
	if dir&^Both != 0 {
		return nil, fmt.Errorf("vif: bad capture direction %d", dir)
	}
	n := opts.Buffer
	if n <= 0 {
		n = DefaultCaptureBuffer
	}
	c := &Capture{i: i, dir: dir, snap: max(opts.SnapLen, 0), ch: make(chan CapturedPacket, n), stop: make(chan struct{})}
	cs := &i.capt
	cs.mu.Lock()
	select {
	case <-i.done:
		cs.mu.Unlock()
		return nil, ErrStopped
	default:
	}
	var list []*Capture
	if l := cs.list.Load(); l != nil {
		list = *l
	}
	if len(list) >= MaxCaptures {
		cs.mu.Unlock()
		return nil, ErrCaptureBusy
	}
	list = append(slices.Clip(list), c)
	cs.list.Store(&list)
	cs.mu.Unlock()
	go func() {
		select {
		case <-i.done:
			c.end(ErrStopped)
		case <-c.stop:
			c.end(nil)
		}
	}()
	return c, nil
}

// Packets returns the channel the packets arrive on. It is closed when
// the capture has ended (Close, or the interface stopped: see Err) and the
// packets buffered until then are received.
func (c *Capture) Packets() <-chan CapturedPacket { return c.ch }

// Captured returns how many packets were put on the channel so far.
func (c *Capture) Captured() uint64 { return c.captured.Load() }

// Dropped returns how many packets were not captured because the
// channel was full.
func (c *Capture) Dropped() uint64 { return c.dropped.Load() }

// Err returns ErrStopped if the capture ended because the interface's
// loop stopped; nil while it runs and after Close. Read it once Packets
// is closed.
func (c *Capture) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close stops the capture: the loops no longer copy packets to it when
// it returns. Packets is closed after the packets still buffered. Close
// may be called more than once.
func (c *Capture) Close() error {
	c.stopOnce.Do(func() { close(c.stop) })
	c.end(nil)
	return nil
}

// end takes c off its interface's list and closes its channel; err is
// why it ended.
func (c *Capture) end(err error) {
	c.endOnce.Do(func() {
		cs := &c.i.capt
		cs.mu.Lock()
		if l := cs.list.Load(); l != nil {
			list := slices.DeleteFunc(slices.Clone(*l), func(x *Capture) bool { return x == c })
			if len(list) == 0 {
				cs.list.Store(nil)
			} else {
				cs.list.Store(&list)
			}
		}
		cs.mu.Unlock()
		c.mu.Lock()
		c.closed, c.err = true, err
		close(c.ch)
		c.mu.Unlock()
	})
}

// tap hands copies of the packets bufs[j][off:off+sizes[j]] (bufs[j][off:]
// with nil sizes) crossing the underlay in direction dir to the captures
// of list that want them. It is called by the loops, once per batch, only
// while a capture runs; it never blocks on a reader.
func tap(list []*Capture, dir Direction, bufs [][]byte, sizes []int, off int) {
	if len(bufs) == 0 {
		return
	}
	now := time.Now()
	for _, c := range list {
		if c.dir&dir == 0 {
			continue
		}
		var sent, dropped uint64
		c.mu.Lock()
		for j, b := range bufs {
			if c.closed {
				break
			}
			if len(c.ch) == cap(c.ch) {
				dropped++
				continue
			}
			var p []byte
			switch {
			case len(b) < off:
				continue
			case sizes == nil:
				p = b[off:]
			case off+sizes[j] <= len(b):
				p = b[off : off+sizes[j]]
			default:
				continue
			}
			n := len(p)
			if c.snap > 0 {
				n = min(n, c.snap)
			}
			select {
			case c.ch <- CapturedPacket{Time: now, Direction: dir, Data: append([]byte(nil), p[:n]...), Length: len(p)}:
				sent++
			default: // cannot happen: the loops send under mu
				dropped++
			}
		}
		c.mu.Unlock()
		if sent > 0 {
			c.captured.Add(sent)
		}
		if dropped > 0 {
			c.dropped.Add(dropped)
		}
	}
}
