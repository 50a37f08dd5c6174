package arpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/packet"
)

// DefaultProbeWait is how long Probe listens for an answer when it is
// given no duration. RFC 5227 section 2.1.1 spreads three probes over 1 to
// 3 seconds and waits 2 more; like NetworkManager's n-acd, Probe keeps the
// RFC's shape (three probes, then a wait twice as long as the gap between
// them) on a shorter scale, since neighbours on today's links answer
// within milliseconds.
const DefaultProbeWait = 300 * time.Millisecond

// ErrInUse is wrapped by the error Probe returns when another host uses an
// address.
var ErrInUse = errors.New("address in use by another host")

// A ConflictError reports an address another host on the segment uses.
type ConflictError struct {
	Addr         netip.Addr
	HardwareAddr net.HardwareAddr // the other host's
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s is in use by %s", e.Addr, e.HardwareAddr)
}

// Unwrap returns ErrInUse.
func (e *ConflictError) Unwrap() error { return ErrInUse }

// Probe asks the segment whether another host uses any of addrs, before
// this host claims them (RFC 5227 section 2.1.1): it broadcasts three ARP
// Probes for each (sender IP 0.0.0.0) over wait (DefaultProbeWait when
// zero or negative) and listens. Any ARP frame from another host whose
// sender IP is one of addrs (a reply to the probe, its own request or
// announcement), or another host's probe for one of them, is a conflict:
// Probe returns at once a *ConflictError (wrapping ErrInUse) naming the
// address and the other host's hardware address. It returns nil when no
// host answered, ctx's error when ctx ends first, and ErrClosed after
// Close. Probe neither adds nor publishes the addresses; the caller Adds
// them once it returns nil.
func (r *Responder) Probe(ctx context.Context, addrs []netip.Addr, wait time.Duration) error {
	_, err := r.probe(ctx, addrs, wait, true)
	return err
}

// maxProbeRange is the largest range ProbeRange probes: 3 frames per
// address, 3072 in all, over the probe's wait.
const maxProbeRange = 1024

// ProbeRange asks the segment which addresses of the range p (but its
// network and broadcast addresses) other hosts use, as Probe does for
// each, and returns them after listening for all of wait: the addresses
// to exclude when the range is claimed (AddRange). It refuses a range of
// more than 1024 addresses: probing one would flood the segment.
func (r *Responder) ProbeRange(ctx context.Context, p netip.Prefix, wait time.Duration) ([]netip.Addr, error) {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() < 22 {
		return nil, fmt.Errorf("%w: range %v: ProbeRange takes a /22 or longer (at most %d addresses)", ErrInvalidAddr, p, maxProbeRange)
	}
	p = p.Masked()
	var addrs []netip.Addr
	for a := p.Addr(); p.Contains(a); a = a.Next() {
		addrs = append(addrs, a)
	}
	if p.Bits() <= 30 {
		addrs = addrs[1 : len(addrs)-1] // no host has the network or broadcast address
	}
	return r.probe(ctx, addrs, wait, false)
}

// probe probes addrs and returns the addresses found in use; with first,
// it returns at the first conflict, as a *ConflictError.
func (r *Responder) probe(ctx context.Context, addrs []netip.Addr, wait time.Duration, first bool) ([]netip.Addr, error) {
	for _, a := range addrs {
		if err := checkAddr(a); err != nil {
			return nil, err
		}
	}
	if wait <= 0 {
		wait = DefaultProbeWait
	}
	p := &prober{addrs: map[[4]byte]bool{}, found: make(chan *ConflictError, 1), used: map[netip.Addr]bool{}}
	for _, a := range addrs {
		p.addrs[a.As4()] = true
	}
	if err := r.startProbe(p); err != nil {
		return nil, err
	}
	defer r.stopProbe(p)

	// Three probes, gap apart, then twice that long to hear the last one
	// answered: RFC 5227's PROBE_NUM, PROBE_MIN and ANNOUNCE_WAIT.
	gap := wait / 4
	buf := make([]byte, FrameLen)
	dst := &packet.Addr{HardwareAddr: bytes.Clone(broadcast[:])}
	t := time.NewTimer(0)
	defer t.Stop()
	found := p.found
	if !first {
		found = nil // listen to the end
	}
	for i := range 4 {
		select {
		case c := <-found:
			return nil, c
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.ctx.Done():
			return nil, ErrClosed
		case <-t.C:
		}
		if i == 3 {
			return p.inUse(), nil
		}
		mac := *r.mac.Load()
		for _, a := range addrs {
			f := PutRequest(buf, mac, netip.IPv4Unspecified(), a)
			if _, err := r.conn.WriteTo(f, dst); err != nil {
				r.stats.writeErrors.Add(1)
				return nil, fmt.Errorf("arpproxy: probe %s: %w", a, err)
			}
		}
		if i < 2 {
			t.Reset(gap)
		} else {
			t.Reset(wait - 2*gap)
		}
	}
	return p.inUse(), nil
}

// A prober is one running Probe: the serve goroutine reports conflicts
// with its addresses.
type prober struct {
	addrs map[[4]byte]bool // read-only while the probe runs
	found chan *ConflictError

	mu   sync.Mutex
	used map[netip.Addr]bool // every address found in use
}

// inUse returns the addresses found in use, in ascending order.
func (p *prober) inUse() []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.SortedFunc(maps.Keys(p.used), netip.Addr.Compare)
}

// check reports f if it shows another host using one of p's addresses. It
// runs in the serve goroutine, on frames Respond did not drop (frames from
// this host's own hardware address are dropped there).
func (p *prober) check(f Frame) {
	spa, tpa := f.SenderIP(), f.TargetIP()
	a := spa
	if !p.addrs[spa.As4()] {
		// Another host probing for the address at the same time (RFC
		// 5227 section 2.1.1): it is not ours to take either.
		if spa != netip.IPv4Unspecified() || f.Op() != OpRequest || !p.addrs[tpa.As4()] {
			return
		}
		a = tpa
	}
	p.mu.Lock()
	seen := p.used[a]
	p.used[a] = true
	p.mu.Unlock()
	if seen {
		return
	}
	select {
	case p.found <- &ConflictError{Addr: a, HardwareAddr: bytes.Clone(f.SenderHardwareAddr())}:
	default: // one is enough
	}
}

func (r *Responder) startProbe(p *prober) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.probes = append(slices.Clone(r.probes), p)
	ps := r.probes
	r.probing.Store(&ps)
	return nil
}

func (r *Responder) stopProbe(p *prober) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.probes = slices.DeleteFunc(slices.Clone(r.probes), func(q *prober) bool { return q == p })
	if len(r.probes) == 0 {
		r.probing.Store(nil)
		return
	}
	ps := r.probes
	r.probing.Store(&ps)
}
