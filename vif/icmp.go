package vif

import (
	"time"

	"github.com/vif-project/vif/ipip"
)

// icmpLimiter is a token bucket for generated ICMP errors (RFC 1812
// section 4.3.2.8), used by one goroutine.
type icmpLimiter struct {
	tokens float64
	last   int64 // nanoseconds, monotonic
}

const (
	icmpRate  = 100 // errors per second
	icmpBurst = 50
)

func (l *icmpLimiter) allow(now int64) bool {
	if l.last == 0 {
		l.tokens = icmpBurst
	} else {
		l.tokens = min(icmpBurst, l.tokens+float64(now-l.last)*icmpRate/1e9)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// icmpError sends an ICMP destination unreachable about pkt back into the
// TUN, to pkt's sender, if RFC 1812 allows an error about it and the rate
// limit does. Its source is pkt's destination, the address that could not
// be reached: an address of the vif itself would be refused by the kernel
// as a martian (a local source arriving from outside), and the reverse
// path of pkt's destination is the vif, as reverse-path filtering wants.
// It is called by the tx goroutine only and does not allocate.
func (i *Interface) icmpError(pkt ipip.IPv4, code uint8, mtu int) {
	if !ipip.ErrorAllowed(pkt) {
		return
	}
	if !i.icmpLim.allow(nanotime()) {
		i.tx.icmpLimited.Add(1)
		return
	}
	buf := i.icmpBufs[0]
	msg := ipip.Unreachable(buf[Headroom:], pkt.DstBytes(), pkt, code, mtu)
	i.icmpBufs[0] = buf[:Headroom+len(msg)]
	if _, err := i.dev.Write(i.icmpBufs, Headroom); err == nil {
		i.tx.icmpSent.Add(1)
	}
	i.icmpBufs[0] = buf[:cap(buf)]
}

// icmp6Error sends an ICMPv6 error of type typ (Destination Unreachable,
// code no route, or Packet Too Big with mtu) about pkt back into the TUN,
// to pkt's sender, if RFC 4443 section 2.4(e) and the rate limit (shared
// with IPv4's) allow it. Its source is the vif's first IPv6 address
// (Linux, unlike for IPv4, accepts a local source from a device); without
// one no error is sent. It is called by the tx goroutine only and does
// not allocate.
func (i *Interface) icmp6Error(set *addrSet, pkt ipip.IPv6, typ uint8, mtu int) {
	if !set.hasSrc6 || !ipip.ErrorAllowedIPv6(pkt, typ) {
		return
	}
	if !i.icmpLim.allow(nanotime()) {
		i.tx.icmpLimited.Add(1)
		return
	}
	buf := i.icmpBufs[0]
	var msg []byte
	if typ == ipip.ICMPv6PacketTooBig {
		msg = ipip.PacketTooBig(buf[Headroom:], set.src6, pkt, mtu)
	} else {
		msg = ipip.UnreachableIPv6(buf[Headroom:], set.src6, pkt, ipip.ICMPv6NoRoute)
	}
	i.icmpBufs[0] = buf[:Headroom+len(msg)]
	if _, err := i.dev.Write(i.icmpBufs, Headroom); err == nil {
		i.tx.icmpSent.Add(1)
	}
	i.icmpBufs[0] = buf[:cap(buf)]
}

var epoch = time.Now()

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }
