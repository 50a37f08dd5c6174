package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/viftest"
)

// capLink is a fake link whose packets go through a real packet loop over
// viftest's devices, so that it can be captured.
type capLink struct {
	*fakeLink
	ifc   *vif.Interface
	tun   *viftest.TUN
	under *viftest.Underlay
}

func (l *capLink) Capture(o *vif.CaptureOptions) (*vif.Capture, error) { return l.ifc.Capture(o) }
func (l *capLink) Close() error {
	l.ifc.Close()
	return l.fakeLink.Close()
}

var (
	capLocal = netip.MustParseAddr("198.18.0.1")
	capPeer  = netip.MustParseAddr("198.18.0.2")
	capAddr  = netip.MustParseAddr("192.0.2.1")
	capOther = netip.MustParseAddr("203.0.113.7")
)

// ipv4 returns a minimal IPv4 packet from src to dst (protocol 253, for
// experiments) with a payload.
func ipv4(src, dst netip.Addr, payload string) []byte {
	b := make([]byte, 20+len(payload))
	h := ipip.IPv4(b)
	b[0], b[8], b[9] = 0x45, 64, 253
	b[2], b[3] = byte(len(b)>>8), byte(len(b))
	copy(b[12:], src.AsSlice())
	copy(b[16:], dst.AsSlice())
	copy(b[20:], payload)
	h.SetChecksum()
	return b
}

// captureRig is a rig whose vif "cap0" has a tunnel and a real loop,
// served on a control socket by StreamHandler.
func captureRig(t *testing.T) (*rig, *capLink, control.Paths) {
	r := newRig(t)
	fakeUp := r.d.up
	var cl *capLink
	r.d.up = func(c *vif.LinkConfig) (link, error) {
		l, err := fakeUp(c)
		if err != nil || c.Name != "cap0" {
			return l, err
		}
		tun, under := viftest.NewTUN(8), viftest.NewUnderlay(8)
		ifc, err := vif.New(tun, under, &vif.Config{Addrs: c.Addrs, Local: capLocal, Peer: capPeer})
		if err != nil {
			return nil, err
		}
		cl = &capLink{fakeLink: l.(*fakeLink), ifc: ifc, tun: tun, under: under}
		return cl, nil
	}
	for _, name := range []string{"cap0", "plain0"} {
		if _, err := r.d.Up(Spec{LinkConfig: linkCfg(name, map[string]string{"cap0": "192.0.2.1", "plain0": "192.0.2.9"}[name])}); err != nil {
			t.Fatal(err)
		}
	}
	p := control.PathsFor(filepath.Join(t.TempDir(), "run"), 4026531840)
	ln, err := control.Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	srv := &control.Server{StreamHandler: r.d.StreamHandler(Info{PID: 1})}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(time.Second); <-done })
	return r, cl, p
}

