//go:build linux

package main

// Faults: the slave flaps or disappears, the vif is deleted from outside,
// the daemon is terminated or killed under load, vifs come and go while
// traffic flows. The vif binary is built with -race (TestMain), so every
// test here also runs the daemon under the race detector.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/vif/nstest"
)

// faultPair is hosts a and b joined by a veth, a's vif0 tunnelling to b's.
type faultPair struct {
	a, b     *nstest.Host
	aIf, bIf *nstest.Iface
	pa, pb   *nstest.Proc // nil for a vif served by a background daemon
}

// aVif0 are the arguments of a's vif0 after "up"; its ARP proxy is on.
func (fp *faultPair) aVif0() []string {
	return []string{"vif0", vifA.String(), "--slave", fp.aIf.Name(), "--peer", underB.String(),
		"--route", "198.51.100.0/24"}
}

// newFaultPair builds the pair. With background set, a's vif0 is brought up by
// "vif up" and served by a background daemon, as in production; otherwise
// by "vif up --foreground". b always runs in the foreground. The options
// are those of the link (nstest.Net.Link).
func newFaultPair(t *testing.T, background bool, opts ...nstest.LinkOption) *faultPair {
	t.Helper()
	n := nstest.New(t)
	fp := &faultPair{a: n.Host("a"), b: n.Host("b")}
	fp.aIf, fp.bIf = n.Link(fp.a, fp.b, "198.18.0.1/24", "198.18.0.2/24", opts...)
	if background {
		vifCmd(t, fp.a, append([]string{"up"}, fp.aVif0()...)...)
		t.Cleanup(func() { stopDaemon(fp.a) })
	} else {
		fp.pa = startVif(t, fp.a, fp.aVif0()...)
	}
	fp.pb = startVif(t, fp.b, "vif0", vifB.String(), "--slave", fp.bIf.Name(), "--peer", underA.String(),
		"--route", "192.0.2.0/24", "--no-arp-proxy")
	if err := fp.a.Ping(vifB.String(), 1); err != nil {
		t.Fatalf("tunnel a-b does not work: %v", err)
	}
	return fp
}

// stopDaemon ends h's background daemon, if any, with SIGTERM, so that it
// removes what it installed before the namespace goes.
func stopDaemon(h *nstest.Host) {
	out, err := h.Run(vifBin, "show", "--json")
	var doc showJSON
	if err != nil || json.Unmarshal([]byte(out), &doc) != nil || doc.Daemon == nil || doc.Daemon.PID == 0 {
		return
	}
	if syscall.Kill(doc.Daemon.PID, syscall.SIGTERM) == nil {
		waitGone(doc.Daemon.PID, 5*time.Second)
	}
}

