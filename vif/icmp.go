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

var epoch = time.Now()

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }
