package vif

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/vif-project/vif/ipip"
)

// Stats is a snapshot of an Interface's counters.
//
// Directions are named from the host's point of view: "tx" is what the
// kernel routed into the vif (read from the TUN), "rx" is what arrived on
// the underlay from the wire.
type Stats struct {
	// Looped counts packets read from the TUN for one of the interface's
	// own addresses and written back into it (the seed's loopback).
	Looped, LoopedBytes uint64
	// Encapsulated counts packets encapsulated and sent to the peer
	// (bytes are outer bytes); an outer packet sent in fragments counts
	// once per fragment, and once in Fragmented.
	Encapsulated, EncapsulatedBytes uint64
	Fragmented                      uint64
	// Decapsulated counts packets received from the peer and delivered
	// into the TUN (bytes are inner bytes).
	Decapsulated, DecapsulatedBytes uint64
	// ICMPSent counts ICMP errors sent back to senders: destination
	// unreachable without a peer, fragmentation needed, and errors from
	// routers inside the tunnel relayed to the original sender (RFC 2003
	// section 4). ICMPLimited counts those suppressed by the rate limit.
	ICMPSent, ICMPLimited uint64
	// Drops counts dropped packets by reason; only reasons with a
	// non-zero count are present. The keys are stable: see DropReasons.
	Drops map[string]uint64
}

// String formats s on one line, as "looped 1 (84 B), encapsulated 2
// (216 B), decapsulated 2 (168 B), dropped 1 (rx_not_peer 1)".
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "looped %d (%d B), encapsulated %d (%d B), decapsulated %d (%d B), dropped %d",
		s.Looped, s.LoopedBytes, s.Encapsulated, s.EncapsulatedBytes, s.Decapsulated, s.DecapsulatedBytes, s.Dropped())
	if len(s.Drops) > 0 {
		b.WriteString(" (")
		for k, r := range slices.Sorted(maps.Keys(s.Drops)) {
			if k > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %d", r, s.Drops[r])
		}
		b.WriteString(")")
	}
	if s.ICMPSent+s.ICMPLimited > 0 {
		fmt.Fprintf(&b, ", icmp %d sent, %d limited", s.ICMPSent, s.ICMPLimited)
	}
	return b.String()
}

// Dropped returns the total number of dropped packets.
func (s Stats) Dropped() uint64 {
	var n uint64
	for _, v := range s.Drops {
		n += v
	}
	return n
}

// Drop reasons of the packet loop itself; the codec's reasons (ipip.Error)
// are counted beside them with the prefix "tx_" or "rx_".
type dropReason uint8

const (
	dropNoPeer        dropReason = iota // tx: not for us and no peer configured
	dropLoop                            // tx: destination is the peer's underlay address
	dropTunRead                         // tx: the TUN returned a per-packet read error
	dropUnderlayWrite                   // tx: the underlay refused the packet
	dropLoopbackWrite                   // tx: writing a looped packet back failed
	dropTooBig                          // tx: DF set and larger than the path MTU to the peer
	dropNoLocal                         // tx: the tunnel is paused: no local address to send from (SetLocal)
	dropRedirect                        // tx: an ICMP redirect for a sender behind a peer
	dropNotPeer                         // rx: outer source is not the configured peer
	dropNotLocal                        // rx: inner destination is not ours (no open relay)
	dropBadSource                       // rx: inner source is not the peer's, or ours, loopback, 0/8, multicast, broadcast, link-local
	dropUnderlayRead                    // rx: the underlay returned a read error
	dropTunWrite                        // rx: writing into the TUN failed
	numDropReasons
)

var dropNames = [numDropReasons]string{
	dropNoPeer:        "tx_no_peer",
	dropLoop:          "tx_loop",
	dropTunRead:       "tx_read_error",
	dropUnderlayWrite: "tx_write_error",
	dropLoopbackWrite: "tx_loopback_write_error",
	dropTooBig:        "tx_too_big",
	dropNoLocal:       "tx_no_local",
	dropRedirect:      "tx_icmp_redirect",
	dropNotPeer:       "rx_not_peer",
	dropNotLocal:      "rx_not_local",
	dropBadSource:     "rx_bad_source",
	dropUnderlayRead:  "rx_read_error",
	dropTunWrite:      "rx_write_error",
}