// daemonPID returns the pid and log file of h's daemon.
func daemonPID(t *testing.T, h *nstest.Host) (int, string) {
	t.Helper()
	doc := show(t, h)
	if doc.Daemon == nil || doc.Daemon.PID == 0 {
		t.Fatalf("vif show on %v names no daemon", h)
	}
	return doc.Daemon.PID, doc.Daemon.Log
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// waitGone waits up to d for process pid to exit and returns how long it
// took, or false if it did not.
func waitGone(pid int, d time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < d {
		if !alive(pid) {
			return time.Since(start), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start), !alive(pid)
}

// waitFor polls cond every 20 ms for up to d and reports whether it held,
// and after how long.
func waitFor(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vifNames returns the names "vif show" lists on h.
func vifNames(t *testing.T, h *nstest.Host) []string {
	t.Helper()
	var names []string
	for _, v := range show(t, h).Vifs {
		names = append(names, v.Name)
	}
	return names
}

// pingOnce reports whether one ping from h to addr is answered within
// timeout.
func pingOnce(h *nstest.Host, addr string, timeout time.Duration) bool {
	_, err := h.Run("ping", "-n", "-c", "1", "-W", fmt.Sprintf("%.1f", timeout.Seconds()), addr)
	return err == nil
}

// assertAddrGone checks that no interface of h holds addr any more.
func assertAddrGone(t *testing.T, h *nstest.Host, addr string) {
	t.Helper()
	if out := h.IP("-4", "-o", "addr", "show"); strings.Contains(out, " "+addr+"/") {
		t.Errorf("address %s left behind on %v:\n%s", addr, h, out)
	}
	if h.HasRoute(addr) {
		t.Errorf("route for %s left behind on %v: %v", addr, h, h.Routes())
	}
}

// TestFaultSlaveDownUp: the slave goes down and up under a running vif.
// While it is down the tunnel's sends fail and are counted
// (tx_write_error); the vif survives, and traffic resumes within a couple
// of seconds of the slave coming back.
func TestFaultSlaveDownUp(t *testing.T) {
	fp := newFaultPair(t, false)
	for round := range 2 {
		before := vifStatus(t, fp.a, "vif0")
		fp.a.IP("link", "set", "dev", fp.aIf.Name(), "down")
		if out, err := fp.a.Run("ping", "-n", "-c", "3", "-i", "0.1", "-W", "1", vifB.String()); err == nil {
			t.Errorf("round %d: ping through the tunnel succeeded with the slave down:\n%s", round, out)
		}
		st := vifStatus(t, fp.a, "vif0")
		if d := st.Counters.Drops["tx_write_error"] - before.Counters.Drops["tx_write_error"]; d != 3 {
			t.Errorf("round %d: tx_write_error +%d with the slave down, want 3 (one per ping): %v", round, d, st.Counters.Drops)
		}
		if d := st.Counters.EncapsulatedPackets - before.Counters.EncapsulatedPackets; d != 0 {
			t.Errorf("round %d: %d packets counted as sent with the slave down", round, d)
		}
		select {
		case <-fp.pa.Done():
			t.Fatalf("round %d: vif exited when its slave went down: %s", round, fp.pa.Output())
		default:
		}

		fp.a.IP("link", "set", "dev", fp.aIf.Name(), "up")
		took, ok := waitFor(5*time.Second, func() bool { return pingOnce(fp.a, vifB.String(), 500*time.Millisecond) })
		if !ok || took > 3*time.Second {
			t.Errorf("round %d: traffic resumed after %v (ok=%v), want within 3 s of the slave coming up", round, took, ok)
		}
		t.Logf("round %d: tunnel back %v after the slave came up; drops %v", round, took.Round(time.Millisecond), st.Counters.Drops)
	}
	if err := fp.a.Ping(vifB.String(), 3); err != nil {
		t.Errorf("after the flaps: %v", err)
	}
}

// TestFaultVifDeletedFromOutside: "ip link del vif0" under a daemon that
// serves two vifs. The daemon notices, removes vif0 and what it installed
// (routes, ARP publication) and keeps serving vif1.
func TestFaultVifDeletedFromOutside(t *testing.T) {
	fp := newFaultPair(t, true)
	// vif1 tunnels over protocol 4 to a second vif on b.
	vifCmd(t, fp.a, "up", "vif1", "203.0.113.1", "--slave", fp.aIf.Name(), "--peer", underB.String(),
		"--proto", "4", "--route", "203.0.113.128/25")
	vifCmd(t, fp.b, "up", "vif1", "203.0.113.129", "--slave", fp.bIf.Name(), "--peer", underA.String(),
		"--proto", "4", "--route", "203.0.113.1/32", "--no-arp-proxy")
	// Only the proxy answers ARP for the vif addresses on a.
	fp.a.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
	fp.a.Sysctl("net.ipv4.conf."+fp.aIf.Name()+".arp_ignore", "1")
	for _, addr := range []string{vifB.String(), "203.0.113.129"} {
		if err := fp.a.Ping(addr, 1); err != nil {
			t.Fatalf("before: %v", err)
		}
	}
	if _, ok := arpOnce(fp.b, fp.bIf.Name(), vifA.String()); !ok {
		t.Fatalf("before: %v not answered by a's ARP proxy", vifA)
	}
	pid, logFile := daemonPID(t, fp.a)

	fp.a.IP("link", "del", "vif0")
	took, ok := waitFor(3*time.Second, func() bool { return strings.Join(vifNames(t, fp.a), ",") == "vif1" })
	if !ok {
		t.Fatalf("vif show lists %v %v after ip link del vif0, want only vif1", vifNames(t, fp.a), took)
	}
	t.Logf("vif0 removed from vif show %v after ip link del", took.Round(time.Millisecond))
	if !alive(pid) {
		t.Fatal("the daemon exited, taking vif1 with it")
	}
	for _, r := range []string{"198.51.100.0/24", vifA.String()} {
		if fp.a.HasRoute(r) {
			t.Errorf("route %s left behind: %v", r, fp.a.Routes())
		}
	}
	if _, ok := arpOnce(fp.b, fp.bIf.Name(), vifA.String()); ok {
		t.Errorf("%v still answered by ARP after vif0 was deleted", vifA)
	}
	if _, ok := arpOnce(fp.b, fp.bIf.Name(), "203.0.113.1"); !ok {
		t.Errorf("203.0.113.1 (vif1) no longer answered by ARP")
	}
	// One answer shows the tunnel works; on a loaded machine one ping of
	// three can miss ping's deadline.
	if !pingOnce(fp.a, "203.0.113.129", 3*time.Second) {
		t.Error("vif1 stopped working: 203.0.113.129 does not answer through its tunnel")
	}
	if log, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(log), "went away from outside") {
		t.Errorf("daemon log %s does not say vif0 went away (%v):\n%s", logFile, err, log)
	}
}

// TestFaultSIGTERMUnderLoad: SIGTERM to the daemon while ping -f floods
// the tunnel. It exits within 2 s and leaves nothing behind: no vif link,
// route, address, or control socket.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	fp := newFaultPair(t, true)
	pid, logFile := daemonPID(t, fp.a)
	flood := fp.a.Start("ping", "-f", "-w", "20", vifB.String())
	defer flood.Stop()
	before := vifStatus(t, fp.a, "vif0")
	// ping -f waits for each reply up to 10 ms: on a loaded machine
	// 1000 take longer than 5 s (a CI run saw 412).
	st := waitStatus(t, fp.a, "vif0", 15*time.Second, func(s daemon.VifStatus) bool {
		return s.Counters.DecapsulatedPackets-before.Counters.DecapsulatedPackets > 1000
	})
	if d := st.Counters.DecapsulatedPackets - before.Counters.DecapsulatedPackets; d <= 1000 {
		t.Fatalf("the flood is not flowing: %d packets decapsulated", d)
	}

	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took, ok := waitGone(pid, 5*time.Second)
	if !ok || took > 2*time.Second {
		t.Errorf("daemon exited %v after SIGTERM (exited=%v), want within 2 s", took, ok)
	}
	t.Logf("daemon exited %v after SIGTERM under ping -f", took.Round(time.Millisecond))
	assertNothingLeft(t, fp.a)
	assertAddrGone(t, fp.a, vifA.String())
	if fp.a.HasRoute("198.51.100.0/24") {
		t.Errorf("route 198.51.100.0/24 left behind: %v", fp.a.Routes())
	}
	if log, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(log), "vif daemon exits") {
		t.Errorf("daemon log %s does not end with its exit (%v):\n%s", logFile, err, log)
	}
}

