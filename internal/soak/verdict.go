package soak

import (
	"fmt"
	"slices"
	"time"
)

// A Sample is one measurement of a vif daemon, as "vif show --json"
// reports it in its "daemon" object.
type Sample struct {
	At         time.Duration // since the start of the load
	PID        int
	Goroutines int
	RSSKiB     int
}

// Bounds is how much a daemon may grow between a base and an end sample
// before it counts as leaking. A zero field is not checked.
type Bounds struct {
	// RSSPercent bounds RSS growth relative to the base, in percent.
	RSSPercent float64
	// RSSKiB bounds RSS growth in KiB.
	RSSKiB int
	// Goroutines bounds the difference in goroutines, either way.
	Goroutines int
}

// DefaultBounds are the soak program's bounds: RSS grows less than 20 %
// and less than 16 MiB, goroutines stay within 3 of the base.
var DefaultBounds = Bounds{RSSPercent: 20, RSSKiB: 16 << 10, Goroutines: 3}

// A Verdict compares a base sample with an end sample.
type Verdict struct {
	Base, End Sample
	// Problems says how each exceeded bound was exceeded; empty when flat.
	Problems []string
}

// OK reports whether the daemon stayed within its bounds.
func (v Verdict) OK() bool { return len(v.Problems) == 0 }

// String summarises the verdict in one line.
func (v Verdict) String() string {
	d := v.End.RSSKiB - v.Base.RSSKiB
	pct := 0.0
	if v.Base.RSSKiB > 0 {
		pct = 100 * float64(d) / float64(v.Base.RSSKiB)
	}
	s := fmt.Sprintf("RSS %d -> %d KiB (%+d KiB, %+.1f%%), goroutines %d -> %d (%+d)",
		v.Base.RSSKiB, v.End.RSSKiB, d, pct, v.Base.Goroutines, v.End.Goroutines, v.End.Goroutines-v.Base.Goroutines)
	if v.OK() {
		return "flat: " + s
	}
	return fmt.Sprintf("growing: %s: %v", s, v.Problems)
}

// Compare checks the growth from base to end against b.
func Compare(base, end Sample, b Bounds) Verdict {
	v := Verdict{Base: base, End: end}
	d := end.RSSKiB - base.RSSKiB
	if b.RSSKiB > 0 && d >= b.RSSKiB {
		v.Problems = append(v.Problems, fmt.Sprintf("RSS grew %d KiB, bound %d KiB", d, b.RSSKiB))
	}
	if b.RSSPercent > 0 && base.RSSKiB > 0 && 100*float64(d)/float64(base.RSSKiB) >= b.RSSPercent {
		v.Problems = append(v.Problems, fmt.Sprintf("RSS grew %.1f%%, bound %g%%", 100*float64(d)/float64(base.RSSKiB), b.RSSPercent))
	}
	if g := end.Goroutines - base.Goroutines; b.Goroutines > 0 && (g > b.Goroutines || -g > b.Goroutines) {
		v.Problems = append(v.Problems, fmt.Sprintf("goroutines changed by %+d, bound ±%d", g, b.Goroutines))
	}
	return v
}

// Judge compares the median of the last third of samples with the median
// of the second third; the first third is the warm-up. Medians are taken
// per field, so one GC cycle or one request in flight does not decide.
// With fewer than three samples it compares the first with the last.
func Judge(samples []Sample, b Bounds) Verdict {
	n := len(samples)
	switch {
	case n == 0:
		return Verdict{Problems: []string{"no samples"}}
	case n < 3:
		return Compare(samples[0], samples[n-1], b)
	}
	return Compare(Median(samples[n/3:2*n/3]), Median(samples[2*n/3:]), b)
}

// Median returns the per-field median of samples (the upper one of an
// even count); At and PID are those of the last sample.
func Median(samples []Sample) Sample {
	if len(samples) == 0 {
		return Sample{}
	}
	med := func(f func(Sample) int) int {
		v := make([]int, len(samples))
		for k, s := range samples {
			v[k] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	last := samples[len(samples)-1]
	return Sample{
		At:         last.At,
		PID:        last.PID,
		Goroutines: med(func(s Sample) int { return s.Goroutines }),
		RSSKiB:     med(func(s Sample) int { return s.RSSKiB }),
	}
}
