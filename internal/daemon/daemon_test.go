package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
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
	local   netip.Addr     // as SetLocal last set it
	cfg     vif.LinkConfig
	done    chan struct{}
	mu      sync.Mutex
	closed  int
	xdp     *vif.XDPStats // the tunnel runs on AF_XDP, with these counters
}

func (l *fakeLink) Addrs() []netip.Prefix {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.cfg.Addrs)
}
func (l *fakeLink) Link() vif.LinkConfig {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.cfg
	c.Addrs, c.Routes, c.Peers = slices.Clone(c.Addrs), slices.Clone(c.Routes), slices.Clone(c.Peers)
	return c
}
func (l *fakeLink) Stats() vif.Stats { return vif.Stats{} }
func (l *fakeLink) Underlay() vif.UnderlayInfo {
	if c := l.Link(); !c.HasTunnel() {
		return vif.UnderlayInfo{}
	}
	if _, ok := l.XDPStats(); ok {
		return vif.UnderlayInfo{Kind: vif.UnderlayXDP}
	}
	return vif.UnderlayInfo{Kind: vif.UnderlayRaw}
}
func (l *fakeLink) XDPStats() (vif.XDPStats, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.xdp == nil {
		return vif.XDPStats{}, false
	}
	return *l.xdp, true
}
func (l *fakeLink) MTU() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg.MTU
}
func (l *fakeLink) Done() <-chan struct{} { return l.done }
func (l *fakeLink) Err() error            { return nil }
func (l *fakeLink) SetAddrs(a []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serving = a
	return nil
}
func (l *fakeLink) Local() netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.local
}
func (l *fakeLink) SetLocal(a netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.local = a
	if a.IsValid() {
		l.cfg.Local = a
	}
	return nil
}
func (l *fakeLink) Peers() []vif.PeerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []vif.PeerStats
	for _, p := range l.cfg.Peers {
		out = append(out, vif.PeerStats{Peer: p})
	}
	return out
}
func (l *fakeLink) SetPeer(p vif.Peer) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg.Peers = append(slices.DeleteFunc(l.cfg.Peers, func(q vif.Peer) bool { return q.Addr == p.Addr }), p)
	return nil
}
func (l *fakeLink) RemovePeer(a netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg.Peers = slices.DeleteFunc(l.cfg.Peers, func(p vif.Peer) bool { return p.Addr == a })
	return nil
}
func (l *fakeLink) AddAddr(p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg.Addrs = append(l.cfg.Addrs, p)
	return nil
}
func (l *fakeLink) RemoveAddr(p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg.Addrs = slices.DeleteFunc(l.cfg.Addrs, func(q netip.Prefix) bool { return q == p })
	return nil
}
func (l *fakeLink) RestoreRoutes() error { return nil }

func (l *fakeLink) AddRoute(p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg.Routes = append(l.cfg.Routes, p)
	return nil
}
func (l *fakeLink) RemoveRoute(p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg.Routes = slices.DeleteFunc(l.cfg.Routes, func(q netip.Prefix) bool { return q == p })
	return nil
}
func (l *fakeLink) SetMTU(mtu int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg.MTU = mtu
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
	mac       net.HardwareAddr
	inUse     map[netip.Addr]net.HardwareAddr // what other hosts answer for
	probed    []netip.Addr
	probeErr  error
}

func (r *fakeResponder) Probe(_ context.Context, addrs []netip.Addr, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.probed = append(r.probed, addrs...)
	if r.probeErr != nil {
		return r.probeErr
	}
	for _, a := range addrs {
		if mac := r.inUse[a]; mac != nil {
			return &arpproxy.ConflictError{Addr: a, HardwareAddr: mac}
		}
	}
	return nil
}
func (r *fakeResponder) ProbeRange(_ context.Context, p netip.Prefix, _ time.Duration) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var used []netip.Addr
	for a := range r.inUse {
		if p.Contains(a) {
			used = append(used, a)
		}
	}
	return used, nil
}
func (r *fakeResponder) AddRange(p netip.Prefix, _ []netip.Addr) error { return nil }
func (r *fakeResponder) RemoveRange(p netip.Prefix)                    {}
func (r *fakeResponder) HardwareAddr() net.HardwareAddr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mac
}
func (r *fakeResponder) SetHardwareAddr(mac net.HardwareAddr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !bytes.Equal(mac, r.mac) {
		r.mac = mac
		for a := range r.owned {
			r.announced = append(r.announced, a)
		}
	}
	return nil
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
	addrs      map[int][]netip.Prefix
	routes     map[int][]netip.Prefix
	inUse      map[netip.Addr]net.HardwareAddr // other hosts' addresses
}

