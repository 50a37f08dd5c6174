package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vif-project/vif/arpproxy"
	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/vif"
)

// The daemon's own logic, over doubles of the vif library and the ARP
// proxy: no root, no namespace.

type fakeLink struct {
	serving []netip.Prefix // as SetAddrs last set them
	cfg     vif.LinkConfig
	done    chan struct{}
	mu      sync.Mutex
	closed  int
}

func (l *fakeLink) Addrs() []netip.Prefix { return l.cfg.Addrs }
func (l *fakeLink) Link() vif.LinkConfig  { return l.cfg }
func (l *fakeLink) Stats() vif.Stats      { return vif.Stats{} }
func (l *fakeLink) MTU() int              { return l.cfg.MTU }
func (l *fakeLink) Done() <-chan struct{} { return l.done }
func (l *fakeLink) Err() error            { return nil }
func (l *fakeLink) SetAddrs(a []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serving = a
	return nil
}
func (l *fakeLink) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed == 0 {
		for _, p := range l.cfg.Addrs {
			if l.cfg.Publisher != nil {
				l.cfg.Publisher.Remove(p.Addr())
			}
		}
	}
	l.closed++
	return nil
}

type fakeResponder struct {
	index     int // of the slave
	announced []netip.Addr
	mu        sync.Mutex
	owned     map[netip.Addr]bool
	closed    int
}

func (r *fakeResponder) Add(a netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owned[a] = true
	return nil
}
func (r *fakeResponder) Remove(a netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.owned, a)
}
func (r *fakeResponder) Stats() arpproxy.Stats { return arpproxy.Stats{} }
func (r *fakeResponder) Announce(a netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.announced = append(r.announced, a)
	return nil
}
func (r *fakeResponder) Addrs() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netip.Addr
	for a := range r.owned {
		out = append(out, a)
	}
	return out
}
func (r *fakeResponder) closes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}
func (l *fakeLink) closes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}
func (r *fakeResponder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed++
	return nil
}

// rig is a Daemon over doubles, with what it asked of them.
type rig struct {
	d          *Daemon
	log        syncWriter
	mu         sync.Mutex
	links      map[string]*fakeLink
	responders map[string]*fakeResponder
	upDelay    time.Duration
	upErr      error
	ifs        map[string]int // the host's interfaces, by name
}

// rename renames the interface from to to, as "ip link set from name to".
func (r *rig) rename(from, to string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ifs[to] = r.ifs[from]
	delete(r.ifs, from)
}

func newRig(t *testing.T) *rig {
	r := &rig{links: map[string]*fakeLink{}, responders: map[string]*fakeResponder{}, ifs: map[string]int{}}
	r.log.w = &bytes.Buffer{}
	r.d = New(slog.New(slog.NewTextHandler(&r.log, nil)))
	r.d.resolve = func(c vif.LinkConfig) (vif.LinkConfig, error) {
		if c.Slave == "" {
			c.Slave = "eth9"
		}
		if c.MTU == 0 {
			c.MTU = 1480
		}
		return c, nil
	}
	r.d.up = func(c *vif.LinkConfig) (link, error) {
		time.Sleep(r.upDelay)
		if r.upErr != nil {
			return nil, r.upErr
		}
		l := &fakeLink{cfg: *c, done: make(chan struct{})}
		for _, p := range c.Addrs {
			if c.Publish {
				c.Publisher.Add(p.Addr())
			}
		}
		r.mu.Lock()
		r.links[c.Name] = l
		r.mu.Unlock()
		return l, nil
	}
	r.d.listenARP = func(slave string, _ *slog.Logger) (responder, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		idx := r.ifs[slave]
		for _, fr := range r.responders {
			if fr.index == idx && fr.closes() == 0 {
				t.Errorf("a second responder opened on interface %d (%s)", idx, slave)
			}
		}
		fr := &fakeResponder{owned: map[netip.Addr]bool{}, index: idx}
		r.responders[slave] = fr
		return fr, nil
	}
	r.d.ifIndex = func(name string) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.ifs[name] == 0 { // every name asked for exists
			r.ifs[name] = len(r.ifs) + 2
		}
		return r.ifs[name]
	}
	r.d.ifRunning = func(int) bool { return true }
	r.d.ifNames = func() map[int]string {
		r.mu.Lock()
		defer r.mu.Unlock()
		m := map[int]string{}
		for n, i := range r.ifs {
			m[i] = n
		}
		return m
	}
	t.Cleanup(func() { r.d.Close() })
	return r
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func linkCfg(name string, addrs ...string) vif.LinkConfig {
	c := vif.LinkConfig{Name: name, Publish: true}
	for _, a := range addrs {
		c.Addrs = append(c.Addrs, netip.MustParsePrefix(a+"/32"))
	}
	return c
}