// Packets the kernel dropped before the loop saw them, as it counts them:
// on the underlay's receiving socket, its queue full (the loop too slow
// for the wire), and at the TUN device, its queue full (the loop too slow
// for what is routed into the vif). Up's interfaces report them; New's
// report the first when the Underlay has a Drops() uint64 method.
const (
	DropSocketOverflow = "rx_socket_overflow"
	DropTUNOverflow    = "tx_tun_overflow"
)

// DropOffloadError counts the packets the offload (LinkConfig.Offload)
// dropped itself: a kernel helper failed (out of memory) on a packet it
// had begun to encapsulate. Every other packet it does not carry goes to
// the loop, which counts its drops under its own reasons.
const DropOffloadError = "tx_offload_error"

// DropReasons lists every key Stats.Drops may hold, sorted, for documentation and
// for tools that want a fixed set of columns.
func DropReasons() []string {
	var out []string
	out = append(out, dropNames[:]...)
	out = append(out, DropSocketOverflow, DropTUNOverflow, DropOffloadError)
	for e := ipip.Error(1); e < ipip.NumErrors; e++ {
		out = append(out, "tx_"+e.Name(), "rx_"+e.Name())
	}
	slices.Sort(out)
	return slices.Compact(out) // tx_too_big is both the loop's and the codec's
}

// counters of one direction, written by that direction's goroutine only
// (atomically, so Stats can read them). Padding keeps the two directions
// on separate cache lines.
type counters struct {
	pkts, bytes           atomic.Uint64 // tx: encapsulated; rx: decapsulated
	looped, loopedBytes   atomic.Uint64 // tx only
	fragmented            atomic.Uint64 // tx: packets sent in outer fragments
	icmpSent, icmpLimited atomic.Uint64 // tx: generated; rx: relayed
	drops                 [numDropReasons]atomic.Uint64
	codec                 [ipip.NumErrors]atomic.Uint64
	_                     [64]byte
}

type txCounters = counters
type rxCounters = counters

// Stats returns a snapshot of the interface's counters.
func (i *Interface) Stats() Stats {
	s := Stats{
		Encapsulated:      i.tx.pkts.Load(),
		EncapsulatedBytes: i.tx.bytes.Load(),
		Fragmented:        i.tx.fragmented.Load(),
		Looped:            i.tx.looped.Load(),
		LoopedBytes:       i.tx.loopedBytes.Load(),
		ICMPSent:          i.tx.icmpSent.Load() + i.rx.icmpSent.Load(),
		ICMPLimited:       i.tx.icmpLimited.Load() + i.rx.icmpLimited.Load(),
		Decapsulated:      i.rx.pkts.Load(),
		DecapsulatedBytes: i.rx.bytes.Load(),
		Drops:             map[string]uint64{},
	}
	for _, c := range []*counters{&i.tx, &i.rx} {
		for r := range c.drops {
			if v := c.drops[r].Load(); v != 0 {
				s.Drops[dropNames[r]] += v
			}
		}
	}
	for e := ipip.Error(1); e < ipip.NumErrors; e++ {
		// Added, not set: the loop's tx_too_big (DF, larger than the
		// path) and the codec's (larger than IPv4 allows) share a name.
		if v := i.tx.codec[e].Load(); v != 0 {
			s.Drops["tx_"+e.Name()] += v
		}
		if v := i.rx.codec[e].Load(); v != 0 {
			s.Drops["rx_"+e.Name()] += v
		}
	}
	if d, ok := i.under.(interface{ Drops() uint64 }); ok {
		if v := d.Drops(); v != 0 {
			s.Drops[DropSocketOverflow] = v
		}
	}
	if i.tunDrops != nil {
		if v := i.tunDrops(); v != 0 {
			s.Drops[DropTUNOverflow] = v
		}
	}
	i.addOffloadStats(&s)
	return s
}
