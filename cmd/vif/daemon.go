package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
	"golang.org/x/sys/unix"
)

// daemonIdle is how long a daemon started by "vif up" waits for its first
// vif before it gives up (the command that started it died).
const daemonIdle = 30 * time.Second

// shutdownWait bounds how long a daemon told to stop waits for the
// requests it is serving to be answered.
const shutdownWait = 5 * time.Second

// healEvery is how often a daemon checks that its socket and lock files
// are still in place, and puts them back.
const healEvery = 2 * time.Second

// Default deadlines of the commands (--timeout).
const (
	upTimeout   = 30 * time.Second
	callTimeout = 5 * time.Second
)

// runDaemon is the hidden "vif daemon" command that "vif up" starts in the
// background. It serves the namespace's vifs until the last one goes.
// Until it logs to its file, its standard error is a pipe to the "vif up"
// that started it, which shows any error it reports.
func runDaemon(ctx context.Context, args []string, stderr io.Writer) error {
	paths, err := control.ThisNetns()
	if err != nil {
		return err
	}
	ln, err := control.Listen(paths)
	if errors.Is(err, control.ErrRunning) {
		return nil // another "vif up" started one first: it serves.
	}
	if err != nil {
		return err
	}
	// Only the daemon holding the lock touches the log: it keeps a dead
	// daemon's log (this namespace's inode may be a reused one) as .old,
	// a name logrotate's numbered files never take.
	if err := os.Rename(paths.Log, paths.Log+".old"); err != nil && !errors.Is(err, os.ErrNotExist) {
		ln.Close()
		return fmt.Errorf("rotating the daemon log: %w", err)
	}
	if err := logTo(paths.Log); err != nil {
		ln.Close()
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup { // logrotate's postrotate: reopen, never die
			if err := logTo(paths.Log); err != nil {
				log.Warn("SIGHUP: cannot reopen the log; still writing to the old file", "log", paths.Log, "err", err)
				continue
			}
			log.Info("SIGHUP: log reopened", "log", paths.Log)
		}
	}()
	log.Info("vif daemon started", "pid", os.Getpid(), "socket", paths.Socket)
	return serve(ctx, log, daemon.New(log), ln, daemon.Info{PID: os.Getpid(), Log: paths.Log})
}

// logTo makes path, opened for appending (so that logrotate's copytruncate
// works), this process's standard output and error, where its logger and
// the Go runtime write.
func logTo(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	defer f.Close()
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil {
			return fmt.Errorf("daemon log: %w", os.NewSyscallError("dup3", err))
		}
	}
	return nil
}

// serve answers control requests for d on ln until ctx is done (SIGINT,
// SIGTERM) or no vif is left, and then removes every vif. Exiting is
// atomic for the commands: the daemon stops accepting only when no request
// is being served and no vif is left, and a command whose connection was
// queued but never taken retries against a new daemon.
func serve(ctx context.Context, log *slog.Logger, d *daemon.Daemon, ln *control.Listener, info daemon.Info) error {
	srv := &control.Server{Handler: d.Handler(info), Log: log}
	served := make(chan struct{})
	go func() {
		srv.Serve(ln)
		close(served)
	}()
	idle := time.NewTimer(daemonIdle)
	defer idle.Stop()
	heal := time.NewTicker(healEvery)
	defer heal.Stop()
	var healErr string
	for {
		select {
		case <-ctx.Done():
			log.Info("signal received, removing all vifs")
			srv.Close(shutdownWait)
			<-served
			return closeDaemon(log, d)
		case <-srv.Idle():
		case <-d.Changed():
		case <-idle.C:
		case <-heal.C:
			did, err := ln.Heal()
			if did != "" {
				log.Warn("the control files were removed from outside; "+did, "socket", ln.Paths().Socket)
			}
			if e := fmt.Sprint(err); err != nil && e != healErr {
				log.Error("cannot restore the control files: commands no longer reach this daemon; stop it (SIGTERM) to remove its vifs", "err", err)
			}
			healErr = fmt.Sprint(err)
			continue
		}
		if srv.CloseIf(func() bool { return d.Len() == 0 }) {
			<-served
			log.Info("no vif left")
			return closeDaemon(log, d)
		}
	}
}

// closeDaemon logs each vif's final counters and removes them all.
func closeDaemon(log *slog.Logger, d *daemon.Daemon) error {
	vifs, _ := d.Show("")
	for _, st := range vifs {
		log.Info("final counters", "vif", st.Name, "looped", st.Counters.LoopedPackets,
			"encapsulated", st.Counters.EncapsulatedPackets, "decapsulated", st.Counters.DecapsulatedPackets,
			"dropped", st.Counters.Dropped, "drops", st.Counters.Drops)
	}
	err := d.Close()
	log.Info("vif daemon exits")
	return err
}

// errNoDaemon is returned by call, without spawn, when no daemon serves
// the network namespace.
var errNoDaemon = control.ErrNotRunning

// call sends req to this network namespace's daemon within timeout and
// returns its answer; an answer that reports an error is returned as that
// error. With spawn, a daemon is started when none runs. A daemon that
// exits before it takes the request (its last vif just went) is asked
// again, or replaced with spawn.
func call(ctx context.Context, req daemon.Request, timeout time.Duration, spawn bool) (daemon.Response, error) {
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
				return resp, errors.New(resp.Error)
			}
			return resp, nil
		case errors.Is(err, control.ErrNotRunning) && spawn:
			if started == nil {
				if started, err = spawnDaemon(); err != nil {
					return daemon.Response{}, err
				}
			}
		case errors.Is(err, control.ErrNotRunning):
			return daemon.Response{}, errNoDaemon
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

// spawnDaemon starts "vif daemon" in a session of its own, detached from
// the terminal. The returned channel receives what the daemon writes to
// its standard error before it logs to its file (an error, if it fails
// to start), and is closed then.
func spawnDaemon() (<-chan string, error) {
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "daemon")
	cmd.Stderr = w
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
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

// needRoot fails early, with the fix, when not running as root.
func needRoot(cmd string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("vif %s needs root (CAP_NET_ADMIN and CAP_NET_RAW): run it with sudo", cmd)
	}
	return nil
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for k, p := range ps {
		s[k] = p.String()
	}
	return strings.Join(s, " ")
}
