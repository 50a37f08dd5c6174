package arpproxy

import (
	"hash/maphash"
	"math"
)

// gcra is a token bucket in its "generic cell rate algorithm" form: one
// number, the theoretical arrival time of the next event, instead of a
// token count and a refill time. It allows burst events at once and then
// one event every interval. Times are nanoseconds on a monotonic clock; a
// tat at or before now (such as zero) is a full bucket. Not safe for
// concurrent use.
type gcra struct {
	interval int64 // nanoseconds per event at the sustained rate
	slack    int64 // (burst-1)*interval: how far tat may run ahead of now
}

func newGCRA(rate float64, burst int) gcra {
	if rate <= 0 || math.IsInf(rate, 1) || math.IsNaN(rate) {
		return gcra{} // unlimited
	}
	iv := 1e9 / rate
	if iv < 1 {
		iv = 1
	}
	if iv > math.MaxInt64/4 {
		iv = math.MaxInt64 / 4
	}
	if burst < 1 {
		burst = 1
	}
	slack := iv * float64(burst-1)
	if slack > math.MaxInt64/4 {
		slack = math.MaxInt64 / 4
	}
	return gcra{interval: int64(iv), slack: int64(slack)}
}

// unlimited reports whether g allows everything.
func (g gcra) unlimited() bool { return g.interval == 0 }

// allow decides one event at time now against the state *tat and updates
// it when the event is allowed.
func (g gcra) allow(tat *int64, now int64) bool {
	if g.interval == 0 {
		return true
	}
	t := max(*tat, now)
	if t-now > g.slack {
		return false
	}
	*tat = t + g.interval
	return true
}

// rateKey identifies a requester and the address it asks for: its hardware
// address and the target IP.
type rateKey [10]byte

// rateSlot is one bucket of the fixed-size table.
type rateSlot struct {
	tat int64
	key rateKey
	set bool
}

// limiter is the reply rate limit: a token bucket per (requester hardware
// address, target IP) in a fixed-size table, and a global one.
//
// The table never grows: a key hashes (with a random seed, so a remote host
// cannot aim collisions) to one slot; a different key arriving in an
// occupied slot takes it over with a full bucket. Eviction can only make
// the per-requester limit more lenient, never lock a neighbour out: a flood
// of random hardware addresses gets fresh buckets, and it is the global
// bucket that bounds what such a flood can make us send.
//
// Not safe for concurrent use: only the serve goroutine uses it.
type limiter struct {
	per     gcra
	global  gcra
	gtat    int64
	slots   []rateSlot
	mask    uint64
	seed    maphash.Seed
	enabled bool
}

func newLimiter(perRate float64, perBurst, slots int, globalRate float64, globalBurst int) *limiter {
	l := &limiter{
		per:    newGCRA(perRate, perBurst),
		global: newGCRA(globalRate, globalBurst),
		seed:   maphash.MakeSeed(),
	}
	if !l.per.unlimited() {
		n := 1
		for n < slots {
			n <<= 1
		}
		l.slots = make([]rateSlot, n)
		l.mask = uint64(n - 1)
	}
	l.enabled = !l.per.unlimited() || !l.global.unlimited()
	return l
}

// allow decides whether a reply to the requester sha asking for tpa may be
// sent at time now (nanoseconds, see gcra).
func (l *limiter) allow(sha [6]byte, tpa [4]byte, now int64) bool {
	if !l.enabled {
		return true
	}
	if !l.per.unlimited() {
		var k rateKey
		copy(k[:6], sha[:])
		copy(k[6:], tpa[:])
		s := &l.slots[maphash.Bytes(l.seed, k[:])&l.mask]
		if !s.set || s.key != k {
			*s = rateSlot{key: k, set: true}
		}
		if !l.per.allow(&s.tat, now) {
			return false
		}
	}
	return l.global.allow(&l.gtat, now)
}

// logLimiter lets one message through per interval and counts the others.
// A negative interval lets nothing through. Not safe for concurrent use.
type logLimiter struct {
	interval   int64
	last       int64
	logged     bool
	suppressed uint64
}

// allow reports whether to log at time now, and how many messages were
// suppressed since the last one logged.
func (l *logLimiter) allow(now int64) (bool, uint64) {
	if l.interval < 0 || (l.logged && now-l.last < l.interval) {
		l.suppressed++
		return false, 0
	}
	s := l.suppressed
	l.logged, l.last, l.suppressed = true, now, 0
	return true, s
}
