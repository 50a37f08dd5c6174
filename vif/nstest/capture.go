//go:build linux

package nstest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/pcapgo"
)

// captureReadyTimeout bounds the wait for tcpdump to start listening.
const captureReadyTimeout = 10 * time.Second

// A Capture is a packet capture running on an interface of a host,
// started by Host.Capture or Iface.Capture. It is backed by tcpdump
// writing a pcap file in the test's temporary directory, and stopped at
// cleanup if it is still running. Its methods are safe for concurrent
// use.
type Capture struct {
	host   *Host
	ifname string
	where  string // for messages, such as "a/eth0" or "on the wire at a/eth0"
	file   string
	proc   *Proc

	mu      sync.Mutex
	stopped bool
	pkts    []gopacket.Packet
	err     error
	dropped int
}

// Capture starts capturing the packets that pass the interface ifname of
// the host, in either direction, and returns once the capture is running,
// so that every packet sent after it returns is seen. The filter is a
// pcap-filter(7) expression such as "icmp" or "arp or ip proto 94"; an
// empty filter captures everything. The interface is not put into
// promiscuous mode. Capture skips the test if tcpdump is not installed and
// fails it if tcpdump does not start.
//
// Host.Capture sees what the host's own packet taps see; see
// Iface.Capture for a capture on the wire.
func (h *Host) Capture(ifname, filter string) *Capture {
	h.net.t.Helper()
	return h.capture(ifname, filter, h.name+"/"+ifname, "on "+h.name+"/"+ifname)
}

// capture starts tcpdump on ifname in h. The pcap file is named after
// label, messages say where the capture is with where.
func (h *Host) capture(ifname, filter, label, where string) *Capture {
	t := h.net.t
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("nstest: Capture requires tcpdump; install tcpdump")
	}
	f, err := os.CreateTemp(t.TempDir(), "capture-"+strings.ReplaceAll(label, "/", "-")+"-*.pcap")
	if err != nil {
		t.Fatalf("nstest: Capture: %v", err)
	}
	file := f.Name()
	f.Close()
	// -U with --immediate-mode writes each packet to the file as it
	// arrives; -Z root stops tcpdump from dropping privileges and losing
	// access to the file. In immediate mode libpcap gives every packet a
	// ring block of its own, sized for the snapshot length: with the
	// defaults (262144 bytes, a 2 MiB buffer) the ring holds a handful of
	// packets and a burst of a few dozen loses most of them. A 65535-byte
	// snapshot and a 32 MiB buffer hold 256.
	args := []string{"-i", ifname, "-n", "-p", "-U", "--immediate-mode", "-s", "65535", "-B", "32768",
		"-Z", "root", "-w", file}
	if filter != "" {
		args = append(args, filter)
	}
	p, err := h.start("tcpdump", args)
	if err != nil {
		t.Fatalf("host %s: %v", h.name, err)
	}
	c := &Capture{host: h, ifname: ifname, where: where, file: file, proc: p}
	t.Cleanup(c.cleanup)
	if err := p.WaitFor("listening on", captureReadyTimeout); err != nil {
		t.Fatalf("nstest: capture %s (%s in namespace %s): %v", where, ifname, h.ns, err)
	}
	return c
}

// File returns the path of the pcap file the capture writes, for example
// to open it in Wireshark while debugging. The file is removed with the
// test's temporary directory.
func (c *Capture) File() string { return c.file }

// String describes the capture, such as "capture on a/eth0" or "capture
// on the wire at a/eth0".
func (c *Capture) String() string { return "capture " + c.where }

// Stop stops the capture and returns every packet it captured, decoded
// from the link layer up, with the capture timestamp in each packet's
// Metadata. Packets that were in flight are given a moment to arrive
// first. Stop fails the test if tcpdump failed or its file cannot be read.
// Later calls return the same packets.
func (c *Capture) Stop() []gopacket.Packet {
	c.host.net.t.Helper()
	pkts, err := c.stop()
	if err != nil {
		c.host.net.t.Fatalf("%v", err)
	}
	return pkts
}

