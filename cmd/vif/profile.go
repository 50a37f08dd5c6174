package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"syscall"
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
	f, err := createOwn(path)
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

// createOwn creates or truncates the regular file path for writing, as
// root would without following a symbolic link or writing into a file of
// another user: in a directory such as /tmp, another user may have put
// either there.
func createOwn(path string) (*os.File, error) {
	// O_NONBLOCK: opening a FIFO must fail at once, not wait for a reader.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || int(st.Uid) != os.Geteuid() || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Nlink != 1 {
		f.Close()
		return nil, fmt.Errorf("%s: not a file of this user's; remove it or choose another path", path)
	}
	return f, f.Truncate(0)
}
