package ndpproxy

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

// DefaultProbeWait is how long Probe takes when it is given no duration.
// RFC 4862 section 5.4.2 sends DupAddrDetectTransmits solicitations (1 by
// default) RetransTimer (1 s) apart and waits RetransTimer after the last;
// like the ARP proxy's Probe, Probe sends three, a quarter of the wait
// apart, and listens twice as long after the last, on a shorter scale,
// since neighbours on today's links answer within milliseconds.
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

// Probe performs Duplicate Address Detection (RFC 4862 section 5.4) for
// addrs before this host claims them: it joins their solicited-node
// multicast groups (Listen only; section 5.4.2: "Before sending a
// Neighbor Solicitation, an interface MUST join ... the solicited-node
// multicast address of the tentative address"), sends three solicitations
// for each from the unspecified address to that group over wait
// (DefaultProbeWait when zero or negative), and listens. Another host's
// advertisement for one of addrs (section 5.4.4: "If the target address
// is tentative, the tentative address is not unique"), its Duplicate
// Address Detection probe for one of them (section 5.4.3), or its
// solicitation from one of them is a conflict: Probe returns at once a
// *ConflictError (wrapping ErrInUse) naming the address and the other
// host's hardware address. Solicitations for addrs from other unicast
// sources are address resolution and are ignored (section 5.4.3). Probe
// returns nil when no host answered, ctx's error when ctx ends first, and
// ErrClosed after Close. It neither adds nor publishes the addresses; the
// caller Adds them once it returns nil.
func (r *Responder) Probe(ctx context.Context, addrs []netip.Addr, wait time.Duration) error {
	_, err := r.probe(ctx, addrs, wait, true)
	return err
}

// MaxProbe is the most addresses ProbeAll and ProbeRange probe at once:
// three solicitations each over the probe's wait, 768 frames in all.
const MaxProbe = 1 << (128 - GroupRangeBits)

// ProbeAll is Probe that listens for all of wait and returns every
// address of addrs another host uses, instead of an error at the first:
// the addresses to exclude when a range holding addrs is claimed
// (AddRange). It refuses more than MaxProbe addresses (ErrInvalidAddr):
// that would flood the segment.
func (r *Responder) ProbeAll(ctx context.Context, addrs []netip.Addr, wait time.Duration) ([]netip.Addr, error) {
	if len(addrs) > MaxProbe {
		return nil, fmt.Errorf("%w: %d addresses to probe: at most %d at once", ErrInvalidAddr, len(addrs), MaxProbe)
	}
	return r.probe(ctx, addrs, wait, false)
}

// ProbeRange is ProbeAll for every address of the range p that AddRange
// would answer for (all but its Subnet-Router anycast address). It takes
// ranges of GroupRangeBits or longer (ErrInvalidAddr otherwise): probing
// a larger one would flood the segment, and a /64 cannot be probed at all.
func (r *Responder) ProbeRange(ctx context.Context, p netip.Prefix, wait time.Duration) ([]netip.Addr, error) {
	if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() < GroupRangeBits {
		return nil, fmt.Errorf("%w: range %v: ProbeRange takes an IPv6 prefix of /%d or longer (at most %d addresses)", ErrInvalidAddr, p, GroupRangeBits, MaxProbe)
	}
	return r.probe(ctx, slices.Collect(rangeAddrs(p.Masked())), wait, false)
}

// probe probes addrs and returns the addresses found in use; with first,
// it returns at the first conflict, as a *ConflictError, and nil
// addresses.
func (r *Responder) probe(ctx context.Context, addrs []netip.Addr, wait time.Duration, first bool) ([]netip.Addr, error) {
	for _, a := range addrs {
		if err := checkAddr(a); err != nil {
			return nil, err
		}
	}
	if wait <= 0 {
		wait = DefaultProbeWait
	}
	p := &prober{addrs: map[netip.Addr]bool{}, found: make(chan *ConflictError, 1), used: map[netip.Addr]bool{}}
	for _, a := range addrs {
		p.addrs[a] = true
	}
	if err := r.startProbe(p); err != nil {
		return nil, err
	}
	defer r.stopProbe(p)
	found := p.found
	if !first {
		found = nil // listen to the end
	}

	// Three probes, gap apart, then twice that long to hear the last one
	// answered.
	gap := wait / 4
	buf := make([]byte, ReplyLen)
	t := time.NewTimer(0)
	defer t.Stop()
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
			break
		}
		mac := r.self.Load().HardwareAddr
		for _, a := range addrs {
			f := PutSolicitation(buf, mac, netip.IPv6Unspecified(), a)
			dst := &packet.Addr{HardwareAddr: bytes.Clone(f.EthernetDst())}
			if _, err := r.conn.WriteTo(f, dst); err != nil {
				r.stats.writeErrors.Add(1)
				return nil, fmt.Errorf("ndpproxy: probe %s: %w", a, err)
			}
		}
		if i < 2 {
			t.Reset(gap)
		} else {
			t.Reset(wait - 2*gap)
		}
	}
	if !first {
		return p.inUse(), nil
	}
	select {
	case c := <-p.found:
		return nil, c
	default:
		return nil, nil
	}
}

// inUse returns the addresses found in use, in ascending order.
func (p *prober) inUse() []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Collect(maps.Keys(p.used))
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// A prober is one running Probe: the serve goroutine reports conflicts
// with its addresses.
type prober struct {
	addrs map[netip.Addr]bool // read-only while the probe runs
	found chan *ConflictError

	mu   sync.Mutex
	used map[netip.Addr]bool // every address found in use, to report each once
}

// check reports f if it shows another host using one of p's addresses. It
// runs in the serve goroutine, on frames Respond did not drop (frames from
// this host's own hardware address are dropped there).
func (p *prober) check(f Frame) {
	var a netip.Addr
	src, target := f.Source(), f.Target()
	switch {
	case f.Type() == TypeNeighborAdvertisement && p.addrs[target]:
		a = target
	case f.Type() == TypeNeighborSolicitation && src.IsUnspecified() && p.addrs[target]:
		a = target // another host's Duplicate Address Detection
	case f.Type() == TypeNeighborSolicitation && p.addrs[src]:
		a = src
	default:
		return
	}
	p.mu.Lock()
	seen := p.used[a]
	p.used[a] = true
	p.mu.Unlock()
	if seen {
		return
	}
	select {
	case p.found <- &ConflictError{Addr: a, HardwareAddr: bytes.Clone(f.EthernetSrc())}:
	default: // one is enough
	}
}

// startProbe registers p with the serve goroutine and joins the groups of
// its addresses.
func (r *Responder) startProbe(p *prober) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	var joined []netip.Addr
	for a := range p.addrs {
		if err := r.groups.join(a); err != nil {
			for _, j := range joined {
				r.groups.leave(j)
			}
			return err
		}
		joined = append(joined, a)
	}
	r.probes = append(slices.Clone(r.probes), p)
	ps := r.probes
	r.probing.Store(&ps)
	return nil
}

func (r *Responder) stopProbe(p *prober) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for a := range p.addrs {
		r.groups.leave(a)
	}
	r.probes = slices.DeleteFunc(slices.Clone(r.probes), func(q *prober) bool { return q == p })
	if len(r.probes) == 0 {
		r.probing.Store(nil)
		return
	}
	ps := r.probes
	r.probing.Store(&ps)
}
