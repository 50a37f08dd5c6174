package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/vif"
)

// setCmd is "vif set".
func setCmd() *cobra.Command {
	var (
		timeout time.Duration
		force   bool
		frags   bool
	)
	cmd := &cobra.Command{
		Use:   "set NAME CHANGE",
		Short: "change a running vif: peer, addr, route or mtu",
		Long: `Change the running vif NAME in place, without recreating it: traffic to
what does not change goes on. CHANGE is one of:

    peer ADDR allowed-ips PREFIX[,PREFIX...]
        add the peer ADDR (an underlay address), or give it these prefixes
        instead of its own: packets routed into the vif for them go to it
        (longest prefix wins), and only packets from it with an inner
        source it owns are accepted. The prefixes are routed into the vif
        (but 0.0.0.0/0). The vif needs a tunnel: it came up with --peer or
        --local.
    peer ADDR remove
        remove the peer and its routes.
    addr add ADDR[/LEN]
        add an address, published on the slave's segment after a probe
        (RFC 5227; --force skips it), as vif up does.
    addr del ADDR[/LEN]
        remove an address.
    route add|del PREFIX
        route PREFIX into the vif, or no more.
    mtu N
        set the vif's MTU.`,
		Example: `  vif set vif0 peer 198.18.0.3 allowed-ips 203.0.113.0/25
  vif set vif0 peer 198.18.0.3 remove
  vif set vif0 addr add 192.0.2.2
  vif set vif0 route add 198.51.100.0/24
  vif set vif0 mtu 1400`,
		SuggestFor:        []string{"change"},
		ValidArgsFunction: completeSet,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSet(cmd.Context(), args, force, frags, timeout)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "addr add: publish the address even if another host on the segment answers for it")
	cmd.Flags().BoolVar(&frags, "outer-fragments", false, "mtu: allow an MTU larger than the slave carries inside a tunnel (its MTU minus 20)")
	timeoutFlag(cmd, &timeout, callTimeout)
	return cmd
}

// runSet sends the change of the command line args to the daemon.
func runSet(ctx context.Context, args []string, force, outerFragments bool, timeout time.Duration) error {
	if err := checkTimeout(timeout); err != nil {
		return err
	}
	req, err := parseSet(args)
	if err != nil {
		return err
	}
	req.Force, req.OuterFragments = force, outerFragments
	if err := needRoot("set"); err != nil {
		return err
	}
	_, err = call(ctx, req, timeout, nil)
	if errors.Is(err, control.ErrNotRunning) {
		return fmt.Errorf("no such vif: %s (no vif runs in this network namespace; see \"vif show\")", req.Name)
	}
	return err
}

// parseSet parses "NAME peer ADDR (allowed-ips LIST | remove)", "NAME
// addr (add|del) ADDR", "NAME route (add|del) PREFIX" and "NAME mtu N".
func parseSet(pos []string) (daemon.Request, error) {
	req := daemon.Request{Op: daemon.OpSet}
	if len(pos) < 3 {
		return req, usagef("set needs a vif and a change, as in \"vif set vif0 addr add 192.0.2.2\" (see \"vif set --help\")")
	}
	req.Name = pos[0]
	switch pos[1] {
	case "peer":
	case "addr", "route":
		if len(pos) != 4 || pos[2] != "add" && pos[2] != "del" {
			return req, usagef("use \"vif set %s %s add|del %s\"", pos[0], pos[1], map[string]string{"addr": "ADDR", "route": "PREFIX"}[pos[1]])
		}
		req.Remove = pos[2] == "del"
		if pos[1] == "addr" {
			p, err := parseAddr(pos[3])
			if err != nil {
				return req, err
			}
			req.Addr = &p
		} else {
			p, err := parsePrefix("route", pos[3])
			if err != nil {
				return req, err
			}
			if p.Bits() == 0 && !req.Remove {
				return req, usagef("routing 0.0.0.0/0 into a vif sends all of the host's traffic into the tunnel: use vif up --default-route for that")
			}
			req.Route = &p
		}
		return req, nil
	case "mtu":
		n, err := parseMTU(pos[2])
		if err != nil || len(pos) != 3 {
			return req, usagef("use \"vif set %s mtu N\" with N from 68 to 65515", pos[0])
		}
		req.MTU = n
		return req, nil
	default:
		return req, usagef("unknown change %q: use peer, addr, route or mtu (see \"vif set --help\")", pos[1])
	}
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
