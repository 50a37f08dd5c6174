//go:build linux

package nstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopTimeout is how long Proc.Stop waits for a process to exit after
// SIGTERM before it sends SIGKILL.
const StopTimeout = 5 * time.Second

// maxOutput is how much of a process's output a Proc keeps: the last
// 1 MiB.
const maxOutput = 1 << 20

// A Proc is a process started in a host by Host.Start. Its output
// (standard output and standard error, interleaved) is kept for
// diagnostics and logged if the test fails. It is stopped at cleanup if it
// is still running. Its methods are safe for concurrent use.
type Proc struct {
	host *Host
	desc string
	cmd  *exec.Cmd
	out  *outputBuffer
	done chan struct{}
	err  error // the result of cmd.Wait; set before done is closed

	stopMu sync.Mutex // serialises Terminate
}

// Start starts name with args in the background inside the host's
// namespace and returns without waiting for it to finish. The process
// runs in a process group of its own, without standard input; it is
// killed if the test process dies, and stopped with Stop at cleanup. Start
// fails the test if name is not found in $PATH (or, when it contains a
// slash, does not exist) or cannot be started; use Proc.WaitFor to wait
// until it is ready.
func (h *Host) Start(name string, args ...string) *Proc {
	h.net.t.Helper()
	p, err := h.start(name, args)
	if err != nil {
		h.net.t.Fatalf("host %s: %v", h.name, err)
	}
	h.net.t.Cleanup(p.cleanup)
	return p
}

func (h *Host) start(name string, args []string) (*Proc, error) {
	// ip netns exec would start and fail at once; say why instead.
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("nstest: start %s: %w", name, err)
	}
	argv := append([]string{"netns", "exec", h.ns, name}, args...)
	out := &outputBuffer{changed: make(chan struct{})}
	cmd := exec.Command("ip", argv...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second // don't wait forever for orphans holding the output pipe
	p := &Proc{host: h, desc: commandLine(name, args), cmd: cmd, out: out, done: make(chan struct{})}

	// The kernel sends Pdeathsig when the thread that forked the child
	// exits, not the process (go.dev/issue/27505). Fork from a new,
	// unlocked goroutine: it cannot run on a thread locked by Do or by the
	// caller, and the Go runtime never retires an unlocked thread.
	errc := make(chan error, 1)
	go func() { errc <- cmd.Start() }()
	if err := <-errc; err != nil {
		return nil, &execError{cmd: commandLine("ip", argv), err: err}
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process ID. The process leads a process group with the
// same ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// String describes the process, such as "iperf3 -s on host b".
func (p *Proc) String() string { return p.desc + " on host " + p.host.name }

// Output returns what the process has written so far to its standard
// output and standard error. Only the last MiB is kept.
func (p *Proc) Output() string { return p.out.String() }

// Done returns a channel that is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// WaitFor waits up to timeout for the process's output to contain substr,
// for example "Server listening" for iperf3 -s. It returns an error that
// includes the output if the process exits first or the time runs out.
func (p *Proc) WaitFor(substr string, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		out, changed := p.out.watch()
		if strings.Contains(out, substr) {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			if strings.Contains(p.out.String(), substr) {
				return nil
			}
			return fmt.Errorf("nstest: %v exited (%v) before printing %q; output:\n%s", p, exitStatus(p.err), substr, p.Output())
		case <-timer.C:
			return fmt.Errorf("nstest: %v did not print %q within %v; output:\n%s", p, substr, timeout, p.Output())
		}
	}
}

// Wait waits up to timeout for the process to exit by itself and returns
// its exit error: nil if it exited with status 0, an *exec.ExitError if it
// exited otherwise. If it is still running after timeout, Wait returns an
// error saying so and leaves it running.
func (p *Proc) Wait(timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.err
	case <-timer.C:
		return fmt.Errorf("nstest: %v still running after %v", p, timeout)
	}
}

// Signal sends sig to the process's group: the process and the children
// that stayed in its group. It returns os.ErrProcessDone if the process
// has already exited.
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return p.signalGroup(sig)
}

// Stop ends the process, if it is still running, and returns its exit
// error as Wait does: it sends SIGTERM to the process group and, if the
// process has not exited after StopTimeout, SIGKILL. Processes left in
// the group after the process has exited are killed. A process that ends
// through SIGTERM without handling it reports the *exec.ExitError
// "signal: terminated"; one that must be killed makes Stop return an error
// saying so. Stop may be called more than once; later calls return the
// same result.
func (p *Proc) Stop() error {
	return p.Terminate(StopTimeout)
}

// Terminate is Stop with a grace period of timeout instead of StopTimeout.
func (p *Proc) Terminate(timeout time.Duration) error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	select {
	case <-p.done:
		_ = p.signalGroup(syscall.SIGKILL) // leftovers, if any
		return p.err
	default:
	}
	_ = p.signalGroup(syscall.SIGTERM)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		_ = p.signalGroup(syscall.SIGKILL)
		return p.err
	case <-timer.C:
	}
	_ = p.signalGroup(syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("nstest: %v did not exit within %v of SIGTERM and was killed", p, timeout)
}

func (p *Proc) signalGroup(sig syscall.Signal) error {
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// cleanup stops the process and, if the test failed, logs its output.
func (p *Proc) cleanup() {
	p.host.net.dumpOnFailure()
	err := p.Stop()
	if p.host.net.t.Failed() {
		p.host.net.t.Logf("nstest: %v (pid %d): %s; output:\n%s", p, p.Pid(), exitStatus(err), p.Output())
	}
}

// exitStatus describes the result of cmd.Wait.
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// outputBuffer keeps the tail of a process's output and lets readers wait
// for more.
type outputBuffer struct {
	mu      sync.Mutex
	buf     []byte
	dropped int64
	changed chan struct{} // closed and replaced on every write
}

// Write implements io.Writer.
func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - maxOutput; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.dropped += int64(over)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// String returns the output kept so far.
func (b *outputBuffer) String() string {
	s, _ := b.watch()
	return s
}

// watch returns the output kept so far and a channel that is closed at the
// next write.
func (b *outputBuffer) watch() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := string(b.buf)
	if b.dropped > 0 {
		s = "[... " + strconv.FormatInt(b.dropped, 10) + " bytes of earlier output dropped ...]\n" + s
	}
	return s, b.changed
}

// GoTool returns the go command, for building the programs a test runs in
// its hosts: the one on $PATH, or else that of the toolchain that built the
// running program (under sudo or "go test -exec sudo", $PATH often lacks
// go; a test binary runs where it was built).
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	//lint:ignore SA1019 the program runs on the machine that built it
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
