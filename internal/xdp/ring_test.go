package xdp

import (
	"math"
	"testing"
)

func TestFreeAndFilled(t *testing.T) {
	tests := []struct {
		name             string
		prod, cons, size uint32
		free, filled     uint32
	}{
		{"empty", 0, 0, 8, 8, 0},
		{"half", 4, 0, 8, 4, 4},
		{"full", 8, 0, 8, 0, 8},
		{"wrapped producer", 3, math.MaxUint32 - 2, 8, 2, 6},
		{"both wrapped", 5, 2, 8, 5, 3},
		{"at the wrap", 0, math.MaxUint32 - 7, 8, 0, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := free(tt.prod, tt.cons, tt.size); got != tt.free {
				t.Errorf("free(%d, %d, %d) = %d, want %d", tt.prod, tt.cons, tt.size, got, tt.free)
			}
			if got := filled(tt.prod, tt.cons); got != tt.filled {
				t.Errorf("filled(%d, %d) = %d, want %d", tt.prod, tt.cons, got, tt.filled)
			}
		})
	}
}

// TestRingTransfer runs a producer and a consumer ring over the same
// words across the 32-bit wrap and checks every entry arrives once, in
// order.
func TestRingTransfer(t *testing.T) {
	const size = 8
	for _, start := range []uint32{0, math.MaxUint32 - 20} {
		prod, cons, flags := start, start, uint32(0)
		p := newRing(&prod, &cons, &flags, size, true)
		c := newRing(&prod, &cons, &flags, size, false)
		var entries [size]uint32
		next, want := uint32(0), uint32(0)
		for round := 0; round < 100; round++ {
			n := p.reserve(uint32(round%5 + 1))
			if got := free(p.own, cons, size); n > got {
				t.Fatalf("reserved %d, only %d free", n, got)
			}
			for k := uint32(0); k < n; k++ {
				entries[(p.own+k)&p.mask] = next
				next++
			}
			p.submit(n)
			m := c.peek(uint32(round%3 + 1))
			for k := uint32(0); k < m; k++ {
				if got := entries[(c.own+k)&c.mask]; got != want {
					t.Fatalf("start %d round %d: entry %d, want %d", start, round, got, want)
				}
				want++
			}
			c.release(m)
		}
		if m := c.peek(size); m != next-want {
			t.Errorf("start %d: %d left, want %d", start, m, next-want)
		}
		if !p.pending() && next != want {
			t.Errorf("producer sees nothing pending with %d entries left", next-want)
		}
	}
}

func TestRingFull(t *testing.T) {
	prod, cons, flags := uint32(0), uint32(0), uint32(xdpRingNeedWakeup)
	p := newRing(&prod, &cons, &flags, 4, true)
	if n := p.reserve(10); n != 4 {
		t.Fatalf("reserve on an empty ring of 4: %d", n)
	}
	p.submit(4)
	if n := p.reserve(1); n != 0 {
		t.Errorf("reserve on a full ring: %d", n)
	}
	cons = 3 // the kernel took three
	if n := p.reserve(4); n != 3 {
		t.Errorf("reserve after 3 consumed: %d, want 3", n)
	}
	if !p.needWakeup() {
		t.Error("needWakeup false with the flag set")
	}
}