// TestFaultSIGKILL: a killed daemon cleans up nothing itself, but the TUN
// goes away with its file descriptor, and with it the routes and
// addresses; a following "vif up" of the same name works. Its socket and
// lock files stay until the next daemon starts (the kernel released the
// lock): they are harmless meanwhile, "vif show" says no vif runs.
func TestFaultSIGKILL(t *testing.T) {
	fp := newFaultPair(t, true)
	pid, _ := daemonPID(t, fp.a)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitGone(pid, 5*time.Second); !ok {
		t.Fatal("daemon survived SIGKILL")
	}
	took, ok := waitFor(3*time.Second, func() bool { return !fp.a.LinkExists("vif0") })
	if !ok {
		t.Fatalf("vif0 still exists %v after its daemon was killed", took)
	}
	t.Logf("vif0 gone %v after the daemon was killed", took.Round(time.Millisecond))
	assertLeft(t, fp.a, false)
	assertAddrGone(t, fp.a, vifA.String())
	if out := vifCmd(t, fp.a, "show"); !strings.Contains(out, "no vifs") {
		t.Errorf("vif show after the daemon was killed: %q", out)
	}

	vifCmd(t, fp.a, append([]string{"up"}, fp.aVif0()...)...)
	if err := fp.a.Ping(vifB.String(), 3); err != nil {
		t.Errorf("after vif up again: %v", err)
	}
	if pid2, _ := daemonPID(t, fp.a); pid2 == pid {
		t.Errorf("vif up was answered by the killed daemon's pid %d", pid)
	}
	stopDaemon(fp.a)
	assertNothingLeft(t, fp.a)
}

