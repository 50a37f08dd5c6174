package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
)

// upConfig is the parsed command line of "vif up".
type upConfig struct {
	req        vif.LinkConfig
	foreground bool
	force      bool
	outerFrags bool
	verbose    bool
	timeout    time.Duration
}

// upFlags are the flags of "vif up" as given, before upFlags.config
// checks them.
type upFlags struct {
	routes, peers, forward       []string
	slave, local, proto, mtu     string
	underlay                     string
	noARP, isRange, defaultRoute bool
	offload                      bool
	c                            upConfig
}

// upCmd is "vif up"; do runs the parsed command line.
func upCmd(do func(ctx context.Context, c *upConfig, stdout, stderr io.Writer) error) *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "up NAME ADDR[/LEN]...",
		Short: `create a vif; it serves until "vif down"`,
		Long: `Create the virtual interface NAME answering on the IPv4 addresses ADDR
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
keeps its vifs; they resume when it comes back up.`,
		Example: `  # answer on 192.0.2.1 on eth0's segment
  vif up vif0 192.0.2.1 --slave eth0

  # every address of 203.0.113.0/24 on eth0's segment, with one route
  vif up vif0 203.0.113.0/24 --range --slave eth0

  # every address of an IPv6 /64, published by the NDP proxy
  vif up vif0 2001:db8:1::/64 --range --slave eth0

  # a tunnel: 198.51.100.0/24 is reached through the peer 198.18.0.2
  vif up vif0 192.0.2.1 --slave eth0 --peer 198.18.0.2 --route 198.51.100.0/24

  # the same over an IPv6 underlay (RFC 2473: IPv4 inside as protocol 4,
  # IPv6 inside as 41)
  vif up vif0 192.0.2.1 2001:db8:a::1 --slave eth0 --peer 2001:db8:ffff::2=198.51.100.0/24,2001:db8:b::/64

  # under systemd or in a container
  vif up vif0 192.0.2.1 --foreground`,
		SuggestFor:        []string{"add", "create", "start"},
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.config(args)
			if err != nil {
				return err
			}
			return do(cmd.Context(), c, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.slave, "slave", "", "tunnel over and publish the addresses on the physical interface `IFACE` (default: the interface of the default route)")
	fs.StringArrayVar(&f.peers, "peer", nil, "a tunnel peer `ADDR[=PREFIX,...]`: its underlay address, and the networks behind it (repeatable; without prefixes, the peer of every destination the others don't take)")
	fs.StringArrayVar(&f.forward, "forward", nil, "hand decapsulated packets for `PREFIX` to the kernel to route on, besides those for the vif's addresses (repeatable; default: none, no relay)")
	fs.StringVar(&f.local, "local", "", "outer source address `ADDR`, IPv4 or IPv6 as the peers are (default: the slave's primary IPv4 address, or its first global IPv6 address for IPv6 peers)")
	fs.StringArrayVar(&f.routes, "route", nil, "route `PREFIX` into the vif, towards the peer (repeatable)")
	fs.StringVar(&f.proto, "proto", "", "outer IP protocol of IPv4, `94|4`: 94 (IPIP, the default) or 4 (RFC 2003); over an IPv6 underlay only 4 (RFC 2473), the default there")
	fs.StringVar(&f.underlay, "underlay", "", "carry the tunnel over `xdp|raw`: xdp (AF_XDP sockets, past the kernel's IP stack; tcpdump and netfilter on the slave do not see the tunnel) or raw (raw IP sockets through the IP stack); default: xdp where it works, else raw")
	fs.BoolVar(&f.offload, "offload", false, "move the common case into the kernel: tc programs encapsulate to the peers and decapsulate from them, and hand everything else to vif (needs CAP_BPF and Linux 6.6; what vif sends leaves through AF_XDP, or raw sockets with --underlay raw; it receives through the kernel)")
	fs.StringVar(&f.mtu, "mtu", "", "the MTU `N` of the vif (default: the slave's MTU minus 20, or minus 40 over an IPv6 underlay)")
	fs.BoolVar(&f.noARP, "no-arp-proxy", false, "do not answer ARP for the addresses on the slave")
	fs.BoolVar(&f.defaultRoute, "default-route", false, "allow routing 0.0.0.0/0 into the vif (--route 0.0.0.0/0 or ADDR/0): all of the host's traffic without a better route goes into the tunnel")
	fs.BoolVar(&f.isRange, "range", false, "each ADDR/LEN is a whole range of addresses (IPv4 /8 or longer, IPv6 /48 or longer): made local with one route and published, but an IPv4 range's network and broadcast addresses, an IPv6 range's Subnet-Router anycast address (its first) and the addresses a probe finds in use (IPv4 up to a /22, IPv6 up to a /120; of a larger IPv6 range only those in the slave's neighbour table are probed)")
	fs.BoolVar(&f.c.force, "force", false, "publish the addresses even if another host on the segment answers for them")
	fs.BoolVar(&f.c.outerFrags, "outer-fragments", false, "allow an --mtu larger than the slave carries inside a tunnel (its MTU minus 20): larger packets go in outer fragments")
	fs.BoolVar(&f.c.foreground, "foreground", false, "stay attached until interrupted, logging to stderr (for systemd, containers, tests)")
	fs.BoolVarP(&f.c.verbose, "verbose", "v", false, "log debug messages: of a --foreground vif, or of the daemon this command starts; a daemon already running keeps its level")
	timeoutFlag(cmd, &f.c.timeout, upTimeout)
	cmd.RegisterFlagCompletionFunc("slave", completeInterfaces)
	cmd.RegisterFlagCompletionFunc("underlay", cobra.FixedCompletions([]string{vif.UnderlayXDP, vif.UnderlayRaw}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// config checks the flags and the positional arguments args.
func (f *upFlags) config(args []string) (*upConfig, error) {
	c := f.c
	if err := checkTimeout(c.timeout); err != nil {
		return nil, err
	}
	if len(args) < 2 {
		return nil, usagef("up needs a name and at least one address, as in \"vif up vif0 192.0.2.1\"")
	}
	c.req.Name = args[0]
	if err := vif.CheckName(c.req.Name); err != nil {
		return nil, usagef("bad name %q: use 1 to 15 letters, digits, '.', '-' or '_', such as vif0", c.req.Name)
	}
	for _, s := range args[1:] {
		if f.isRange {
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
	c.req.Slave = f.slave
	c.req.Publish = !f.noARP
	for _, s := range f.peers {
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
	for _, s := range f.forward {
		p, err := parsePrefix("forward", s)
		if err != nil {
			return nil, err
		}
		c.req.Forward = append(c.req.Forward, p)
	}
	var err error
	if f.local != "" {
		if c.req.Local, err = parseHost("local", f.local); err != nil {
			return nil, err
		}
	}
	for _, s := range f.routes {
		p, err := parsePrefix("route", s)
		if err != nil {
			return nil, err
		}
		c.req.Routes = append(c.req.Routes, p)
	}
	if !f.defaultRoute {
		for _, p := range append(slices.Clone(c.req.Routes), c.req.Addrs...) {
			if p.Bits() == 0 {
				return nil, usagef("%s routes 0.0.0.0/0 into the vif: all of the host's traffic without a better route would go into the tunnel; pass --default-route if that is what you want", p)
			}
		}
	}
	if c.req.Protocol, err = parseProto(f.proto); err != nil {
		return nil, err
	}
	if c.req.Protocol == ipip.ProtoIPIP {
		for _, a := range append([]netip.Addr{c.req.Local, c.req.Peer}, peerAddrs(c.req.Peers)...) {
			if a.Is6() {
				return nil, usagef("--proto 94 with the IPv6 underlay address %s: protocol 94 is defined over IPv4 only; over IPv6, IPv4 is carried as protocol 4 (RFC 2473): use --proto 4, or leave --proto out", a)
			}
		}
	}
	if c.req.MTU, err = parseMTU(f.mtu); err != nil {
		return nil, err
	}
	if c.req.Underlay, err = parseUnderlay(f.underlay); err != nil {
		return nil, err
	}
	c.req.Offload = f.offload
	return &c, nil
}

// runUp brings the vif up in this namespace's daemon, starting one if
// none runs, or serves it from this process with --foreground.
func runUp(ctx context.Context, c *upConfig, stdout, stderr io.Writer) error {
	if err := needRoot("up"); err != nil {
		return err
	}
	if c.foreground {
		return runForeground(ctx, c, stderr)
	}
	resp, err := call(ctx, daemon.Request{Op: daemon.OpUp, Up: &c.req, Force: c.force, OuterFragments: c.outerFrags}, c.timeout, &spawn{verbose: c.verbose})
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
		fmt.Fprintf(stdout, ", tunnel to %s (protocol %s)", st.Peers[0].Addr, protocols(st))
	case len(st.Peers) > 1:
		fmt.Fprintf(stdout, ", tunnel to %d peers (protocol %s)", len(st.Peers), protocols(st))
	case st.Local.IsValid():
		fmt.Fprintf(stdout, ", tunnel from %s, no peer yet (protocol %s)", st.Local, protocols(st))
	}
	if d := resp.Daemon; d != nil && d.Foreground {
		fmt.Fprintf(stdout, "; served by a \"%s\", pid %d: it goes when that process stops", foregroundName(d), d.PID)
	}
	fmt.Fprintln(stdout)
	return nil
}

// peerAddrs returns the addresses of peers.
func peerAddrs(peers []vif.Peer) []netip.Addr {
	out := make([]netip.Addr, len(peers))
	for k, p := range peers {
		out[k] = p.Addr
	}
	return out
}

// protocols names the outer protocols of st's tunnel: its protocol for
// IPv4 and, when a peer has IPv6 prefixes, 41 for IPv6 (6in4 or 6in6).
func protocols(st daemon.VifStatus) string {
	for _, p := range st.Peers {
		if slices.ContainsFunc(p.Prefixes, func(q netip.Prefix) bool { return q.Addr().Is6() }) {
			return fmt.Sprintf("%d, IPv6 in 41", st.Protocol)
		}
	}
	return strconv.Itoa(int(st.Protocol))
}

// foregroundName names the kind of foreground daemon d is.
func foregroundName(d *daemon.Info) string {
	if d.Serve {
		return "vif serve"
	}
	return "vif up --foreground"
}

// runForeground serves the vif from this process until a signal (SIGINT,
// SIGTERM, or SIGHUP when its terminal goes), or until "vif down" removes
// it; it is the namespace's daemon meanwhile.
func runForeground(ctx context.Context, c *upConfig, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel(c.verbose)}))
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
	if _, err := d.Up(daemon.Spec{LinkConfig: c.req, Force: c.force, OuterFragments: c.outerFrags}); err != nil {
		ln.Close()
		if daemon.Refused(err) {
			return usagef("%v", err)
		}
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	return serve(ctx, log, d, ln, daemon.Info{PID: os.Getpid(), Foreground: true}, false)
}
