package vif_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vif-project/vif/vif"
)

// Resolve fills in the defaults once, for Up and for the daemon, and
// refuses what Up would refuse, without creating anything. It only reads
// the host's interfaces.
func TestResolve(t *testing.T) {
	addrs := []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
	got, err := vif.LinkConfig{Name: "vifresolve0", Config: vif.Config{Addrs: addrs}}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if got.Protocol != 94 || got.MTU != 1480 || got.Slave != "" || got.Local.IsValid() {
		t.Errorf("resolved %+v, want protocol 94, MTU 1480, no slave, no local address", got)
	}
	for _, tt := range []struct {
		name string
		cfg  vif.LinkConfig
		want error
	}{
		{"bad name", vif.LinkConfig{Name: "a b", Config: vif.Config{Addrs: addrs}}, vif.ErrBadName},
		{"name taken", vif.LinkConfig{Name: "lo", Config: vif.Config{Addrs: addrs}}, vif.ErrExists},
		{"no address", vif.LinkConfig{Name: "vifresolve0"}, vif.ErrNoAddress},
		{"loopback address", vif.LinkConfig{Name: "vifresolve0", Config: vif.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}}, vif.ErrBadAddress},
		{"protocol", vif.LinkConfig{Name: "vifresolve0", Config: vif.Config{Addrs: addrs, Protocol: 17}}, vif.ErrBadProtocol},
		{"mtu", vif.LinkConfig{Name: "vifresolve0", Config: vif.Config{Addrs: addrs}, MTU: 20}, vif.ErrBadMTU},
		{"slave", vif.LinkConfig{Name: "vifresolve0", Config: vif.Config{Addrs: addrs}, Slave: "nosuchslave0"}, vif.ErrNoSlave},
	} {
		if _, err := tt.cfg.Resolve(); !errors.Is(err, tt.want) {
			t.Errorf("%s: Resolve = %v, want %v", tt.name, err, tt.want)
		}
	}
}
