package soak

import (
	"testing"
	"time"
)

func series(rss ...int) []Sample {
	var s []Sample
	for k, r := range rss {
		s = append(s, Sample{At: time.Duration(k) * time.Second, PID: 1, Goroutines: 16, RSSKiB: r})
	}
	return s
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name    string
		samples []Sample
		ok      bool
	}{
		{"flat", series(9000, 10000, 10100, 10050, 10100, 10080, 10120, 10090, 10110), true},
		{"warm-up is ignored", series(1000, 2000, 3000, 10000, 10100, 10050, 10100, 10080, 10120), true},
		{"one spike", series(10000, 10000, 10000, 10000, 10000, 10000, 10000, 30000, 10000), true},
		{"20 percent", series(10000, 10000, 10000, 10000, 10000, 10000, 12000, 12000, 12000), false},
		{"16 MiB", series(100000, 100000, 100000, 100000, 100000, 100000, 117000, 117000, 117000), false},
		{"two samples", series(10000, 10500), true},
		{"no samples", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v := Judge(tt.samples, DefaultBounds); v.OK() != tt.ok {
				t.Errorf("Judge = %v, want ok %v", v, tt.ok)
			}
		})
	}
}

func TestCompareGoroutines(t *testing.T) {
	base := Sample{Goroutines: 16, RSSKiB: 10000}
	for _, tt := range []struct {
		g  int
		ok bool
	}{{16, true}, {19, true}, {13, true}, {20, false}, {12, false}} {
		end := Sample{Goroutines: tt.g, RSSKiB: 10000}
		if v := Compare(base, end, DefaultBounds); v.OK() != tt.ok {
			t.Errorf("16 -> %d goroutines: %v, want ok %v", tt.g, v, tt.ok)
		}
	}
	// A zero bound is not checked.
	if v := Compare(base, Sample{Goroutines: 100, RSSKiB: 1 << 20}, Bounds{}); !v.OK() {
		t.Errorf("zero Bounds: %v", v)
	}
}
