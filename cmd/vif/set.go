package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/vif"
)

const setUsage = `Usage: vif set NAME peer ADDR (allowed-ips PREFIX[,PREFIX...] | remove)

Change the peers of the running vif NAME, as "wg set" does, without
disturbing the traffic to its other peers:

  peer ADDR allowed-ips PREFIXES   add the peer ADDR (an underlay address),
                                   or give it these prefixes instead of its
                                   own: packets routed into the vif for them
                                   go to it (longest prefix wins), and only
                                   packets from it with an inner source in
                                   them are accepted. The prefixes are routed
                                   into the vif (but 0.0.0.0/0).
  peer ADDR remove                 remove the peer and its routes.

The vif needs a tunnel: it came up with --peer or --local.

Examples:
  vif set vif0 peer 198.18.0.3 allowed-ips 203.0.113.0/25
  vif set vif0 peer 198.18.0.3 remove

Flags:
`

func runSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("set")
	timeout := fs.Duration("timeout", callTimeout, "give up if the daemon has not answered within this time")
	netnsFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stderr, fs, setUsage)
		return nil
	}
	if err != nil {
		return usagef("%v (see \"vif set --help\")", err)
	}
	if err := checkTimeout(*timeout); err != nil {
		return err
	}
	req, err := parseSet(pos)
	if err != nil {
		return err
	}
	if err := needRoot("set"); err != nil {
		return err
	}
	_, err = call(ctx, req, *timeout, false)
	if errors.Is(err, control.ErrNotRunning) {
		return fmt.Errorf("no such vif: %s (no vif runs in this network namespace; see \"vif show\")", req.Name)
	}
	return err
}

// parseSet parses "NAME peer ADDR [allowed-ips LIST] [remove]".
func parseSet(pos []string) (daemon.Request, error) {
	req := daemon.Request{Op: daemon.OpSet}
	if len(pos) < 3 || pos[1] != "peer" {
		return req, usagef("set needs a vif and a peer, as in \"vif set vif0 peer 198.18.0.3 allowed-ips 203.0.113.0/25\"")
	}
	req.Name = pos[0]
	addr, err := parseHost("peer", pos[2])
	if err != nil {
		return req, err
	}
	req.Peer = &vif.Peer{Addr: addr}
	allowed := false
	for k := 3; k < len(pos); k++ {
		switch pos[k] {
		case "remove":
			req.Remove = true
		case "allowed-ips":
			if k+1 >= len(pos) {
				return req, usagef("allowed-ips needs prefixes, as in allowed-ips 203.0.113.0/25,198.51.100.0/24")
			}
			k++
			if req.Peer.Prefixes, err = parsePrefixes("allowed-ips", pos[k]); err != nil {
				return req, err
			}
			allowed = true
		default:
			return req, usagef("unexpected %q: use allowed-ips PREFIXES or remove (see \"vif set --help\")", pos[k])
		}
	}
	switch {
	case req.Remove && allowed:
		return req, usagef("give allowed-ips or remove, not both")
	case !req.Remove && !allowed:
		return req, usagef("say what to do with peer %s: allowed-ips PREFIXES, or remove", addr)
	}
	return req, nil
}

// parsePrefixes parses a comma-separated list of IPv4 prefixes whose host
// bits are zero.
func parsePrefixes(what, s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		p, err := parsePrefix(what, strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// parsePeer parses --peer ADDR or ADDR=PREFIX[,PREFIX...]: without
// prefixes, the peer takes every destination the others don't.
func parsePeer(s string) (vif.Peer, bool, error) {
	a, list, hasList := strings.Cut(s, "=")
	if a == "" {
		return vif.Peer{}, false, usagef("bad --peer %q: give the peer's underlay address before =, as in 198.18.0.2=198.51.100.0/24", s)
	}
	addr, err := parseHost("peer", a)
	if err != nil {
		return vif.Peer{}, false, err
	}
	p := vif.Peer{Addr: addr}
	if !hasList {
		return p, false, nil
	}
	if list == "" {
		return vif.Peer{}, false, usagef("bad --peer %q: give the prefixes behind the peer after =, as in %s=198.51.100.0/24, or leave out =", s, a)
	}
	if p.Prefixes, err = parsePrefixes("peer", list); err != nil {
		return vif.Peer{}, false, err
	}
	return p, true, nil
}
