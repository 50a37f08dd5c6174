//go:build linux

package main

// The control plane under attack (issue: only root commands the daemon,
// the command trusts only the real daemon, nothing hangs or floods). Each
// test is an attack by an ordinary user that must fail, with root's
// commands still working during it. The attacker is this test binary run
// again through setpriv (see attacker_test.go).

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/vif/nstest"
)

// nobody is setpriv's way to become an ordinary user without capabilities.
var nobody = []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}

// nobodyDAC is an ordinary user who may pass any file permission
// (CAP_DAC_OVERRIDE, ambient): it gets through the socket directory's mode
// and meets the daemon's own check.
var nobodyDAC = []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+dac_override", "--ambient-caps=+dac_override"}

// controlHost returns a host whose background daemon serves vif0, with
// the daemon's pid and log.
func controlHost(t *testing.T) (*nstest.Host, int, string) {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is needed to attack as an ordinary user")
	}
	h := nstest.New(t).Host("h")
	vifCmd(t, h, "up", "vif0", "192.0.2.1", "--no-arp-proxy")
	t.Cleanup(func() { stopDaemon(h) })
	pid, log := daemonPID(t, h)
	return h, pid, log
}

// attack runs the attack mode on h as the user that setpriv args make,
// and returns the first result it reports.
func attack(t *testing.T, h *nstest.Host, user []string, mode string, args ...string) attackResult {
	t.Helper()
	argv := append(append(append([]string{}, user...), "env", attackerEnv+"="+mode, attackerBin), args...)
	out, err := h.Run("setpriv", argv...)
	if err != nil {
		t.Fatalf("attack %s: %v", mode, err)
	}
	var res attackResult
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &res); err != nil {
		t.Fatalf("attack %s: bad report %q: %v", mode, out, err)
	}
	return res
}

// asUser runs the vif command as the user that setpriv args make, with
// more wrapped around it (such as unshare -Ur).
func asUser(h *nstest.Host, user []string, wrap []string, args ...string) (string, error) {
	argv := append(append(append(append([]string{}, user...), wrap...), vifBin), args...)
	return h.Run("setpriv", argv...)
}

// assertServes checks that root's commands still work on h and that vif0
// is its only vif.
func assertServes(t *testing.T, h *nstest.Host) {
	t.Helper()
	doc := show(t, h)
	if len(doc.Vifs) != 1 || doc.Vifs[0].Name != "vif0" {
		t.Errorf("vifs on %v: %+v, want vif0 alone", h, doc.Vifs)
	}
	for _, l := range h.Links() {
		if strings.HasPrefix(l, "evil") {
			t.Errorf("attacker created interface %s", l)
		}
	}
}

// oneLine checks that out, the output of a failed command, is one line
// containing each of want.
func oneLine(t *testing.T, what, out string, want ...string) {
	t.Helper()
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
		t.Errorf("%s: %d lines, want one:\n%s", what, n+1, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: %q does not say %q", what, strings.TrimSpace(out), w)
		}
	}
}

// Case 1: "root" inside a user namespace of one's own is not root.
func TestControlUserNamespace(t *testing.T) {
	h, _, _ := controlHost(t)
	userns := []string{"unshare", "-Ur"}
	if out, err := h.Run("setpriv", append(append(append([]string{}, nobody...), userns...), "id", "-u")...); err != nil || strings.TrimSpace(out) != "0" {
		t.Fatalf("unshare -Ur as an ordinary user does not give uid 0 here (%v, %q): the attack cannot be tried", err, out)
	}
	for _, args := range [][]string{
		{"up", "evil0", "203.0.113.66", "--no-arp-proxy"},
		{"down", "vif0"},
		{"show"},
	} {
		out, err := asUser(h, nobody, userns, args...)
		if err == nil {
			t.Errorf("unshare -Ur vif %s succeeded:\n%s", strings.Join(args, " "), out)
		}
		oneLine(t, "unshare -Ur vif "+args[0], out, "permission denied", "sudo")
	}
	assertServes(t, h)
}

