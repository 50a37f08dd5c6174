package control

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testPaths returns the files of a daemon in a fresh directory of the
// test's (mode 0700, owned by the caller).
func testPaths(t *testing.T) Paths {
	dir := filepath.Join(t.TempDir(), "run")
	return PathsFor(dir, 4026531840)
}

func listen(t *testing.T, p Paths) *Listener {
	t.Helper()
	ln, err := Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func serve(t *testing.T, ln *Listener, h Handler) *Server {
	s := &Server{Handler: h}
	done := make(chan struct{})
	go func() { s.Serve(ln); close(done) }()
	t.Cleanup(func() { s.Close(time.Second); <-done })
	return s
}

func TestCall(t *testing.T) {
	p := testPaths(t)
	var got Peer
	serve(t, listen(t, p), func(peer Peer, req []byte) []byte {
		got = peer
		return append([]byte("echo "), req...)
	})
	long := bytes.Repeat([]byte("x"), 100_000)
	for _, req := range [][]byte{[]byte(`{"op":"show"}`), long} {
		resp, err := Call(context.Background(), p, req)
		if err != nil {
			t.Fatal(err)
		}
		if want := append([]byte("echo "), req...); !bytes.Equal(resp, want) {
			t.Errorf("answer %.40q, want %.40q", resp, want)
		}
	}
	if got.UID != os.Geteuid() || got.PID != os.Getpid() {
		t.Errorf("handler saw peer %+v, want uid %d pid %d", got, os.Geteuid(), os.Getpid())
	}
	fi, err := os.Stat(p.Dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v, mode %v, want 0700", err, fi.Mode().Perm())
	}
}

func TestListen(t *testing.T) {
	p := testPaths(t)
	ln := listen(t, p)
	if _, err := Listen(p); !errors.Is(err, ErrRunning) {
		t.Errorf("second Listen: %v, want ErrRunning", err)
	}
	ln.Close()
	for _, f := range []string{p.Socket, p.Lock} {
		if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Close: %v", f, err)
		}
	}
	// A daemon that died left its socket file (and its lock, unlocked).
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: p.Socket}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	os.WriteFile(p.Lock, nil, 0o600)
	if _, err := Call(context.Background(), p, []byte("x")); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Call to a dead daemon's socket: %v, want ErrNotRunning", err)
	}
	serve(t, listen(t, p), func(Peer, []byte) []byte { return []byte("ok") })
	if _, err := Call(context.Background(), p, []byte("x")); err != nil {
		t.Errorf("Call to the new daemon: %v", err)
	}
}

