// Package viftest provides in-memory, batch-capable doubles of a TUN device
// and of a vif underlay, so that the packet loop of package vif can be
// driven without root, network namespaces or real devices.
//
// A TUN stands for the kernel side of a vif: what a test puts into it with
// Inject is what the kernel "routed into the interface"; what the loop
// writes into it is received with Recv. An Underlay stands for the wire:
// Inject delivers a packet "from the wire", Recv returns what the loop
// sent. Pair joins two Underlays so two interfaces can tunnel to each
// other.
//
// All methods are safe for concurrent use. Packets are copied in both
// directions, so the caller keeps ownership of its slices.
package viftest

import (
	"errors"
	"os"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// queue is a closable packet queue with batch reads.
type queue struct {
	ch        chan []byte
	closed    chan struct{}
	closeOnce sync.Once
	err       error
}

func newQueue(err error) *queue {
	return &queue{ch: make(chan []byte, 4096), closed: make(chan struct{}), err: err}
}

func (q *queue) close() { q.closeOnce.Do(func() { close(q.closed) }) }

// read blocks for one packet, then takes what else is ready, up to
// len(bufs).
func (q *queue) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-q.closed:
		return 0, q.err
	case p := <-q.ch:
		sizes[0] = copy(bufs[0][offset:], p)
	}
	n := 1
	for n < len(bufs) {
		select {
		case p := <-q.ch:
			sizes[n] = copy(bufs[n][offset:], p)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

func (q *queue) put(p []byte) error {
	select {
	case <-q.closed:
		return q.err
	default:
	}
	select {
	case q.ch <- append([]byte(nil), p...):
		return nil
	case <-q.closed:
		return q.err
	}
}

// recv waits up to d for a packet.
func (q *queue) recv(d time.Duration) ([]byte, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case p := <-q.ch:
		return p, true
	case <-t.C:
		return nil, false
	}
}

// TUN is an in-memory tun.Device.
type TUN struct {
	in, out *queue
	batch   int
	events  chan tun.Event
	mu      sync.Mutex
	closed  bool
	mtu     int
	// writeErr, when set, is returned by the next Write (SetWriteErr).
	writeErr error
}

var _ tun.Device = (*TUN)(nil)

// NewTUN returns a TUN that reads and writes up to batch packets per call.
func NewTUN(batch int) *TUN {
	if batch < 1 {
		batch = 1
	}
	return &TUN{
		in:     newQueue(os.ErrClosed),
		out:    newQueue(os.ErrClosed),
		batch:  batch,
		events: make(chan tun.Event, 1),
		mtu:    1480,
	}
}

// SetMTU changes the MTU the TUN reports and signals it, as "ip link set
// NAME mtu N" does to a real one (tun.EventMTUUpdate).
func (t *TUN) SetMTU(mtu int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mtu = mtu
	if !t.closed {
		select {
		case t.events <- tun.EventMTUUpdate:
		default: // one pending event says it already
		}
	}
}

// Inject queues pkt as if the kernel had routed it into the interface.
func (t *TUN) Inject(pkt []byte) error { return t.in.put(pkt) }

// Recv returns the next packet the loop wrote into the TUN, waiting up to d.
func (t *TUN) Recv(d time.Duration) ([]byte, bool) { return t.out.recv(d) }

// File returns nil: there is no file behind an in-memory TUN.
func (t *TUN) File() *os.File { return nil }

// Read implements tun.Device.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return t.in.read(bufs, sizes, offset)
}

// Write implements tun.Device. It requires offset >= 10, like a real TUN
// with virtio headers.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) {
	if offset < 10 {
		return 0, errors.New("viftest: TUN write offset below 10")
	}
	t.mu.Lock()
	err := t.writeErr
	t.writeErr = nil
	t.mu.Unlock()
	if err != nil {
		return 0, err
	}
	for k, b := range bufs {
		if err := t.out.put(b[offset:]); err != nil {
			return k, err
		}
	}
	return len(bufs), nil
}

// SetWriteErr makes the next Write fail with err.
func (t *TUN) SetWriteErr(err error) {
	t.mu.Lock()
	t.writeErr = err
	t.mu.Unlock()
}

// MTU implements tun.Device: 1480 unless SetMTU changed it.
func (t *TUN) MTU() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mtu, nil
}

// Name implements tun.Device.
func (t *TUN) Name() (string, error) { return "viftest0", nil }

// Events implements tun.Device.
func (t *TUN) Events() <-chan tun.Event { return t.events }

// BatchSize implements tun.Device.
func (t *TUN) BatchSize() int { return t.batch }

// Close implements tun.Device; further reads and writes return
// os.ErrClosed.
func (t *TUN) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		t.in.close()
		t.out.close()
		close(t.events)
	}
	return nil
}

// Underlay is an in-memory vif.Underlay.
type Underlay struct {
	in    *queue
	out   *queue
	batch int
	// peer, when set by Pair, receives what is written.
	peer *Underlay

	mu       sync.Mutex
	writeErr []error
}

// NewUnderlay returns an Underlay that reads up to batch packets per call.
func NewUnderlay(batch int) *Underlay {
	if batch < 1 {
		batch = 1
	}
	return &Underlay{in: newQueue(os.ErrClosed), out: newQueue(os.ErrClosed), batch: batch}
}

// Pair returns two Underlays joined back to back: what one writes, the
// other reads.
func Pair(batch int) (*Underlay, *Underlay) {
	a, b := NewUnderlay(batch), NewUnderlay(batch)
	a.peer, b.peer = b, a
	return a, b
}

// Inject queues pkt as if it had arrived from the wire.
func (u *Underlay) Inject(pkt []byte) error { return u.in.put(pkt) }

// Recv returns the next packet the loop sent, waiting up to d. It is not
// usable on a paired Underlay (its packets go to the peer).
func (u *Underlay) Recv(d time.Duration) ([]byte, bool) { return u.out.recv(d) }

// FailWrites makes the next len(errs) packets written fail, one error
// each, in order.
func (u *Underlay) FailWrites(errs ...error) {
	u.mu.Lock()
	u.writeErr = append(u.writeErr, errs...)
	u.mu.Unlock()
}

// Read implements vif.Underlay.
func (u *Underlay) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return u.in.read(bufs, sizes, offset)
}

// Write implements vif.Underlay.
func (u *Underlay) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-u.out.closed:
		return 0, os.ErrClosed
	default:
	}
	for k, b := range bufs {
		u.mu.Lock()
		var err error
		if len(u.writeErr) > 0 {
			err, u.writeErr = u.writeErr[0], u.writeErr[1:]
		}
		u.mu.Unlock()
		if err != nil {
			return k, err
		}
		dst := u.out
		if u.peer != nil {
			dst = u.peer.in
		}
		if err := dst.put(b[offset:]); err != nil {
			if u.peer != nil && errors.Is(err, os.ErrClosed) {
				continue // the other end is gone: the wire drops it
			}
			return k, err
		}
	}
	return len(bufs), nil
}

// BatchSize implements vif.Underlay.
func (u *Underlay) BatchSize() int { return u.batch }

// Close implements vif.Underlay.
func (u *Underlay) Close() error {
	u.in.close()
	u.out.close()
	return nil
}
