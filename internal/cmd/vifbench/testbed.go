//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
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

	// With IPv6 tests: the veth's IPv6 addresses (the underlay of 6in6),
	// vif0's IPv6 addresses (6in4) and vif1's (6in6).
	underA6  = "2001:db8:ffff::1"
	underB6  = "2001:db8:ffff::2"
	vifA6in4 = "2001:db8:a::1"
	vifB6in4 = "2001:db8:b::1"
	vifA6in6 = "2001:db8:c::1"
	vifB6in6 = "2001:db8:d::1"
	netA6in4 = "2001:db8:a::/64"
	netB6in4 = "2001:db8:b::/64"
	netA6in6 = "2001:db8:c::/64"
	netB6in6 = "2001:db8:d::/64"
)

// testbed is two namespaces joined by a veth, with a vif in each, built
// with nstest: Close stops every process and deletes the namespaces.
type testbed struct {
	p        *nstest.Program
	a, b     *nstest.Host
	nsA, nsB string
	vifs     []*proc
	label    string // of its variant
	offload  bool   // the kernel carries the tunnel: TUN writes are rare
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
	tb := &testbed{p: nstest.NewProgram(os.Stderr), label: v.label, offload: slices.Contains(v.args, "--offload")}
	bin, tag, proto := v.bin, v.label, v.proto
	if proto == "" {
		proto = o.proto
	}
	err := tb.p.Run(func() {
		n := nstest.NewNamed(tb.p, "vb-")
		var hopts []nstest.HostOption
		if o.ipv6 {
			hopts = append(hopts, nstest.WithIPv6())
		}
		tb.a, tb.b = n.Host("a", hopts...), n.Host("b", hopts...)
		tb.nsA, tb.nsB = tb.a.Netns(), tb.b.Netns()
		// A single veth pair, the physical limit the yardsticks measure
		// against; a wire namespace in between would add a bridge's cost.
		n.Link(tb.a, tb.b, underA+"/24", underB+"/24", nstest.WithoutWire())
		slave6 := "eth0"
		if o.ipv6 && o.ownLink6 {
			// 6in6 over a veth pair of its own (eth1), so that its vif
			// owns that slave's AF_XDP sockets as vif0 owns eth0's:
			// a second vif on eth0 would run on raw sockets.
			slave6 = "eth1"
			n.Link(tb.a, tb.b, underA6+"/64", underB6+"/64", nstest.WithoutWire())
		} else if o.ipv6 {
			tb.a.AddAddr("eth0", underA6+"/64")
			tb.b.AddAddr("eth0", underB6+"/64")
		}

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
			addr6, net6       string // 6in4
			vif1, under6, on6 string // 6in6
		}{
			{"a", tb.a, vifA, underB, "198.51.100.0/24", vifA6in4, netB6in4, vifA6in6, underB6, netB6in6},
			{"b", tb.b, vifB, underA, "192.0.2.0/24", vifB6in4, netA6in4, vifB6in6, underA6, netA6in6},
		} {
			e := env
			if o.cpuprofile != "" {
				e = append(e, "VIF_CPUPROFILE="+filepath.Join(o.cpuprofile, tag+"-"+s.name+".pprof"))
			}
			// env execs the vif: the process is the vif's.
			args := append(e, bin, "up", "vif0", s.addr, "--slave", "eth0", "--peer", s.peer,
				"--route", s.route, "--proto", proto, "--foreground", "--no-arp-proxy")
			if o.ipv6 {
				// The peer keeps every IPv4 destination and takes the
				// other side's IPv6 network too (6in4).
				args = append(e, bin, "up", "vif0", s.addr, s.addr6, "--slave", "eth0", "--peer", s.peer+"="+s.route+","+s.net6,
					"--proto", proto, "--foreground", "--no-arp-proxy")
			}
			args = append(args, v.args...)
			p := &proc{Proc: s.h.Start("env", args...), name: tag + "-" + s.name}
			tb.vifs = append(tb.vifs, p)
			if err := p.WaitFor(`msg="vif up"`, 10*time.Second); err != nil {
				tb.p.Fatalf("vif in %s: %v", s.h.Netns(), err)
			}
			if o.ipv6 {
				// 6in6: a second vif, over the veth's IPv6 addresses,
				// served by the foreground process above, on the
				// variant's underlay (--offload carries IPv4 outer
				// packets only: that variant's vif1 is left to choose).
				args := []string{"up", "vif1", s.vif1, "--slave", slave6, "--peer", s.under6 + "=" + s.on6, "--no-arp-proxy"}
				if len(v.args) > 0 && v.args[0] == "--underlay" {
					args = append(args, v.args...)
				}
				if out, err := s.h.RunContext(ctx, bin, args...); err != nil {
					tb.p.Fatalf("vif1 in %s: %v\n%s", s.h.Netns(), err, out)
				}
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
		if o.ipv6 {
			for _, dst := range []string{vifB6in4, vifB6in6} {
				if out, err := tb.a.RunContext(ctx, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", dst); err != nil {
					tb.p.Fatalf("no ping -6 %s through the tunnel: %v\n%s", dst, err, out)
				}
			}
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
