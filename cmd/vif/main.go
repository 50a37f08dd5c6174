// Command vif creates and runs virtual network interfaces: each vif answers
// on its own IPv4 addresses, loops back what is addressed to it, and
// tunnels everything else in IPIP (protocol 94 or 4) to a peer.
//
// Run "vif help" for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := func() {}
	if _, ns, _ := extractNetns(os.Args[1:]); ns == "" { // else the vif run in ns profiles
		stopProfile = startProfile()
	}
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	stop()
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) { // a re-executed vif printed its own error
			msg := err.Error()
			if !strings.HasPrefix(msg, "vif: ") {
				msg = "vif: " + msg
			}
			fmt.Fprintln(os.Stderr, msg)
		}
		os.Exit(exitCode(err))
	}
}
