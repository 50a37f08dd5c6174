//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vif-project/vif/vif/nstest"
)

// Addresses of the testbed.
const (
	underA = "198.18.0.1"
	underB = "198.18.0.2"
	vifA   = "192.0.2.1"
	vifB   = "198.51.100.1"
)

// testbed is two namespaces joined by a veth, with a vif in each, built
// with nstest: Close stops every process and deletes the namespaces.
type testbed struct {
	p        *nstest.Program
	a, b     *nstest.Host
	nsA, nsB string
	vifs     []*proc
	label    string // of its variant
}

// proc is a background process in a namespace, with a label.
type proc struct {
	*nstest.Proc
	name string
}

// newTestbed builds a namespace pair with the vifs of variant v; its label
// names the vifs' CPU profiles. The testbed it returns, also with an
// error, must be closed.
func newTestbed(ctx context.Context, o *options, v variant) (*testbed, error) {
	tb := &testbed{p: nstest.NewProgram(os.Stderr), label: v.label}
	bin, tag, proto := v.bin, v.label, v.proto
	if proto == "" {
		proto = o.proto
	}
	err := tb.p.Run(func() {
		n := nstest.NewNamed(tb.p, "vb-")
		tb.a, tb.b = n.Host("a"), n.Host("b")
		tb.nsA, tb.nsB = tb.a.Netns(), tb.b.Netns()
		// A single veth pair, the physical limit the yardsticks measure
		// against; a wire namespace in between would add a bridge's cost.
		n.Link(tb.a, tb.b, underA+"/24", underB+"/24", nstest.WithoutWire())

		var env []string
		if o.gomaxprocs != "" {
			env = append(env, "GOMAXPROCS="+o.gomaxprocs)
		}
		if o.gogc != "" {
			env = append(env, "GOGC="+o.gogc)
		}
		for _, s := range []struct {
			name              string
			h                 *nstest.Host
			addr, peer, route string
		}{
			{"a", tb.a, vifA, underB, "198.51.100.0/24"},
			{"b", tb.b, vifB, underA, "192.0.2.0/24"},
		} {
			e := env
			if o.cpuprofile != "" {
				e = append(e, "VIF_CPUPROFILE="+filepath.Join(o.cpuprofile, tag+"-"+s.name+".pprof"))
			}
			// env execs the vif: the process is the vif's.
			args := append(e, bin, "up", "vif0", s.addr, "--slave", "eth0", "--peer", s.peer,
				"--route", s.route, "--proto", proto, "--foreground", "--no-arp-proxy")
			args = append(args, v.args...)
			p := &proc{Proc: s.h.Start("env", args...), name: tag + "-" + s.name}
			tb.vifs = append(tb.vifs, p)
			if err := p.WaitFor(`msg="vif up"`, 10*time.Second); err != nil {
				tb.p.Fatalf("vif in %s: %v", s.h.Netns(), err)
			}
		}
		iperf := tb.b.Start("iperf3", "-s", "--forceflush")
		if err := iperf.WaitFor("Server listening", 5*time.Second); err != nil {
			tb.p.Fatalf("iperf3 server: %v", err)
		}
		// The tunnel must carry traffic before anything is measured.
		if out, err := tb.a.RunContext(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", vifB); err != nil {
			tb.p.Fatalf("no ping through the tunnel: %v\n%s", err, out)
		}
	})
	return tb, err
}

// Close stops every process and deletes the namespaces. It is safe to call
// more than once and on a partial testbed.
func (tb *testbed) Close() error {
	tb.p.Close()
	return nil
}

// stopVifs ends the vifs with SIGTERM, so that they remove what they
// installed and write their profiles and final counters.
func (tb *testbed) stopVifs() {
	for _, v := range tb.vifs {
		v.Stop()
	}
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
