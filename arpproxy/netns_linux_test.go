//go:build linux

package arpproxy_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"

	"github.com/vif-project/vif/arpproxy"
)

// TestNamespaceArping runs a Responder on one end of a veth pair between two
// fresh network namespaces and checks, from the other end, with the
// system's arping and a packet socket, that it announces its addresses,
// answers requests and probes for them with its MAC, and stays silent for
// other addresses. Nothing outside the two namespaces is touched.
func TestNamespaceArping(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root (CAP_NET_ADMIN) to create network namespaces")
	}
	for _, tool := range []string{"ip", "arping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("requires %s: %v", tool, err)
		}
	}

	// Topology: nsA [vethA 198.18.0.1/24] <-> [vethB 198.18.0.2/24] nsB.
	// 192.0.2.0/24 is routed on the link in nsB, so arping has a source
	// address; in nsA the vif addresses are not local, so only the
	// Responder can answer for them.
	suffix := randomHex(t, 3)
	nsA, nsB := "arpt-"+suffix+"-a", "arpt-"+suffix+"-b"
	vethA, vethB := "arpa-"+suffix, "arpb-"+suffix
	for _, ns := range []string{nsA, nsB} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
				t.Errorf("deleting namespace %s: %v: %s", ns, err, out)
			}
		})
	}
	run(t, "ip", "-n", nsA, "link", "add", vethA, "type", "veth", "peer", "name", vethB, "netns", nsB)
	run(t, "ip", "-n", nsA, "addr", "add", "198.18.0.1/24", "dev", vethA)
	run(t, "ip", "-n", nsB, "addr", "add", "198.18.0.2/24", "dev", vethB)
	for _, ns := range []string{nsA, nsB} {
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", nsA, "link", "set", vethA, "up")
	run(t, "ip", "-n", nsB, "link", "set", vethB, "up")
	run(t, "ip", "-n", nsB, "route", "add", "192.0.2.0/24", "dev", vethB)
	waitLinkUp(t, nsA, vethA)
	waitLinkUp(t, nsB, vethB)

	// A packet socket in nsB, opened before the addresses are added, sees
	// the announcements.
	var capture *packet.Conn
	if err := inNetns(nsB, func() error {
		ifi, err := net.InterfaceByName(vethB)
		if err != nil {
			return err
		}
		capture, err = packet.Listen(ifi, packet.Raw, arpproxy.EtherTypeARP, nil)
		return err
	}); err != nil {
		t.Fatalf("opening capture socket in %s: %v", nsB, err)
	}
	defer capture.Close()

	// The Responder in nsA.
	var (
		r    *arpproxy.Responder
		macA net.HardwareAddr
	)
	if err := inNetns(nsA, func() error {
		ifi, err := net.InterfaceByName(vethA)
		if err != nil {
			return err
		}
		macA = ifi.HardwareAddr
		r, err = arpproxy.Listen(ifi, &arpproxy.Config{
			AnnounceInterval: 300 * time.Millisecond,
			Logger:           slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		return err
	}); err != nil {
		t.Fatalf("Listen in %s: %v", nsA, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Logf("namespaces %s, %s; responder on %s (%v)", nsA, nsB, vethA, macA)

	addr1, addr2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for _, a := range []netip.Addr{addr1, addr2} {
		if err := r.Add(a); err != nil {
			t.Fatalf("Add(%v): %v", a, err)
		}
	}

	t.Run("announcements", func(t *testing.T) {
		seen := map[netip.Addr]int{}
		deadline := time.Now().Add(5 * time.Second)
		if err := capture.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1600)
		for seen[addr1] < arpproxy.DefaultAnnounceCount || seen[addr2] < arpproxy.DefaultAnnounceCount {
			n, _, err := capture.ReadFrom(buf)
			if err != nil {
				t.Fatalf("reading announcements (seen %v): %v", seen, err)
			}
			d := decode(t, buf[:n])
			if d.eth.SrcMAC.String() != macA.String() {
				continue
			}
			if d.arp.Operation != layers.ARPRequest || d.spa() != d.tpa() ||
				d.eth.DstMAC.String() != bcastMAC.String() ||
				net.HardwareAddr(d.arp.SourceHwAddress).String() != macA.String() {
				t.Errorf("frame from the responder is not an announcement: % x", buf[:n])
				continue
			}
			seen[d.spa()]++
		}
		// The counter moves just after the write returns.
		waitStats(t, r, func(s arpproxy.Stats) bool { return s.Announcements == 2*arpproxy.DefaultAnnounceCount })
	})
	capture.Close()

	t.Run("request owned", func(t *testing.T) {
		macs, err := arping(t, nsB, "-r", "-c", "3", "-w", "5", "-i", vethB, addr1.String())
		if err != nil {
			t.Fatalf("arping %v: %v", addr1, err)
		}
		if len(macs) != 3 {
			t.Errorf("arping got %d replies, want 3: %q", len(macs), macs)
		}
		for _, m := range macs {
			if m != macA.String() {
				t.Errorf("reply from %s, want %v", m, macA)
			}
		}
	})

	t.Run("probe owned", func(t *testing.T) {
		// arping -0: sender IP 0.0.0.0, an RFC 5227 probe.
		before := r.Stats().ProbesAnswered
		macs, err := arping(t, nsB, "-0", "-r", "-c", "1", "-w", "5", "-i", vethB, addr2.String())
		if err != nil {
			t.Fatalf("arping -0 %v: %v", addr2, err)
		}
		if len(macs) != 1 || macs[0] != macA.String() {
			t.Errorf("probe answered by %q, want [%v]", macs, macA)
		}
		waitStats(t, r, func(s arpproxy.Stats) bool { return s.ProbesAnswered == before+1 })
	})

	t.Run("not owned", func(t *testing.T) {
		before := r.Stats().NotOwned
		macs, err := arping(t, nsB, "-r", "-c", "2", "-w", "3", "-i", vethB, "192.0.2.99")
		if err == nil || len(macs) != 0 {
			t.Errorf("arping 192.0.2.99 = %q, %v; want no reply and a failure", macs, err)
		}
		waitStats(t, r, func(s arpproxy.Stats) bool { return s.NotOwned >= before+2 })
	})

	t.Run("removed", func(t *testing.T) {
		r.Remove(addr1)
		macs, err := arping(t, nsB, "-r", "-c", "1", "-w", "2", "-i", vethB, addr1.String())
		if err == nil || len(macs) != 0 {
			t.Errorf("arping removed %v = %q, %v; want no reply", addr1, macs, err)
		}
	})

	if err := r.Close(); err != nil { // final counters
		t.Errorf("Close: %v", err)
	}
	s := r.Stats()
	t.Logf("stats: %+v", s)
	if s.Replies != 4 || s.Conflicts != 0 || s.Drops[arpproxy.DropFromSelf.Name()] != 0 {
		t.Errorf("Replies = %d, Conflicts = %d, from_self drops = %d; want 4, 0, 0 (own frames are filtered by the kernel)",
			s.Replies, s.Conflicts, s.Drops[arpproxy.DropFromSelf.Name()])
	}
}

// run runs a command, failing the test on error.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// arping runs the system's arping (Thomas Habets' arping: -i names the
// interface, -r prints one MAC per reply) in namespace ns and returns the
// MACs of the replies. arping exits non-zero when nothing answered.
func arping(t *testing.T, ns string, args ...string) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, "arping"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var macs []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			macs = append(macs, line)
		}
	}
	if err != nil {
		return macs, fmt.Errorf("%w (stderr: %q)", err, stderr.String())
	}
	return macs, nil
}

// waitLinkUp waits until dev in ns has carrier.
func waitLinkUp(t *testing.T, ns, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("ip", "-n", ns, "link", "show", dev).CombinedOutput()
		if err == nil && strings.Contains(string(out), "LOWER_UP") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s has no carrier: %s", dev, ns, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inNetns runs fn on an OS thread switched into the named namespace.
// Sockets opened by fn stay in that namespace. The thread is never
// unlocked, so it exits with the goroutine instead of carrying the
// namespace into other goroutines.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- errors.Join(errors.New("setns "+name), err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tWriter writes log lines to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
