package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SocketName is the control socket: an abstract unix socket (the leading
// '@'), which Linux scopes to the network namespace, so each namespace
// has its own daemon and nothing is left in the file system.
const SocketName = "@vif/control"

// ErrRunning is returned by Listen when a daemon already serves this
// network namespace.
var ErrRunning = errors.New("a vif daemon already serves this network namespace")

// ErrNotRunning is returned by Call when no daemon serves this network
// namespace.
var ErrNotRunning = errors.New("no vif daemon runs in this network namespace")

// Listen opens the control socket of this network namespace.
func Listen() (*net.UnixListener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketName, Net: "unix"})
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, ErrRunning
	}
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// Serve answers requests on ln until ctx is done or ln is closed. info is
// returned with show requests.
func (d *Daemon) Serve(ctx context.Context, ln *net.UnixListener, info Info) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			d.log.Warn("control socket accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go d.handle(c, info)
	}
}

func (d *Daemon) handle(c *net.UnixConn, info Info) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	resp := d.answer(c, info)
	b, _ := json.Marshal(resp)
	c.Write(append(b, '\n'))
}

func (d *Daemon) answer(c *net.UnixConn, info Info) Response {
	if err := checkPeer(c); err != nil {
		d.log.Warn("control request refused", "err", err)
		return Response{Error: err.Error()}
	}
	line, err := bufio.NewReaderSize(io.LimitReader(c, maxRequest+1), 4096).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return Response{Error: "reading request: " + err.Error()}
	}
	req, err := DecodeRequest(line)
	if err != nil {
		return Response{Error: err.Error()}
	}
	switch req.Op {
	case OpUp:
		st, err := d.Up(*req.Up)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true, Vifs: []VifStatus{st}}
	case OpDown:
		if err := d.Down(req.Name); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true}
	default: // OpShow
		vifs, err := d.Show(req.Name)
		if err != nil {
			return Response{Error: err.Error()}
		}
		info.Goroutines = runtime.NumGoroutine()
		info.RSSKiB = selfRSS()
		return Response{OK: true, Vifs: vifs, Daemon: &info}
	}
}

// selfRSS returns this process's resident set size in KiB (0 if unknown).
func selfRSS() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// checkPeer accepts only root or a process with CAP_NET_ADMIN: whoever
// can talk to the daemon can create interfaces.
func checkPeer(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if cred.Uid == 0 || hasNetAdmin(int(cred.Pid)) {
		return nil
	}
	return fmt.Errorf("permission denied for uid %d: vif needs root or CAP_NET_ADMIN (run it with sudo)", cred.Uid)
}

// hasNetAdmin reports whether process pid has CAP_NET_ADMIN in its
// effective set.
func hasNetAdmin(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_NET_ADMIN) != 0
		}
	}
	return false
}

// Call sends req to the daemon of this network namespace and returns its
// response. A response with an error is returned as an error.
func Call(ctx context.Context, req Request) (Response, error) {
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "unix", SocketName)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return Response{}, ErrNotRunning
		}
		return Response{}, fmt.Errorf("control socket: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return Response{}, fmt.Errorf("control socket: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("control socket: reading the daemon's answer: %w", err)
	}
	if !resp.OK {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}
