//go:build linux

package nstest

import (
	"strings"
	"testing"
)

// The tests in this file need no privileges.

func TestParseCapEff(t *testing.T) {
	tests := []struct {
		name   string
		status string
		want   uint64
		ok     bool
	}{
		{"root", "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n", 0x1ffffffffff, true},
		{"none", "CapEff:\t0000000000000000\n", 0, true},
		{"missing", "Name:\tx\n", 0, false},
		{"garbage", "CapEff:\tzz\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseCapEff(strings.NewReader(tt.status))
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseCapEff = %#x, %v; want %#x, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSysctlPath(t *testing.T) {
	tests := []struct {
		key, want string
	}{
		{"net.ipv4.conf.eth0.arp_ignore", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"},
		{"net/ipv4/conf/eth0.100/arp_ignore", "/proc/sys/net/ipv4/conf/eth0.100/arp_ignore"},
		{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{" net.ipv4.ip_forward ", "/proc/sys/net/ipv4/ip_forward"},
		{"", ""},
		{"net/../../etc/passwd", ""},
		{"net..ipv4", ""},
	}
	for _, tt := range tests {
		got, err := sysctlPath(tt.key)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", tt.key, got, err, tt.want)
		}
	}
}

func TestCanonicalDst(t *testing.T) {
	tests := []struct {
		dst, want string
	}{
		{"default", "default"},
		{"192.0.2.1", "192.0.2.1/32"},
		{"192.0.2.1/32", "192.0.2.1/32"},
		{"198.51.100.7/24", "198.51.100.0/24"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"nonsense", ""},
	}
	for _, tt := range tests {
		got, err := canonicalDst(tt.dst)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("canonicalDst(%q) = %q, %v; want %q", tt.dst, got, err, tt.want)
		}
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine("ip", []string{"netns", "exec", "nst-1-a", "sh", "-c", "echo hi; exit 1", ""})
	want := `ip netns exec nst-1-a sh -c "echo hi; exit 1" ""`
	if got != want {
		t.Errorf("commandLine = %s, want %s", got, want)
	}
}

func TestValidIfName(t *testing.T) {
	for name, want := range map[string]bool{
		"eth0": true, "vif0": true, "fifteen-chars-x": true, "sixteen-chars-xx": false,
		"": false, ".": false, "..": false, "a/b": false, "a:b": false, "a b": false,
	} {
		if got := validIfName(name); got != want {
			t.Errorf("validIfName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRandomMAC(t *testing.T) {
	for range 100 {
		mac := randomMAC()
		if len(mac) != 6 || mac[0]&0x01 != 0 || mac[0]&0x02 == 0 {
			t.Fatalf("randomMAC = %v, want a unicast, locally administered address", mac)
		}
	}
}

func TestOutputBufferKeepsTail(t *testing.T) {
	b := &outputBuffer{changed: make(chan struct{})}
	_, changed := b.watch()
	b.Write([]byte(strings.Repeat("x", maxOutput)))
	select {
	case <-changed:
	default:
		t.Error("Write did not signal a change")
	}
	b.Write([]byte("tail"))
	got := b.String()
	if !strings.HasSuffix(got, "tail") || !strings.HasPrefix(got, "[... 4 bytes of earlier output dropped ...]\n") {
		t.Errorf("String = %.60q...%q", got, got[len(got)-10:])
	}
}

func TestDroppedByKernel(t *testing.T) {
	tests := []struct {
		out  string
		want int
	}{
		{"listening on eth0\n7 packets captured\n7 packets received by filter\n0 packets dropped by kernel\n", 0},
		{"51 packets captured\n180 packets received by filter\n129 packets dropped by kernel\n", 129},
		{"1 packet captured\n1 packet received by filter\n1 packet dropped by kernel\n", 1},
		{"tcpdump: killed\n", -1},
	}
	for _, tt := range tests {
		if got := droppedByKernel(tt.out); got != tt.want {
			t.Errorf("droppedByKernel(%q) = %d, want %d", tt.out, got, tt.want)
		}
	}
}

var _ TB = testing.TB(nil)
