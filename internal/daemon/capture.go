package daemon

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/vif"
)

// A capture request (OpCapture) is answered with a Response and, when it
// is OK, the vif's outer packets follow on the connection as frames
// (WriteFrame, ReadFrame) until the vif goes, the daemon stops, or the
// client closes its writing half of the connection (or all of it). The
// last frame, FrameEnd, says why the stream ended and how many packets
// were dropped.

// Kinds of frames.
const (
	// FramePacket carries one outer packet.
	FramePacket = 1
	// FrameEnd ends the stream; its data is a JSON CaptureEnd.
	FrameEnd = 2
)

// frameHeaderLen is the length of a frame's header:
//
//	 0      1      2             4                   8
//	+------+------+-------------+-------------------+
//	| kind | dir  | 0           | data length       |
//	+------+------+-------------+-------------------+
//	| time, nanoseconds since the Unix epoch        |
//	+-----------------------------------------------+ 16
//
// in network byte order, then the data.
const frameHeaderLen = 16

// maxFrameData bounds a frame's data; a longer one is a broken stream.
const maxFrameData = 1 << 20

// A Frame is one element of a capture stream.
type Frame struct {
	Kind      uint8
	Direction vif.Direction // FramePacket's
	Time      time.Time     // FramePacket's
	Data      []byte
}

// CaptureEnd is the data of FrameEnd.
type CaptureEnd struct {
	// Packets counts the packets sent in the stream; Dropped those the
	// vif captured that the stream had no room for (its reader was
	// slow).
	Packets uint64 `json:"packets"`
	Dropped uint64 `json:"dropped"`
	// Error says why the stream ended if the client did not ask: the
	// vif went away, the daemon stopped.
	Error string `json:"error,omitempty"`
}

// WriteFrame writes f to w.
func WriteFrame(w io.Writer, f Frame) error {
	var h [frameHeaderLen]byte
	h[0], h[1] = f.Kind, byte(f.Direction)
	binary.BigEndian.PutUint32(h[4:], uint32(len(f.Data)))
	if !f.Time.IsZero() {
		binary.BigEndian.PutUint64(h[8:], uint64(f.Time.UnixNano()))
	}
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(f.Data)
	return err
}

// ReadFrame reads the next frame from r. Its Data is a new slice. It
// returns io.EOF at the end of r, io.ErrUnexpectedEOF within a frame.
func ReadFrame(r io.Reader) (Frame, error) {
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(h[4:])
	if n > maxFrameData {
		return Frame{}, fmt.Errorf("daemon: capture frame of %d bytes", n)
	}
	f := Frame{Kind: h[0], Direction: vif.Direction(h[1]), Data: make([]byte, n)}
	if ns := int64(binary.BigEndian.Uint64(h[8:])); ns != 0 {
		f.Time = time.Unix(0, ns)
	}
	if _, err := io.ReadFull(r, f.Data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return f, nil
}

// maxCaptures bounds the captures a daemon serves at once: each holds a
// connection of the control socket, which serves control.DefaultMaxConns
// at once.
const maxCaptures = 8

// capturer is a link that can be captured: a *vif.Interface.
type capturer interface {
	Capture(*vif.CaptureOptions) (*vif.Capture, error)
}

// StreamHandler returns the control.StreamHandler that serves requests
// with d, as Handler does, and capture requests with a stream.
func (d *Daemon) StreamHandler(info Info) control.StreamHandler {
	h := d.Handler(info)
	return func(p control.Peer, b []byte) ([]byte, control.Stream) {
		req, err := DecodeRequest(b)
		if err != nil || req.Op != OpCapture {
			return h(p, b), nil
		}
		resp, stream := d.capture(p, req)
		out, _ := json.Marshal(resp)
		return out, stream
	}
}

// capture starts capturing the vif req.Name and returns the stream that
// sends its packets.
func (d *Daemon) capture(p control.Peer, req Request) (Response, control.Stream) {
	if !req.Deadline.IsZero() && time.Now().After(req.Deadline) {
		return Response{Error: "request expired before the daemon took it; nothing was done"}, nil
	}
	d.log.Info("control request", "op", req.Op, "vif", req.Name, "direction", req.Direction, "uid", p.UID, "pid", p.PID)
	e, err := d.find(req.Name)
	if err != nil {
		return failed(err), nil
	}
	ci, ok := e.ifc.(capturer)
	if !ok {
		return failed(fmt.Errorf("%s cannot be captured", req.Name)), nil
	}
	dir, err := vif.ParseDirection(req.Direction)
	if err != nil {
		return failed(fmt.Errorf("%w: %v", ErrBadRequest, err)), nil
	}
	if d.captures.Add(1) > maxCaptures {
		d.captures.Add(-1)
		return failed(fmt.Errorf("%d captures run in this network namespace already: stop one first", maxCaptures)), nil
	}
	c, err := ci.Capture(&vif.CaptureOptions{Direction: dir})
	if errors.Is(err, vif.ErrNoTunnel) {
		err = fmt.Errorf("%w: %s has no peer, so nothing crosses its underlay", vif.ErrNoTunnel, req.Name)
	}
	if err != nil {
		d.captures.Add(-1)
		return failed(err), nil
	}
	return Response{OK: true}, func(ctx context.Context, conn net.Conn) {
		defer d.captures.Add(-1)
		d.streamCapture(ctx, conn, c, req.Name)
	}
}

// streamCapture sends c's packets on conn, and then the end frame, until
// c ends (the vif went), the client closes its side or ctx is done (the
// daemon stops). It closes c.
func (d *Daemon) streamCapture(ctx context.Context, conn net.Conn, c *vif.Capture, name string) {
	defer c.Close()
	hangup := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn) // until the client's EOF, or an error
		close(hangup)
	}()
	w := bufio.NewWriterSize(conn, 64<<10)
	var (
		sent uint64
		why  string
	)
	ch := c.Packets()
loop:
	for {
		if len(ch) == 0 && w.Buffered() > 0 {
			if err := w.Flush(); err != nil {
				d.log.Info("capture ended: the client went", "vif", name, "packets", sent, "dropped", c.Dropped())
				return
			}
		}
		select {
		case pkt, ok := <-ch:
			if !ok {
				why = fmt.Sprintf("%s went away", name)
				if c.Err() == nil { // cannot happen: only streamCapture closes c
					why = "the capture was stopped"
				}
				break loop
			}
			if err := WriteFrame(w, Frame{Kind: FramePacket, Direction: pkt.Direction, Time: pkt.Time, Data: pkt.Data}); err != nil {
				d.log.Info("capture ended: the client went", "vif", name, "packets", sent, "dropped", c.Dropped())
				return
			}
			sent++
		case <-hangup:
			break loop
		case <-ctx.Done():
			why = "the vif daemon is stopping"
			break loop
		}
	}
	c.Close()
	end, _ := json.Marshal(CaptureEnd{Packets: sent, Dropped: c.Dropped(), Error: why})
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	if WriteFrame(w, Frame{Kind: FrameEnd, Data: end}) == nil {
		w.Flush()
	}
	d.log.Info("capture ended", "vif", name, "packets", sent, "dropped", c.Dropped(), "why", why)
}
