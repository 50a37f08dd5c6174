package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/vif"
	"golang.org/x/sys/unix"
)

// captureOptions are the flags of "vif capture".
type captureOptions struct {
	count     int
	duration  time.Duration
	write     string
	direction string
	timeout   time.Duration
}

// captureEndWait bounds the wait for the daemon's last word once the
// command asked it to stop.
const captureEndWait = 5 * time.Second

// captureCmd is "vif capture".
func captureCmd() *cobra.Command {
	var o captureOptions
	cmd := &cobra.Command{
		Use:   "capture NAME",
		Short: "write the tunnel's packets, as on the wire, in pcap format",
		Long: `Write the outer packets of the vif NAME's tunnel, as its underlay sends and
receives them (encapsulated: outer IP header first), to FILE in pcap format
(link type RAW), for tcpdump, tshark or Wireshark. Received packets are
captured before they are checked: those the vif then drops are there too.

With the raw underlay, tcpdump on the slave interface shows these packets
too; with the AF_XDP underlay they bypass the host's IP stack and tcpdump
on the slave shows nothing of the tunnel. capture shows them whatever the
underlay. (The inner packets are on the vif itself: tcpdump -ni NAME.)

The capture stops after -c COUNT packets, after --duration D, on Ctrl-C
(SIGINT) or SIGTERM, and when the vif goes (then with an error). At the
end it says on standard error how many packets it captured, and how many
it dropped because it could not keep up: the tunnel never waits for a
capture.

Without -w, the pcap goes to standard output, unless that is a terminal.`,
		Example: `  vif capture vif0 -w tunnel.pcap
  vif capture vif0 | tcpdump -nr -
  vif capture vif0 -c 100 --direction in -w in.pcap
  vif capture vif0 --duration 30s --netns blue -w - | tshark -r -`,
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCapture(cmd.Context(), args, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().IntVarP(&o.count, "count", "c", 0, "stop after `COUNT` packets (0: no limit)")
	cmd.Flags().DurationVar(&o.duration, "duration", 0, "stop after `D`, a duration such as 10s or 5m (0: no limit)")
	cmd.Flags().StringVarP(&o.write, "write", "w", "", "write the pcap to `FILE` (-: standard output)")
	cmd.Flags().StringVar(&o.direction, "direction", "both", "capture the packets received (in), sent (out) or `both`")
	cmd.RegisterFlagCompletionFunc("direction", cobra.FixedCompletions([]cobra.Completion{"in", "out", "both"}, cobra.ShellCompDirectiveNoFileComp))
	timeoutFlag(cmd, &o.timeout, callTimeout)
	return cmd
}

// runCapture captures the vif args[0] into o.write, or stdout.
func runCapture(ctx context.Context, args []string, o captureOptions, stdout, stderr io.Writer) error {
	if err := checkTimeout(o.timeout); err != nil {
		return err
	}
	if len(args) != 1 {
		return usagef("capture takes one vif name, as in \"vif capture vif0 -w tunnel.pcap\"")
	}
	name := args[0]
	if o.count < 0 {
		return usagef("bad --count %d: give a number of packets (0: no limit)", o.count)
	}
	if o.duration < 0 {
		return usagef("bad --duration %v: give a positive duration such as 10s (0: no limit)", o.duration)
	}
	if _, err := vif.ParseDirection(o.direction); err != nil || o.direction == "" {
		return usagef("bad --direction %q: use in, out or both", o.direction)
	}
	if o.write == "" && isTerminal(stdout) {
		return usagef("vif capture writes pcap, not text: use -w FILE, or pipe it to tcpdump -nr -")
	}
	if err := needRoot("capture"); err != nil {
		return err
	}

	conn, err := startCapture(ctx, name, o)
	if err != nil {
		return err
	}
	defer conn.Close()
	if resp, err := call(ctx, daemon.Request{Op: daemon.OpShow, Name: name}, o.timeout, nil); err == nil && len(resp.Vifs) == 1 && resp.Vifs[0].Offload {
		fmt.Fprintf(stderr, "vif capture: %s runs --offload: the packets the kernel carries are not captured (tcpdump on the slave sees them)\n", name)
	}
	out := stdout
	if o.write != "" && o.write != "-" {
		f, err := createPcap(o.write)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	packets, end, err := copyCapture(ctx, conn, out, o)
	if c, ok := out.(io.Closer); ok && out != stdout {
		if cerr := c.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("capture of %s: %w (%d packets captured)", name, err, packets)
	}
	if end.Error != "" {
		return fmt.Errorf("capture of %s ended: %s (%d packets captured, %d dropped)", name, end.Error, packets, end.Dropped)
	}
	_, err = fmt.Fprintf(stderr, "%d packets captured, %d dropped\n", packets, end.Dropped)
	return err
}

// createPcap opens path for a capture, which holds the tunnel's traffic:
// a new file is readable by its owner only; a symbolic link is not
// followed and a file of another user not written (another user could
// read it, or have planted it).
func createPcap(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	// In a sticky directory (/tmp) another user's link is refused
	// before O_NOFOLLOW is looked at (fs.protected_symlinks): EACCES.
	if fi, lerr := os.Lstat(path); err != nil && lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
		err = syscall.ELOOP
	}
	if errors.Is(err, syscall.ELOOP) {
		return nil, usagef("%s is a symbolic link: give the file itself (-w)", path)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
			f.Close()
			return nil, usagef("%s belongs to user %d: write the capture, which holds the tunnel's traffic, to a file of your own (-w)", path, st.Uid)
		}
		if fi.Mode().IsRegular() {
			if err = f.Truncate(0); err == nil {
				err = f.Chmod(0o600)
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// startCapture asks the daemon for a capture of name and returns the
// connection its packets come on.
func startCapture(ctx context.Context, name string, o captureOptions) (*control.Conn, error) {
	paths, err := control.ThisNetns()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req := daemon.Request{Op: daemon.OpCapture, Name: name, Direction: o.direction}
	req.Deadline, _ = cctx.Deadline()
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	for {
		out, conn, err := control.CallStream(cctx, paths, b)
		switch {
		case errors.Is(err, control.ErrNotRunning):
			return nil, usagef("no such vif: %s (no vif runs in this network namespace; see \"vif show\")", name)
		case errors.Is(err, control.ErrRetry):
			// The daemon was exiting, or its queue full.
			select {
			case <-cctx.Done():
				return nil, fmt.Errorf("no vif daemon answered within %v; see %s", o.timeout, paths.Log)
			case <-time.After(20 * time.Millisecond):
			}
			continue
		case err != nil:
			return nil, err
		}
		var resp daemon.Response
		if err := json.Unmarshal(out, &resp); err != nil {
			conn.Close()
			return nil, fmt.Errorf("the vif daemon sent a bad answer: %v", err)
		}
		if !resp.OK {
			conn.Close()
			if resp.Refused {
				return nil, usagef("%s", resp.Error)
			}
			return nil, errors.New(resp.Error)
		}
		return conn, nil
	}
}

// copyCapture writes the packets that come on conn to out as pcap until
// o's count or duration is reached, ctx is done or the daemon ends the
// stream, and returns how many it wrote and the daemon's last word.
func copyCapture(ctx context.Context, conn *control.Conn, out io.Writer, o captureOptions) (uint64, daemon.CaptureEnd, error) {
	var end daemon.CaptureEnd
	bw := bufio.NewWriterSize(out, 64<<10)
	pw := &pcapWriter{w: bw}
	if err := pw.writeHeader(); err != nil {
		return 0, end, err
	}
	// Stopping is asking the daemon to: it stops the tap and answers with
	// the end frame, which says how many packets it dropped.
	stopped := make(chan struct{})
	var once sync.Once
	stop := func() {
		once.Do(func() {
			close(stopped)
			conn.CloseWrite()
			conn.SetReadDeadline(time.Now().Add(captureEndWait))
		})
	}
	var timer <-chan time.Time
	if o.duration > 0 {
		t := time.NewTimer(o.duration)
		defer t.Stop()
		timer = t.C
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-timer:
		case <-done:
			return
		}
		stop()
	}()
	var packets uint64
	for {
		if conn.Buffered() == 0 {
			// About to wait: what is written goes out now (a tcpdump
			// reading the pipe shows packets as they come).
			if err := bw.Flush(); err != nil {
				return packets, end, err
			}
		}
		f, err := daemon.ReadFrame(conn)
		if err != nil {
			select {
			case <-stopped:
				err = fmt.Errorf("the vif daemon did not confirm the end of the capture: %v", err)
			default:
				err = fmt.Errorf("the vif daemon ended the capture without a word (%v); see its log", err)
			}
			bw.Flush()
			return packets, end, err
		}
		switch f.Kind {
		case daemon.FramePacket:
			select {
			case <-stopped:
				continue // after the count, or the stop: not asked for
			default:
			}
			if err := pw.writePacket(f.Time, f.Data, len(f.Data)); err != nil {
				return packets, end, err
			}
			packets++
			if o.count > 0 && packets == uint64(o.count) {
				stop()
			}
		case daemon.FrameEnd:
			if err := json.Unmarshal(f.Data, &end); err != nil {
				return packets, end, fmt.Errorf("the vif daemon sent a bad end of capture: %v", err)
			}
			return packets, end, bw.Flush()
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