var slaveMAC = net.HardwareAddr{2, 0, 0, 0, 0, 1}

// rename renames the interface from to to, as "ip link set from name to".
func (r *rig) rename(from, to string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ifs[to] = r.ifs[from]
	delete(r.ifs, from)
}

func newRig(t *testing.T) *rig {
	r := &rig{links: map[string]*fakeLink{}, responders: map[string]*fakeResponder{}, ifs: map[string]int{},
		addrs: map[int][]netip.Prefix{}, routes: map[int][]netip.Prefix{}, inUse: map[netip.Addr]net.HardwareAddr{}}
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
		l := &fakeLink{cfg: *c, local: c.Local, done: make(chan struct{})}
		if c.Peer.IsValid() { // as vif.Interface.Link has it
			l.cfg.Peers = append(slices.Clone(c.Peers), vif.Peer{Addr: c.Peer, Prefixes: []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0)}})
		}
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
		fr := &fakeResponder{owned: map[netip.Addr]bool{}, index: idx, mac: slaveMAC, inUse: r.inUse}
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
	r.d.ifState = func(int) (bool, net.HardwareAddr) { return true, slaveMAC }
	r.d.ifMTU = func(int) int { return 1500 }
	r.d.hostAddrs = func() map[int][]netip.Prefix {
		r.mu.Lock()
		defer r.mu.Unlock()
		return maps.Clone(r.addrs)
	}
	r.d.linkRoutes = func() map[int][]netip.Prefix {
		r.mu.Lock()
		defer r.mu.Unlock()
		return maps.Clone(r.routes)
	}
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

