package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/spf13/cobra"
	"io"
	"time"

	"github.com/vif-project/vif/internal/config"
	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
)

// applyCmd is "vif apply".
func applyCmd() *cobra.Command {
	var (
		check   bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply FILE",
		Short: "bring this namespace's vifs to a configuration file",
		Long: `Bring the vifs of this network namespace to the configuration file FILE
(TOML), and print what changed, one line each.

Apply is declarative and idempotent: the namespace ends with exactly the
file's vifs, and applying the same file again changes nothing. Vifs the
file lacks are removed (also those made with "vif up"); new ones are
created (their addresses probed first, as vif up does); an edited vif is
changed in place where it can be (addresses, routes, peers, MTU: its
traffic flows on) and removed and created again when its slave, local,
protocol, ranges, forward, arp-proxy or an address's prefix length
changes. A bad file changes nothing and is refused in one line naming
its line. "vif show --config" prints the running vifs in this form.

Each key is the long flag of "vif up" it stands for:

  [vif.vif0]                                # the vif's name
  addresses = ["192.0.2.1", "192.0.2.2/32"] # ADDR or ADDR/LEN
  ranges = ["203.0.113.0/24"]               # vif up --range (or "2001:db8:1::/64")
  slave = "eth0"                            # default: the default route's
  local = "198.18.0.1"                      # default: the slave's address
  protocol = 94                             # or 4
  mtu = 1480                                # default: the slave's minus 20
  routes = ["198.51.100.0/24"]
  forward = ["198.51.100.0/24"]
  arp-proxy = true                          # false: --no-arp-proxy
  force = false                             # true: skip the probe
  default-route = false                     # true: allow 0.0.0.0/0

  [[vif.vif0.peer]]                         # one table per peer
  address = "198.18.0.2"
  allowed-ips = ["198.51.100.0/24"]         # none: every other destination`,
		Example: `  vif apply /etc/vif/vif.toml
  vif apply --check /etc/vif/vif.toml
  vif show --config > now.toml`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("apply takes one configuration file, as in \"vif apply /etc/vif/vif.toml\"")
			}
			return nil
		},
		ValidArgsFunction: cobra.FixedCompletions([]cobra.Completion{"toml"}, cobra.ShellCompDirectiveFilterFileExt),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTimeout(timeout); err != nil {
				return err
			}
			return runApply(cmd.Context(), args[0], check, timeout, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "only read the file and say whether it is good")
	timeoutFlag(cmd, &timeout, upTimeout)
	return cmd
}

// runApply is "vif apply FILE": it brings this network namespace's vifs
// to the configuration file path and prints what it changed. With check
// it only reads the file and says whether it is good.
func runApply(ctx context.Context, path string, check bool, timeout time.Duration, stdout io.Writer) error {
	specs, err := loadConfig(path)
	if err != nil {
		return err
	}
	if check {
		fmt.Fprintf(stdout, "%s: good, %d vif(s)\n", path, len(specs))
		return nil
	}
	if err := needRoot("apply"); err != nil {
		return err
	}
	// Without vifs to create, there is no daemon to start.
	var sp *spawn
	if len(specs) > 0 {
		sp = &spawn{}
	}
	resp, err := call(ctx, daemon.Request{Op: daemon.OpApply, Vifs: specs}, timeout, sp)
	if errors.Is(err, control.ErrNotRunning) {
		fmt.Fprintln(stdout, "no changes: no vif runs here and the file has none")
		return nil
	}
	for _, c := range resp.Changes {
		fmt.Fprintln(stdout, c)
	}
	if err != nil {
		return fmt.Errorf("applying %s: %w", path, err)
	}
	if len(resp.Changes) == 0 {
		fmt.Fprintf(stdout, "no changes: the vifs already are as %s says\n", path)
	}
	return nil
}

// writeConfig prints the running vifs vifs (shown with their Spec) as a
// configuration file.
func writeConfig(w io.Writer, vifs []daemon.VifStatus) error {
	specs := make([]daemon.Spec, 0, len(vifs))
	for _, v := range vifs {
		if v.Config != nil {
			specs = append(specs, *v.Config)
		}
	}
	b, err := config.Format(specs)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