// Case 2: connect as an ordinary user, then exec a setuid-root program
// with the connections open. The kernel records the peer at connect(2).
func TestControlExecRace(t *testing.T) {
	h, _, log := controlHost(t)
	suid := filepath.Join(filepath.Dir(attackerBin), "sleep-suid")
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("install", "-o", "root", "-m", "4755", sleep, suid).CombinedOutput(); err != nil {
		t.Fatalf("making a setuid-root program: %v\n%s", err, out)
	}
	defer os.Remove(suid)
	const conns = 20
	for try := range 3 {
		res := attack(t, h, nobodyDAC, "exec", strconv.Itoa(conns), suid, "1")
		if res.Connected != conns {
			t.Fatalf("try %d: %d of %d connections got through the socket's permissions with CAP_DAC_OVERRIDE (%+v): the daemon's own check is not exercised", try, res.Connected, conns, res)
		}
		res = attack(t, h, nobody, "exec", strconv.Itoa(conns), suid, "0")
		if res.Connected != 0 || res.Denied != conns {
			t.Errorf("try %d: an ordinary user connected to the control socket: %+v", try, res)
		}
	}
	assertServes(t, h)
	b, _ := os.ReadFile(log)
	if strings.Contains(string(b), "vif=evil") {
		t.Errorf("the daemon took an attacker's request:\n%s", b)
	}
}

// Case 3: an impostor daemon. Squatting vif 0.1's abstract name achieves
// nothing; a socket in the daemon's place held by anyone but root is not
// believed, and the command names the holder.
func TestControlImpostor(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is needed to attack as an ordinary user")
	}
	n := nstest.New(t)

	t.Run("abstract name", func(t *testing.T) {
		h := n.Host("s")
		squat := h.Start("setpriv", append(append([]string{}, nobody...), "env", attackerEnv+"=squat", attackerBin, "20s")...)
		if err := squat.WaitFor("}", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		var res attackResult
		json.Unmarshal([]byte(squat.Output()), &res)
		if res.Connected != 1 || res.Denied != 1 || res.Served != 0 {
			t.Fatalf("squatter: %+v, want the abstract name taken and the daemon's socket denied", res)
		}
		out := vifCmd(t, h, "up", "vif0", "192.0.2.1", "--no-arp-proxy")
		t.Cleanup(func() { stopDaemon(h) })
		if !h.LinkExists("vif0") {
			t.Fatalf("vif up printed %q but created no vif0", out)
		}
		squat.Stop()
	})

	t.Run("socket held by another user", func(t *testing.T) {
		h := n.Host("i")
		var st syscall.Stat_t
		if err := syscall.Stat("/run/netns/"+h.Netns(), &st); err != nil {
			t.Fatal(err)
		}
		paths := controlPaths(st.Ino)
		if err := os.MkdirAll(paths.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		// Bound by root, listened on by nobody: the kernel reports the
		// listener's credentials to the client.
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: paths.Socket}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(paths.Socket) })
		f := os.NewFile(uintptr(fd), "impostor")
		cmd := h.Command(context.Background(), "setpriv", append(append([]string{}, nobody...), "env", attackerEnv+"=impostor", attackerBin)...)
		cmd.ExtraFiles = []*os.File{f}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if _, ok := waitFor(10*time.Second, func() bool { return impostorListening(paths.Socket) }); !ok {
			t.Fatal("the impostor did not listen")
		}
		for _, args := range [][]string{{"up", "vif0", "192.0.2.1", "--no-arp-proxy"}, {"show"}, {"down", "vif0"}} {
			got, err := h.Run(vifBin, args...)
			if err == nil {
				t.Errorf("vif %s believed the impostor:\n%s", args[0], got)
			}
			oneLine(t, "vif "+args[0]+" against an impostor", got, "held by pid "+strconv.Itoa(cmd.Process.Pid), "uid 65534", "not by root")
		}
		if h.LinkExists("vif0") {
			t.Error("vif0 exists, though no daemon ran")
		}
	})
}