// Show reports the counters of an AF_XDP underlay, under "xdp", for the
// vifs on one, and only for them.
func TestShowXDPCounters(t *testing.T) {
	r := newRig(t)
	for _, c := range []vif.LinkConfig{linkCfg("vif0", "192.0.2.1"), linkCfg("vif1", "192.0.2.2")} {
		c.Peer = netip.MustParseAddr("198.18.0.2")
		if _, err := r.d.Up(Spec{LinkConfig: c}); err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	r.links["vif0"].xdp = &vif.XDPStats{RxXDP: 1, TxXDP: 2, TxRaw: 3, RxRaw: 4, Dropped: 5}
	r.mu.Unlock()
	vifs, err := r.d.Show("")
	if err != nil || len(vifs) != 2 {
		t.Fatalf("show: %+v, %v", vifs, err)
	}
	want := &XDPCounters{RxXDP: 1, TxXDP: 2, TxRaw: 3, RxRaw: 4, Dropped: 5}
	if vifs[0].Underlay.Kind != vif.UnderlayXDP || vifs[0].XDP == nil || *vifs[0].XDP != *want {
		t.Errorf("vif0 on AF_XDP: underlay %+v, xdp %+v; want %+v", vifs[0].Underlay, vifs[0].XDP, want)
	}
	if vifs[1].XDP != nil {
		t.Errorf("vif1 on raw sockets: xdp %+v, want none", vifs[1].XDP)
	}
	b, err := json.Marshal(vifs)
	if err != nil {
		t.Fatal(err)
	}
	const field = `"xdp":{"rx_xdp_packets":1,"tx_xdp_packets":2,"rx_raw_packets":4,"tx_raw_packets":3,"dropped_packets":5}`
	if n := strings.Count(string(b), `"xdp":{`); n != 1 || !strings.Contains(string(b), field) {
		t.Errorf("show --json: %s\nwant %s once", b, field)
	}
}

func TestSharedResponder(t *testing.T) {
	r := newRig(t)
	for _, c := range []vif.LinkConfig{linkCfg("vif1", "192.0.2.1"), linkCfg("vif0", "192.0.2.2")} {
		if _, err := r.d.Up(Spec{LinkConfig: c}); err != nil {
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
	if _, err := r.d.Up(Spec{LinkConfig: linkCfg("vif0", "192.0.2.1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.Up(Spec{LinkConfig: linkCfg("vif0", "192.0.2.9")}); !errors.Is(err, ErrTaken) {
		t.Errorf("same name: %v", err)
	}
	if _, err := r.d.Up(Spec{LinkConfig: linkCfg("vif1", "192.0.2.1")}); err == nil || !strings.Contains(err.Error(), "already belongs to vif0") {
		t.Errorf("same address: %v", err)
	}
	// A failed Up releases what it took: the responder of a new slave.
	r.upErr = errors.New("no TUN")
	c := linkCfg("vif2", "192.0.2.3")
	c.Slave = "eth8"
	if _, err := r.d.Up(Spec{LinkConfig: c}); err == nil {
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
	r.d.Up(Spec{LinkConfig: linkCfg("vif0", "192.0.2.1")})
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
	r.d.Up(Spec{LinkConfig: linkCfg("vif0", "192.0.2.1")})
	r.rename("eth9", "ethx")
	r.rename("vif0", "vifx")
	vifs, _ := r.d.Show("")
	if len(vifs) != 1 || vifs[0].Name != "vifx" || vifs[0].Slave != "ethx" {
		t.Fatalf("show after the renames: %+v", vifs)
	}
	// Another interface takes the slave's old name: a vif on it gets a
	// responder of its own.
	r.d.Up(Spec{LinkConfig: linkCfg("vif1", "192.0.2.2")})
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

// Names are the kernel's, now: a vif is never found by a name it no
// longer has, swapped names included, and its old name is free again.
func TestRenamesSwapped(t *testing.T) {
	r := newRig(t)
	r.d.Up(Spec{LinkConfig: linkCfg("sa", "192.0.2.1")})
	r.d.Up(Spec{LinkConfig: linkCfg("sb", "192.0.2.2")})
	r.rename("sa", "tmp")
	r.rename("sb", "sa")
	r.rename("tmp", "sb")
	if err := r.d.Down("sa"); err != nil {
		t.Fatalf("down sa: %v", err)
	}
	if r.links["sb"].closes() != 1 || r.links["sa"].closes() != 0 {
		t.Errorf("down sa closed the vif that came up as sa %d times, as sb %d times; want the one now called sa (sb)",
			r.links["sa"].closes(), r.links["sb"].closes())
	}
	r.rename("sb", "sb-old")
	if err := r.d.Down("sb"); !errors.Is(err, ErrUnknown) {
		t.Errorf("down of a name no interface has: %v, want ErrUnknown", err)
	}
	if _, err := r.d.Up(Spec{LinkConfig: linkCfg("sb", "192.0.2.3")}); err != nil {
		t.Errorf("up of a renamed vif's old name: %v", err)
	}
}

// Ranges: addresses other hosts use are excluded (not refused); a range
// may not take what another vif has.
func TestUpRanges(t *testing.T) {
	r := newRig(t)
	r.inUse[netip.MustParseAddr("192.0.2.77")] = net.HardwareAddr{2, 0, 0, 0, 0, 0x77}
	c := vif.LinkConfig{Name: "vif0", Publish: true, Config: vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}}
	st, err := r.d.Up(Spec{LinkConfig: c})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Exclude) != 1 || st.Exclude[0].String() != "192.0.2.77" {
		t.Errorf("excluded %v, want 192.0.2.77", st.Exclude)
	}
	r.inUse[netip.MustParseAddr("203.0.113.1")] = net.HardwareAddr{2, 0, 0, 0, 0, 0x78}
	r.inUse[netip.MustParseAddr("203.0.113.2")] = net.HardwareAddr{2, 0, 0, 0, 0, 0x79}
	full := vif.LinkConfig{Name: "vif3", Publish: true, Config: vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/30")}}}
	if _, err := r.d.Up(Spec{LinkConfig: full}); err == nil || !strings.Contains(err.Error(), "nothing is left to claim") {
		t.Errorf("a range whose every address is in use: %v", err)
	}
	for _, bad := range []vif.LinkConfig{
		linkCfg("vif1", "192.0.2.5"),
		{Name: "vif2", Config: vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")}}},
	} {
		if _, err := r.d.Up(Spec{LinkConfig: bad}); err == nil || !strings.Contains(err.Error(), "already belongs to vif0") {
			t.Errorf("Up(%+v): %v", bad, err)
		}
	}
}

// Addresses added to a running vif are probed for, and refused when
// another vif or host has them.
func TestChangeAddr(t *testing.T) {
	r := newRig(t)
	r.d.Up(Spec{LinkConfig: linkCfg("vif0", "192.0.2.1")})
	r.d.Up(Spec{LinkConfig: linkCfg("vif1", "192.0.2.2")})
	r.inUse[netip.MustParseAddr("192.0.2.7")] = net.HardwareAddr{2, 0, 0, 0, 0, 7}
	if err := r.d.ChangeAddr("vif0", netip.MustParsePrefix("192.0.2.2/32"), false, false); err == nil || !strings.Contains(err.Error(), "already belongs to vif1") {
		t.Errorf("another vif's address: %v", err)
	}
	if err := r.d.ChangeAddr("vif0", netip.MustParsePrefix("192.0.2.7/32"), false, false); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("an address in use on the segment: %v", err)
	}
	if err := r.d.ChangeAddr("vif0", netip.MustParsePrefix("192.0.2.3/32"), false, false); err != nil {
		t.Fatal(err)
	}
	st, _ := r.d.Show("vif0")
	if len(st[0].Addrs) != 2 {
		t.Errorf("after adding: %v", st[0].Addrs)
	}
	if err := r.d.ChangeAddr("vif0", netip.MustParsePrefix("192.0.2.3/32"), true, false); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.d.Show("vif0"); len(st[0].Addrs) != 1 {
		t.Errorf("after removing: %v", st[0].Addrs)
	}
}

// Two ups at once cannot both take an address.
func TestConcurrentUpsOneAddress(t *testing.T) {
	r := newRig(t)
	r.upDelay = 50 * time.Millisecond
	errs := make(chan error, 2)
	for _, name := range []string{"va", "vb"} {
		go func() {
			_, err := r.d.Up(Spec{LinkConfig: linkCfg(name, "192.0.2.50")})
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
	r.d.Up(Spec{LinkConfig: linkCfg("vif0", "192.0.2.1")})
	idx := r.ifs["eth9"]
	resp := r.responders["eth9"]
	r.d.linkState(idx, true, slaveMAC) // no change: nothing
	r.d.linkState(idx, false, slaveMAC)
	r.d.linkState(idx, false, slaveMAC)
	r.d.linkState(idx, true, slaveMAC)
	r.d.linkState(idx, true, slaveMAC)
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
	r.d.Up(Spec{LinkConfig: c})
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

// An address another host answers for is refused before anything is
// installed, unless forced.
func TestUpProbes(t *testing.T) {
	r := newRig(t)
	other := net.HardwareAddr{2, 0, 0, 0, 0, 0x99}
	r.inUse[netip.MustParseAddr("192.0.2.7")] = other
	_, err := r.d.Up(Spec{LinkConfig: linkCfg("vif0", "192.0.2.1", "192.0.2.7")})
	if err == nil || !strings.Contains(err.Error(), "192.0.2.7 is in use") || !strings.Contains(err.Error(), other.String()) ||
		!strings.Contains(err.Error(), "--force") {
		t.Fatalf("Up of an address in use: %v", err)
	}
	if len(r.links) != 0 || r.responders["eth9"].closes() != 1 || r.d.Len() != 0 {
		t.Errorf("refused Up left %d links, responder closed %d times, %d vifs", len(r.links), r.responders["eth9"].closes(), r.d.Len())
	}
	if _, err := r.d.Up(Spec{LinkConfig: linkCfg("vif0", "192.0.2.1", "192.0.2.7"), Force: true}); err != nil {
		t.Fatalf("forced Up: %v", err)
	}
	if p := r.responders["eth9"].probed; len(p) != 0 {
		t.Errorf("forced Up probed %v", p)
	}
	c := linkCfg("vif1", "192.0.2.2")
	c.Publish = false
	if _, err := r.d.Up(Spec{LinkConfig: c}); err != nil {
		t.Fatalf("Up without publishing: %v", err)
	}
	if p := r.responders["eth9"].probed; len(p) != 0 {
		t.Errorf("an address not published was probed: %v", p)
	}
	r.responders["eth9"].probeErr = fmt.Errorf("write: %w", syscall.ENETDOWN)
	if _, err := r.d.Up(Spec{LinkConfig: linkCfg("vif2", "192.0.2.3")}); err == nil || !strings.Contains(err.Error(), "link is down (ip link set eth9 up), or pass --force") {
		t.Errorf("Up with the slave's link down: %v", err)
	}
}

// A new slave hardware address is answered and announced with.
func TestSlaveMACChanged(t *testing.T) {
	r := newRig(t)
	r.d.Up(Spec{LinkConfig: linkCfg("vif0", "192.0.2.1")})
	idx, resp := r.ifs["eth9"], r.responders["eth9"]
	newMAC := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	r.d.linkState(idx, true, slaveMAC) // same: nothing
	r.d.linkState(idx, true, newMAC)
	if resp.HardwareAddr().String() != newMAC.String() || len(resp.announced) != 1 {
		t.Errorf("after the change: answering with %v, announced %v", resp.HardwareAddr(), resp.announced)
	}
	if !strings.Contains(r.log.String(), "hardware address changed") {
		t.Errorf("log:\n%s", r.log.String())
	}
}

// The local address follows the slave's when vif chose it; one the
// operator chose pauses the tunnel while it is gone.
func TestLocalFollowsHost(t *testing.T) {
	r := newRig(t)
	old, renumbered := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.7.1")
	c := linkCfg("vif0", "192.0.2.1")
	c.Peer = netip.MustParseAddr("198.18.0.2")
	r.d.resolve = func(c vif.LinkConfig) (vif.LinkConfig, error) {
		c.Slave = "eth9"
		if !c.Local.IsValid() {
			c.Local = old
		}
		return c, nil
	}
	r.d.Up(Spec{LinkConfig: c})
	given := linkCfg("vif1", "192.0.2.2")
	given.Peer, given.Local = netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.9.9")
	r.d.Up(Spec{LinkConfig: given})
	slave, l0, l1 := r.ifs["eth9"], r.links["vif0"], r.links["vif1"]
	r.addrs[slave] = []netip.Prefix{netip.PrefixFrom(old, 24)}
	r.addrs[77] = []netip.Prefix{netip.PrefixFrom(given.Local, 32)}

	event := func(idx int, p netip.Prefix, added bool) {
		t.Helper()
		if added {
			r.addrs[idx] = append(r.addrs[idx], p)
		} else {
			r.addrs[idx] = slices.DeleteFunc(r.addrs[idx], func(q netip.Prefix) bool { return q == p })
		}
		r.d.addrChanged(idx, p, added)
		r.d.followLocal(r.d.localConcerned(idx, p.Addr()), r.d.hostAddrs())
	}
	// DHCP renumbers the slave: new address first, old one removed.
	event(slave, netip.PrefixFrom(renumbered, 16), true)
	if l0.Local() != old {
		t.Errorf("an address added beside the local one moved the tunnel to %v", l0.Local())
	}
	event(slave, netip.PrefixFrom(old, 24), false)
	if l0.Local() != renumbered {
		t.Errorf("after renumbering: local %v, want %v", l0.Local(), renumbered)
	}
	// No address left: paused, and show says so.
	event(slave, netip.PrefixFrom(renumbered, 16), false)
	if st, _ := r.d.Show("vif0"); l0.Local().IsValid() || !st[0].LocalMissing {
		t.Errorf("slave without addresses: local %v, show %+v", l0.Local(), st[0])
	}
	event(slave, netip.PrefixFrom(old, 24), true)
	if st, _ := r.d.Show("vif0"); l0.Local() != old || st[0].LocalMissing {
		t.Errorf("address back: local %v, show local_missing %v", l0.Local(), st[0].LocalMissing)
	}
	if l1.Local() != given.Local {
		t.Errorf("the slave's changes moved a --local tunnel to %v", l1.Local())
	}

	// The operator's address goes and comes back.
	event(77, netip.PrefixFrom(given.Local, 32), false)
	if st, _ := r.d.Show("vif1"); l1.Local().IsValid() || !st[0].LocalMissing {
		t.Errorf("--local gone: local %v, show %+v", l1.Local(), st[0])
	}
	event(77, netip.PrefixFrom(given.Local, 32), true)
	if l1.Local() != given.Local {
		t.Errorf("--local back: local %v", l1.Local())
	}
	for _, want := range []string{"slave renumbered", "slave has no IPv4 address left", "local address gone from the host", "tunnel resumed"} {
		if !strings.Contains(r.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.log.String())
		}
	}
}

// After lost events, resync finds what changed.
func TestResync(t *testing.T) {
	r := newRig(t)
	c := linkCfg("vif0", "192.0.2.1", "192.0.2.2")
	c.Routes = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	r.d.Up(Spec{LinkConfig: c})
	idx := r.ifs["vif0"]
	r.addrs[idx] = []netip.Prefix{c.Addrs[0]} // 192.0.2.2 and the route went unseen
	r.d.resync()
	st, _ := r.d.Show("vif0")
	if len(st[0].AddrsMissing) != 1 || st[0].AddrsMissing[0] != c.Addrs[1] || len(st[0].RoutesMissing) != 1 {
		t.Errorf("after resync: %+v", st[0])
	}
	r.addrs[idx] = c.Addrs
	r.routes[idx] = c.Routes
	r.d.resync()
	if st, _ := r.d.Show("vif0"); len(st[0].AddrsMissing) != 0 || len(st[0].RoutesMissing) != 0 {
		t.Errorf("after everything came back: %+v", st[0])
	}
}

// A tunnel over IPv6 whose local address vif chose follows the slave's
// global IPv6 addresses: never to its link-local or IPv4 ones.
func TestLocalFollowsHostIPv6(t *testing.T) {
	r := newRig(t)
	old, renumbered := netip.MustParseAddr("2001:db8:ffff:1::1"), netip.MustParseAddr("2001:db8:ffff:2::1")
	c := linkCfg("vif0", "192.0.2.1")
	c.Peer = netip.MustParseAddr("2001:db8:ffff:1::2")
	r.d.resolve = func(c vif.LinkConfig) (vif.LinkConfig, error) {
		c.Slave = "eth9"
		if !c.Local.IsValid() {
			c.Local = old
		}
		return c, nil
	}
	r.d.Up(Spec{LinkConfig: c})
	slave, l0 := r.ifs["eth9"], r.links["vif0"]
	r.addrs[slave] = []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("fe80::1/64"), netip.PrefixFrom(old, 64)}
	event := func(p netip.Prefix, added bool) {
		t.Helper()
		if added {
			r.addrs[slave] = append(r.addrs[slave], p)
		} else {
			r.addrs[slave] = slices.DeleteFunc(r.addrs[slave], func(q netip.Prefix) bool { return q == p })
		}
		r.d.addrChanged(slave, p, added)
		r.d.followLocal(r.d.localConcerned(slave, p.Addr()), r.d.hostAddrs())
	}
	event(netip.PrefixFrom(renumbered, 64), true)
	event(netip.PrefixFrom(old, 64), false)
	if l0.Local() != renumbered {
		t.Errorf("after renumbering: local %v, want %v", l0.Local(), renumbered)
	}
	event(netip.PrefixFrom(renumbered, 64), false)
	if l0.Local().IsValid() {
		t.Errorf("slave with only link-local and IPv4 addresses: local %v, want paused", l0.Local())
	}
	if !strings.Contains(r.log.String(), "slave has no global IPv6 address left") {
		t.Errorf("log:\n%s", r.log.String())
	}
	event(netip.PrefixFrom(old, 64), true)
	if l0.Local() != old {
		t.Errorf("address back: local %v", l0.Local())
	}
}
