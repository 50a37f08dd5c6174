//go:build linux

// Package nsproc runs things inside network namespaces for vif's tools
// (vifbench, vifsoak, the demo): "ip" itself, background processes started
// through "ip netns exec" whose output is kept, and Go code on a thread
// switched into a namespace.
package nsproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// IP runs the ip command with args and returns its output in the error.
func IP(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Command returns a command running name inside namespace ns, in a process
// group of its own, killed if the calling program dies.
func Command(ns, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Proc is a background process in a namespace.
type Proc struct {
	Cmd  *exec.Cmd
	out  Buffer
	done chan struct{}
}

// Start runs name in ns in the background with env (nil: the caller's).
// ip netns exec execs name, so the process's PID is name's.
func Start(ns string, env []string, name string, args ...string) (*Proc, error) {
	p := &Proc{Cmd: Command(ns, name, args...), done: make(chan struct{})}
	p.Cmd.Env = env
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.out
	// Pdeathsig fires when the forking thread exits: fork from a fresh
	// goroutine on an unlocked thread (go.dev/issue/27505).
	errc := make(chan error, 1)
	go func() { errc <- p.Cmd.Start() }()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, ns, err)
	}
	go func() {
		p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID returns the process ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Output returns what the process wrote so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// WaitFor waits up to d for s to appear in the process's output.
func (p *Proc) WaitFor(ctx context.Context, s string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for !strings.Contains(p.out.String(), s) {
		select {
		case <-p.done:
			return errors.New("exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q after %v", s, d)
		}
	}
	return nil
}

// Stop ends the process with SIGTERM, or SIGKILL after 5 s.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Cmd.Process.Kill()
		<-p.done
	}
}

// Buffer is a bytes.Buffer safe for concurrent writes and reads, for a
// command's output.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Do runs fn on an OS thread inside the named network namespace (as in
// "ip netns"); sockets and devices fn opens stay in that namespace.
func Do(ns string, fn func() error) error {
	return OnThread(func() error {
		h, err := netns.GetFromName(ns)
		if err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			return err
		}
		return fn()
	})
}

// OnThread runs fn on a locked OS thread of its own, which fn may switch
// to another network namespace: the thread is switched back afterwards, or
// discarded if it cannot be.
func OnThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		errc <- fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return <-errc
}

// GoBin returns the go command: the one on PATH, or else the toolchain
// that built this program (under "sudo" or "go run -exec sudo" the PATH
// often lacks go; such a program runs where it was built).
func GoBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	//lint:ignore SA1019 the program runs on the machine that built it
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
