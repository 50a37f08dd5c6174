package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/vif"
)

const upUsage = `Usage: vif up NAME ADDR[/LEN]... [flags]

Create the virtual interface NAME answering on the IPv4 addresses ADDR
(installed as /32 host addresses unless /LEN is given), and publish them
on the slave's segment with an ARP proxy. Packets routed into the vif for
its own addresses are looped back; others are encapsulated in IPIP and sent
through the slave to --peer (without a peer they are dropped).

vif up returns once the vif serves; a daemon (one per network namespace)
keeps it until "vif down NAME". With --foreground the command itself
serves the vif until interrupted (SIGINT/SIGTERM) and then removes
everything it installed.

Before it publishes the addresses, vif up asks the segment whether another
host uses them (RFC 5227 probes, 0.3 s) and refuses if one answers;
--force skips that.

A vif also goes, with everything it installed and a warning in the log,
when its interface is deleted ("ip link del NAME") or when the slave it
tunnels over or publishes on is deleted. A slave that only goes down
keeps its vifs; they resume when it comes back up.

Examples:
  # answer on 192.0.2.1 on eth0's segment
  vif up vif0 192.0.2.1 --slave eth0

  # every address of 203.0.113.0/24 on eth0's segment, with one route
  vif up vif0 203.0.113.0/24 --range --slave eth0

  # a tunnel: 198.51.100.0/24 is reached through the peer 198.18.0.2
  vif up vif0 192.0.2.1 --slave eth0 --peer 198.18.0.2 --route 198.51.100.0/24

  # under systemd or in a container
  vif up vif0 192.0.2.1 --foreground

Flags:
`

// upConfig is the parsed command line of "vif up".
type upConfig struct {
	req        vif.LinkConfig
	foreground bool
	force      bool
	verbose    bool
	timeout    time.Duration
}

