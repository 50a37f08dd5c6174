package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
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

// The pcap vif capture writes is what gopacket's reader reads.
func TestPcapWriter(t *testing.T) {
	var b bytes.Buffer
	w := &pcapWriter{w: &b}
	if err := w.writeHeader(); err != nil {
		t.Fatal(err)
	}
	when := time.Unix(1700000000, 123456789)
	pkts := [][]byte{{0x45, 0, 0, 20}, bytes.Repeat([]byte{0x60}, 1500)}
	for _, p := range pkts {
		if err := w.writePacket(when, p, len(p)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := pcapgo.NewReader(&b)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeRaw || r.Snaplen() != pcapMaxSnapLen {
		t.Errorf("link type %v, snap length %d; want RAW, %d", r.LinkType(), r.Snaplen(), pcapMaxSnapLen)
	}
	for _, want := range pkts {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, want) || ci.Length != len(want) || !ci.Timestamp.Equal(when.Truncate(time.Microsecond)) {
			t.Errorf("read %d bytes at %v (length %d), want %d at %v", len(data), ci.Timestamp, ci.Length, len(want), when)
		}
	}
}
