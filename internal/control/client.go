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
	// it took the request (it was exiting) or its queue was full: nothing
	// was done, and the call may be repeated, against a new daemon.
	ErrRetry = errors.New("the vif daemon did not take the request")
	// ErrPermission is returned when the kernel or the daemon refuses the
	// caller: only root may command vif.
	ErrPermission = errors.New("permission denied")
)

// maxResponse bounds an answer's size in bytes.
const maxResponse = 64 << 20

// AnswerGrace is how long past its deadline Call waits for the answer to
// a request the daemon took: a daemon that finds the deadline passed when
// it is done says so (and undoes what it can), and that answer is worth
// waiting for.
const AnswerGrace = 500 * time.Millisecond

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
	Taken       bool   // the daemon had taken the request
	Timeout     time.Duration
}

func (e *NoAnswerError) Error() string {
	what := ""
	if e.Taken {
		what = " (it had taken the request: \"vif show\" tells what it did)"
	}
	if e.Interrupted {
		return fmt.Sprintf("interrupted while waiting for the vif daemon, %s%s; its log: %s", e.Who, what, e.Paths.Log)
	}
	if e.Taken {
		return fmt.Sprintf("the vif daemon, %s, did not answer within %v%s; its log: %s",
			e.Who, e.Timeout.Round(100*time.Millisecond), what, e.Paths.Log)
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
			if beaconHolder(p) != 0 {
				return nil, ErrRetry // it runs, and is putting its files back
			}
			return nil, ErrNotRunning
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return nil, fmt.Errorf("%w on %s: only root may command vif; run it with sudo", ErrPermission, p.Socket)
		case errors.Is(err, syscall.EAGAIN): // the queue is full
			return nil, ErrRetry
		case ctx.Err() != nil:
			return nil, ctx.Err()
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

	// Ctrl-C ends the wait at once, the deadline through the connection's.
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			c.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stop()
	dl, hasDeadline := ctx.Deadline()
	if hasDeadline {
		c.SetDeadline(dl)
	}
	taken := false
	noAnswer := func(err error) error {
		var ne net.Error
		if !errors.Is(ctx.Err(), context.Canceled) && !(errors.As(err, &ne) && ne.Timeout()) {
			return nil
		}
		return &NoAnswerError{Paths: p, Who: describe(peer.PID), Timeout: dl.Sub(start), Taken: taken,
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
	taken = true
	if hasDeadline && ctx.Err() == nil {
		c.SetDeadline(dl.Add(AnswerGrace))
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
