package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vif-project/vif/internal/daemon"
)

// logDir holds the daemons' log files, one per network namespace.
const logDir = "/run/vif"

// logPath returns the log file of this network namespace's daemon, named
// after the namespace's inode (/run is shared between namespaces).
func logPath() string {
	id := "unknown"
	if l, err := os.Readlink("/proc/self/ns/net"); err == nil {
		// "net:[4026531840]"
		id = strings.Trim(strings.TrimPrefix(l, "net:"), "[]")
	}
	return filepath.Join(logDir, "net-"+id+".log")
}

// daemonIdle is how long a daemon started by "vif up" waits for its first
// vif before it gives up (the command that started it died).
const daemonIdle = 30 * time.Second

// runDaemon is the hidden "vif daemon" command that "vif up" starts in the
// background. It serves the namespace's vifs until the last one goes.
func runDaemon(ctx context.Context, args []string, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ln, err := daemon.Listen()
	if errors.Is(err, daemon.ErrRunning) {
		return nil // another "vif up" started one first: it serves.
	}
	if err != nil {
		return err
	}
	defer ln.Close()
	d := daemon.New(log)
	log.Info("vif daemon started", "pid", os.Getpid())
	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go d.Serve(serveCtx, ln, daemon.Info{PID: os.Getpid(), Log: logPath()})
	idle := time.NewTimer(daemonIdle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("signal received, removing all vifs")
			err := d.Close()
			log.Info("vif daemon exits")
			return err
		case <-d.Empty():
			log.Info("last vif removed, vif daemon exits")
			return d.Close()
		case <-idle.C:
			if vifs, _ := d.Show(""); len(vifs) == 0 {
				log.Info("no vif to serve, vif daemon exits")
				return d.Close()
			}
		}
	}
}

// callSpawning sends req to this namespace's daemon, starting one first
// when none runs.
func callSpawning(ctx context.Context, req daemon.Request) (daemon.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := daemon.Call(ctx, req)
	if !errors.Is(err, daemon.ErrNotRunning) {
		return resp, err
	}
	if err := spawnDaemon(); err != nil {
		return daemon.Response{}, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err = daemon.Call(ctx, req)
		if !errors.Is(err, daemon.ErrNotRunning) || time.Now().After(deadline) {
			if errors.Is(err, daemon.ErrNotRunning) {
				err = fmt.Errorf("the vif daemon did not start: see %s", logPath())
			}
			return resp, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// spawnDaemon starts "vif daemon" detached from the terminal, logging to
// logPath.
func spawnDaemon() error {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	f, err := os.OpenFile(logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	defer f.Close()
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	cmd := exec.Command(exe, "daemon")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the vif daemon: %w", err)
	}
	return cmd.Process.Release()
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
