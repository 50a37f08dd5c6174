//go:build linux

package main

// Configuration files and systemd: "vif apply", "vif show --config",
// "vif serve" and the unit files in systemd/, run as an operator would.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/vif-project/vif/vif/nstest"
)

// ifindex returns the interface index of name on h: the same index means
// the same interface, never recreated.
func ifindex(t *testing.T, h *nstest.Host, name string) string {
	t.Helper()
	out, err := h.Run("cat", "/sys/class/net/"+name+"/ifindex")
	if err != nil {
		t.Fatalf("ifindex of %s on %v: %v", name, h, err)
	}
	return strings.TrimSpace(out)
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Apply is idempotent, changes only what an edit changes (the traffic of
// an edited vif flows on: ping flood), and what "vif show --config"
// prints applies as no change.
func TestConfigApply(t *testing.T) {
	s := newSegment(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "vif.toml")
	slave := s.aIf.Name()
	writeFile(t, file, fmt.Sprintf(`[vif.vif0]
addresses = ["192.0.2.1"]
slave = %q

[vif.vif1]
addresses = ["192.0.2.5"]
slave = %q
`, slave, slave))
	out := vifCmd(t, s.a, "apply", file)
	t.Cleanup(func() { stopDaemon(s.a) })
	if out != "vif0: created\nvif1: created\n" {
		t.Errorf("first apply printed %q", out)
	}
	if out := vifCmd(t, s.a, "apply", file); !strings.HasPrefix(out, "no changes") {
		t.Errorf("second apply printed %q", out)
	}
	index := ifindex(t, s.a, "vif0")
	flood := s.c.Start("ping", "-n", "-q", "-c", "1000", "-i", "0.002", "-W", "2", "192.0.2.1")
	time.Sleep(200 * time.Millisecond)

	writeFile(t, file, fmt.Sprintf(`[vif.vif0]
addresses = ["192.0.2.1", "192.0.2.2"]
slave = %q
mtu = 1400
routes = ["198.51.100.0/24"]

[vif.vif2]
addresses = ["192.0.2.9"]
slave = %q
`, slave, slave))
	out = vifCmd(t, s.a, "apply", file)
	want := "vif1: removed\nvif0: address 192.0.2.2/32 added\nvif0: route 198.51.100.0/24 added\nvif0: MTU set to 1400\nvif2: created\n"
	if out != want {
		t.Errorf("apply of the edited file printed\n%s\nwant\n%s", out, want)
	}
	if got := ifindex(t, s.a, "vif0"); got != index {
		t.Errorf("vif0 was recreated (ifindex %s, was %s)", got, index)
	}
	if err := flood.Wait(30 * time.Second); err != nil || !strings.Contains(flood.Output(), " 0% packet loss") {
		t.Errorf("ping flood to vif0 during the apply: %v\n%s", err, flood.Output())
	}
	for _, a := range []string{"192.0.2.2", "192.0.2.9"} {
		if !pingOnce(s.c, a, 2*time.Second) {
			t.Errorf("%s does not answer after the apply", a)
		}
	}
	if s.a.LinkExists("vif1") {
		t.Error("vif1 is still there")
	}
	if st := vifStatus(t, s.a, "vif0"); st.MTU != 1400 || len(st.Addrs) != 2 || len(st.Routes) != 1 {
		t.Errorf("vif0 after the apply: mtu %d, addrs %v, routes %v", st.MTU, st.Addrs, st.Routes)
	}

	// The running state as a file applies as no change, and is the file.
	shown := vifCmd(t, s.a, "show", "--config")
	file2 := filepath.Join(dir, "shown.toml")
	writeFile(t, file2, shown)
	if out := vifCmd(t, s.a, "apply", file2); !strings.HasPrefix(out, "no changes") {
		t.Errorf("applying vif show --config printed %q\n%s", out, shown)
	}
	if !strings.Contains(shown, "[vif.vif0]") || !strings.Contains(shown, "mtu = 1400") || strings.Contains(shown, "vif1") {
		t.Errorf("vif show --config:\n%s", shown)
	}

	// A bad file: one line with the file and line, exit status 2,
	// nothing changed.
	bad := filepath.Join(dir, "bad.toml")
	writeFile(t, bad, "[vif.vif0]\naddresses = [\"192.0.2.1\"]\nslav = \"eth0\"\n")
	out, err := s.a.Run(vifBin, "apply", bad)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, bad+":3:1: unknown key \"slav\"") {
		t.Errorf("bad file: %v\n%q", err, out)
	}
	// A file that cannot apply whole changes nothing: a missing slave is
	// refused before anything changes, an address in use on the segment
	// after, and what changed is undone.
	writeFile(t, bad, "[vif.vif0]\naddresses = [\"192.0.2.1\"]\nslave = \"nosuch0\"\n")
	if out, err := s.a.Run(vifBin, "apply", bad); !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(out, "no such slave interface: nosuch0 (nothing was changed)") {
		t.Errorf("a missing slave: %v\n%q", err, out)
	}
	writeFile(t, bad, fmt.Sprintf("[vif.vif0]\naddresses = [\"192.0.2.1\"]\nslave = %q\n[vif.vif5]\naddresses = [\"198.18.1.3\"]\nslave = %q\nforce = false\n", slave, slave))
	out, err = s.a.Run(vifBin, "apply", bad)
	if !errors.As(err, &ee) || !strings.Contains(out, "undone: vif2: created") || !strings.Contains(out, "the vifs are as they were before") {
		t.Errorf("an address in use on the segment: %v\n%s", err, out)
	}
	if out := vifCmd(t, s.a, "apply", file); !strings.HasPrefix(out, "no changes") {
		t.Errorf("after the undone apply, the file applies as %q", out)
	}
	if out := vifCmd(t, s.a, "apply", "--check", file); !strings.Contains(out, "good, 2 vif(s)") {
		t.Errorf("apply --check: %q", out)
	}

	// An empty file removes every vif, and the daemon with them.
	writeFile(t, file, "# nothing\n")
	if out := vifCmd(t, s.a, "apply", file); out != "vif0: removed\nvif2: removed\n" {
		t.Errorf("empty apply printed %q", out)
	}
	if s.a.LinkExists("vif0") || s.a.LinkExists("vif2") {
		t.Error("vifs left after an empty apply")
	}
}

// A configuration file with IPv6: an IPv6 address, a peer's IPv6 prefix
// and the underlay key apply, carry ping -6, print back as no change, and
// a peer's prefixes change in place.
func TestConfigApplyIPv6(t *testing.T) {
	n := nstest.New(t)
	a, b := n.Host("a", nstest.WithIPv6()), n.Host("b", nstest.WithIPv6())
	aIf, bIf := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
	startVif(t, b, "vif0", "2001:db8:b::1", "--slave", bIf.Name(),
		"--peer", "198.18.0.1=2001:db8:a::/64", "--no-arp-proxy")
	file := filepath.Join(t.TempDir(), "vif.toml")
	conf := func(allowed string) string {
		return fmt.Sprintf(`[vif.vif0]
addresses = ["2001:db8:a::1"]
slave = %q
arp-proxy = false
underlay = "raw"

[[vif.vif0.peer]]
address = "198.18.0.2"
allowed-ips = [%s]
`, aIf.Name(), allowed)
	}
	writeFile(t, file, conf(`"2001:db8:b::/64"`))
	if out := vifCmd(t, a, "apply", file); out != "vif0: created\n" {
		t.Errorf("apply printed %q", out)
	}
	t.Cleanup(func() { stopDaemon(a) })
	ping6 := func(to string) {
		t.Helper()
		if out, err := a.Run("ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", to); err != nil {
			t.Errorf("ping -6 %s: %v\n%s", to, err, out)
		}
	}
	ping6("2001:db8:b::1")
	shown := filepath.Join(t.TempDir(), "shown.toml")
	writeFile(t, shown, vifCmd(t, a, "show", "--config"))
	if out := vifCmd(t, a, "apply", shown); !strings.HasPrefix(out, "no changes") {
		b, _ := os.ReadFile(shown)
		t.Errorf("applying vif show --config printed %q; it was:\n%s", out, b)
	}
	index := ifindex(t, a, "vif0")
	writeFile(t, file, conf(`"2001:db8:b::/64", "2001:db8:bb::/64"`))
	if out := vifCmd(t, a, "apply", file); !strings.Contains(out, "vif0: peer 198.18.0.2") {
		t.Errorf("apply of a new peer prefix printed %q", out)
	}
	if now := ifindex(t, a, "vif0"); now != index {
		t.Errorf("a new peer prefix recreated vif0 (ifindex %s, was %s)", now, index)
	}
	if out := a.IP("-6", "route", "show", "2001:db8:bb::/64"); !strings.Contains(out, "dev vif0") {
		t.Errorf("no route for the new prefix into vif0: %q", out)
	}
	ping6("2001:db8:b::1")
}

// unitCommands returns the commands of the unit file's Exec lines, by
// setting (ExecStart, ...), with vif and the configuration file replaced
// by the test's.
func unitCommands(t *testing.T, unit, config string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("systemd", unit))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmds := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || !strings.HasPrefix(k, "Exec") {
			continue
		}
		v = strings.ReplaceAll(v, "/usr/local/bin/vif", vifBin)
		v = regexp.MustCompile(`/etc/vif/\S+\.toml`).ReplaceAllString(v, config)
		cmds[k] = strings.Fields(v)
	}
	return cmds
}