func TestListenFixesDirMode(t *testing.T) {
	p := testPaths(t)
	os.Mkdir(p.Dir, 0o755) // as vif 0.1 left it
	listen(t, p)
	if fi, _ := os.Stat(p.Dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestCallRefusesOpenDir(t *testing.T) {
	p := testPaths(t)
	serve(t, listen(t, p), func(Peer, []byte) []byte { return []byte("ok") })
	os.Chmod(p.Dir, 0o777)
	if _, err := Call(context.Background(), p, []byte("x")); err == nil || !strings.Contains(err.Error(), "others may write") {
		t.Errorf("Call through a world-writable directory: %v", err)
	}
}

func TestCallNotRunning(t *testing.T) {
	p := testPaths(t)
	if _, err := Call(context.Background(), p, []byte("x")); !errors.Is(err, ErrNotRunning) {
		t.Errorf("err = %v, want ErrNotRunning", err)
	}
}

// A connection closed before the greeting was never served: retry.
func TestCallRetry(t *testing.T) {
	p := testPaths(t)
	ln := listen(t, p)
	go func() {
		if c, err := ln.AcceptUnix(); err == nil {
			c.Close()
		}
	}()
	if _, err := Call(context.Background(), p, []byte("x")); !errors.Is(err, ErrRetry) {
		t.Errorf("err = %v, want ErrRetry", err)
	}
}

// A daemon that never answers: the deadline or a cancel ends the wait.
func TestCallNoAnswer(t *testing.T) {
	p := testPaths(t)
	listen(t, p) // queued by the kernel, never taken
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Call(ctx, p, []byte("x"))
	var na *NoAnswerError
	if !errors.As(err, &na) || na.Interrupted || !strings.Contains(err.Error(), p.Log) {
		t.Errorf("deadline: err = %v, want a NoAnswerError naming %s", err, p.Log)
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = Call(ctx, p, []byte("x"))
	if !errors.As(err, &na) || !na.Interrupted {
		t.Errorf("cancel: err = %v, want an interrupted NoAnswerError", err)
	}
}

// CloseIf never closes while a request is served: the daemon's last
// answer always reaches its command.
func TestServerCloseIf(t *testing.T) {
	p := testPaths(t)
	entered, release := make(chan struct{}), make(chan struct{})
	s := serve(t, listen(t, p), func(Peer, []byte) []byte {
		close(entered)
		<-release
		return []byte("answered")
	})
	res := make(chan error, 1)
	go func() {
		resp, err := Call(context.Background(), p, []byte("x"))
		if err == nil && string(resp) != "answered" {
			err = errors.New("answer " + string(resp))
		}
		res <- err
	}()
	<-entered
	if s.CloseIf(func() bool { return true }) {
		t.Fatal("CloseIf closed while a request was served")
	}
	close(release)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	<-s.Idle()
	if !s.CloseIf(func() bool { return true }) {
		t.Fatal("CloseIf did not close an idle server")
	}
	if _, err := Call(context.Background(), p, []byte("x")); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Call after CloseIf: %v, want ErrNotRunning", err)
	}
}

// A silent client is dropped after RequestTimeout and frees its slot.
func TestServerSilentClient(t *testing.T) {
	p := testPaths(t)
	s := &Server{Handler: func(Peer, []byte) []byte { return []byte("ok") }, MaxConns: 1, RequestTimeout: 100 * time.Millisecond}
	ln := listen(t, p)
	go s.Serve(ln)
	t.Cleanup(func() { s.Close(time.Second) })
	c, err := net.Dial("unix", p.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Call(context.Background(), p, []byte("x")); err != nil {
		t.Errorf("Call behind a silent client holding the only slot: %v", err)
	}
}

func TestRefusalSummary(t *testing.T) {
	var buf bytes.Buffer
	s := &Server{Log: slog.New(slog.NewTextHandler(&buf, nil))}
	s.init()
	refuse := func(uid int) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fds[1])
		f := os.NewFile(uintptr(fds[0]), "")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		s.refuse(c.(*net.UnixConn), Peer{UID: uid})
	}
	for range 500 {
		refuse(1000)
	}
	for uid := 2000; uid < 2000+maxRefusalUIDs+5; uid++ {
		refuse(uid)
	}
	s.refMu.Lock()
	s.refTimer.Stop()
	s.refMu.Unlock()
	s.logRefusals()
	out := buf.String()
	if n := strings.Count(out, "\n"); n != maxRefusalUIDs+1 {
		t.Errorf("%d lines, want %d:\n%s", n, maxRefusalUIDs+1, out)
	}
	for _, want := range []string{"refused 500 control connections from uid 1000 in the last 10s", "refused 6 control connections from other uids"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// Files of a daemon killed in another namespace go when the next starts.
func TestListenSweeps(t *testing.T) {
	p := testPaths(t)
	other := PathsFor(p.Dir, 4026532000)
	live := PathsFor(p.Dir, 4026532001)
	listen(t, live)
	dead := listen(t, other)
	// What SIGKILL leaves: the files, no lock held.
	dead.mu.Lock()
	dead.u.Close()
	dead.lock.Close()
	dead.closed = true
	dead.mu.Unlock()
	listen(t, p)
	for _, f := range []string{other.Socket, other.Lock} {
		if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dead daemon's %s not swept: %v", f, err)
		}
	}
	for _, f := range []string{live.Socket, live.Lock} {
		if _, err := os.Lstat(f); err != nil {
			t.Errorf("live daemon's %s swept: %v", f, err)
		}
	}
}

// Someone removes the daemon's files (rm -rf /run/vif): Heal puts them
// back, and a daemon that closes removes only files that are its own.
func TestListenerHeal(t *testing.T) {
	p := testPaths(t)
	ln := listen(t, p)
	serve(t, ln, func(Peer, []byte) []byte { return []byte("ok") })
	if did, err := ln.Heal(); err != nil || did != "" {
		t.Errorf("Heal of intact files: %q, %v", did, err)
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := Call(context.Background(), p, []byte("x")); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Call with the files gone: %v", err)
	}
	did, err := ln.Heal()
	if err != nil || did != "lock file restored, socket restored" {
		t.Fatalf("Heal = %q, %v", did, err)
	}
	if resp, err := Call(context.Background(), p, []byte("x")); err != nil || string(resp) != "ok" {
		t.Fatalf("Call after Heal: %q, %v", resp, err)
	}

	// The files go again, and a second daemon starts before Heal: the
	// first must not take the namespace back, nor remove the second's
	// files when it closes.
	os.Remove(p.Socket)
	os.Remove(p.Lock)
	second := listen(t, p)
	if _, err := ln.Heal(); err == nil || !strings.Contains(err.Error(), "second vif daemon") {
		t.Errorf("Heal against a second daemon: %v", err)
	}
	ln.Close()
	for _, f := range []string{p.Socket, p.Lock} {
		if _, err := os.Lstat(f); err != nil {
			t.Errorf("closing the first daemon removed the second's %s: %v", f, err)
		}
	}
	second.Close()
}

// A full queue is a retry, not a failure.
func TestCallQueueFull(t *testing.T) {
	p := testPaths(t)
	ln := listen(t, p)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Nothing accepts: fill the backlog until the kernel says EAGAIN.
	for k := 0; k < 100000; k++ {
		c, err := net.Dial("unix", p.Socket)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	if _, err := Call(context.Background(), p, []byte("x")); !errors.Is(err, ErrRetry) {
		t.Errorf("Call with a full queue: %v, want ErrRetry", err)
	}
	_ = ln
}
