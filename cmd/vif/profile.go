package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startProfile starts a CPU profile when the environment variable
// VIF_CPUPROFILE names a file, and returns the function that stops it and
// writes the file; call it before exiting. Without the variable it does
// nothing. It is meant for measuring the packet loop, as in
//
//	VIF_CPUPROFILE=/tmp/vif.pprof vif up vif0 ... --foreground
//	go tool pprof -top vif /tmp/vif.pprof
func startProfile() (stop func()) {
	path := os.Getenv("VIF_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vif: VIF_CPUPROFILE:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "vif: VIF_CPUPROFILE:", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
