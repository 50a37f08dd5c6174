package vif

import (
	"testing"
)

func TestICMPLimiter(t *testing.T) {
	var l icmpLimiter
	now := int64(1e9)
	n := 0
	for k := 0; k < 1000; k++ {
		if l.allow(now) {
			n++
		}
	}
	if n != icmpBurst {
		t.Errorf("burst allowed %d, want %d", n, icmpBurst)
	}
	now += 1e9 // one second later: icmpRate more
	n = 0
	for k := 0; k < 1000; k++ {
		if l.allow(now) {
			n++
		}
	}
	if n != icmpBurst && n != icmpRate { // capped by the burst
		t.Errorf("after a second allowed %d", n)
	}
}
