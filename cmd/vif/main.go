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
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A write to a closed pipe on stdout (vif show | head -1) fails with
	// EPIPE rather than kill vif with SIGPIPE, which "vif --netns" would
	// report: the command stops writing and exits quietly (outputClosed).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	stopProfile := func() {}
	if _, ns, _ := extractNetns(os.Args[1:]); ns == "" { // else the vif run in ns profiles
		stopProfile = startProfile()
	}
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	stop()
	if outputClosed(err) {
		// The reader took what it wanted and went, as head(1) does:
		// not a failure, and nothing to say (stderr may be that pipe).
		os.Exit(0)
	}
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

// errOutputClosed is returned when the standard output's reader went away
// (a pipe closed early): vif exits quietly, with status 0.
var errOutputClosed = errors.New("standard output closed")

// outputClosed reports whether err is, or comes from, a write to the
// standard output that failed because no one reads it any more. EPIPE
// from anything else (a control socket the daemon closed) is an error.
func outputClosed(err error) bool {
	if errors.Is(err, errOutputClosed) {
		return true
	}
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Op == "write" && pe.Path == os.Stdout.Name() && errors.Is(pe.Err, syscall.EPIPE)
}
