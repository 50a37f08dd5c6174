package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
)

// downCmd is "vif down".
func downCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "down NAME",
		Short: "remove a vif and all it installed",
		Long: `Remove the vif NAME and everything it installed (addresses, routes, ARP
publication). When the last vif of the namespace goes, its daemon exits.`,
		Example:           `  vif down vif0`,
		SuggestFor:        []string{"del", "delete", "remove", "rm", "stop"},
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDown(cmd.Context(), args, timeout)
		},
	}
	timeoutFlag(cmd, &timeout, callTimeout)
	return cmd
}

// runDown removes the vif args[0].
func runDown(ctx context.Context, args []string, timeout time.Duration) error {
	if err := checkTimeout(timeout); err != nil {
		return err
	}
	if len(args) != 1 {
		return usagef("down takes one vif name, as in \"vif down vif0\"")
	}
	if err := needRoot("down"); err != nil {
		return err
	}
	_, err := call(ctx, daemon.Request{Op: daemon.OpDown, Name: args[0]}, timeout, nil)
	if errors.Is(err, control.ErrNotRunning) {
		return fmt.Errorf("no such vif: %s (no vif runs in this network namespace; see \"vif show\")", args[0])
	}
	return err
}
