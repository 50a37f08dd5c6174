//go:build linux

package main

import (
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

	"github.com/vif-project/vif/internal/nsproc"
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

// proc is a background process in a namespace, with a label.
type proc struct {
	*nsproc.Proc
	name string
}

// newTestbed builds a namespace pair with vifs running bin; tag names the
// vifs' CPU profiles.
func newTestbed(ctx context.Context, o *options, bin, tag string) (*testbed, error) {
	var r [4]byte
	rand.Read(r[:])
	prefix := "vb-" + hex.EncodeToString(r[:])
	tb := &testbed{nsA: prefix + "-a", nsB: prefix + "-b"}
	for _, ns := range []string{tb.nsA, tb.nsB} {
		if err := nsproc.IP(ctx, "netns", "add", ns); err != nil {
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
		if err := nsproc.IP(ctx, s...); err != nil {
			return tb, err
		}
	}
	for _, ns := range []string{tb.nsA, tb.nsB} {
		// Keep IPv6 chatter out of the measurements.
		nsproc.Command(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1").Run()
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
		if err := p.WaitFor(ctx, `msg="vif up"`, 10*time.Second); err != nil {
			return tb, fmt.Errorf("vif in %s: %w\n%s", v.ns, err, p.Output())
		}
	}
	p, err := start("iperf3", tb.nsB, nil, "iperf3", "-s", "--forceflush")
	if err != nil {
		return tb, err
	}
	tb.iperf = p
	if err := p.WaitFor(ctx, "Server listening", 5*time.Second); err != nil {
		return tb, fmt.Errorf("iperf3 server: %w\n%s", err, p.Output())
	}
	// The tunnel must carry traffic before anything is measured.
	if out, err := nsproc.Command(tb.nsA, "ping", "-c", "3", "-i", "0.2", "-W", "2", vifB).CombinedOutput(); err != nil {
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
			tb.iperf.Stop()
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
		v.Stop()
	}
}

// start runs name in ns in the background; label names it in messages.
func start(label, ns string, env []string, name string, args ...string) (*proc, error) {
	p, err := nsproc.Start(ns, env, name, args...)
	if err != nil {
		return nil, err
	}
	return &proc{Proc: p, name: label}, nil
}

// finalCounters returns the vif's "final counters" log line, once it has
// exited.
func (p *proc) finalCounters() string {
	for _, l := range strings.Split(p.Output(), "\n") {
		if i := strings.Index(l, `msg="final counters"`); i >= 0 {
			return l[i+len(`msg="final counters"`):]
		}
	}
	return ""
}
