package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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

// A capture holds the tunnel's traffic: its file is the owner's only, a
// symbolic link is not followed, another user's file is not written.
func TestCreatePcap(t *testing.T) {
	dir := t.TempDir()
	f, err := createPcap(filepath.Join(dir, "new.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, err := os.Stat(filepath.Join(dir, "new.pcap")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new capture file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	own := filepath.Join(dir, "own.pcap")
	if err := os.WriteFile(own, []byte("old contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := createPcap(own); err != nil {
		t.Errorf("own file refused: %v", err)
	} else {
		f.Close()
		if fi, err := os.Stat(own); err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("own file after createPcap: size %d mode %v (%v); want 0, 0600", fi.Size(), fi.Mode(), err)
		}
	}
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.pcap")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := createPcap(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("createPcap through a symbolic link: %v; want refused", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "secret" {
		t.Errorf("the link's target was written: %q", b)
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(dir, "other.pcap")
		if err := os.WriteFile(other, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := createPcap(other); err == nil || !strings.Contains(err.Error(), "belongs to user 65534") {
			t.Errorf("createPcap of another user's file: %v; want refused", err)
		}
	}
}
