package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/spf13/cobra"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/vif-project/vif/internal/config"
	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/internal/metrics"
	"golang.org/x/sys/unix"
)

// serveOptions are the settings of "vif serve".
type serveOptions struct {
	config  string // a configuration file to apply at start and on SIGHUP
	metrics string // where to serve Prometheus metrics ("": nowhere)
	verbose bool
}

// serveCmd is "vif serve".
func serveCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [--config FILE]",
		Short: "serve this namespace's vifs in the foreground (systemd)",
		Long: `Serve the vifs of this network namespace from this process, in the
foreground, logging to stderr, as systemd runs it (Type=notify): apply
the configuration file (see "vif apply --help"), tell systemd READY=1,
and serve until SIGINT or SIGTERM, with or without vifs; they all go when
it stops. SIGHUP applies the file again, as "vif apply FILE" does
("systemctl reload"). "vif up", "vif set" and "vif show" talk to it as to
any vif daemon. A file that does not apply whole fails the start, and
nothing is left.

With --metrics it serves Prometheus metrics of every counter of "vif
show" at http://ADDR/metrics; a bare port is on loopback (127.0.0.1).
The endpoint has no authentication.

The unit files in cmd/vif/systemd run it.`,
		Example: `  vif serve --config /etc/vif/vif.toml
  vif serve --config /etc/vif/vif.toml --metrics 9477`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("serve takes no arguments: give the file as --config FILE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needRoot("serve"); err != nil {
				return err
			}
			return runServe(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&o.config, "config", "c", "", "the configuration `FILE` to apply at start and on SIGHUP")
	cmd.Flags().StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics at `ADDR` (HOST:PORT, or PORT on loopback)")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "log debug messages")
	return cmd
}

// runServe is "vif serve": this process is the network namespace's vif
// daemon, in the foreground, as systemd runs it (Type=notify). It applies
// the configuration file, tells systemd it is ready, and serves until
// SIGINT or SIGTERM, with or without vifs, removing them all when it
// stops. SIGHUP applies the file again ("systemctl reload"); so does
// "vif apply FILE". Other vif commands ("vif up", "vif set") reach it
// like the daemon "vif up" starts.
func runServe(ctx context.Context, o serveOptions, stderr io.Writer) error {
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// A file that does not parse stops the start before anything is
	// created.
	var specs []daemon.Spec
	if o.config != "" {
		var err error
		if specs, err = loadConfig(o.config); err != nil {
			return err
		}
	}
	paths, err := control.ThisNetns()
	if err != nil {
		return err
	}
	ln, err := control.Listen(paths)
	if errors.Is(err, control.ErrRunning) {
		return fmt.Errorf("%w: stop it first (\"vif down\" each of its vifs, or stop its service)", err)
	}
	if err != nil {
		return err
	}
	// A metrics address in use fails the start, before any vif exists.
	var mln net.Listener
	if o.metrics != "" {
		if mln, err = metrics.Listen(o.metrics); err != nil {
			ln.Close()
			return usagef("--metrics %s: %v", o.metrics, err)
		}
	}
	d := daemon.New(log)
	if o.config != "" {
		changes, err := d.Apply(specs)
		logChanges(log, changes)
		if err != nil {
			d.Close()
			ln.Close()
			if mln != nil {
				mln.Close()
			}
			return fmt.Errorf("applying %s: %w", o.config, err)
		}
	}
	if mln != nil {
		mctx, stop := context.WithCancel(ctx)
		served := make(chan struct{})
		defer func() { stop(); <-served }() // the listener closed on exit
		reg := metrics.NewRegistry(func() ([]daemon.VifStatus, error) { return d.Show("") })
		go func() {
			if err := metrics.Serve(mctx, mln, reg, log); err != nil {
				log.Error("metrics endpoint failed", "err", err)
			}
			close(served)
		}()
		log.Info("serving Prometheus metrics", "url", "http://"+mln.Addr().String()+metrics.Path)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			reload(log, d, o.config)
		}
	}()
	notify(log, "READY=1\nSTATUS="+status(d))
	log.Info("vif serve started", "pid", os.Getpid(), "socket", paths.Socket, "config", o.config)
	err = serve(ctx, log, d, ln, daemon.Info{PID: os.Getpid(), Foreground: true, Serve: true}, true)
	notify(log, "STOPPING=1")
	return err
}

// reload applies the configuration file again, on SIGHUP.
func reload(log *slog.Logger, d *daemon.Daemon, path string) {
	if path == "" {
		log.Warn("SIGHUP: no configuration file to apply (vif serve --config FILE)")
		return
	}
	notify(log, fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	defer func() { notify(log, "READY=1\nSTATUS="+status(d)) }()
	specs, err := loadConfig(path)
	if err != nil {
		log.Error("SIGHUP: the configuration file is not applied", "err", err)
		return
	}
	changes, err := d.Apply(specs)
	logChanges(log, changes)
	if err != nil {
		log.Error("SIGHUP: applying the configuration failed in part", "config", path, "err", err)
		return
	}
	log.Info("SIGHUP: configuration applied", "config", path, "changes", len(changes))
}

func logChanges(log *slog.Logger, changes []string) {
	for _, c := range changes {
		log.Info("applied", "change", c)
	}
}

// status is the one line "systemctl status" shows for the daemon.
func status(d *daemon.Daemon) string {
	vifs, _ := d.Show("")
	names := make([]string, len(vifs))
	for k, v := range vifs {
		names[k] = v.Name
	}
	if len(names) == 0 {
		return "serving no vif"
	}
	return fmt.Sprintf("serving %d vif(s): %s", len(names), strings.Join(names, " "))
}

// notify sends state to systemd's notification socket, if it started
// this process (sd_notify(3)); elsewhere it does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("cannot notify systemd", "state", state, "err", err)
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd wants
// with RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / int64(time.Microsecond)
}

// loadConfig reads the configuration file path; an error is one line
// naming the file and line (exit status 2).
func loadConfig(path string) ([]daemon.Spec, error) {
	specs, err := config.Load(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, usagef("no configuration file %s: write one (see \"vif apply --help\") or give its path", path)
	}
	if err != nil {
		return nil, usagef("%v", err)
	}
	return specs, nil
}