// Packets returns the packets captured so far without stopping the
// capture, or all of them once it has been stopped. It returns nil if the
// pcap file cannot be read.
func (c *Capture) Packets() []gopacket.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.pkts
	}
	pkts, _ := readPcap(c.file)
	return pkts
}

// Count returns how many of the packets that Packets returns satisfy
// match; a nil match counts them all.
func (c *Capture) Count(match func(gopacket.Packet) bool) int {
	n := 0
	for _, p := range c.Packets() {
		if match == nil || match(p) {
			n++
		}
	}
	return n
}

// Wait waits up to timeout until at least n captured packets satisfy
// match (all packets if match is nil), and reports whether they did. It
// does not stop the capture.
func (c *Capture) Wait(n int, match func(gopacket.Packet) bool, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if c.Count(match) >= n {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// stop stops tcpdump once the file has stopped growing, and reads the file.
func (c *Capture) stop() ([]gopacket.Packet, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.pkts, c.err
	}
	c.stopped = true
	c.settle()
	perr := c.proc.Stop()
	c.dropped = droppedByKernel(c.proc.Output())
	c.pkts, c.err = readPcap(c.file)
	if perr != nil {
		c.err = fmt.Errorf("nstest: %v: tcpdump: %w; output:\n%s", c, perr, c.proc.Output())
	} else if c.err != nil {
		c.err = fmt.Errorf("nstest: %v: %w", c, c.err)
	}
	return c.pkts, c.err
}

// settle waits until tcpdump has not written to its file for 60 ms (at
// most one second), so that packets sent just before Stop are in it.
func (c *Capture) settle() {
	const quiet, limit, step = 60 * time.Millisecond, time.Second, 10 * time.Millisecond
	var last int64 = -1
	var still time.Duration
	for waited := time.Duration(0); waited < limit && still < quiet; waited += step {
		select {
		case <-c.proc.Done():
			return
		case <-time.After(step):
		}
		size := int64(-1)
		if fi, err := os.Stat(c.file); err == nil {
			size = fi.Size()
		}
		if size == last {
			still += step
		} else {
			last, still = size, 0
		}
	}
}

// Dropped returns how many packets the kernel dropped because tcpdump did
// not read them in time ("packets dropped by kernel" in its statistics),
// or -1 if that is unknown: the capture is still running, or tcpdump did
// not report it. A test that asserts a packet was never sent should check
// that this is 0, or its capture may have missed it.
func (c *Capture) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		return -1
	}
	return c.dropped
}

// droppedRE matches tcpdump's closing statistics line.
var droppedRE = regexp.MustCompile(`(?m)^(\d+) packets? dropped by kernel`)

// droppedByKernel returns the number in tcpdump's "N packets dropped by
// kernel" line of out, or -1 if there is none.
func droppedByKernel(out string) int {
	m := droppedRE.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return -1
	}
	return n
}

// cleanup stops the capture if the test did not, and reports a failure
// only if the test has not failed already.
func (c *Capture) cleanup() {
	c.host.net.dumpOnFailure()
	_, err := c.stop()
	t := c.host.net.t
	if err != nil && !t.Failed() {
		t.Errorf("%v", err)
	}
}

// readPcap decodes the packets in a pcap file. A file that is still being
// written may end in the middle of its header or of a packet; what is
// complete is returned.
func readPcap(file string) ([]gopacket.Packet, error) {
	f, err := os.Open(filepath.Clean(file))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, nil // tcpdump has not flushed the header yet
	}
	if err != nil {
		return nil, err
	}
	var pkts []gopacket.Packet
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return pkts, nil
		}
		if err != nil {
			return pkts, err
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.DecodeOptions{NoCopy: true})
		p.Metadata().CaptureInfo = ci
		pkts = append(pkts, p)
	}
}