// controlPaths returns the daemon files of the namespace with inode ino.
func controlPaths(ino uint64) control.Paths { return control.PathsFor(control.Dir, ino) }

// impostorListening reports whether something accepts connections on path.
func impostorListening(path string) bool {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	return syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}) == nil
}

// Case 4: refused connections cost a summary line, not a line each; the
// log survives SIGHUP and logrotate, and a new daemon does not append to a
// dead one's log.
func TestControlLogs(t *testing.T) {
	h, pid, log := controlHost(t)
	before, _ := os.ReadFile(log)

	var wg sync.WaitGroup
	var flood, floodDAC attackResult
	wg.Add(2)
	go func() { defer wg.Done(); flood = attack(t, h, nobody, "flood", "2s") }()
	go func() { defer wg.Done(); floodDAC = attack(t, h, nobodyDAC, "flood", "2s") }()
	showsDuringAttack(t, h, &wg)
	if flood.Connected != 0 || flood.Denied == 0 {
		t.Errorf("plain ordinary user: %+v, want every connect denied by the kernel", flood)
	}
	if floodDAC.Connected < 100 {
		t.Fatalf("ordinary user with CAP_DAC_OVERRIDE: %+v, want many connections reaching the daemon", floodDAC)
	}
	t.Logf("flood: %d connections denied by the kernel; %d reached the daemon", flood.Denied, floodDAC.Connected)

	// The summary comes at the end of its 10 s window.
	var grown string
	if _, ok := waitFor(15*time.Second, func() bool {
		b, _ := os.ReadFile(log)
		grown = strings.TrimPrefix(string(b), string(before))
		return strings.Contains(grown, "from uid 65534")
	}); !ok {
		t.Fatalf("no refusal summary in %s after the flood; it grew by:\n%s", log, grown)
	}
	if lines := strings.Count(grown, "refused"); lines > 2 || len(grown) > 2048 {
		t.Errorf("%d connections refused cost %d log lines, %d bytes:\n%s", floodDAC.Connected, lines, len(grown), grown)
	}

	// SIGHUP (logrotate's postrotate) reopens the log; it never kills.
	rotated := log + ".rotated"
	if err := os.Rename(log, rotated); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(rotated)
	syscall.Kill(pid, syscall.SIGHUP)
	if _, ok := waitFor(5*time.Second, func() bool { _, err := os.Stat(log); return err == nil }); !ok {
		t.Fatal("no new log after SIGHUP")
	}
	vifCmd(t, h, "up", "vif1", "192.0.2.2", "--no-arp-proxy")
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "op=up vif=vif1 uid=0 pid=") {
		t.Errorf("the new log lacks the audited up of vif1:\n%s", b)
	}
	// copytruncate: appends land at the start of the emptied file.
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	vifCmd(t, h, "down", "vif1")
	b, _ := os.ReadFile(log)
	if !strings.HasPrefix(string(b), "time=") || !strings.Contains(string(b), "op=down vif=vif1") {
		t.Errorf("after copytruncate the log is %q", b)
	}
	if !alive(pid) {
		t.Fatal("the daemon died")
	}

	// A daemon that died leaves its log; the next one keeps it as .old
	// (logrotate's .1 is left alone) and starts afresh.
	rotated1 := log + ".1"
	os.WriteFile(rotated1, []byte("logrotate's\n"), 0o600)
	defer os.Remove(rotated1)
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, 5*time.Second)
	waitFor(5*time.Second, func() bool { return !h.LinkExists("vif0") })
	vifCmd(t, h, "up", "vif0", "192.0.2.1", "--no-arp-proxy")
	newPID, newLog := daemonPID(t, h)
	if newLog != log || newPID == pid {
		t.Fatalf("new daemon %d logs to %s; old %d to %s", newPID, newLog, pid, log)
	}
	defer os.Remove(log + ".old")
	nb, _ := os.ReadFile(log)
	ob, _ := os.ReadFile(log + ".old")
	if strings.Contains(string(nb), "op=down vif=vif1") || !strings.Contains(string(nb), "pid="+strconv.Itoa(newPID)) {
		t.Errorf("the new daemon's log holds the dead one's lines:\n%s", nb)
	}
	if !strings.Contains(string(ob), "op=down vif=vif1") {
		t.Errorf("the dead daemon's log was not kept as %s.old:\n%s", log, ob)
	}
	if b, _ := os.ReadFile(rotated1); string(b) != "logrotate's\n" {
		t.Errorf("a starting daemon overwrote logrotate's %s: %q", rotated1, b)
	}
}

