package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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
	line, c, err := call(ctx, p, req, false)
	if c != nil {
		c.Close()
	}
	return line, err
}

// A Conn is the client's side of a connection whose answer goes on with
// a stream (a server's Stream): read the stream from it, close its
// writing half (CloseWrite) to ask the server to end it, and Close it.
type Conn struct {
	c *net.UnixConn
	r *bufio.Reader
}

// Read reads the stream.
func (c *Conn) Read(b []byte) (int, error) { return c.r.Read(b) }

// Buffered returns how many bytes of the stream can be read without
// waiting for the server.
func (c *Conn) Buffered() int { return c.r.Buffered() }

// SetReadDeadline sets the deadline of Read, as net.Conn's does.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// CloseWrite tells the server that the client is done: the stream ends.
func (c *Conn) CloseWrite() error { return c.c.CloseWrite() }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// CallStream is Call for a request whose answer goes on with a stream:
// when it returns no error, the stream follows the answer on the
// returned Conn, which the caller must close. ctx bounds the wait for the
// answer only.
func CallStream(ctx context.Context, p Paths, req []byte) ([]byte, *Conn, error) {
	line, c, err := call(ctx, p, req, true)
	if err != nil && c != nil {
		c.Close()
		c = nil
	}
	return line, c, err
}

// call is Call, and CallStream with stream: it returns the connection,
// when it opened one, which the caller closes.
func call(ctx context.Context, p Paths, req []byte, stream bool) ([]byte, *Conn, error) {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", p.Socket)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			if beaconHolder(p) != 0 {
				return nil, nil, ErrRetry // it runs, and is putting its files back
			}
			return nil, nil, ErrNotRunning
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return nil, nil, fmt.Errorf("%w on %s: only root may command vif; run it with sudo", ErrPermission, p.Socket)
		case errors.Is(err, syscall.EAGAIN): // the queue is full
			return nil, nil, ErrRetry
		case ctx.Err() != nil:
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("control: %w", err)
	}
	c := conn.(*net.UnixConn)
	lr := &io.LimitedReader{R: c, N: maxResponse}
	r := bufio.NewReader(lr)
	cc := &Conn{c: c, r: r}
	if _, err := checkDir(p.Dir); err != nil {
		return nil, cc, err
	}
	peer, err := peerOf(c)
	if err != nil {
		return nil, cc, err
	}
	if peer.UID != os.Geteuid() {
		return nil, cc, &ImpostorError{Socket: p.Socket, Peer: peer, Who: describe(peer.PID)}
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

	line, err := r.ReadBytes('\n')
	if err != nil {
		if e := noAnswer(err); e != nil {
			return nil, cc, e
		}
		return nil, cc, ErrRetry // closed ungreeted: never served
	}
	var g greeting
	if err := json.Unmarshal(line, &g); err != nil {
		return nil, cc, fmt.Errorf("control: the vif daemon, %s, sent a bad greeting: %v", describe(peer.PID), err)
	}
	if g.Error != "" {
		return nil, cc, fmt.Errorf("%w: %s", ErrPermission, g.Error)
	}
	if _, err := c.Write(append(req, '\n')); err != nil {
		if e := noAnswer(err); e != nil {
			return nil, cc, e
		}
		return nil, cc, fmt.Errorf("control: sending the request: %w", err)
	}
	taken = true
	if hasDeadline && ctx.Err() == nil {
		c.SetDeadline(dl.Add(AnswerGrace))
	}
	line, err = r.ReadBytes('\n')
	if err != nil {
		if e := noAnswer(err); e != nil {
			return nil, cc, e
		}
		return nil, cc, fmt.Errorf("the vif daemon, %s, closed the connection without answering (%v); see its log: %s", describe(peer.PID), err, p.Log)
	}
	if stream {
		// The stream is not an answer: no limit, no deadline.
		stop()
		lr.N = math.MaxInt64
		c.SetDeadline(time.Time{})
	}
	return line[:len(line)-1], cc, nil
}
