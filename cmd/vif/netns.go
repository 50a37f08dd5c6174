package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// takeNetns takes --netns NS out of the command line args and returns
// the namespace, in which the command then runs again. In a completion
// request ("vif __complete WORD... PARTIAL", from the shell) only the
// complete words count, and a --netns whose value is being typed stays for
// cobra to complete.
func takeNetns(args []string) ([]string, string, error) {
	if len(args) < 2 || (args[0] != cobra.ShellCompRequestCmd && args[0] != cobra.ShellCompNoDescRequestCmd) {
		return extractNetns(args)
	}
	last := len(args) - 1
	words, ns, err := extractNetns(args[1:last])
	if err != nil || ns == "" {
		return args, "", nil
	}
	return slices.Concat(args[:1], words, args[last:]), ns, nil
}

// extractNetns removes --netns NS (or --netns=NS, -netns) from args and
// returns the namespace.
func extractNetns(args []string) ([]string, string, error) {
	var out []string
	ns := ""
	for k := 0; k < len(args); k++ {
		a := args[k]
		if a == "--" {
			out = append(out, args[k:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "netns" {
			out = append(out, a)
			continue
		}
		if !hasVal {
			if k+1 >= len(args) {
				return nil, "", usagef("--netns needs a namespace name, as in --netns blue")
			}
			k++
			val = args[k]
		}
		if val == "" {
			return nil, "", usagef("--netns needs a namespace name, as in --netns blue")
		}
		ns = val
	}
	return out, ns, nil
}

// exitError carries the exit status of a re-executed vif.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// inNetns runs this vif command again inside the network namespace ns, as
// "ip netns exec" would, and returns its exit status. The child is forked
// from a thread that joined the namespace, so the whole child lives there.
func inNetns(ns string, args []string) error {
	path := ns
	if !strings.Contains(ns, "/") {
		path = filepath.Join("/run/netns", ns)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("network namespace %q: %v (list them with \"ip netns list\")", ns, errors.Unwrap(err))
	}
	defer f.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	started := make(chan *os.Process, 1)
	go func() {
		// This thread joins the namespace and is never reused: the
		// goroutine exits without unlocking, so the runtime ends it.
		runtime.LockOSThread()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w: entering one needs root (CAP_SYS_ADMIN): run it with sudo", err)
			}
			errc <- fmt.Errorf("entering network namespace %q: %w", ns, err)
			return
		}
		cmd := exec.Command(exe, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		// The child is this command: killed, it must not go on alone
		// (this thread lives until the child ends).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			errc <- err
			return
		}
		started <- cmd.Process
		errc <- cmd.Wait()
	}()
	// The child is this command now: the signals meant for it go on to it
	// (Ctrl-C reaches both through the terminal's process group).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var child *os.Process
wait:
	for {
		select {
		case child = <-started:
		case sig := <-sigs:
			if child != nil {
				child.Signal(sig)
			}
		case err = <-errc:
			break wait
		}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGPIPE {
			// A vif that lets SIGPIPE kill it (an older one) wrote to
			// a pipe no one reads: quiet, as this vif is about it.
			return errOutputClosed
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			// It printed nothing: say what ended it, as a shell would.
			return fmt.Errorf("vif in network namespace %s ended by %v", ns, ws.Signal())
		}
		return &exitError{code: ee.ExitCode()}
	}
	return err
}