// startCapture asks for a capture of name and returns the answer and,
// if OK, the stream.
func startCapture(t *testing.T, p control.Paths, name, dir string) (Response, *control.Conn) {
	t.Helper()
	b, _ := json.Marshal(Request{Op: OpCapture, Name: name, Direction: dir})
	out, c, err := control.CallStream(context.Background(), p, b)
	if err != nil {
		t.Fatal(err)
	}
	var resp Response
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	if !resp.OK {
		c.Close()
		return resp, nil
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return resp, c
}

func readFrame(t *testing.T, c *control.Conn) Frame {
	t.Helper()
	f, err := ReadFrame(c)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// readEnd reads the end frame.
func readEnd(t *testing.T, c *control.Conn) CaptureEnd {
	t.Helper()
	f := readFrame(t, c)
	if f.Kind != FrameEnd {
		t.Fatalf("frame kind %d, want the end", f.Kind)
	}
	var end CaptureEnd
	if err := json.Unmarshal(f.Data, &end); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFrame(c); !errors.Is(err, io.EOF) {
		t.Errorf("after the end frame: %v, want EOF", err)
	}
	return end
}

func TestCaptureStream(t *testing.T) {
	r, cl, p := captureRig(t)
	_, c := startCapture(t, p, "cap0", "")

	out := ipv4(capAddr, capOther, "to the peer")
	cl.tun.Inject(out)
	sent, _ := cl.under.Recv(5 * time.Second)
	in := ipip.IPv4(ipv4(capPeer, capLocal, ""))[:20]
	in = append(in, ipv4(capOther, capAddr, "from the peer")...)
	in[9], in[3] = ipip.ProtoIPIP, byte(len(in))
	ipip.IPv4(in).SetChecksum()
	cl.under.Inject(in)

	before := time.Now()
	// The loop's two directions tap from their own goroutines: the
	// packet in may be recorded before the packet out that caused it.
	want := map[vif.Direction][]byte{vif.Out: sent, vif.In: in}
	for range 2 {
		f := readFrame(t, c)
		w, ok := want[f.Direction]
		if f.Kind != FramePacket || !ok || !bytes.Equal(f.Data, w) {
			t.Errorf("frame %d %v %x, want one packet out %x and one in %x", f.Kind, f.Direction, f.Data, sent, in)
		}
		delete(want, f.Direction)
		if f.Time.IsZero() || f.Time.After(time.Now()) || before.Sub(f.Time) > 5*time.Second {
			t.Errorf("time stamp %v", f.Time)
		}
	}
	c.CloseWrite()
	if end := readEnd(t, c); end != (CaptureEnd{Packets: 2}) {
		t.Errorf("end %+v, want 2 packets and no error", end)
	}
	if !strings.Contains(r.log.String(), "op=capture vif=cap0") {
		t.Errorf("the capture is not audited:\n%s", r.log.String())
	}
	// The daemon serves maxCaptures at once.
	var conns []*control.Conn
	for range maxCaptures {
		_, c := startCapture(t, p, "cap0", "")
		conns = append(conns, c)
	}
	if resp, _ := startCapture(t, p, "cap0", ""); resp.OK || !strings.Contains(resp.Error, "stop one first") {
		t.Errorf("capture past maxCaptures: %+v, want refused", resp)
	}
	for _, c := range conns {
		c.CloseWrite()
		readEnd(t, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.d.captures.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d captures still counted", r.d.captures.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The tap is off again: as many captures as ever can start.
	for range vif.MaxCaptures {
		c, err := cl.ifc.Capture(nil)
		if err != nil {
			t.Fatalf("the daemon's capture still runs: %v", err)
		}
		defer c.Close()
	}
}

func TestCaptureStreamEnds(t *testing.T) {
	r, cl, p := captureRig(t)

	// The client goes away without a word: the daemon stops the tap.
	_, c := startCapture(t, p, "cap0", "in")
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.log.String(), "capture ended") {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not end the capture of a client gone:\n%s", r.log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The vif goes: the stream ends with why.
	_, c = startCapture(t, p, "cap0", "out")
	cl.tun.Inject(ipv4(capAddr, capOther, "x"))
	if f := readFrame(t, c); f.Direction != vif.Out {
		t.Errorf("captured %v", f.Direction)
	}
	if err := r.d.Down("cap0"); err != nil {
		t.Fatal(err)
	}
	if end := readEnd(t, c); end.Error != "cap0 went away" || end.Packets != 1 {
		t.Errorf("end %+v, want 1 packet and \"cap0 went away\"", end)
	}
}

func TestCaptureRefused(t *testing.T) {
	r, _, p := captureRig(t)
	var resp Response
	json.Unmarshal(r.d.Handler(Info{})(control.Peer{}, []byte(`{"op":"capture","name":"cap0"}`)), &resp)
	if resp.OK || !strings.Contains(resp.Error, "StreamHandler") {
		t.Errorf("capture through a Handler: %+v, want refused", resp)
	}
	for _, tt := range []struct {
		name, dir, want string
		refused         bool
	}{
		{"nope0", "", "no such vif", true},
		{"cap0", "sideways", "bad capture direction", true},
		{"plain0", "", "cannot be captured", false},
	} {
		resp, _ := startCapture(t, p, tt.name, tt.dir)
		if resp.OK || !strings.Contains(resp.Error, tt.want) || resp.Refused != tt.refused {
			t.Errorf("capture %s %q: %+v, want refused=%v %q", tt.name, tt.dir, resp, tt.refused, tt.want)
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	now := time.Unix(1700000000, 123456789)
	in := []Frame{
		{Kind: FramePacket, Direction: vif.In, Time: now, Data: []byte{0x45, 1, 2}},
		{Kind: FrameEnd, Data: []byte(`{"packets":1}`)},
	}
	for _, f := range in {
		if err := WriteFrame(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range in {
		f, err := ReadFrame(&b)
		if err != nil {
			t.Fatal(err)
		}
		if f.Kind != want.Kind || f.Direction != want.Direction || !f.Time.Equal(want.Time) || !bytes.Equal(f.Data, want.Data) {
			t.Errorf("read %+v, want %+v", f, want)
		}
	}
	if _, err := ReadFrame(&b); err != io.EOF {
		t.Errorf("at the end: %v, want EOF", err)
	}
	WriteFrame(&b, in[0])
	b.Truncate(b.Len() - 1)
	if _, err := ReadFrame(&b); err != io.ErrUnexpectedEOF {
		t.Errorf("cut frame: %v, want ErrUnexpectedEOF", err)
	}
}
