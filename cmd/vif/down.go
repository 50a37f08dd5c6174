package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
)

const downUsage = `Usage: vif down NAME

Remove the vif NAME and everything it installed (addresses, routes, ARP
publication). When the last vif of the namespace goes, its daemon exits.

Example:
  vif down vif0

Flags:
`

func runDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("down")
	timeout := fs.Duration("timeout", callTimeout, "give up if the daemon has not answered within this time")
	netnsFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stderr, fs, downUsage)
		return nil
	}
	if err != nil {
		return usagef("%v (see \"vif down --help\")", err)
	}
	if err := checkTimeout(*timeout); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("down takes one vif name, as in \"vif down vif0\"")
	}
	if err := needRoot("down"); err != nil {
		return err
	}
	_, err = call(ctx, daemon.Request{Op: daemon.OpDown, Name: pos[0]}, *timeout, false)
	if errors.Is(err, control.ErrNotRunning) {
		return fmt.Errorf("no such vif: %s (no vif runs in this network namespace; see \"vif show\")", pos[0])
	}
	return err
}