// TestFaultSlaveDeleted: the slave is deleted (the veth pair goes, taking
// both a's and b's slave). Decided behaviour: a vif whose slave is deleted
// is removed with everything it installed, with a warning that says so;
// its underlay socket and ARP responder are bound to the dead interface
// and could never work again. Other vifs stay. A foreground vif up whose
// only vif goes that way exits cleanly (status 0).
func TestFaultSlaveDeleted(t *testing.T) {
	// A single veth pair: deleting a's end deletes b's (through a wire,
	// b's end would stay, as behind a switch).
	fp := newFaultPair(t, true, nstest.WithoutWire())
	// vif1 has no slave: it must survive.
	vifCmd(t, fp.a, "up", "vif1", "203.0.113.1", "--no-arp-proxy")
	pid, logFile := daemonPID(t, fp.a)

	fp.a.IP("link", "del", fp.aIf.Name())
	took, ok := waitFor(3*time.Second, func() bool { return strings.Join(vifNames(t, fp.a), ",") == "vif1" })
	if !ok {
		t.Fatalf("vif show lists %v %v after the slave was deleted, want only vif1", vifNames(t, fp.a), took)
	}
	t.Logf("vif0 removed %v after its slave was deleted", took.Round(time.Millisecond))
	if !alive(pid) {
		t.Error("the daemon exited although vif1 remains")
	}
	if fp.a.LinkExists("vif0") || !fp.a.LinkExists("vif1") {
		t.Errorf("links on a: %v, want vif1 and no vif0", fp.a.Links())
	}
	assertAddrGone(t, fp.a, vifA.String())
	if fp.a.HasRoute("198.51.100.0/24") {
		t.Errorf("route 198.51.100.0/24 left behind: %v", fp.a.Routes())
	}
	const warning = `level=WARN msg="slave interface deleted: removing the vif" vif=vif0 slave=` + "eth0"
	if log, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(log), warning) {
		t.Errorf("daemon log %s lacks %q (%v):\n%s", logFile, warning, err, log)
	}

	// b's slave went with the pair: its foreground vif exits, status 0.
	if err := fp.pb.Wait(3 * time.Second); err != nil {
		t.Errorf("b's foreground vif did not exit cleanly after its slave was deleted: %v\n%s", err, fp.pb.Output())
	}
	if out := fp.pb.Output(); !strings.Contains(out, `msg="slave interface deleted: removing the vif" vif=vif0`) {
		t.Errorf("b's vif did not say why it stopped:\n%s", out)
	}
	assertNothingLeft(t, fp.b)
}