func parseUp(args []string, stderr io.Writer) (*upConfig, error) {
	fs := newFlags("up")
	var (
		c                            upConfig
		routes, peers, forward       listFlag
		slave, local, proto, mtuFlag string
		noARP, isRange, defaultRoute bool
	)
	fs.StringVar(&slave, "slave", "", "physical interface to tunnel over and publish the addresses on (default: the interface of the default route)")
	fs.Var(&peers, "peer", "underlay address of a tunnel peer, ADDR=PREFIX[,PREFIX...] for the networks behind it (repeatable; without prefixes, the peer of every destination the others don't take)")
	fs.Var(&forward, "forward", "prefix that decapsulated packets may be for besides the vif's addresses, handed to the kernel to route on (repeatable; default: none, no relay)")
	fs.StringVar(&local, "local", "", "outer source address (default: the slave's primary IPv4 address)")
	fs.Var(&routes, "route", "prefix to route into the vif, towards the peer (repeatable)")
	fs.StringVar(&proto, "proto", "", "outer IP protocol: 94 (IPIP, the default) or 4 (RFC 2003)")
	fs.StringVar(&mtuFlag, "mtu", "", "MTU of the vif (default: the slave's MTU minus 20)")
	fs.BoolVar(&noARP, "no-arp-proxy", false, "do not answer ARP for the addresses on the slave")
	fs.BoolVar(&defaultRoute, "default-route", false, "allow routing 0.0.0.0/0 into the vif (--route 0.0.0.0/0 or ADDR/0): all of the host's traffic without a better route goes into the tunnel")
	fs.BoolVar(&isRange, "range", false, "each ADDR/LEN is a whole range of addresses: made local with one route and published but its network and broadcast addresses (and, up to a /22, the addresses a probe finds in use)")
	fs.BoolVar(&c.force, "force", false, "publish the addresses even if another host on the segment answers for them")
	fs.BoolVar(&c.foreground, "foreground", false, "stay attached until interrupted, logging to stderr (for systemd, containers, tests)")
	fs.BoolVar(&c.verbose, "v", false, "log debug messages")
	fs.DurationVar(&c.timeout, "timeout", upTimeout, "give up if the daemon has not answered within this time")
	netnsFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stderr, fs, upUsage)
			return nil, err
		}
		return nil, usagef("%v (see \"vif up --help\")", err)
	}
	if err := checkTimeout(c.timeout); err != nil {
		return nil, err
	}
	if len(pos) < 2 {
		return nil, usagef("up needs a name and at least one address, as in \"vif up vif0 192.0.2.1\"")
	}
	c.req.Name = pos[0]
	if err := vif.CheckName(c.req.Name); err != nil {
		return nil, usagef("bad name %q: use 1 to 15 letters, digits, '.', '-' or '_', such as vif0", c.req.Name)
	}
	for _, s := range pos[1:] {
		if isRange {
			p, err := parsePrefix("range", s)
			if err != nil {
				return nil, err
			}
			c.req.Ranges = append(c.req.Ranges, p)
			continue
		}
		p, err := parseAddr(s)
		if err != nil {
			return nil, err
		}
		c.req.Addrs = append(c.req.Addrs, p)
	}
	c.req.Slave = slave
	c.req.Publish = !noARP
	for _, s := range peers {
		p, withPrefixes, err := parsePeer(s)
		if err != nil {
			return nil, err
		}
		switch {
		case withPrefixes:
			c.req.Peers = append(c.req.Peers, p)
		case c.req.Peer.IsValid():
			return nil, usagef("only one --peer may come without prefixes (it takes every destination the others don't): give the others as ADDR=PREFIX[,PREFIX...]")
		default:
			c.req.Peer = p.Addr
		}
	}
	for _, s := range forward {
		p, err := parsePrefix("forward", s)
		if err != nil {
			return nil, err
		}
		c.req.Forward = append(c.req.Forward, p)
	}
	if local != "" {
		if c.req.Local, err = parseHost("local", local); err != nil {
			return nil, err
		}
	}
	for _, s := range routes {
		p, err := parsePrefix("route", s)
		if err != nil {
			return nil, err
		}
		c.req.Routes = append(c.req.Routes, p)
	}
	if !defaultRoute {
		for _, p := range append(slices.Clone(c.req.Routes), c.req.Addrs...) {
			if p.Bits() == 0 {
				return nil, usagef("%s routes 0.0.0.0/0 into the vif: all of the host's traffic without a better route would go into the tunnel; pass --default-route if that is what you want", p)
			}
		}
	}
	if c.req.Protocol, err = parseProto(proto); err != nil {
		return nil, err
	}
	if c.req.MTU, err = parseMTU(mtuFlag); err != nil {
		return nil, err
	}
	return &c, nil
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseUp(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := needRoot("up"); err != nil {
		return err
	}
	if c.foreground {
		return runForeground(ctx, c, stderr)
	}
	resp, err := call(ctx, daemon.Request{Op: daemon.OpUp, Up: &c.req, Force: c.force}, c.timeout, true)
	if err != nil {
		return err
	}
	st := resp.Vifs[0]
	for _, w := range st.Warnings {
		fmt.Fprintf(stderr, "vif: warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s up: %s", st.Name, joinPrefixes(append(st.Addrs, st.Ranges...)))
	if len(st.Exclude) > 0 {
		fmt.Fprintf(stdout, " (but %d addresses other hosts use)", len(st.Exclude))
	}
	if st.Slave != "" {
		fmt.Fprintf(stdout, " on %s", st.Slave)
	}
	switch {
	case len(st.Peers) == 1:
		fmt.Fprintf(stdout, ", tunnel to %s (protocol %d)", st.Peers[0].Addr, st.Protocol)
	case len(st.Peers) > 1:
		fmt.Fprintf(stdout, ", tunnel to %d peers (protocol %d)", len(st.Peers), st.Protocol)
	case st.Local.IsValid():
		fmt.Fprintf(stdout, ", tunnel from %s, no peer yet (protocol %d)", st.Local, st.Protocol)
	}
	if d := resp.Daemon; d != nil && d.Foreground {
		fmt.Fprintf(stdout, "; served by the foreground vif, pid %d: it goes when that process stops", d.PID)
	}
	fmt.Fprintln(stdout)
	return nil
}

// runForeground serves the vif from this process until a signal (SIGINT,
// SIGTERM, or SIGHUP when its terminal goes), or until "vif down" removes
// it; it is the namespace's daemon meanwhile.
func runForeground(ctx context.Context, c *upConfig, stderr io.Writer) error {
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	paths, err := control.ThisNetns()
	if err != nil {
		return err
	}
	ln, err := control.Listen(paths)
	if errors.Is(err, control.ErrRunning) {
		return fmt.Errorf("%w: run \"vif up\" without --foreground to add this vif to it", err)
	}
	if err != nil {
		return err
	}
	d := daemon.New(log)
	if _, err := d.Up(c.req, c.force); err != nil {
		ln.Close()
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	return serve(ctx, log, d, ln, daemon.Info{PID: os.Getpid(), Foreground: true})
}
