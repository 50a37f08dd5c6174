package daemon

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vif-project/vif/vif"
)

func spec(name string, addrs ...string) Spec {
	return Spec{LinkConfig: linkCfg(name, addrs...)}
}

func mustApply(t *testing.T, r *rig, specs ...Spec) []string {
	t.Helper()
	changes, err := r.d.Apply(specs)
	if err != nil {
		t.Fatalf("Apply: %v (changes: %q)", err, changes)
	}
	return changes
}

func TestApply(t *testing.T) {
	r := newRig(t)
	tunnel := spec("vif0", "192.0.2.1")
	tunnel.Local = netip.MustParseAddr("198.18.0.1")
	tunnel.Peer = netip.MustParseAddr("198.18.0.2")
	plain := spec("vif1", "192.0.2.2")
	got := mustApply(t, r, tunnel, plain)
	if want := []string{"vif0: created", "vif1: created"}; !slices.Equal(got, want) {
		t.Errorf("first apply: %q, want %q", got, want)
	}
	if got := mustApply(t, r, tunnel, plain); len(got) != 0 {
		t.Errorf("applying the same again changed %q", got)
	}
	first := r.links["vif0"]

	// Edit: in place for vif0, vif1 goes, vif2 comes.
	tunnel.Addrs = append(tunnel.Addrs, netip.MustParsePrefix("192.0.2.3/32"))
	tunnel.Routes = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	tunnel.MTU = 1400
	tunnel.Peers = []vif.Peer{{Addr: netip.MustParseAddr("198.18.0.3"), Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}}
	got = mustApply(t, r, tunnel, spec("vif2", "192.0.2.4"))
	want := []string{
		"vif1: removed",
		"vif0: address 192.0.2.3/32 added",
		"vif0: peer 198.18.0.3 added with allowed-ips [203.0.113.0/24]",
		"vif0: route 198.51.100.0/24 added",
		"vif0: MTU set to 1400",
		"vif2: created",
	}
	if !slices.Equal(got, want) {
		t.Errorf("edited apply:\n got %q\nwant %q", got, want)
	}
	if r.links["vif0"] != first || first.closes() != 0 {
		t.Error("vif0 was recreated for changes it can take in place")
	}
	if got := mustApply(t, r, tunnel, spec("vif2", "192.0.2.4")); len(got) != 0 {
		t.Errorf("applying the edited specs again changed %q", got)
	}

	// What the daemon reports as each vif's spec applies as a no-op.
	sts, err := r.d.ShowConfig("")
	if err != nil {
		t.Fatal(err)
	}
	var shown []Spec
	for _, st := range sts {
		shown = append(shown, *st.Config)
	}
	if got := mustApply(t, r, shown...); len(got) != 0 {
		t.Errorf("applying the shown config changed %q", got)
	}

	// Back: the MTU returns to the default, the extra address, peer
	// and route go.
	tunnel.Addrs, tunnel.Routes, tunnel.Peers, tunnel.MTU = tunnel.Addrs[:1], nil, nil, 0
	got = mustApply(t, r, tunnel, spec("vif2", "192.0.2.4"))
	want = []string{
		"vif0: address 192.0.2.3/32 removed",
		"vif0: peer 198.18.0.3 removed",
		"vif0: route 198.51.100.0/24 removed",
		"vif0: MTU set to 1480",
	}
	if !slices.Equal(got, want) {
		t.Errorf("reverted apply:\n got %q\nwant %q", got, want)
	}
	if first.MTU() != 1480 {
		t.Errorf("MTU %d after going back to the default, want 1480", first.MTU())
	}

	// What only a new vif can change recreates it.
	tunnel.Protocol = 4
	got = mustApply(t, r, tunnel, spec("vif2", "192.0.2.4"))
	if want := []string{"vif0: removed to be created again: its protocol changed", "vif0: created"}; !slices.Equal(got, want) {
		t.Errorf("protocol change: %q, want %q", got, want)
	}
	if first.closes() != 1 || r.links["vif0"] == first {
		t.Error("vif0 was not recreated for a new protocol")
	}

	// Nothing wanted: everything goes.
	if got := mustApply(t, r); len(got) != 2 {
		t.Errorf("empty apply: %q", got)
	}
	if r.d.Len() != 0 {
		t.Errorf("%d vifs left after an empty apply", r.d.Len())
	}
}

// An apply that fails in part puts back what ran before: a file that
// cannot apply whole changes nothing.
func TestApplyUndone(t *testing.T) {
	r := newRig(t)
	mustApply(t, r, spec("vif0", "192.0.2.1"), spec("vif2", "192.0.2.2"))
	first := r.links["vif0"]
	r.inUse[netip.MustParseAddr("192.0.2.7")] = slaveMAC
	edited := spec("vif2", "192.0.2.2")
	edited.Addrs = append(edited.Addrs, netip.MustParsePrefix("192.0.2.3/32"))
	changes, err := r.d.Apply([]Spec{spec("vif1", "192.0.2.7"), edited})
	if err == nil || !strings.Contains(err.Error(), "vif1: ") || !strings.HasSuffix(err.Error(), "the vifs are as they were before") || strings.Contains(err.Error(), "\n") {
		t.Errorf("an address in use: %v", err)
	}
	want := []string{
		"vif0: removed",
		"vif2: address 192.0.2.3/32 added",
		"undone: vif2: address 192.0.2.3/32 removed",
		"undone: vif0: created",
	}
	if !slices.Equal(changes, want) {
		t.Errorf("changes\n got %q\nwant %q", changes, want)
	}
	sts, _ := r.d.Show("")
	if len(sts) != 2 || sts[0].Name != "vif0" || sts[1].Name != "vif2" || len(sts[1].Addrs) != 1 {
		t.Errorf("after the undone apply: %+v", sts)
	}
	if first.closes() != 1 {
		t.Error("vif0 was not removed and created again")
	}
	if got := mustApply(t, r, spec("vif0", "192.0.2.1"), spec("vif2", "192.0.2.2")); len(got) != 0 {
		t.Errorf("the state before is not back: applying it changed %q", got)
	}
}

// A tunnel's MTU larger than its slave carries is refused, in Up and
// SetMTU, unless OuterFragments allows it.
func TestMTUOverSlave(t *testing.T) {
	r := newRig(t)
	big := spec("vif0", "192.0.2.1")
	big.Peer = netip.MustParseAddr("198.18.0.2")
	big.Local = netip.MustParseAddr("198.18.0.1")
	big.MTU = 1481 // the slave's 1500 carries 1480
	if _, err := r.d.Up(big); !errors.Is(err, ErrMTU) || !Refused(err) || !strings.Contains(err.Error(), "use an MTU of 1480 or less, or pass --outer-fragments") {
		t.Errorf("MTU 1481 over a 1500 slave: %v", err)
	}
	big.OuterFragments = true
	if _, err := r.d.Up(big); err != nil {
		t.Fatalf("with OuterFragments: %v", err)
	}
	if err := r.d.SetMTU("vif0", 9000, false); !errors.Is(err, ErrMTU) {
		t.Errorf("SetMTU 9000: %v", err)
	}
	if err := r.d.SetMTU("vif0", 1480, false); err != nil {
		t.Errorf("SetMTU 1480: %v", err)
	}
	// Without a tunnel nothing is encapsulated: any MTU.
	plain := spec("vif1", "192.0.2.2")
	plain.MTU = 9000
	if _, err := r.d.Up(plain); err != nil {
		t.Errorf("MTU 9000 without a tunnel: %v", err)
	}
}