// TestFaultConcurrentUpDown: vifs come and go concurrently (some sharing
// the slave's ARP responder, some tunnelling, two racing for one name)
// while ping -f floods vif0's tunnel. vif0 keeps working, everything else
// is gone at the end, and the race-enabled daemon reports no race.
func TestFaultConcurrentUpDown(t *testing.T) {
	fp := newFaultPair(t, false)
	flood := fp.a.Start("ping", "-f", "-w", "30", vifB.String())
	const rounds = 4
	variants := [][]string{
		{"--slave", fp.aIf.Name()}, // shares the ARP responder with vif0
		{"--slave", fp.aIf.Name(), "--peer", underB.String(), "--proto", "4", "--route", "203.0.113.128/26"},
		{"--no-arp-proxy"},
		{"--slave", fp.aIf.Name(), "--peer", underB.String(), "--no-arp-proxy"},
	}
	var wg sync.WaitGroup
	errc := make(chan error, 100)
	for k, v := range variants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("vif%d", k+1)
			for r := range rounds {
				args := append([]string{"up", name, fmt.Sprintf("203.0.113.%d", 10+k)}, v...)
				if out, err := fp.a.Run(vifBin, args...); err != nil {
					errc <- fmt.Errorf("round %d: vif %s: %v\n%s", r, strings.Join(args, " "), err, out)
					return
				}
				if out, err := fp.a.Run(vifBin, "show", name, "--json"); err != nil {
					errc <- fmt.Errorf("round %d: vif show %s: %v\n%s", r, name, err, out)
				}
				if out, err := fp.a.Run(vifBin, "down", name); err != nil {
					errc <- fmt.Errorf("round %d: vif down %s: %v\n%s", r, name, err, out)
					return
				}
			}
		}()
	}
	// Two goroutines race for one name: either may win each time; the
	// loser gets a clear error, never a corrupted daemon.
	var raceWins, raceLosses sync.Map
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				if _, err := fp.a.Run(vifBin, "up", "vifx", "203.0.113.99", "--no-arp-proxy"); err != nil {
					raceLosses.Store(fmt.Sprint(g, r), err.Error())
				} else {
					raceWins.Store(fmt.Sprint(g, r), true)
				}
				fp.a.Run(vifBin, "down", "vifx")
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	raceLosses.Range(func(k, v any) bool {
		msg := v.(string)
		if !strings.Contains(msg, "already exists") && !strings.Contains(msg, "File exists") {
			t.Errorf("losing vif up vifx (%v): %s", k, msg)
		}
		return true
	})
	if err := flood.Stop(); err != nil && !isSignalExit(err) {
		t.Logf("ping -f: %v", err)
	}

	if names := vifNames(t, fp.a); strings.Join(names, ",") != "vif0" {
		t.Errorf("vif show lists %v after the churn, want only vif0", names)
	}
	for _, l := range fp.a.Links() {
		if strings.HasPrefix(l, "vif") && l != "vif0" {
			t.Errorf("link %s left behind", l)
		}
	}
	if err := fp.a.Ping(vifB.String(), 3); err != nil {
		t.Errorf("vif0 stopped working during the churn: %v", err)
	}
	if _, ok := arpOnce(fp.b, fp.bIf.Name(), vifA.String()); !ok {
		t.Errorf("vif0's address no longer answered by the ARP proxy after the churn")
	}
	select {
	case <-fp.pa.Done():
		t.Fatalf("a's vif exited: %s", fp.pa.Output())
	default:
	}
	if out := fp.pa.Output(); strings.Contains(out, "DATA RACE") || strings.Contains(out, "panic:") {
		t.Errorf("a's daemon reported a race or panicked:\n%s", out)
	}
	if err := fp.pa.Stop(); err != nil {
		t.Errorf("a's vif exited badly: %v", err)
	}
}

// isSignalExit reports whether err is a process's exit by signal.
func isSignalExit(err error) bool {
	var ee interface{ ExitCode() int }
	return errors.As(err, &ee) && ee.ExitCode() == -1
}
