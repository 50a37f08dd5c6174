package control

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// serveStream serves ln with a StreamHandler whose Stream writes "tick"
// lines until the client closes its side or the server closes, and then
// one line that says which.
func serveStream(t *testing.T, ln *Listener) *Server {
	s := &Server{StreamHandler: func(p Peer, req []byte) ([]byte, Stream) {
		if string(req) != "stream" {
			return []byte("plain " + string(req)), nil
		}
		return []byte("ok"), func(ctx context.Context, c net.Conn) {
			hangup := make(chan struct{})
			go func() { io.Copy(io.Discard, c); close(hangup) }()
			for {
				select {
				case <-hangup:
					io.WriteString(c, "end: client\n")
					return
				case <-ctx.Done():
					io.WriteString(c, "end: server\n")
					return
				case <-time.After(time.Millisecond):
					if _, err := io.WriteString(c, "tick\n"); err != nil {
						return
					}
				}
			}
		}
	}}
	done := make(chan struct{})
	go func() { s.Serve(ln); close(done) }()
	t.Cleanup(func() { s.Close(time.Second); <-done })
	return s
}

// readEnd reads lines from c until one starts with "end", and returns it.
func readEnd(t *testing.T, c *Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewScanner(c)
	ticks := 0
	for r.Scan() {
		if l := r.Text(); strings.HasPrefix(l, "end") {
			if ticks == 0 {
				t.Error("no tick before the end")
			}
			return l
		}
		ticks++
	}
	t.Fatalf("stream ended without its end line: %v", r.Err())
	return ""
}

func TestCallStream(t *testing.T) {
	p := testPaths(t)
	s := serveStream(t, listen(t, p))

	// A plain answer through a StreamHandler.
	if resp, err := Call(context.Background(), p, []byte("show")); err != nil || string(resp) != "plain show" {
		t.Fatalf("Call = %q, %v", resp, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, c, err := CallStream(ctx, p, []byte("stream"))
	if err != nil || string(resp) != "ok" {
		t.Fatalf("CallStream = %q, %v", resp, err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if l := readEnd(t, c); l != "end: client" {
		t.Errorf("got %q, want the end the client asked for", l)
	}
	c.Close()

	// The server's Close ends the streams it serves.
	_, c, err = CallStream(ctx, p, []byte("stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(20 * time.Millisecond)
	go s.Close(5 * time.Second)
	if l := readEnd(t, c); l != "end: server" {
		t.Errorf("got %q, want the end the server's Close made", l)
	}
}
