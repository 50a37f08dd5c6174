package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vif-project/vif/ndpproxy"
	"github.com/vif-project/vif/vif"
)

// fakeNDP is an ndpResponder over a map of the addresses other hosts on
// the segment use; it records what it was asked to probe.
type fakeNDP struct {
	mu     sync.Mutex
	inUse  map[netip.Addr]bool
	probed []netip.Addr
	ranges []netip.Prefix // ProbeRange calls
}

func (f *fakeNDP) used(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if f.inUse[a] {
			out = append(out, a)
		}
	}
	return out
}
func (f *fakeNDP) Probe(_ context.Context, addrs []netip.Addr, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probed = append(f.probed, addrs...)
	if u := f.used(addrs); len(u) > 0 {
		return &ndpproxy.ConflictError{Addr: u[0], HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 9}}
	}
	return nil
}
func (f *fakeNDP) ProbeAll(_ context.Context, addrs []netip.Addr, _ time.Duration) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probed = append(f.probed, addrs...)
	return f.used(addrs), nil
}
func (f *fakeNDP) ProbeRange(_ context.Context, p netip.Prefix, _ time.Duration) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges = append(f.ranges, p)
	var out []netip.Addr
	for a := range f.inUse {
		if p.Contains(a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}
func (f *fakeNDP) Add(netip.Addr) error                      { return nil }
func (f *fakeNDP) Remove(netip.Addr)                         {}
func (f *fakeNDP) AddRange(netip.Prefix, []netip.Addr) error { return nil }
func (f *fakeNDP) RemoveRange(netip.Prefix)                  {}
func (f *fakeNDP) HardwareAddr() net.HardwareAddr            { return slaveMAC }
func (f *fakeNDP) SetHardwareAddr(net.HardwareAddr) error    { return nil }
func (f *fakeNDP) Announce(netip.Addr) error                 { return nil }
func (f *fakeNDP) Addrs() []netip.Addr                       { return nil }
func (f *fakeNDP) Stats() ndpproxy.Stats                     { return ndpproxy.Stats{} }
func (f *fakeNDP) Close() error                              { return nil }

// IPv6 ranges: a /120 is probed whole and the addresses in use excluded;
// of a /64 only the addresses in the slave's neighbour table are probed;
// a range every address of which is in use is refused; ranges clash
// across vifs as IPv4 ones do.
func TestUpRanges6(t *testing.T) {
	r := newRig(t)
	ndp := &fakeNDP{inUse: map[netip.Addr]bool{
		netip.MustParseAddr("2001:db8:2::7"):  true,
		netip.MustParseAddr("2001:db8:1::99"): true,
	}}
	r.d.listenNDP = func(string, *slog.Logger) (ndpResponder, error) { return ndp, nil }
	r.d.neighbours = func(int) []netip.Addr {
		return []netip.Addr{
			netip.MustParseAddr("2001:db8:1::99"), // in the /64, in use
			netip.MustParseAddr("2001:db8:1::5"),  // in the /64, gone
			netip.MustParseAddr("2001:db8:1::"),   // the anycast address: not probed
			netip.MustParseAddr("2001:db8:9::1"),  // elsewhere
		}
	}
	small := vif.LinkConfig{Name: "vif0", Publish: true, Config: vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix("2001:db8:2::/120")}}}
	st, err := r.d.Up(Spec{LinkConfig: small})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Exclude, []netip.Addr{netip.MustParseAddr("2001:db8:2::7")}) || len(ndp.ranges) != 1 {
		t.Errorf("a /120: excluded %v after %d ProbeRange calls, want [2001:db8:2::7] after 1", st.Exclude, len(ndp.ranges))
	}
	wide := vif.LinkConfig{Name: "vif1", Publish: true, Config: vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64")}}}
	st, err = r.d.Up(Spec{LinkConfig: wide})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Exclude, []netip.Addr{netip.MustParseAddr("2001:db8:1::99")}) {
		t.Errorf("a /64: excluded %v, want [2001:db8:1::99]", st.Exclude)
	}
	if want := []netip.Addr{netip.MustParseAddr("2001:db8:1::99"), netip.MustParseAddr("2001:db8:1::5")}; !slices.Equal(ndp.probed, want) || len(ndp.ranges) != 1 {
		t.Errorf("a /64: probed %v and %d ranges, want %v and no range", ndp.probed, len(ndp.ranges)-1, want)
	}
	if !strings.Contains(r.log.String(), "range too large to probe whole") {
		t.Errorf("no word in the log that the /64 was not probed whole:\n%s", r.log.String())
	}
	ndp.inUse[netip.MustParseAddr("2001:db8:3::")] = true // a /127 has no anycast address (RFC 6164)
	ndp.inUse[netip.MustParseAddr("2001:db8:3::1")] = true
	full := vif.LinkConfig{Name: "vif2", Publish: true, Config: vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix("2001:db8:3::/127")}}}
	if _, err := r.d.Up(Spec{LinkConfig: full}); err == nil || !strings.Contains(err.Error(), "nothing is left to claim") {
		t.Errorf("a range whose every address is in use: %v", err)
	}
	for _, bad := range []vif.LinkConfig{
		{Name: "vif3", Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::5/128")}}},
		{Name: "vif4", Config: vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix("2001:db8:1:0:8000::/65")}}},
	} {
		if _, err := r.d.Up(Spec{LinkConfig: bad}); err == nil || !strings.Contains(err.Error(), "already belongs to vif1") {
			t.Errorf("Up(%+v): %v", bad, err)
		}
	}
	// --force probes nothing.
	ndp.probed = nil
	if _, err := r.d.Up(Spec{LinkConfig: vif.LinkConfig{Name: "vif5", Publish: true, Config: vif.Config{Ranges: []netip.Prefix{netip.MustParsePrefix("2001:db8:5::/64")}}}, Force: true}); err != nil || len(ndp.probed) != 0 {
		t.Errorf("--force: %v, probed %v", err, ndp.probed)
	}
}
