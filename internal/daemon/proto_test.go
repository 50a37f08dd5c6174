package daemon

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	good := []string{
		`{"op":"show"}`,
		`{"op":"show","name":"vif0"}`,
		`{"op":"down","name":"vif0"}`,
		`{"op":"up","up":{"name":"vif0","addrs":["192.0.2.1/32"]}}`,
		`{"op":"up","up":{"name":"vif0","addrs":["192.0.2.1/32"],"slave":"eth0","peer":"198.18.0.2","routes":["198.51.100.0/24"],"protocol":4,"mtu":1400,"publish":true}}`,
	}
	for _, s := range good {
		if _, err := DecodeRequest([]byte(s)); err != nil {
			t.Errorf("DecodeRequest(%s) = %v", s, err)
		}
	}
	bad := []string{
		``, `{`, `[]`, `{"op":"reboot"}`, `{"op":"down"}`, `{"op":"up"}`,
		`{"op":"up","up":{"name":"vif0"}}`,
		`{"op":"up","up":{"name":"vif0","addrs":["192.0.2.1/32"],"routes":["::ffff:192.0.2.0/120"]}}`,
		`{"op":"up","up":{"name":"vif0","addrs":["192.0.2.1/40"]}}`,
		`{"op":"show","evil":1}`,
		`{"op":"show"} {"op":"show"}`,
	}
	for _, s := range bad {
		if _, err := DecodeRequest([]byte(s)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("DecodeRequest(%s) = %v, want ErrBadRequest", s, err)
		}
	}
}

func TestCompareNames(t *testing.T) {
	names := []string{"vif10", "vif2", "vif1", "eth0", "vif02", "vif", "vif100", "vif1a"}
	slices.SortFunc(names, compareNames)
	want := []string{"eth0", "vif", "vif1", "vif1a", "vif2", "vif02", "vif10", "vif100"}
	if !slices.Equal(names, want) {
		t.Errorf("sorted = %v, want %v", names, want)
	}
}

func TestStatusJSONStable(t *testing.T) {
	st := VifStatus{Name: "vif0", Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Protocol: 94, MTU: 1480, Routes: []netip.Prefix{}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"name":"vif0"`, `"addrs":["192.0.2.1/32"]`, `"protocol":94`, `"mtu":1480`, `"routes":[]`,
		`"arp_proxy":false`, `"looped_packets":0`, `"encapsulated_bytes":0`, `"decapsulated_packets":0`, `"dropped":0`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}
	for _, absent := range []string{`"peer"`, `"local"`, `"arp":`} {
		if strings.Contains(string(b), absent) {
			t.Errorf("JSON of a peerless vif has %s: %s", absent, b)
		}
	}
}

// FuzzDecodeRequest checks that any bytes on the control socket give a
// request that satisfies DecodeRequest's promises, or an error.
func FuzzDecodeRequest(f *testing.F) {
	seeds, _ := filepath.Glob("../../testdata/control/*.json")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"op":"show"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		switch r.Op {
		case OpUp:
			if r.Up == nil || r.Up.Name == "" || len(r.Up.Addrs) == 0 {
				t.Fatalf("accepted incomplete up: %+v", r)
			}
			for _, p := range r.Up.Addrs {
				if !p.IsValid() {
					t.Fatalf("accepted invalid address %v", p)
				}
			}
			for _, p := range r.Up.Routes {
				if !p.IsValid() || !p.Addr().Is4() {
					t.Fatalf("accepted non-IPv4 route %v", p)
				}
			}
		case OpDown:
			if r.Name == "" {
				t.Fatal("accepted down without a name")
			}
		case OpShow:
		default:
			t.Fatalf("accepted op %q", r.Op)
		}
	})
}
