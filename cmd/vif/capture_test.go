package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Bad input to vif capture is one line and exit status 2, before it
// needs root or a daemon.
func TestCaptureUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"capture"}, "capture takes one vif name"},
		{[]string{"capture", "vif0", "vif1"}, "capture takes one vif name"},
		{[]string{"capture", "vif0", "-c", "-1", "-w", "x"}, "bad --count -1"},
		{[]string{"capture", "vif0", "-c", "ten", "-w", "x"}, `bad --count "ten"`},
		{[]string{"capture", "vif0", "--duration", "-1s", "-w", "x"}, "bad --duration"},
		{[]string{"capture", "vif0", "--duration", "soon", "-w", "x"}, "give a duration"},
		{[]string{"capture", "vif0", "--direction", "up", "-w", "x"}, `bad --direction "up"`},
		{[]string{"capture", "vif0", "--direction", "", "-w", "x"}, `bad --direction ""`},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), tt.args, &out, &errb)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || out.Len()+errb.Len() > 0 {
			t.Errorf("vif %v: %v, want one line with %q and exit status 2", tt.args, err, tt.want)
		}
	}
}

// With no -w, vif capture refuses to write pcap to a terminal.
func TestCaptureRefusesTerminal(t *testing.T) {
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptm.Close()
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlocking the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("naming the pseudo-terminal: %v", err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("opening the pseudo-terminal: %v", err)
	}
	defer pts.Close()
	if !isTerminal(pts) || isTerminal(&bytes.Buffer{}) {
		t.Fatal("isTerminal is wrong")
	}
	err = run(context.Background(), []string{"capture", "vif0"}, pts, &bytes.Buffer{})
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "use -w FILE, or pipe it to tcpdump -nr -") {
		t.Errorf("vif capture to a terminal: %v, want a usage error", err)
	}
}