// showsDuringAttack runs root's "vif show --timeout 1s" until wg is done:
// each must answer.
func showsDuringAttack(t *testing.T, h *nstest.Host, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	shows := 0
	for {
		select {
		case <-done:
			if shows == 0 {
				t.Error("no show ran during the attack")
			}
			return
		default:
		}
		if out, err := h.Run(vifBin, "show", "--timeout", "1s"); err != nil {
			t.Errorf("root's vif show during the attack: %v\n%s", err, out)
		}
		shows++
		time.Sleep(100 * time.Millisecond)
	}
}

// Case 5: thousands of idle connections neither block root nor stay
// allocated.
func TestControlConnectionFlood(t *testing.T) {
	h, _, _ := controlHost(t)
	rssBefore := daemonRSS(t, h)
	var wg sync.WaitGroup
	var idle, idleDAC attackResult
	wg.Add(2)
	go func() { defer wg.Done(); idle = attack(t, h, nobody, "idle", "2000", "3s") }()
	go func() { defer wg.Done(); idleDAC = attack(t, h, nobodyDAC, "idle", "20000", "3s") }()
	showsDuringAttack(t, h, &wg)
	if idle.Connected != 0 {
		t.Errorf("plain ordinary user held connections: %+v", idle)
	}
	if idleDAC.Connected < 1000 || idleDAC.Served != 0 {
		t.Errorf("ordinary user with CAP_DAC_OVERRIDE: %+v, want over 1000 connections, all refused", idleDAC)
	}
	t.Logf("idle flood: %d connections reached the daemon (%+v)", idleDAC.Connected, idleDAC)
	if rss := daemonRSS(t, h); rss > rssBefore+32<<10 {
		t.Errorf("daemon RSS grew from %d KiB to %d KiB", rssBefore, rss)
	}
	assertServes(t, h)
}