func TestSharedResponder(t *testing.T) {
	r := newRig(t)
	for _, c := range []vif.LinkConfig{linkCfg("vif1", "192.0.2.1"), linkCfg("vif0", "192.0.2.2")} {
		if _, err := r.d.Up(c); err != nil {
			t.Fatal(err)
		}
	}
	resp := r.responders["eth9"]
	if len(resp.owned) != 2 {
		t.Fatalf("responder owns %v, want both vifs' addresses", resp.owned)
	}
	vifs, _ := r.d.Show("")
	if len(vifs) != 2 || vifs[0].Name != "vif0" || vifs[0].Slave != "eth9" || !vifs[0].ARPProxy {
		t.Errorf("show: %+v", vifs)
	}
	if err := r.d.Down("vif0"); err != nil {
		t.Fatal(err)
	}
	if resp.closed != 0 || len(resp.owned) != 1 {
		t.Errorf("after the first down: responder closed %d times, owns %v; want open, owning 192.0.2.1", resp.closed, resp.owned)
	}
	select {
	case <-r.d.Changed():
	default:
		t.Error("no change reported after a down")
	}
	r.d.Down("vif1")
	if resp.closed != 1 || r.d.Len() != 0 {
		t.Errorf("after the last down: responder closed %d times, %d vifs", resp.closed, r.d.Len())
	}
	if err := r.d.Down("vif1"); !errors.Is(err, ErrUnknown) {
		t.Errorf("down of a gone vif: %v", err)
	}
}

