// Package ratelimit holds the token buckets that the ARP and NDP proxies
// put in front of their replies: a per-requester table that never grows,
// a global bucket, and a limiter for log lines. Nothing here allocates or
// takes a lock; each value belongs to one goroutine.
package ratelimit

import (
	"hash/maphash"
	"math"
)

// GCRA is a token bucket in its "generic cell rate algorithm" form: one
// number, the theoretical arrival time of the next event, instead of a
// token count and a refill time. It allows burst events at once and then
// one event every interval. Times are nanoseconds on a monotonic clock; a
// tat at or before now (such as zero) is a full bucket. The zero GCRA
// allows everything.
type GCRA struct {
	interval int64 // nanoseconds per event at the sustained rate
	slack    int64 // (burst-1)*interval: how far tat may run ahead of now
}

// NewGCRA returns a bucket allowing rate events per second after a burst
// of burst events. A rate that is zero, negative, +Inf or NaN allows
// everything.
func NewGCRA(rate float64, burst int) GCRA {
	if rate <= 0 || math.IsInf(rate, 1) || math.IsNaN(rate) {
		return GCRA{} // unlimited
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
	return GCRA{interval: int64(iv), slack: int64(slack)}
}

// Unlimited reports whether g allows everything.
func (g GCRA) Unlimited() bool { return g.interval == 0 }

// Allow decides one event at time now against the state *tat and updates
// it when the event is allowed.
func (g GCRA) Allow(tat *int64, now int64) bool {
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

// KeyLen is the length of a Key: room for a hardware address and an IPv6
// address.
const KeyLen = 6 + 16

// Key identifies what a per-requester bucket counts: the ARP proxy puts
// the requester's hardware address and the IPv4 address it asks for in
// it, the NDP proxy the hardware address and an IPv6 target. Unused bytes
// stay zero.
type Key [KeyLen]byte

// slot is one bucket of the fixed-size table.
type slot struct {
	tat int64
	key Key
	set bool
}

// Limiter is a reply rate limit: a token bucket per Key in a fixed-size
// table, and a global one.
//
// The table never grows: a key hashes (with a random seed, so a remote host
// cannot aim collisions) to one slot; a different key arriving in an
// occupied slot takes it over with a full bucket. Eviction can only make
// the per-requester limit more lenient, never lock a neighbour out: a flood
// of random hardware addresses gets fresh buckets, and it is the global
// bucket that bounds what such a flood can make us send.
//
// Not safe for concurrent use: only a proxy's serve goroutine uses it.
type Limiter struct {
	per     GCRA
	global  GCRA
	gtat    int64
	slots   []slot
	mask    uint64
	seed    maphash.Seed
	enabled bool
}

// NewLimiter returns a Limiter with a per-key bucket of perRate and
// perBurst in a table of slots slots (rounded up to a power of two), and a
// global bucket of globalRate and globalBurst. A rate that is zero or
// negative, +Inf or NaN disables its bucket (callers resolve their zero
// defaults first).
func NewLimiter(perRate float64, perBurst, slots int, globalRate float64, globalBurst int) *Limiter {
	l := &Limiter{
		per:    NewGCRA(perRate, perBurst),
		global: NewGCRA(globalRate, globalBurst),
		seed:   maphash.MakeSeed(),
	}
	if !l.per.Unlimited() {
		n := 1
		for n < slots {
			n <<= 1
		}
		l.slots = make([]slot, n)
		l.mask = uint64(n - 1)
	}
	l.enabled = !l.per.Unlimited() || !l.global.Unlimited()
	return l
}

// Enabled reports whether l limits anything; when it does not, callers
// may skip building the key.
func (l *Limiter) Enabled() bool { return l.enabled }

// Slots returns the size of the per-key table (zero without a per-key
// limit).
func (l *Limiter) Slots() int { return len(l.slots) }

// Allow decides whether a reply for k may be sent at time now
// (nanoseconds on a monotonic clock).
func (l *Limiter) Allow(k *Key, now int64) bool {
	if !l.enabled {
		return true
	}
	if !l.per.Unlimited() {
		s := &l.slots[maphash.Bytes(l.seed, k[:])&l.mask]
		if !s.set || s.key != *k {
			*s = slot{key: *k, set: true}
		}
		if !l.per.Allow(&s.tat, now) {
			return false
		}
	}
	return l.global.Allow(&l.gtat, now)
}

// LogLimiter lets one message through per interval and counts the others.
// A negative interval lets nothing through. Not safe for concurrent use.
type LogLimiter struct {
	interval   int64
	last       int64
	logged     bool
	suppressed uint64
}

// NewLogLimiter returns a LogLimiter letting one message through per
// interval nanoseconds.
func NewLogLimiter(interval int64) LogLimiter { return LogLimiter{interval: interval} }

// Allow reports whether to log at time now, and how many messages were
// suppressed since the last one logged.
func (l *LogLimiter) Allow(now int64) (bool, uint64) {
	if l.interval < 0 || (l.logged && now-l.last < l.interval) {
		l.suppressed++
		return false, 0
	}
	s := l.suppressed
	l.logged, l.last, l.suppressed = true, now, 0
	return true, s
}