// Case 6: a daemon that does not answer (SIGSTOP) never hangs a command:
// each gives up at its deadline, or at once on SIGINT or SIGTERM, and
// names the daemon; nothing is done after it gave up.
func TestControlNoHang(t *testing.T) {
	h, pid, log := controlHost(t)
	syscall.Kill(pid, syscall.SIGSTOP)
	defer syscall.Kill(pid, syscall.SIGCONT)
	for _, args := range [][]string{
		{"show"},
		{"down", "vif0"},
		{"up", "vif1", "192.0.2.2", "--no-arp-proxy"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := h.RunContext(ctx, vifBin, append(args, "--timeout", "1s")...)
		hung := ctx.Err() != nil
		cancel()
		if err == nil || hung {
			t.Fatalf("vif %s against a stopped daemon: %v\n%s", args[0], err, out)
		}
		oneLine(t, "vif "+args[0]+" against a stopped daemon", out, "did not answer within 1s", "pid "+strconv.Itoa(pid), log)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		p := h.Start(vifBin, "down", "vif0", "--timeout", "60s")
		// Once it has a socket, connected and waiting for the greeting
		// (a sleep of 300 ms was not always enough for a race build on
		// a loaded machine: the signal killed it before main ran).
		waitSocket(t, p.Pid())
		p.Signal(sig)
		if err := p.Wait(10 * time.Second); err == nil {
			t.Errorf("vif down interrupted by %v exited 0", sig)
		} else if !strings.Contains(p.Output(), "interrupted") {
			t.Errorf("vif down interrupted by %v: %v\n%s", sig, err, p.Output())
		}
	}
	syscall.Kill(pid, syscall.SIGCONT)
	assertServes(t, h)
	if h.LinkExists("vif1") {
		t.Error("vif1 came up after its command had given up")
	}
}

// Case 7: the last vif's down, racing an up, against a daemon that exits
// when its last vif goes: every command gets its answer or a clean retry.
func TestControlExitRace(t *testing.T) {
	h := nstest.New(t).Host("h")
	t.Cleanup(func() { stopDaemon(h) })
	const rounds = 25
	for k := range rounds {
		vifCmd(t, h, "up", "vifa", "192.0.2.1", "--no-arp-proxy")
		var wg sync.WaitGroup
		errs := make([]error, 2)
		outs := make([]string, 2)
		wg.Add(2)
		go func() { defer wg.Done(); outs[0], errs[0] = h.Run(vifBin, "down", "vifa") }()
		go func() { defer wg.Done(); outs[1], errs[1] = h.Run(vifBin, "up", "vifb", "192.0.2.2", "--no-arp-proxy") }()
		wg.Wait()
		for i, what := range []string{"down vifa", "up vifb"} {
			if errs[i] != nil {
				t.Errorf("round %d: vif %s: %v\n%s", k, what, errs[i], outs[i])
			}
		}
		if out, err := h.Run(vifBin, "down", "vifb"); err != nil {
			t.Errorf("round %d: the last vif down: %v\n%s", k, err, out)
		}
		if t.Failed() {
			return
		}
	}
	assertNothingLeft(t, h)
}

// An operator removes the daemon's files (rm -rf /run/vif): the daemon
// puts them back, commands find it again, and no second daemon takes the
// namespace meanwhile.
func TestControlFilesRemoved(t *testing.T) {
	h, pid, log := controlHost(t)
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+h.Netns(), &st); err != nil {
		t.Fatal(err)
	}
	p := controlPaths(st.Ino)
	for _, f := range []string{p.Socket, p.Lock} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	// At once, before the daemon has put its files back: show waits for
	// it (its beacon says it runs) rather than say no vif runs; the
	// daemon an up starts sees the beacon and steps back, and the command
	// reaches the first once it has restored them.
	if doc := show(t, h); len(doc.Vifs) != 1 || doc.Daemon == nil || doc.Daemon.PID != pid {
		t.Errorf("show right after the files were removed: %+v by %+v, want vif0 by %d", doc.Vifs, doc.Daemon, pid)
	}
	for _, f := range []string{p.Socket, p.Lock} {
		os.Remove(f)
	}
	vifCmd(t, h, "up", "vif1", "192.0.2.2", "--no-arp-proxy")
	doc := show(t, h)
	if len(doc.Vifs) != 2 || doc.Daemon == nil || doc.Daemon.PID != pid {
		t.Errorf("after the files were removed and vif1 came up: %+v served by %+v, want vif0 and vif1 by the daemon %d", doc.Vifs, doc.Daemon, pid)
	}
	if n := daemonsIn(h); n != 1 {
		t.Errorf("%d vif daemons run in the namespace, want 1", n)
	}
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "control files were removed") {
		t.Errorf("the daemon's log does not say its files were restored:\n%s", b)
	}
}

