package inet

import (
	"net/netip"
	"testing"
)

func TestWhy(t *testing.T) {
	for s, want := range map[string]string{
		"192.0.2.1":        "",
		"198.18.0.1":       "",
		"10.1.2.3":         "",
		"223.255.255.254":  "",
		"0.0.0.0":          "in 0.0.0.0/8",
		"0.1.2.3":          "in 0.0.0.0/8",
		"127.0.0.1":        "loopback",
		"224.0.0.1":        "multicast",
		"239.255.255.255":  "multicast",
		"240.0.0.1":        "reserved (240.0.0.0/4)",
		"255.255.255.255":  "broadcast",
		"2001:db8::1":      "not IPv4",
		"::ffff:192.0.2.1": "not IPv4",
	} {
		if got := Why(netip.MustParseAddr(s)); got != want {
			t.Errorf("Why(%s) = %q, want %q", s, got, want)
		}
	}
	if got := Why(netip.Addr{}); got == "" {
		t.Error("the zero Addr is a host address")
	}
}

func TestWhy6(t *testing.T) {
	for s, want := range map[string]string{
		"2001:db8::10":     "",
		"fd00::1":          "",
		"2001:db8::":       "",
		"::":               "unspecified",
		"::1":              "loopback",
		"ff02::1":          "multicast",
		"ff02::1:ff00:10":  "multicast",
		"fe80::1":          "link-local",
		"::ffff:192.0.2.1": "IPv4-mapped",
		"192.0.2.1":        "not IPv6",
	} {
		if got := Why6(netip.MustParseAddr(s)); got != want {
			t.Errorf("Why6(%s) = %q, want %q", s, got, want)
		}
	}
	if Why6(netip.Addr{}) == "" {
		t.Error("the zero Addr is a host address")
	}
}
