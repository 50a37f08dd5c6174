// Package soak holds what vif's soak test (TestSoakShort in cmd/vif) and
// soak program (internal/cmd/vifsoak) share: an ARP flood from random
// requesters, paced at a fixed rate (Flood), and the verdict on a daemon's
// resident set size and goroutine count sampled over time (Judge,
// Compare): flat, or growing beyond Bounds.
package soak
