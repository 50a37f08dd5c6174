//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Addresses of the testbed.
const (
	underA = "198.18.0.1"
	underB = "198.18.0.2"
	vifA   = "192.0.2.1"
	vifB   = "198.51.100.1"
)

// testbed is two namespaces joined by a veth, with a vif in each.
type testbed struct {
	nsA, nsB string
	made     []string // namespaces created, deleted by Close
	vifs     []*proc
	iperf    *proc
	once     sync.Once
}

// proc is a background process in a namespace.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestbed builds a namespace pair with vifs running bin; tag names the
// vifs' CPU profiles.
func newTestbed(ctx context.Context, o *options, bin, tag string) (*testbed, error) {
	var r [4]byte
	rand.Read(r[:])
	prefix := "vb-" + hex.EncodeToString(r[:])
	tb := &testbed{nsA: prefix + "-a", nsB: prefix + "-b"}
	for _, ns := range []string{tb.nsA, tb.nsB} {
		if err := ipCmd(ctx, "netns", "add", ns); err != nil {
			return tb, err
		}
		tb.made = append(tb.made, ns)
	}
	// The veth is created inside a and its peer moved straight into b:
	// nothing appears in the namespace vifbench runs in.
	steps := [][]string{
		{"-n", tb.nsA, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", tb.nsB},
		{"-n", tb.nsA, "addr", "add", underA + "/24", "dev", "eth0"},
		{"-n", tb.nsB, "addr", "add", underB + "/24", "dev", "eth0"},
	}
	for _, ns := range []string{tb.nsA, tb.nsB} {
		steps = append(steps,
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "link", "set", "eth0", "up"})
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			return tb, err
		}
	}
	for _, ns := range []string{tb.nsA, tb.nsB} {
		// Keep IPv6 chatter out of the measurements.
		nsExec(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1").Run()
	}

	env := os.Environ()
	if o.gomaxprocs != "" {
		env = append(env, "GOMAXPROCS="+o.gomaxprocs)
	}
	if o.gogc != "" {
		env = append(env, "GOGC="+o.gogc)
	}
	for _, v := range []struct{ name, ns, addr, peer, route string }{
		{"a", tb.nsA, vifA, underB, "198.51.100.0/24"},
		{"b", tb.nsB, vifB, underA, "192.0.2.0/24"},
	} {
		e := env
		if o.cpuprofile != "" {
			e = append(e, "VIF_CPUPROFILE="+filepath.Join(o.cpuprofile, tag+"-"+v.name+".pprof"))
		}
		p, err := start(tag+"-"+v.name, v.ns, e, bin, "up", "vif0", v.addr, "--slave", "eth0", "--peer", v.peer,
			"--route", v.route, "--proto", o.proto, "--foreground", "--no-arp-proxy")
		if err != nil {
			return tb, err
		}
		tb.vifs = append(tb.vifs, p)
		if err := p.waitFor(ctx, `msg="vif up"`, 10*time.Second); err != nil {
			return tb, fmt.Errorf("vif in %s: %w\n%s", v.ns, err, p.out)
		}
	}
	p, err := start("iperf3", tb.nsB, nil, "iperf3", "-s", "--forceflush")
	if err != nil {
		return tb, err
	}
	tb.iperf = p
	if err := p.waitFor(ctx, "Server listening", 5*time.Second); err != nil {
		return tb, fmt.Errorf("iperf3 server: %w\n%s", err, p.out)
	}
	// The tunnel must carry traffic before anything is measured.
	if out, err := nsExec(tb.nsA, "ping", "-c", "3", "-i", "0.2", "-W", "2", vifB).CombinedOutput(); err != nil {
		return tb, fmt.Errorf("no ping through the tunnel: %v\n%s", err, out)
	}
	return tb, nil
}

// Close stops every process and deletes the namespaces. It is safe to call
// more than once and on a partial testbed.
func (tb *testbed) Close() error {
	var errs []error
	tb.once.Do(func() {
		if tb.iperf != nil {
			tb.iperf.stop()
		}
		tb.stopVifs()
		for _, ns := range tb.made {
			// Anything still running in the namespace would keep its
			// interfaces alive.
			if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
				for _, f := range strings.Fields(string(out)) {
					var pid int
					if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			if err := exec.Command("ip", "netns", "del", ns).Run(); err != nil {
				errs = append(errs, fmt.Errorf("ip netns del %s: %w", ns, err))
			}
		}
	})
	return errors.Join(errs...)
}

// stopVifs ends the vifs with SIGTERM, so that they remove what they
// installed and write their profiles and final counters.
func (tb *testbed) stopVifs() {
	for _, v := range tb.vifs {
		v.stop()
	}
}

func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func nsExec(ns, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// start runs name in ns in the background. ip netns exec execs name, so
// the process's PID is name's.
func start(label, ns string, env []string, name string, args ...string) (*proc, error) {
	p := &proc{name: label, cmd: nsExec(ns, name, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Pdeathsig fires when the forking thread exits: fork from a fresh
	// goroutine on an unlocked thread (go.dev/issue/27505).
	errc := make(chan error, 1)
	go func() { errc <- p.cmd.Start() }()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, ns, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) waitFor(ctx context.Context, s string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for !strings.Contains(p.out.String(), s) {
		select {
		case <-p.done:
			return errors.New("exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q after %v", s, d)
		}
	}
	return nil
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// finalCounters returns the vif's "final counters" log line, once it has
// exited.
func (p *proc) finalCounters() string {
	for _, l := range strings.Split(p.out.String(), "\n") {
		if i := strings.Index(l, `msg="final counters"`); i >= 0 {
			return l[i+len(`msg="final counters"`):]
		}
	}
	return ""
}
