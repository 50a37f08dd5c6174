//go:build linux

package main

// vif follows the host: changes made under a running daemon, as an
// operator (or another daemon) makes them.

import (
	"os"
	"strings"
	"testing"

	"github.com/vif-project/vif/vif/nstest"
)

// The vif's MTU raised from outside on a jumbo-frame slave: packets up to
// the new MTU pass, and the vif stays (it used to delete itself after 100
// oversized reads).
func TestHostVifMTURaised(t *testing.T) {
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24", nstest.WithMTU(9000))
	vifCmd(t, a, "up", "vif0", "192.0.2.1", "--slave", aIf.Name(), "--peer", "198.18.0.2",
		"--route", "198.51.100.0/24", "--no-arp-proxy", "--mtu", "1480")
	t.Cleanup(func() { stopDaemon(a) })
	vifCmd(t, b, "up", "vif0", "198.51.100.1", "--slave", bIf.Name(), "--peer", "198.18.0.1",
		"--route", "192.0.2.0/24", "--no-arp-proxy", "--mtu", "1480")
	t.Cleanup(func() { stopDaemon(b) })
	pidA, logA := daemonPID(t, a)

	a.IP("link", "set", "vif0", "mtu", "8980")
	b.IP("link", "set", "vif0", "mtu", "8980")
	// The first big packet may meet buffers of the old size (it is
	// dropped and counted); every later one passes.
	a.Run("ping", "-c", "1", "-W", "1", "-s", "2000", "198.51.100.1")
	if out, err := a.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-s", "2000", "-M", "do", "198.51.100.1"); err != nil {
		t.Errorf("2000-byte pings after raising the MTU to 8980: %v\n%s", err, out)
	}
	if !a.LinkExists("vif0") || !alive(pidA) {
		t.Fatalf("after raising the MTU: vif0 exists %v, daemon alive %v", a.LinkExists("vif0"), alive(pidA))
	}
	if st := vifStatus(t, a, "vif0"); st.MTU != 8980 {
		t.Errorf("vif show says MTU %d, want 8980", st.MTU)
	}
	b2, _ := os.ReadFile(logA)
	if !strings.Contains(string(b2), "device MTU changed") || strings.Contains(string(b2), "went away") {
		t.Errorf("daemon log:\n%s", b2)
	}
}
