package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// Defaults of a Server.
const (
	// DefaultMaxConns bounds the connections served at once; more wait
	// in the kernel's backlog.
	DefaultMaxConns = 32
	// DefaultRequestTimeout bounds the wait for a request after the
	// greeting, and for the answer to be taken.
	DefaultRequestTimeout = 2 * time.Second
)

// MaxRequest bounds a request's size in bytes; a longer one is not read.
const MaxRequest = 1 << 20

// refusalWindow is the period of the refused-connection summaries.
const refusalWindow = 10 * time.Second

// maxRefusalUIDs bounds the uids a summary names one by one; others are
// counted together.
const maxRefusalUIDs = 16

// A Handler answers one request from an authorised peer with one line
// (without the newline). It may take as long as the work takes: the
// request's deadline is the client's business.
type Handler func(p Peer, req []byte) []byte

// A Stream goes on with a connection after its answer line: it writes to
// c what the request asked for until it is done, and the server then
// closes c. The client writes nothing after its request; it closes its
// writing half, or the whole connection, to ask for the end, so that
// reading c returns io.EOF or an error: a Stream must then return
// promptly. ctx is done when the server is closed (Close). A Stream is
// called even when its answer could not be sent, with c closed, so that
// it can release what it holds.
type Stream func(ctx context.Context, c net.Conn)

// A StreamHandler answers like a Handler, and returns a Stream to go on
// with the connection after the answer, or nil.
type StreamHandler func(p Peer, req []byte) ([]byte, Stream)

// A Server serves control requests on a Listener. Only peers of the
// server's own effective uid (root for a daemon) are served; others get a
// one-line refusal and are counted in a summary logged at most every 10 s.
// Set the fields before Serve; its methods are safe for concurrent use.
type Server struct {
	Handler Handler
	// StreamHandler, if set, answers instead of Handler.
	StreamHandler StreamHandler
	// Log receives the refusal summaries and accept errors; nil discards.
	Log *slog.Logger
	// MaxConns and RequestTimeout default to DefaultMaxConns and
	// DefaultRequestTimeout.
	MaxConns       int
	RequestTimeout time.Duration

	initOnce sync.Once
	sem      chan struct{}
	idle     chan struct{}
	ctx      context.Context // of the Streams, canceled by Close
	cancel   context.CancelFunc

	mu      sync.Mutex
	ln      *Listener
	active  int
	closing bool
	wg      sync.WaitGroup

	refMu    sync.Mutex
	refused  map[int]int // by uid; -1 counts the uids past maxRefusalUIDs
	refTimer *time.Timer
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		if s.MaxConns <= 0 {
			s.MaxConns = DefaultMaxConns
		}
		if s.RequestTimeout <= 0 {
			s.RequestTimeout = DefaultRequestTimeout
		}
		s.sem = make(chan struct{}, s.MaxConns)
		s.idle = make(chan struct{}, 1)
		s.ctx, s.cancel = context.WithCancel(context.Background())
	})
}

// Idle returns a channel that receives after each served connection ends:
// the moment to ask, with CloseIf, whether the daemon should exit.
func (s *Server) Idle() <-chan struct{} {
	s.init()
	return s.idle
}

// Serve accepts connections on ln until Close or CloseIf closes it, and
// then returns nil; it closes ln.
func (s *Server) Serve(ln *Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ln.Close()
	}
	s.ln = ln
	s.mu.Unlock()
	var lastErrLog time.Time
	for {
		s.sem <- struct{}{}
		c, err := ln.AcceptUnix()
		if err != nil {
			<-s.sem
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if time.Since(lastErrLog) > time.Second { // EMFILE and the like
				s.Log.Warn("control socket: accept failed", "err", err)
				lastErrLog = time.Now()
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p, err := peerOf(c)
		if err != nil || p.UID != os.Geteuid() {
			s.refuse(c, p)
			<-s.sem
			continue
		}
		s.mu.Lock()
		if s.closing {
			// Never greeted: the client knows it may retry.
			s.mu.Unlock()
			c.Close()
			<-s.sem
			return nil
		}
		s.active++
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c, p)
	}
}

// serve greets c, reads its request and answers it.
func (s *Server) serve(c *net.UnixConn, p Peer) {
	defer func() {
		c.Close()
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
		s.wg.Done()
		<-s.sem
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}()
	c.SetDeadline(time.Now().Add(s.RequestTimeout))
	if _, err := fmt.Fprintf(c, "{\"version\":1,\"pid\":%d}\n", os.Getpid()); err != nil {
		return
	}
	req, err := bufio.NewReader(io.LimitReader(c, MaxRequest+1)).ReadBytes('\n')
	if err != nil {
		return // silent, slow, unterminated or oversized: closed unanswered
	}
	c.SetDeadline(time.Time{})
	var (
		resp   []byte
		stream Stream
	)
	if s.StreamHandler != nil {
		resp, stream = s.StreamHandler(p, req[:len(req)-1])
	} else {
		resp = s.Handler(p, req[:len(req)-1])
	}
	c.SetWriteDeadline(time.Now().Add(s.RequestTimeout))
	_, err = c.Write(append(resp, '\n'))
	if stream == nil {
		return
	}
	if err != nil {
		c.Close() // the stream finds it so, and releases what it holds
	}
	c.SetWriteDeadline(time.Time{})
	stream(s.ctx, c)
}

// refuse answers a peer that may not command the daemon, closes c and
// counts the refusal for the next summary.
func (s *Server) refuse(c *net.UnixConn, p Peer) {
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	fmt.Fprintf(c, "{\"error\":\"permission denied for uid %d: only root may command vif\"}\n", p.UID)
	c.Close()
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if s.refused == nil {
		s.refused = map[int]int{}
	}
	uid := p.UID
	if _, seen := s.refused[uid]; !seen && len(s.refused) >= maxRefusalUIDs {
		uid = -1
	}
	s.refused[uid]++
	if s.refTimer == nil {
		s.refTimer = time.AfterFunc(refusalWindow, s.logRefusals)
	}
}

// logRefusals logs the refusals of the window that ends now, one line per
// uid.
func (s *Server) logRefusals() {
	s.refMu.Lock()
	counts := s.refused
	s.refused, s.refTimer = nil, nil
	s.refMu.Unlock()
	for _, uid := range slices.Sorted(maps.Keys(counts)) {
		msg := fmt.Sprintf("refused %d control connections from uid %d in the last %v", counts[uid], uid, refusalWindow)
		if uid == -1 {
			msg = fmt.Sprintf("refused %d control connections from other uids in the last %v", counts[uid], refusalWindow)
		}
		s.Log.Warn(msg, "uid", uid, "connections", counts[uid])
	}
}

// CloseIf stops accepting, and returns true, if no connection is being
// served and cond (called with the server locked, so no connection can
// start meanwhile) holds. Connections the kernel queued but the server
// did not take are closed ungreeted: their clients retry.
func (s *Server) CloseIf(cond func() bool) bool {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.active > 0 || !cond() {
		return s.closing && s.active == 0
	}
	s.closeLocked()
	return true
}

// Close stops accepting and waits up to timeout for the connections being
// served to be answered.
func (s *Server) Close(timeout time.Duration) {
	s.init()
	s.mu.Lock()
	s.closeLocked()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

func (s *Server) closeLocked() {
	s.closing = true
	s.cancel()
	if s.ln != nil {
		s.ln.Close()
	}
	s.refMu.Lock()
	if s.refTimer != nil && s.refTimer.Stop() {
		s.refMu.Unlock()
		s.logRefusals()
		return
	}
	s.refMu.Unlock()
}
