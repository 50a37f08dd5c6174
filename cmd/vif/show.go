package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/internal/metrics"
)

// showCmd is "vif show".
func showCmd() *cobra.Command {
	var (
		o       showOptions
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "show [NAME]",
		Short: "show vifs, their settings and counters",
		Long: `Show the vifs of this network namespace (or only NAME): addresses, slave,
tunnel endpoints, protocol, underlay, MTU, routes and counters.

The --json form is stable (fields are only ever added):

    {"vifs": [{"name", "addrs", "ranges", "exclude", "slave", "local", "peer", "protocol", "mtu",
               "routes", "arp_proxy", "local_missing", "addrs_missing",
               "routes_missing", "forward", "underlay": {"kind", "fallback", "transmit_only", "shared"}, "offload",
               "peers": [{"addr", "prefixes", "encapsulated_packets",
                          "encapsulated_bytes", "decapsulated_packets",
                          "decapsulated_bytes", "path_mtu"}],
               "counters": {"looped_packets", "looped_bytes",
                            "encapsulated_packets", "encapsulated_bytes",
                            "fragmented_packets",
                            "decapsulated_packets", "decapsulated_bytes",
                            "dropped", "drops": {REASON: N},
                            "icmp_sent", "icmp_limited"},
               "xdp": {"rx_xdp_packets", "tx_xdp_packets", "rx_raw_packets",
                       "tx_raw_packets", "dropped_packets"},
               "arp": {"requests", "replies", "probes_answered",
                       "announcements", "not_owned", "conflicts",
                       "rate_limited", "socket_drops", "dropped",
                       "drops": {REASON: N}},
               "ndp": {"solicitations", "replies", "dad_answered",
                       "announcements", "not_owned", "conflicts",
                       "rate_limited", "dropped", "drops": {REASON: N},
                       "groups", "all_multicast"}}],
     "daemon": {"pid", "log", "foreground", "goroutines", "rss_kib"}}`,
		Example: `  vif show
  vif show vif0 --json | jq .vifs[0].counters`,
		SuggestFor:        []string{"list", "ls", "status"},
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runShow(cmd.Context(), args, o, timeout, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVarP(&o.json, "json", "j", false, "print JSON (-j as in ip -j)")
	cmd.Flags().BoolVar(&o.config, "config", false, "print the running vifs as a configuration file (see \"vif apply --help\")")
	cmd.Flags().BoolVar(&o.prometheus, "prometheus", false, "print the counters as Prometheus metrics, for node_exporter's textfile collector")
	timeoutFlag(cmd, &timeout, callTimeout)
	return cmd
}

// showJSON is the document "vif show --json" prints.
type showJSON struct {
	Vifs   []daemon.VifStatus `json:"vifs"`
	Daemon *daemon.Info       `json:"daemon,omitempty"`
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// showOptions are the output forms of "vif show".
type showOptions struct {
	json, config, prometheus bool
}

// runShow prints the vifs the daemon reports, or only the vif args[0].
func runShow(ctx context.Context, args []string, o showOptions, timeout time.Duration, stdout io.Writer) error {
	if n := btoi(o.json) + btoi(o.config) + btoi(o.prometheus); n > 1 {
		return usagef("give one of --json, --config and --prometheus")
	}
	if err := checkTimeout(timeout); err != nil {
		return err
	}
	if len(args) > 1 {
		return usagef("show takes at most one vif name, as in \"vif show vif0\"")
	}
	name := ""
	if len(args) == 1 {
		name = args[0]
	}
	if err := needRoot("show"); err != nil {
		return err
	}
	resp, err := call(ctx, daemon.Request{Op: daemon.OpShow, Name: name, Config: o.config}, timeout, nil)
	if errors.Is(err, control.ErrNotRunning) {
		if name != "" {
			return fmt.Errorf("no such vif: %s (no vif runs in this network namespace)", name)
		}
		resp, err = daemon.Response{OK: true}, nil
	}
	if err != nil {
		return err
	}
	switch {
	case o.config:
		return writeConfig(stdout, resp.Vifs)
	case o.prometheus:
		return metrics.WriteText(stdout, resp.Vifs, resp.Daemon)
	}
	if o.json {
		doc := showJSON{Vifs: resp.Vifs, Daemon: resp.Daemon}
		if doc.Vifs == nil {
			doc.Vifs = []daemon.VifStatus{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	if len(resp.Vifs) == 0 {
		fmt.Fprintln(stdout, "no vifs in this network namespace (create one with \"vif up NAME ADDR\")")
		return nil
	}
	for k, st := range resp.Vifs {
		if k > 0 {
			fmt.Fprintln(stdout)
		}
		printVif(stdout, st)
	}
	if d := resp.Daemon; d != nil && d.Foreground {
		fmt.Fprintf(stdout, "\ndaemon: pid %d, a \"%s\" (its vifs go when it stops)\n", d.PID, foregroundName(d))
	} else if d != nil && d.Log != "" {
		fmt.Fprintf(stdout, "\ndaemon: pid %d, log %s\n", d.PID, d.Log)
	}
	return nil
}

// printVif prints one vif in the manner of "ip -s link" and "wg show".
func printVif(w io.Writer, st daemon.VifStatus) {
	own := joinPrefixes(st.Addrs)
	for _, r := range st.Ranges {
		own = strings.TrimSpace(own + " " + r.String() + " (range)")
	}
	fmt.Fprintf(w, "%s: %s  mtu %d\n", st.Name, own, st.MTU)
	for _, r := range st.Ranges {
		var ex []string
		for _, a := range st.Exclude {
			if r.Contains(a) {
				ex = append(ex, a.String())
			}
		}
		if len(ex) > 0 {
			fmt.Fprintf(w, "  range %s but %s (other hosts')\n", r, strings.Join(ex, " "))
		}
	}
	if st.Slave != "" {
		fmt.Fprintf(w, "  slave: %s\n", st.Slave)
	}
	switch {
	case !st.Local.IsValid():
		fmt.Fprintf(w, "  tunnel: none (no peer)\n")
	case st.LocalMissing:
		fmt.Fprintf(w, "  tunnel: from %s  protocol %s  PAUSED: %s is gone from the host\n", st.Local, protocols(st), st.Local)
	default:
		fmt.Fprintf(w, "  tunnel: from %s  protocol %s\n", st.Local, protocols(st))
	}
	if u := st.Underlay; u.Kind != "" {
		offload := ""
		if u.TransmitOnly {
			offload = " (transmit)"
		}
		if st.Offload {
			offload += ", offload in the kernel (tc)"
		}
		if u.Fallback != "" {
			fmt.Fprintf(w, "  underlay: %s%s (not xdp: %s)\n", u.Kind, offload, u.Fallback)
		} else {
			fmt.Fprintf(w, "  underlay: %s%s\n", u.Kind, offload)
		}
		if u.Shared != "" {
			fmt.Fprintf(w, "  underlay: %s\n", u.Shared)
		}
	}
	if x := st.XDP; x != nil {
		// Outer packets, counted by the underlay before the loop's checks.
		fmt.Fprintf(w, "  xdp: received %d packets, sent %d; by the raw sockets received %d, sent %d; dropped in full rings %d\n",
			x.RxXDP, x.TxXDP, x.RxRaw, x.TxRaw, x.Dropped)
	}
	for _, p := range st.Peers {
		fmt.Fprintf(w, "  peer %s: %s  path mtu %d; sent %d packets, %s; received %d packets, %s\n",
			p.Addr, joinPrefixes(p.Prefixes), p.PathMTU, p.EncapsulatedPackets, bytesString(p.EncapsulatedBytes),
			p.DecapsulatedPackets, bytesString(p.DecapsulatedBytes))
	}
	if len(st.Forward) > 0 {
		fmt.Fprintf(w, "  forwards to: %s\n", joinPrefixes(st.Forward))
	}
	if len(st.Routes) > 0 {
		fmt.Fprintf(w, "  routes: %s\n", joinPrefixes(st.Routes))
	}
	if missing := append(append([]netip.Prefix{}, st.AddrsMissing...), st.RoutesMissing...); len(missing) > 0 {
		fmt.Fprintf(w, "  removed from outside: %s\n", joinPrefixes(missing))
	}
	c := st.Counters
	fmt.Fprintf(w, "  looped:       %d packets, %s\n", c.LoopedPackets, bytesString(c.LoopedBytes))
	fmt.Fprintf(w, "  encapsulated: %d packets, %s", c.EncapsulatedPackets, bytesString(c.EncapsulatedBytes))
	if c.FragmentedPackets > 0 {
		fmt.Fprintf(w, " (%d sent in fragments)", c.FragmentedPackets)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  decapsulated: %d packets, %s\n", c.DecapsulatedPackets, bytesString(c.DecapsulatedBytes))
	fmt.Fprintf(w, "  dropped:      %d packets%s\n", c.Dropped, reasons(c.Drops))
	if c.ICMPSent+c.ICMPLimited > 0 {
		fmt.Fprintf(w, "  icmp errors:  %d sent, %d rate limited\n", c.ICMPSent, c.ICMPLimited)
	}
	if a := st.ARP; a != nil {
		fmt.Fprintf(w, "  arp proxy (%s, shared by its vifs): %d requests, %d replies, %d probes answered, %d announcements\n",
			st.Slave, a.Requests, a.Replies, a.ProbesAnswered, a.Announcements)
		fmt.Fprintf(w, "    not owned %d, conflicts %d, rate limited %d, lost in the socket %d, dropped %d%s\n",
			a.NotOwned, a.Conflicts, a.RateLimited, a.SocketDrops, a.Dropped, reasons(a.Drops))
	} else {
		fmt.Fprintf(w, "  arp proxy: off\n")
	}
	if n := st.NDP; n != nil {
		fmt.Fprintf(w, "  ndp proxy (%s, shared by its vifs): %d solicitations, %d replies, %d DAD answered, %d announcements\n",
			st.Slave, n.Solicitations, n.Replies, n.DADAnswered, n.Announcements)
		fmt.Fprintf(w, "    not owned %d, conflicts %d, rate limited %d, dropped %d%s\n",
			n.NotOwned, n.Conflicts, n.RateLimited, n.Dropped, reasons(n.Drops))
		if n.AllMulticast {
			fmt.Fprintf(w, "    %d multicast groups joined; all multicast received, for IPv6 ranges too large to join a group per address\n", n.Groups)
		} else {
			fmt.Fprintf(w, "    %d multicast groups joined\n", n.Groups)
		}
	}
}

func reasons(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func bytesString(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