// notifyListener is systemd's side of sd_notify(3): a datagram socket
// whose messages it returns.
func notifyListener(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msgs := make(chan string, 16)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(b[:n])
		}
	}()
	return path, msgs
}

func waitNotify(t *testing.T, msgs <-chan string, want string) string {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("notification socket closed before %q", want)
			}
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q notification", want)
		}
	}
}

// The unit's commands, run as systemd runs them (its capability bounding
// set and NoNewPrivileges through setpriv; Type=notify through
// NOTIFY_SOCKET): ExecStartPre checks, ExecStart serves the file's vifs
// and says READY=1, other vif commands reach that daemon, ExecReload and
// SIGHUP apply the edited file, and SIGTERM removes everything.
func TestSystemdUnitCommands(t *testing.T) {
	s := newSegment(t)
	file := filepath.Join(t.TempDir(), "vif.toml")
	slave := s.aIf.Name()
	writeFile(t, file, fmt.Sprintf("[vif.vif0]\naddresses = [\"192.0.2.1\"]\nslave = %q\n\n[vif.vif1]\naddresses = [\"192.0.2.5\"]\nslave = %q\n", slave, slave))
	cmds := unitCommands(t, "vif.service", file)
	if pre := cmds["ExecStartPre"]; len(pre) == 0 {
		t.Fatal("the unit has no ExecStartPre")
	} else {
		vifCmd(t, s.a, pre[1:]...)
	}
	sock, msgs := notifyListener(t)
	start := cmds["ExecStart"]
	args := append([]string{"NOTIFY_SOCKET=" + sock, "setpriv", "--no-new-privs", "--bounding-set", "-all,+net_admin,+net_raw"}, start...)
	p := s.a.Start("env", args...)
	ready := waitNotify(t, msgs, "READY=1")
	if !strings.Contains(ready, "STATUS=serving 2 vif(s): vif0 vif1") {
		t.Errorf("READY notification %q", ready)
	}
	for _, a := range []string{"192.0.2.1", "192.0.2.5"} {
		if !pingOnce(s.c, a, 2*time.Second) {
			t.Errorf("%s does not answer under vif serve\n%s", a, p.Output())
		}
	}
	// A vif brought up by hand joins the service's daemon.
	vifCmd(t, s.a, "up", "vif9", "192.0.2.99", "--slave", slave)
	if d := show(t, s.a).Daemon; d == nil || d.PID == 0 {
		t.Error("vif show names no daemon")
	}

	// systemctl reload: ExecReload applies the edited file.
	writeFile(t, file, fmt.Sprintf("[vif.vif0]\naddresses = [\"192.0.2.1\", \"192.0.2.2\"]\nslave = %q\n", slave))
	out := vifCmd(t, s.a, cmds["ExecReload"][1:]...)
	if !strings.Contains(out, "vif0: address 192.0.2.2/32 added") || !strings.Contains(out, "vif1: removed") || !strings.Contains(out, "vif9: removed") {
		t.Errorf("ExecReload printed %q", out)
	}
	// SIGHUP does the same, and tells systemd it reloads.
	writeFile(t, file, fmt.Sprintf("[vif.vif0]\naddresses = [\"192.0.2.1\"]\nslave = %q\n", slave))
	if err := syscall.Kill(servePID(t, s.a), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitNotify(t, msgs, "RELOADING=1")
	waitNotify(t, msgs, "READY=1")
	if st := vifStatus(t, s.a, "vif0"); len(st.Addrs) != 1 {
		t.Errorf("after SIGHUP vif0 has %v", st.Addrs)
	}
	// An empty file leaves the service running, without vifs.
	writeFile(t, file, "")
	vifCmd(t, s.a, cmds["ExecReload"][1:]...)
	time.Sleep(300 * time.Millisecond)
	select {
	case <-p.Done():
		t.Fatalf("vif serve exited without vifs:\n%s", p.Output())
	default:
	}
	writeFile(t, file, fmt.Sprintf("[vif.vif0]\naddresses = [\"192.0.2.1\"]\nslave = %q\n", slave))
	vifCmd(t, s.a, cmds["ExecReload"][1:]...)

	// systemctl stop: SIGTERM, STOPPING=1, nothing left.
	if err := syscall.Kill(servePID(t, s.a), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitNotify(t, msgs, "STOPPING=1")
	if err := p.Wait(10 * time.Second); err != nil {
		t.Errorf("vif serve after SIGTERM: %v\n%s", err, p.Output())
	}
	for _, l := range s.a.Links() {
		if strings.HasPrefix(l, "vif") {
			t.Errorf("interface %s left behind", l)
		}
	}
}

// servePID returns the pid of the daemon serving h (vif serve, under env
// and setpriv, which exec it).
func servePID(t *testing.T, h *nstest.Host) int {
	t.Helper()
	d := show(t, h).Daemon
	if d == nil || d.PID == 0 {
		t.Fatal("no daemon")
	}
	return d.PID
}

// The unit files pass systemd-analyze verify (their man pages found
// where "vif man" writes them) and rate "OK" or better in
// systemd-analyze security.
func TestSystemdUnitFiles(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd); .ci/run installs it")
	}
	man := t.TempDir()
	if out, err := exec.Command(vifBin, "man", filepath.Join(man, "man1")).CombinedOutput(); err != nil {
		t.Fatalf("vif man: %v\n%s", err, out)
	}
	dir := t.TempDir()
	for _, unit := range []string{"vif.service", "vif@.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		// The unit names the installed binary; verify checks it exists.
		body := strings.ReplaceAll(string(b), "/usr/local/bin/vif", vifBin)
		writeFile(t, filepath.Join(dir, unit), body)
		name := unit
		if strings.HasSuffix(unit, "@.service") {
			name = "vif@blue.service"
			os.Symlink(unit, filepath.Join(dir, name))
		}
		cmd := exec.Command(analyze, "verify", name)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "MANPATH="+man+":")
		if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
		cmd = exec.Command(analyze, "security", "--offline=true", name)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\w+)`).FindStringSubmatch(string(out))
		if err != nil || m == nil || m[2] != "OK" && m[2] != "SAFE" {
			t.Errorf("systemd-analyze security %s: %v\n%s", unit, err, out)
			continue
		}
		t.Logf("systemd-analyze security %s: %s %s", unit, m[1], m[2])
	}
}

// scrape fetches url's metrics from inside h's namespace.
func scrape(t *testing.T, h *nstest.Host, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	var conn net.Conn
	if err := h.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial %s in %v: %v", addr, h, err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
	}}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value returns the value of the series of fam whose labels include
// labels (name, value pairs).
func value(t *testing.T, fams map[string]*dto.MetricFamily, fam string, labels ...string) float64 {
	t.Helper()
	f := fams[fam]
	if f == nil {
		t.Fatalf("no metric %s", fam)
	}
next:
	for _, m := range f.GetMetric() {
		for k := 0; k+1 < len(labels); k += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[k] && l.GetValue() == labels[k+1] }) {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no series %s%v", fam, labels)
	return 0
}

// vif serve --metrics serves every counter of vif show on loopback; a
// scrape agrees with vif show --json, and vif show --prometheus writes
// the same series for the textfile collector.
func TestMetricsScrape(t *testing.T) {
	s := newSegment(t)
	file := filepath.Join(t.TempDir(), "vif.toml")
	slave := s.aIf.Name()
	writeFile(t, file, fmt.Sprintf("[vif.vif0]\naddresses = [\"192.0.2.1\"]\nslave = %q\nmtu = 1400\n", slave))
	p := s.a.Start(vifBin, "serve", "--config", file, "--metrics", "9477")
	if err := p.WaitFor("serving Prometheus metrics", 10*time.Second); err != nil {
		t.Fatalf("vif serve: %v\n%s", err, p.Output())
	}
	if !strings.Contains(p.Output(), "url=http://127.0.0.1:9477/metrics") {
		t.Errorf("a bare port is not served on loopback:\n%s", p.Output())
	}
	if !pingOnce(s.c, "192.0.2.1", 2*time.Second) {
		t.Error("192.0.2.1 does not answer")
	}
	arping(s.c, s.cIf.Name(), "192.0.2.77") // not owned: counted
	fams := scrape(t, s.a, "127.0.0.1:9477")
	st := vifStatus(t, s.a, "vif0")
	for _, c := range []struct {
		fam    string
		labels []string
		want   uint64
	}{
		{"vif_mtu_bytes", []string{"vif", "vif0"}, uint64(st.MTU)},
		{"vif_arp_requests_total", []string{"slave", slave}, st.ARP.Requests},
		{"vif_arp_replies_total", []string{"slave", slave}, st.ARP.Replies},
		{"vif_arp_announcements_total", []string{"slave", slave}, st.ARP.Announcements},
		{"vif_arp_requests_not_owned_total", []string{"slave", slave}, st.ARP.NotOwned},
		{"vif_looped_packets_total", []string{"vif", "vif0"}, st.Counters.LoopedPackets},
		{"vif_encapsulated_packets_total", []string{"vif", "vif0"}, st.Counters.EncapsulatedPackets},
	} {
		if got := value(t, fams, c.fam, c.labels...); got != float64(c.want) {
			t.Errorf("%s%v = %v, vif show --json says %d", c.fam, c.labels, got, c.want)
		}
	}
	if st.ARP.Replies == 0 || st.ARP.NotOwned == 0 || st.MTU != 1400 {
		t.Errorf("the counters compared are trivial: %+v, mtu %d", st.ARP, st.MTU)
	}
	if value(t, fams, "process_resident_memory_bytes") <= 0 || value(t, fams, "go_goroutines") <= 0 {
		t.Error("no daemon RSS or goroutines")
	}
	text := vifCmd(t, s.a, "show", "--prometheus")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	dump, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("vif show --prometheus does not parse: %v\n%s", err, text)
	}
	if got := value(t, dump, "vif_arp_replies_total", "slave", slave); got != float64(st.ARP.Replies) {
		t.Errorf("vif show --prometheus: replies %v, want %d", got, st.ARP.Replies)
	}
	if value(t, dump, "vif_daemon_resident_memory_bytes") <= 0 {
		t.Error("vif show --prometheus has no daemon RSS")
	}
	if err := p.Terminate(10 * time.Second); err != nil {
		t.Errorf("vif serve after SIGTERM: %v\n%s", err, p.Output())
	}
}
