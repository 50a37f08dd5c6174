//go:build linux

package nstest

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// A Program stands in for testing.TB so that a program that is not a test
// (a demo, a soak test, a benchmark driver) builds its topology with
// nstest, and removes it, as tests do:
//
//	p := nstest.NewProgram(os.Stderr)
//	defer p.Close() // removes the namespaces, stops the processes
//	err := p.Run(func() {
//		n := nstest.NewNamed(p, "mytool-")
//		a, b := n.Host("a"), n.Host("b")
//		...
//	})
//
// Fatalf and Skip end the function given to Run, which returns their
// message as an error; as in a test, they must be called from that
// function's goroutine. Errorf marks the program failed (Failed), which
// makes the cleanup log each host's state first. Its methods are safe for
// concurrent use.
type Program struct {
	log io.Writer

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

var _ TB = (*Program)(nil)

// NewProgram returns a Program that writes Logf and Errorf lines to log.
func NewProgram(log io.Writer) *Program { return &Program{log: log} }

// programFatal is the panic of Fatalf and Skip, which Run recovers.
type programFatal struct{ msg string }

// Run runs fn and returns the message of a Fatalf or Skip that ended it,
// as an error; nil if fn returned by itself.
func (p *Program) Run(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(programFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", f.msg)
		}
	}()
	fn()
	return nil
}

// Close runs the functions registered with Cleanup, last first.
func (p *Program) Close() {
	for {
		p.mu.Lock()
		n := len(p.cleanups)
		if n == 0 {
			p.mu.Unlock()
			return
		}
		f := p.cleanups[n-1]
		p.cleanups = p.cleanups[:n-1]
		p.mu.Unlock()
		f()
	}
}

// Helper does nothing: a Program has no call sites to hide.
func (p *Program) Helper() {}

// Logf writes a line to the Program's log.
func (p *Program) Logf(format string, args ...any) { fmt.Fprintf(p.log, format+"\n", args...) }

// Errorf logs and marks the Program failed.
func (p *Program) Errorf(format string, args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	p.Logf(format, args...)
}

// Fatalf marks the Program failed and ends the function given to Run.
func (p *Program) Fatalf(format string, args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	panic(programFatal{fmt.Sprintf(format, args...)})
}

// Skip ends the function given to Run (a Net skips when it lacks root or
// the ip command: for a program, that is an error).
func (p *Program) Skip(args ...any) { panic(programFatal{fmt.Sprint(args...)}) }

// Failed reports whether Errorf or Fatalf was called.
func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Cleanup registers f to run at Close.
func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

// TempDir returns a new directory that Close removes.
func (p *Program) TempDir() string {
	d, err := os.MkdirTemp("", "nstest-")
	if err != nil {
		p.Fatalf("nstest: %v", err)
	}
	p.Cleanup(func() { os.RemoveAll(d) })
	return d
}
