package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// Errors of Call.
var (
	// ErrNotRunning is returned when no daemon serves the network
	// namespace.
	ErrNotRunning = errors.New("no vif daemon runs in this network namespace")
	// ErrRetry is returned when the daemon closed the connection before
	// it took the request (it was exiting): nothing was done, and the
	// call may be repeated, against a new daemon.
	ErrRetry = errors.New("the vif daemon exited before it took the request")
	// ErrPermission is returned when the kernel or the daemon refuses the
	// caller: only root may command vif.
	ErrPermission = errors.New("permission denied")
)

// maxResponse bounds an answer's size in bytes.
const maxResponse = 64 << 20

// ImpostorError is returned by Call when the control socket is held by a
// process that does not run as the caller (root): its answers cannot be
// trusted and the request is not sent.
type ImpostorError struct {
	Socket string
	Peer   Peer   // the holder, as the kernel recorded it at listen(2)
	Who    string // the holder for a human, such as "pid 1234 (evil)"
}

func (e *ImpostorError) Error() string {
	return fmt.Sprintf("refusing to talk to %s: it is held by %s running as uid %d, not by root's vif daemon; stop that process",
		e.Socket, e.Who, e.Peer.UID)
}

// NoAnswerError is returned by Call when the daemon took the connection
// but did not answer before the context was done.
type NoAnswerError struct {
	Paths       Paths
	Who         string // the daemon, such as "pid 1234 (vif)"
	Interrupted bool   // the context was canceled rather than timed out
	Timeout     time.Duration
}

func (e *NoAnswerError) Error() string {
	if e.Interrupted {
		return fmt.Sprintf("interrupted while waiting for the vif daemon, %s; its log: %s", e.Who, e.Paths.Log)
	}
	return fmt.Sprintf("the vif daemon, %s, did not answer within %v: is it stopped or stuck? Its log: %s (--timeout waits longer)",
		e.Who, e.Timeout.Round(100*time.Millisecond), e.Paths.Log)
}

// greeting is the server's first line.
type greeting struct {
	Version int    `json:"version"`
	PID     int    `json:"pid"`
	Error   string `json:"error"`
}

// Call sends req (one line, without the newline) to the daemon that p
// names and returns its answer (without the newline). It checks, before it
// sends anything, that the socket's directory belongs to the caller and
// that the process holding the socket runs as the caller (root); it gives
// up when ctx is done, at once, closing the connection. Errors are
// ErrNotRunning, ErrRetry, ErrPermission (wrapped), *ImpostorError,
// *NoAnswerError, or others that say what failed.
func Call(ctx context.Context, p Paths, req []byte) ([]byte, error) {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", p.Socket)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return nil, ErrNotRunning
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return nil, fmt.Errorf("%w on %s: only root may command vif; run it with sudo", ErrPermission, p.Socket)
		case ctx.Err() != nil:
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("control: %w", err)
	}
	c := conn.(*net.UnixConn)
	defer c.Close()
	if _, err := checkDir(p.Dir); err != nil {
		return nil, err
	}
	peer, err := peerOf(c)
	if err != nil {
		return nil, err
	}
	if peer.UID != os.Geteuid() {
		return nil, &ImpostorError{Socket: p.Socket, Peer: peer, Who: describe(peer.PID)}
	}

	// Ctrl-C or a deadline ends the wait at once.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	noAnswer := func(err error) error {
		var ne net.Error
		if ctx.Err() == nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return nil
		}
		dl, _ := ctx.Deadline()
		return &NoAnswerError{Paths: p, Who: describe(peer.PID), Timeout: dl.Sub(start),
			Interrupted: errors.Is(ctx.Err(), context.Canceled)}
	}

	r := bufio.NewReader(io.LimitReader(c, maxResponse))
	line, err := r.ReadBytes('\n')
	if err != nil {
		if e := noAnswer(err); e != nil {
			return nil, e
		}
		return nil, ErrRetry // closed ungreeted: never served
	}
	var g greeting
	if err := json.Unmarshal(line, &g); err != nil {
		return nil, fmt.Errorf("control: the vif daemon, %s, sent a bad greeting: %v", describe(peer.PID), err)
	}
	if g.Error != "" {
		return nil, fmt.Errorf("%w: %s", ErrPermission, g.Error)
	}
	if _, err := c.Write(append(req, '\n')); err != nil {
		if e := noAnswer(err); e != nil {
			return nil, e
		}
		return nil, fmt.Errorf("control: sending the request: %w", err)
	}
	line, err = r.ReadBytes('\n')
	if err != nil {
		if e := noAnswer(err); e != nil {
			return nil, e
		}
		return nil, fmt.Errorf("the vif daemon, %s, closed the connection without answering (%v); see its log: %s", describe(peer.PID), err, p.Log)
	}
	return line[:len(line)-1], nil
}
