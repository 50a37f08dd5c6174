package ratelimit

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestGCRA(t *testing.T) {
	const sec = int64(time.Second)
	g := NewGCRA(2, 3) // 3 at once, then one per 500ms
	var tat int64
	now := 100 * sec
	for i := range 3 {
		if !g.Allow(&tat, now) {
			t.Fatalf("event %d of the burst denied", i)
		}
	}
	if g.Allow(&tat, now) {
		t.Fatal("event beyond the burst allowed")
	}
	if g.Allow(&tat, now+sec/2-1) {
		t.Fatal("allowed before the refill")
	}
	if !g.Allow(&tat, now+sec/2) {
		t.Fatal("denied after the refill")
	}
	// A long pause refills the bucket to the burst, not beyond.
	now += 1000 * sec
	n := 0
	for g.Allow(&tat, now) {
		n++
	}
	if n != 3 {
		t.Errorf("after a pause %d events allowed at once, want 3", n)
	}
	// The first event at time zero is allowed (zero tat is a full bucket).
	tat = 0
	if !g.Allow(&tat, 0) {
		t.Error("first event at time 0 denied")
	}
	for _, tt := range []struct {
		rate  float64
		burst int
	}{{0, 10}, {-1, 10}, {1e300, 10}} {
		u := NewGCRA(tt.rate, tt.burst)
		var tat int64
		for range 1000 {
			if !u.Allow(&tat, 0) && tt.rate <= 0 {
				t.Fatalf("rate %v: unlimited bucket denied", tt.rate)
			}
		}
	}
	// Tiny rates must not overflow.
	tiny := NewGCRA(1e-300, 1<<30)
	tat = 0
	first := tiny.Allow(&tat, 0)
	second := tiny.Allow(&tat, 0)
	if !first || !second {
		t.Error("tiny rate with huge burst denied")
	}
}

func TestLimiterFixedSize(t *testing.T) {
	l := NewLimiter(1e-6, 2, 100, -1, 0)
	if l.Slots() != 128 {
		t.Fatalf("%d slots, want 128 (100 rounded up to a power of two)", l.Slots())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		var k Key
		for i := range 6 {
			k[i] = byte(rng.Uint32())
		}
		k[0] &^= 1
		l.Allow(&k, 0)
	}
	if len(l.slots) != 128 || cap(l.slots) != 128 {
		t.Errorf("table grew to %d under a flood of random requesters", len(l.slots))
	}
	// A requester keeps its own bucket while nobody else takes its slot.
	k := Key{2, 0, 0, 0, 0, 2, 192, 0, 2, 1}
	got := []bool{l.Allow(&k, 0), l.Allow(&k, 0), l.Allow(&k, 0)}
	if !got[0] || !got[1] || got[2] {
		t.Error("per-requester burst of 2 not enforced")
	}
	// Keys differing only in their last byte (an IPv6 target) are apart.
	k2 := k
	k2[KeyLen-1] = 1
	if !l.Allow(&k2, 0) {
		t.Error("a key differing in its last byte shares a bucket")
	}
	if n := testing.AllocsPerRun(100, func() { l.Allow(&k, 0) }); n != 0 {
		t.Errorf("Allow allocates %v times", n)
	}
}

func TestLimiterGlobal(t *testing.T) {
	l := NewLimiter(-1, 0, 0, 1e-6, 4)
	if l.slots != nil || l.Slots() != 0 {
		t.Error("slots allocated without a per-requester limit")
	}
	n := 0
	for i := range 100 {
		k := Key{2, 0, 0, 0, 0, byte(i), 192, 0, 2, 1}
		if l.Allow(&k, 0) {
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d replies allowed, want the global burst 4", n)
	}
	if off := NewLimiter(-1, 0, 0, -1, 0); off.Enabled() {
		t.Error("limiter with both limits disabled is enabled")
	}
}

func TestLogLimiter(t *testing.T) {
	l := NewLogLimiter(10)
	steps := []struct {
		now        int64
		ok         bool
		suppressed uint64
	}{{0, true, 0}, {5, false, 0}, {9, false, 0}, {10, true, 2}, {11, false, 0}, {100, true, 1}}
	for _, s := range steps {
		ok, sup := l.Allow(s.now)
		if ok != s.ok || sup != s.suppressed {
			t.Errorf("Allow(%d) = %v, %d; want %v, %d", s.now, ok, sup, s.ok, s.suppressed)
		}
	}
	never := NewLogLimiter(-1)
	if ok, _ := never.Allow(0); ok {
		t.Error("negative interval logged")
	}
}