func TestUpRefused(t *testing.T) {
	r := newRig(t)
	if _, err := r.d.Up(linkCfg("vif0", "192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.Up(linkCfg("vif0", "192.0.2.9")); !errors.Is(err, ErrTaken) {
		t.Errorf("same name: %v", err)
	}
	if _, err := r.d.Up(linkCfg("vif1", "192.0.2.1")); err == nil || !strings.Contains(err.Error(), "already belongs to vif0") {
		t.Errorf("same address: %v", err)
	}
	// A failed Up releases what it took: the responder of a new slave.
	r.upErr = errors.New("no TUN")
	c := linkCfg("vif2", "192.0.2.3")
	c.Slave = "eth8"
	if _, err := r.d.Up(c); err == nil {
		t.Fatal("Up succeeded")
	}
	if fr := r.responders["eth8"]; fr == nil || fr.closed != 1 {
		t.Errorf("the responder taken for a failed Up is %+v, want closed once", fr)
	}
	if r.d.Len() != 1 {
		t.Errorf("%d vifs after a failed Up, want 1", r.d.Len())
	}
}

// A vif whose interface goes away from outside is removed, with what it
// took, and the daemon is told.
func TestVifGoneFromOutside(t *testing.T) {
	r := newRig(t)
	r.d.Up(linkCfg("vif0", "192.0.2.1"))
	close(r.links["vif0"].done)
	select {
	case <-r.d.Changed(): // after the removal is complete
	case <-time.After(5 * time.Second):
		t.Fatal("the daemon did not notice")
	}
	if r.d.Len() != 0 || r.links["vif0"].closes() != 1 || r.responders["eth9"].closes() != 1 {
		t.Errorf("after the interface went: %d vifs, link closed %d, responder closed %d", r.d.Len(), r.links["vif0"].closes(), r.responders["eth9"].closes())
	}
	if !strings.Contains(r.log.String(), "went away from outside") {
		t.Errorf("log: %s", r.log.String())
	}
}

// The handler audits every up and down with the caller, refuses requests
// its command gave up on, and takes back a vif that came up too late.
func TestHandlerDeadlines(t *testing.T) {
	r := newRig(t)
	h := r.d.Handler(Info{PID: 1})
	ask := func(req Request) Response {
		b, _ := json.Marshal(req)
		var resp Response
		if err := json.Unmarshal(h(control.Peer{UID: 0, PID: 4242}, b), &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	c := linkCfg("vif0", "192.0.2.1")
	if resp := ask(Request{Op: OpUp, Up: &c, Deadline: time.Now().Add(time.Minute)}); !resp.OK {
		t.Fatalf("up: %s", resp.Error)
	}
	if !strings.Contains(r.log.String(), "op=up vif=vif0 uid=0 pid=4242") {
		t.Errorf("the up is not audited:\n%s", r.log.String())
	}
	c1 := linkCfg("vif1", "192.0.2.2")
	if resp := ask(Request{Op: OpUp, Up: &c1, Deadline: time.Now().Add(-time.Second)}); resp.OK || r.links["vif1"] != nil {
		t.Errorf("an expired up was carried out: %+v", resp)
	}
	r.upDelay = 100 * time.Millisecond
	c2 := linkCfg("vif2", "192.0.2.3")
	resp := ask(Request{Op: OpUp, Up: &c2, Deadline: time.Now().Add(20 * time.Millisecond)})
	if resp.OK || !strings.Contains(resp.Error, "after the command's deadline") {
		t.Errorf("an up that ended after its deadline: %+v", resp)
	}
	if l := r.links["vif2"]; l == nil || l.closed != 1 || r.d.Len() != 1 {
		t.Errorf("the late vif2 was not taken back: %+v, %d vifs", l, r.d.Len())
	}
	if resp := ask(Request{Op: OpDown, Name: "vif0"}); !resp.OK || !strings.Contains(r.log.String(), "op=down vif=vif0 uid=0 pid=4242") {
		t.Errorf("down: %+v; log:\n%s", resp, r.log.String())
	}
}

// Interfaces renamed from outside are followed: vif show gives the
// kernel's names, vif down takes the new name, and a responder belongs to
// the interface, not to its old name.
func TestRenamedFromOutside(t *testing.T) {
	r := newRig(t)
	r.d.Up(linkCfg("vif0", "192.0.2.1"))
	r.rename("eth9", "ethx")
	r.rename("vif0", "vifx")
	vifs, _ := r.d.Show("")
	if len(vifs) != 1 || vifs[0].Name != "vifx" || vifs[0].Slave != "ethx" {
		t.Fatalf("show after the renames: %+v", vifs)
	}
	// Another interface takes the slave's old name: a vif on it gets a
	// responder of its own.
	r.d.Up(linkCfg("vif1", "192.0.2.2"))
	if resp := r.responders["eth9"]; resp == nil || len(resp.owned) != 1 || !resp.owned[netip.MustParseAddr("192.0.2.2")] {
		t.Errorf("the new eth9's responder: %+v", resp)
	}
	if err := r.d.Down("vifx"); err != nil {
		t.Errorf("down by the new name: %v", err)
	}
	if err := r.d.Down("vif1"); err != nil || r.d.Len() != 0 {
		t.Errorf("down vif1: %v, %d vifs left", err, r.d.Len())
	}
}

// Two ups at once cannot both take an address.
func TestConcurrentUpsOneAddress(t *testing.T) {
	r := newRig(t)
	r.upDelay = 50 * time.Millisecond
	errs := make(chan error, 2)
	for _, name := range []string{"va", "vb"} {
		go func() {
			_, err := r.d.Up(linkCfg(name, "192.0.2.50"))
			errs <- err
		}()
	}
	var failed int
	for range 2 {
		if err := <-errs; err != nil {
			if !strings.Contains(err.Error(), "already belongs to") {
				t.Errorf("unexpected error: %v", err)
			}
			failed++
		}
	}
	if failed != 1 || r.d.Len() != 1 {
		t.Errorf("%d of two concurrent ups of one address failed, %d vifs; want 1 and 1", failed, r.d.Len())
	}
}

// A slave's link coming back makes its addresses announced again, once
// per return.
func TestLinkBackAnnounces(t *testing.T) {
	r := newRig(t)
	r.d.Up(linkCfg("vif0", "192.0.2.1"))
	idx := r.ifs["eth9"]
	resp := r.responders["eth9"]
	r.d.linkState(idx, true) // no change: nothing
	r.d.linkState(idx, false)
	r.d.linkState(idx, false)
	r.d.linkState(idx, true)
	r.d.linkState(idx, true)
	if len(resp.announced) != 1 || resp.announced[0] != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("announced %v, want 192.0.2.1 once", resp.announced)
	}
}

// Addresses and routes removed by another tool are followed: the vif
// stops serving and publishing an address until it is back, and show
// reports what the kernel has and what is missing.
func TestDrift(t *testing.T) {
	r := newRig(t)
	c := linkCfg("vif0", "192.0.2.1", "192.0.2.2")
	c.Routes = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	r.d.Up(c)
	idx := r.ifs["vif0"]
	gone := netip.MustParsePrefix("192.0.2.2/32")
	r.d.addrChanged(idx, gone, false)
	r.d.routeChanged(idx, c.Routes[0], false)
	r.d.addrChanged(idx, netip.MustParsePrefix("203.0.113.9/32"), false) // not ours: ignored
	st, _ := r.d.Show("vif0")
	if len(st[0].Addrs) != 1 || len(st[0].AddrsMissing) != 1 || st[0].AddrsMissing[0] != gone ||
		len(st[0].Routes) != 0 || len(st[0].RoutesMissing) != 1 {
		t.Errorf("show after the removals: %+v", st[0])
	}
	l, resp := r.links["vif0"], r.responders["eth9"]
	if len(l.serving) != 1 || l.serving[0].Addr() != netip.MustParseAddr("192.0.2.1") || resp.owned[gone.Addr()] {
		t.Errorf("serving %v, publishing %v; want 192.0.2.1 alone", l.serving, resp.owned)
	}
	if !strings.Contains(r.log.String(), "address removed from the vif from outside") || !strings.Contains(r.log.String(), "route removed") {
		t.Errorf("log:\n%s", r.log.String())
	}
	r.d.addrChanged(idx, gone, true)
	if st, _ := r.d.Show("vif0"); len(st[0].Addrs) != 2 || len(st[0].AddrsMissing) != 0 || !resp.owned[gone.Addr()] || len(l.serving) != 2 {
		t.Errorf("after the address came back: %+v, serving %v", st[0], l.serving)
	}
}
