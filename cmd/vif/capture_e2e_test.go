//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/vif-project/vif/vif/nstest"
)

// pingUntil pings addr from h, 0.2 s apart, until stop is closed; the
// returned channel is closed when it has stopped.
func pingUntil(h *nstest.Host, addr string, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			h.Ping(addr, 2)
		}
	}()
	return done
}

// runCaptureOn starts vif capture args on h and waits until the daemon,
// the "vif up --foreground" d, has taken its request.
func runCaptureOn(t *testing.T, h *nstest.Host, d *nstest.Proc, args ...string) *nstest.Proc {
	t.Helper()
	before := strings.Count(d.Output(), "op=capture")
	p := h.Start(vifBin, append([]string{"capture"}, args...)...)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(d.Output(), "op=capture") == before {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not take vif capture %v:\n%s", args, p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // for the tap to be set
	return p
}

// readCapture reads a pcap that vif capture wrote.
func readCapture(t *testing.T, r io.Reader) []gopacket.Packet {
	t.Helper()
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		t.Fatalf("reading the pcap: %v", err)
	}
	if pr.LinkType() != layers.LinkTypeRaw {
		t.Errorf("link type %v, want RAW (101)", pr.LinkType())
	}
	var pkts []gopacket.Packet
	for {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return pkts
		}
		if err != nil {
			t.Fatalf("reading the pcap after %d packets: %v", len(pkts), err)
		}
		if ci.Timestamp.IsZero() || time.Since(ci.Timestamp) > time.Minute {
			t.Errorf("packet %d has time stamp %v", len(pkts), ci.Timestamp)
		}
		pkts = append(pkts, gopacket.NewPacket(data, layers.LayerTypeIPv4, gopacket.Default))
	}
}

// checkTunnelled checks that every packet is IPIP (protocol 94) between
// the tunnel pair's underlay addresses, with ICMP inside, and returns how
// many went each way.
func checkTunnelled(t *testing.T, pkts []gopacket.Packet) (aToB, bToA int) {
	t.Helper()
	for k, p := range pkts {
		ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok || ip.Protocol != 94 {
			t.Errorf("packet %d is not IPIP (protocol 94): %v", k, p)
			continue
		}
		switch src, dst := ip.SrcIP.String(), ip.DstIP.String(); {
		case src == "198.18.0.1" && dst == "198.18.0.2":
			aToB++
		case src == "198.18.0.2" && dst == "198.18.0.1":
			bToA++
		default:
			t.Errorf("packet %d goes %s > %s, not between the underlay addresses", k, src, dst)
		}
		inner := gopacket.NewPacket(ip.Payload, layers.LayerTypeIPv4, gopacket.Default)
		if inner.Layer(layers.LayerTypeICMPv4) == nil {
			t.Errorf("packet %d has no ICMP inside: %v", k, inner)
		}
	}
	return aToB, bToA
}

func TestCapture(t *testing.T) {
	tp := newTunnelPair(t, "94")
	dir := t.TempDir()

	// -c: the first COUNT packets, both ways, then a summary.
	file := filepath.Join(dir, "count.pcap")
	p := tp.a.Start(vifBin, "capture", "vif0", "-c", "10", "-w", file)
	stop := make(chan struct{})
	pinging := pingUntil(tp.a, tp.addrB, stop)
	err := p.Wait(30 * time.Second)
	close(stop)
	<-pinging
	if err != nil {
		t.Fatalf("vif capture -c 10: %v\n%s", err, p.Output())
	}
	if out := strings.TrimSpace(p.Output()); out != "10 packets captured, 0 dropped" {
		t.Errorf("vif capture said %q, want \"10 packets captured, 0 dropped\"", out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pkts := readCapture(t, f)
	if len(pkts) != 10 {
		t.Errorf("%d packets in the pcap, want 10", len(pkts))
	}
	if aToB, bToA := checkTunnelled(t, pkts); aToB == 0 || bToA == 0 {
		t.Errorf("%d packets a>b and %d b>a, want both directions", aToB, bToA)
	}

	// To standard output when it is a pipe, through --netns, one way.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, vifBin, "capture", "vif0", "--netns", tp.a.Netns(), "-c", "4", "--direction", "in")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stop = make(chan struct{})
	pinging = pingUntil(tp.a, tp.addrB, stop)
	err = cmd.Run()
	close(stop)
	<-pinging
	if err != nil {
		t.Fatalf("vif capture to a pipe: %v\n%s", err, stderr.String())
	}
	pkts = readCapture(t, &stdout)
	if aToB, bToA := checkTunnelled(t, pkts); aToB != 0 || bToA != 4 {
		t.Errorf("--direction in: %d packets a>b and %d b>a, want 0 and 4", aToB, bToA)
	}

	// --duration: stops without traffic, with an empty pcap.
	file = filepath.Join(dir, "duration.pcap")
	start := time.Now()
	out, err := tp.a.Run(vifBin, "capture", "vif0", "--duration", "500ms", "-w", file)
	if err != nil || strings.TrimSpace(out) != "0 packets captured, 0 dropped" {
		t.Errorf("vif capture --duration: %v, %q", err, out)
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 10*time.Second {
		t.Errorf("vif capture --duration 500ms took %v", d)
	}
	if b, err := os.ReadFile(file); err != nil || len(readCapture(t, bytes.NewReader(b))) != 0 {
		t.Errorf("the pcap of --duration: %v", err)
	}

	// SIGINT: the capture ends well.
	file = filepath.Join(dir, "sigint.pcap")
	p = runCaptureOn(t, tp.a, tp.pa, "vif0", "-w", file)
	if err := tp.a.Ping(tp.addrB, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	p.Signal(syscall.SIGINT)
	if err := p.Wait(10 * time.Second); err != nil || !strings.HasSuffix(strings.TrimSpace(p.Output()), "packets captured, 0 dropped") {
		t.Errorf("vif capture after SIGINT: %v\n%s", err, p.Output())
	}
	if b, err := os.ReadFile(file); err != nil || len(readCapture(t, bytes.NewReader(b))) != 2 {
		t.Errorf("the pcap after SIGINT: %v, want the ping and its answer", err)
	}

	// Bad input: one line, exit status 2.
	for _, args := range [][]string{
		{"capture", "vif9", "-w", filepath.Join(dir, "x.pcap")},
		{"capture", "vif0", "-c", "-3", "-w", filepath.Join(dir, "x.pcap")},
		{"capture", "vif0", "-c", "many", "-w", filepath.Join(dir, "x.pcap")},
		{"capture", "vif0", "--direction", "up", "-w", filepath.Join(dir, "x.pcap")},
	} {
		out, err := tp.a.Run(vifBin, args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.HasPrefix(out, "vif: ") {
			t.Errorf("vif %v: %v, %q; want one line and exit status 2", args, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.pcap")); err == nil {
		t.Error("a refused capture created its file")
	}

	// The vif goes: the capture ends, not well, in one line.
	p = runCaptureOn(t, tp.a, tp.pa, "vif0", "-w", filepath.Join(dir, "gone.pcap"))
	tp.a.MustRun("ip", "link", "del", "vif0")
	err = p.Wait(10 * time.Second)
	out = strings.TrimSpace(p.Output())
	if err == nil || strings.Count(out, "\n") != 0 || !strings.Contains(out, "vif0 went away") {
		t.Errorf("vif capture of a vif deleted: %v, %q; want a failure saying vif0 went away", err, out)
	}
}
