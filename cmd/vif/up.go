package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/vif-project/vif/vif"
)

const upUsage = `Usage: vif up NAME ADDR[/LEN]... [flags]

Create the virtual interface NAME answering on the IPv4 addresses ADDR
(installed as /32 host addresses unless /LEN is given). Packets routed
into it for its own addresses are looped back; others are encapsulated in
IPIP and sent through the slave interface to --peer. Runs until
interrupted (SIGINT/SIGTERM) and then removes everything it installed.

Examples:
  # answer on 192.0.2.1 on eth0's segment
  vif up vif0 192.0.2.1 --slave eth0 --foreground

  # a tunnel: 198.51.100.0/24 is reached through the peer 198.18.0.2
  vif up vif0 192.0.2.1 --slave eth0 --peer 198.18.0.2 --route 198.51.100.0/24 --foreground

Flags:
`

// upConfig is the parsed command line of "vif up".
type upConfig struct {
	link       vif.LinkConfig
	foreground bool
	noARP      bool
	verbose    bool
}

func parseUp(args []string, stderr io.Writer) (*upConfig, error) {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, upUsage)
		fs.PrintDefaults()
	}
	var (
		c                                  upConfig
		routes                             listFlag
		slave, peer, local, proto, mtuFlag string
	)
	fs.StringVar(&slave, "slave", "", "physical interface to tunnel over and publish the addresses on (default: the interface of the default route)")
	fs.StringVar(&peer, "peer", "", "underlay address of the tunnel's other end (default: no tunnel)")
	fs.StringVar(&local, "local", "", "outer source address (default: the slave's primary IPv4 address)")
	fs.Var(&routes, "route", "prefix to route into the vif, towards the peer (repeatable)")
	fs.StringVar(&proto, "proto", "94", "outer IP protocol: 94 (IPIP) or 4 (RFC 2003)")
	fs.StringVar(&mtuFlag, "mtu", "", "MTU of the vif (default: the slave's MTU minus 20)")
	fs.BoolVar(&c.noARP, "no-arp-proxy", false, "do not answer ARP for the addresses on the slave")
	fs.BoolVar(&c.foreground, "foreground", false, "stay attached until interrupted")
	fs.BoolVar(&c.verbose, "v", false, "log debug messages")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%v (see \"vif up --help\")", err)
	}
	if len(pos) < 2 {
		return nil, usagef("up needs a name and at least one address, as in \"vif up vif0 192.0.2.1\"")
	}
	c.link.Name = pos[0]
	if err := vif.ValidName(c.link.Name); err != nil {
		return nil, usagef("bad name %q: use 1 to 15 letters, digits, '.', '-' or '_', such as vif0", c.link.Name)
	}
	for _, s := range pos[1:] {
		p, err := parseAddr(s)
		if err != nil {
			return nil, err
		}
		c.link.Addrs = append(c.link.Addrs, p)
	}
	c.link.Slave = slave
	if peer != "" {
		if c.link.Peer, err = parseHost("peer", peer); err != nil {
			return nil, err
		}
	}
	if local != "" {
		if c.link.Local, err = parseHost("local", local); err != nil {
			return nil, err
		}
	}
	for _, s := range routes {
		p, err := parseRoute(s)
		if err != nil {
			return nil, err
		}
		c.link.Routes = append(c.link.Routes, p)
	}
	if c.link.Protocol, err = parseProto(proto); err != nil {
		return nil, err
	}
	if c.link.MTU, err = parseMTU(mtuFlag); err != nil {
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
	if !c.foreground {
		return usagef("background mode is not available yet: add --foreground (and run it under systemd or in the background with &)")
	}
	if os.Geteuid() != 0 {
		return errors.New("vif up needs root (CAP_NET_ADMIN and CAP_NET_RAW): run it with sudo")
	}
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if c.link.Slave == "" && (c.link.Peer.IsValid() || !c.noARP) {
		if c.link.Slave, err = vif.DefaultSlave(); err != nil {
			return err
		}
	}
	c.link.Logger = log

	ifc, err := vif.Up(&c.link)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		log.Info("signal received, removing the vif")
	case <-ifc.Done():
		log.Warn("the interface went away, cleaning up")
	}
	s := ifc.Stats()
	err = ifc.Close()
	log.Info("final counters", "looped", s.Looped, "encapsulated", s.Encapsulated,
		"decapsulated", s.Decapsulated, "dropped", s.Dropped(), "drops", s.Drops)
	return err
}
