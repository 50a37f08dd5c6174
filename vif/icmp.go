package vif

import (
	"encoding/binary"
	"time"

	"github.com/vif-project/vif/ipip"
)

// ICMP messages the packet loop sends back to a sender, as a router would
// (RFC 792, RFC 1812 section 4.3), and as RFC 2003 section 4 asks of a
// tunnel entry point.
const (
	icmpDestUnreach = 3
	codeHostUnreach = 1
	codeFragNeeded  = 4

	// icmpQuote is how much of the offending packet an error quotes:
	// RFC 1812 section 4.3.2.3 allows as much as keeps the error within
	// 576 bytes; 20 (our header) + 8 (ICMP) + 548.
	icmpQuote = 576 - ipip.HeaderLen - 8
	// icmpMaxLen is the largest error message built.
	icmpMaxLen = ipip.HeaderLen + 8 + icmpQuote
)

// icmpWorthy reports whether an ICMP error may be sent about pkt (RFC 1812
// section 4.3.2.7): not about an ICMP error, a non-initial fragment, or a
// packet whose source is not a unicast address.
func icmpWorthy(pkt ipip.Header) bool {
	if pkt.FragmentOffset() != 0 || !validUnicast(pkt.SrcBytes()) {
		return false
	}
	if pkt.Protocol() == 1 {
		ihl := pkt.HeaderLen()
		if len(pkt) < ihl+1 {
			return false
		}
		switch pkt[ihl] { // only queries (echo, timestamp, ...) may cause errors
		case 0, 8, 13, 14, 17, 18:
		default:
			return false
		}
	}
	return true
}

// buildUnreach writes into buf an ICMP destination unreachable message
// with code, from src to the source of the offending packet pkt, quoting
// it, and returns the message (a sub-slice of buf). For code
// codeFragNeeded, mtu is the next-hop MTU (RFC 1191). buf must hold
// icmpMaxLen bytes.
func buildUnreach(buf []byte, src [4]byte, pkt ipip.Header, code uint8, mtu int) []byte {
	quote := min(len(pkt), int(pkt.TotalLen()), icmpQuote)
	n := ipip.HeaderLen + 8 + quote
	out := buf[:n]
	h := ipip.Header(out)
	h[0] = 0x45
	h[1] = 0xc0 // precedence "internetwork control", as routers send errors
	binary.BigEndian.PutUint16(h[2:], uint16(n))
	binary.BigEndian.PutUint16(h[4:], 0)
	binary.BigEndian.PutUint16(h[6:], 0)
	h[8] = 64
	h[9] = 1 // ICMP
	copy(h[12:16], src[:])
	dst := pkt.SrcBytes()
	copy(h[16:20], dst[:])
	h.SetChecksum()

	m := out[ipip.HeaderLen:]
	m[0], m[1] = icmpDestUnreach, code
	binary.BigEndian.PutUint16(m[2:], 0)
	binary.BigEndian.PutUint16(m[4:], 0)
	binary.BigEndian.PutUint16(m[6:], 0)
	if code == codeFragNeeded {
		binary.BigEndian.PutUint16(m[6:], uint16(mtu))
	}
	copy(m[8:], pkt[:quote])
	binary.BigEndian.PutUint16(m[2:], checksum(m))
	return out
}

// checksum is the Internet checksum of b (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

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
func (i *Interface) icmpError(pkt ipip.Header, code uint8, mtu int) {
	if !icmpWorthy(pkt) {
		return
	}
	if !i.icmpLim.allow(nanotime()) {
		i.tx.icmpLimited.Add(1)
		return
	}
	buf := i.icmpBufs[0]
	msg := buildUnreach(buf[Headroom:], pkt.DstBytes(), pkt, code, mtu)
	i.icmpBufs[0] = buf[:Headroom+len(msg)]
	if _, err := i.dev.Write(i.icmpBufs, Headroom); err == nil {
		i.tx.icmpSent.Add(1)
	}
	i.icmpBufs[0] = buf[:cap(buf)]
}

var epoch = time.Now()

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }
