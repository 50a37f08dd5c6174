package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
	"golang.org/x/sys/unix"
)

// Default deadlines of the commands (--timeout).
const (
	upTimeout   = 30 * time.Second
	callTimeout = 5 * time.Second
)

// spawn says how call starts a daemon when none runs.
type spawn struct {
	verbose bool // it logs debug messages
}

// call sends req to this network namespace's daemon within timeout and
// returns its answer; an answer that reports an error is returned as that
// error. With a spawn, a daemon is started when none runs. A daemon that
// exits before it takes the request (its last vif just went) is asked
// again, or replaced with a spawn. Without one, no daemon is
// control.ErrNotRunning.
func call(ctx context.Context, req daemon.Request, timeout time.Duration, sp *spawn) (daemon.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	paths, err := control.ThisNetns()
	if err != nil {
		return daemon.Response{}, err
	}
	req.Deadline, _ = ctx.Deadline()
	b, err := json.Marshal(req)
	if err != nil {
		return daemon.Response{}, err
	}
	var started <-chan string // the early errors of a daemon we started
	var lastSpawn time.Time
	timedOut := func() error {
		if errors.Is(ctx.Err(), context.Canceled) {
			return errors.New("interrupted")
		}
		return fmt.Errorf("no vif daemon answered within %v; see %s", timeout, paths.Log)
	}
	for {
		out, err := control.Call(ctx, paths, b)
		var na *control.NoAnswerError
		switch {
		case err == nil:
			var resp daemon.Response
			if err := json.Unmarshal(out, &resp); err != nil {
				return resp, fmt.Errorf("the vif daemon sent a bad answer: %v", err)
			}
			if !resp.OK {
				if resp.Refused { // bad input: exit status 2
					return resp, usagef("%s", resp.Error)
				}
				return resp, errors.New(resp.Error)
			}
			return resp, nil
		case errors.Is(err, control.ErrNotRunning) && sp != nil:
			// A daemon we started may find another that serves (one
			// restoring its removed files): start at most two a second.
			if started == nil && time.Since(lastSpawn) > 500*time.Millisecond {
				lastSpawn = time.Now()
				if started, err = spawnDaemon(sp.verbose); err != nil {
					return daemon.Response{}, err
				}
			}
		case errors.Is(err, control.ErrNotRunning):
			return daemon.Response{}, control.ErrNotRunning
		case errors.Is(err, control.ErrRetry):
		case errors.As(err, &na):
			return daemon.Response{}, err
		case ctx.Err() != nil: // the deadline struck while dialling
			return daemon.Response{}, timedOut()
		default:
			return daemon.Response{}, err
		}
		select {
		case msg, ok := <-started:
			if msg != "" {
				return daemon.Response{}, fmt.Errorf("the vif daemon did not start: %s", strings.TrimPrefix(msg, "vif: "))
			}
			if !ok {
				started = nil // it exited, or serves: look again, start another if needed
			}
		case <-ctx.Done():
			return daemon.Response{}, timedOut()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// spawnDaemon starts "vif daemon" (with --verbose if verbose) in a session
// of its own, detached from the terminal. The returned channel receives
// what the daemon writes to its standard error before it logs to its file
// (an error, if it fails to start), and is closed then.
func spawnDaemon(verbose bool) (<-chan string, error) {
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "daemon")
	if verbose {
		cmd.Args = append(cmd.Args, "--verbose")
	}
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		// The command's profile is the command's: a daemon writing the
		// same file would replace it.
		return strings.HasPrefix(kv, "VIF_CPUPROFILE=")
	})
	cmd.Stderr = w
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The daemon outlives this command: it must not hold the descriptors
	// this command inherited (a pipe a caller waits on to close, a make
	// jobserver). Go passes only stdin, stdout and stderr; the others
	// are closed at exec.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting the vif daemon: %w", err)
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("starting the vif daemon: %w", err)
	}
	cmd.Process.Release()
	early := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, 4096))
		r.Close()
		early <- strings.TrimSpace(string(b))
		close(early)
	}()
	return early, nil
}