// "vif --netns NS" passes the signals meant for the command on to the vif
// it runs in NS: SIGTERM stops a foreground vif there.
func TestNetnsForwardsSignals(t *testing.T) {
	h := nstest.New(t).Host("h")
	cmd := exec.Command(vifBin, "--netns", h.Netns(), "up", "vif5", "192.0.2.5", "--no-arp-proxy", "--foreground")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	if _, ok := waitFor(10*time.Second, func() bool { return h.LinkExists("vif5") }); !ok {
		t.Fatal("vif5 did not come up")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("vif --netns after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("vif --netns ignored SIGTERM")
	}
	if _, ok := waitFor(5*time.Second, func() bool { return !h.LinkExists("vif5") }); !ok {
		t.Error("vif5 outlived the SIGTERM of its command")
	}
}

// daemonsIn counts the "vif daemon" processes in h's network namespace.
func daemonsIn(h *nstest.Host) int {
	out, err := exec.Command("ip", "netns", "pids", h.Netns()).Output()
	if err != nil {
		return -1
	}
	n := 0
	for _, pid := range strings.Fields(string(out)) {
		if b, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && strings.HasSuffix(string(b), "\x00daemon\x00") {
			n++
		}
	}
	return n
}

// A daemon's files outlive neither it nor its network namespace for long:
// once its last vif is down it leaves only its log, which stays while the
// namespace exists (it says why the daemon ended); once the namespace is
// deleted, the next daemon to start, in any namespace, removes the log.
func TestControlFilesOfGoneNamespace(t *testing.T) {
	var rnd [4]byte
	crand.Read(rnd[:])
	ns := fmt.Sprintf("vifsweep-%x", rnd)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			exec.Command(vifBin, "--netns", ns, "down", "vif0").Run()
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns, &st); err != nil {
		t.Fatal(err)
	}
	p := controlPaths(st.Ino)
	if out, err := exec.Command(vifBin, "--netns", ns, "up", "vif0", "192.0.2.1", "--no-arp-proxy").CombinedOutput(); err != nil {
		t.Fatalf("vif up in %s: %v\n%s", ns, err, out)
	}
	if out, err := exec.Command(vifBin, "--netns", ns, "down", "vif0").CombinedOutput(); err != nil {
		t.Fatalf("vif down in %s: %v\n%s", ns, err, out)
	}
	if _, ok := waitFor(5*time.Second, func() bool { _, err := os.Lstat(p.Lock); return err != nil }); !ok {
		t.Fatalf("the daemon of %s did not exit with its last vif", ns)
	}
	for _, f := range []string{p.Socket, p.Lock} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s left by a daemon that exited", f)
		}
	}
	if _, err := os.Lstat(p.Log); err != nil {
		t.Fatalf("the log of a daemon whose namespace exists: %v", err)
	}

	if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v\n%s", ns, err, out)
	}
	deleted = true
	h := nstest.New(t).Host("h")
	vifCmd(t, h, "up", "vif0", "192.0.2.1", "--no-arp-proxy")
	t.Cleanup(func() { stopDaemon(h) })
	if _, err := os.Lstat(p.Log); err == nil {
		if netnsInUse(st.Ino) {
			t.Skipf("inode %d is another network namespace's already: its files are kept", st.Ino)
		}
		t.Errorf("%s still there after its namespace was deleted and another daemon started", p.Log)
	}
}

// netnsInUse reports whether a process is in the network namespace of
// inode ino, or /run/netns names it.
func netnsInUse(ino uint64) bool {
	links, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, l := range links {
		if v, _ := os.Readlink(l); v == fmt.Sprintf("net:[%d]", ino) {
			return true
		}
	}
	names, _ := filepath.Glob("/run/netns/*")
	for _, n := range names {
		var st syscall.Stat_t
		if syscall.Stat(n, &st) == nil && st.Ino == ino {
			return true
		}
	}
	return false
}

// waitSocket waits until the process pid, once vif, has a socket open,
// which vif opens only to call the daemon, after its signal handlers are
// in place, for up to 20 s.
func waitSocket(t *testing.T, pid int) {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	for deadline := time.Now().Add(20 * time.Second); ; {
		fds, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("process %d: %v", pid, err)
		}
		// ip netns exec has netlink sockets before it execs vif.
		if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); strings.TrimSpace(string(comm)) != "vif" {
			fds = nil
		}
		for _, fd := range fds {
			if l, err := os.Readlink(dir + "/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d has no socket after 20 s", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
