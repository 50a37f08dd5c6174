package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
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
const healEvery = time.Second

// sweepEvery is how often a daemon clears the control directory of what
// the daemons of network namespaces since deleted left (their logs), as
// it does when it starts and when it exits.
const sweepEvery = 10 * time.Minute

// daemonCmd is the hidden "vif daemon [--verbose]" that "vif up" starts in
// the background.
func daemonCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:    "daemon",
		Short:  "serve this network namespace's vifs (started by vif up)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), verbose)
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log debug messages")
	return cmd
}

// runDaemon serves the namespace's vifs until the last one goes. Until it
// logs to its file, its standard error is a pipe to the "vif up" that
// started it, which shows any error it reports.
func runDaemon(ctx context.Context, verbose bool) error {
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
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(verbose)}))
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
	return serve(ctx, log, daemon.New(log), ln, daemon.Info{PID: os.Getpid(), Log: paths.Log}, false)
}

// logLevel is the level of a daemon's log: Debug with verbose, else Info.
func logLevel(verbose bool) slog.Level {
	if verbose {
		return slog.LevelDebug
	}
	return slog.LevelInfo
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
// SIGTERM) or, unless stay is set, no vif is left, and then removes every
// vif. Exiting is
// atomic for the commands: the daemon stops accepting only when no request
// is being served and no vif is left, and a command whose connection was
// queued but never taken retries against a new daemon.
func serve(ctx context.Context, log *slog.Logger, d *daemon.Daemon, ln *control.Listener, info daemon.Info, stay bool) error {
	srv := &control.Server{StreamHandler: d.StreamHandler(info), Log: log}
	served := make(chan struct{})
	go func() {
		srv.Serve(ln)
		close(served)
	}()
	idle := time.NewTimer(daemonIdle)
	defer idle.Stop()
	if stay {
		idle.Stop()
	}
	heal := time.NewTicker(healEvery)
	defer heal.Stop()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
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
		case <-sweep.C:
			ln.Sweep()
			continue
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
		if !stay && srv.CloseIf(func() bool { return d.Len() == 0 }) {
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
