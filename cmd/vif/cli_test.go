package main

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vif-project/vif/vif"
)

func TestParseUp(t *testing.T) {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	tests := []struct {
		name string
		args string
		want vif.LinkConfig
		fg   bool
	}{
		{"minimal", "vif0 192.0.2.1", vif.LinkConfig{Name: "vif0", Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32")}}, Publish: true}, false},
		{"flags after positionals", "vif0 192.0.2.1 198.51.100.0/24 --slave eth0 --peer 198.18.0.2 --route 203.0.113.0/24 --route 198.51.100.128/25 --proto 4 --mtu 1400 --no-arp-proxy --foreground",
			vif.LinkConfig{Name: "vif0", Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32"), pfx("198.51.100.0/24")},
				Peer: addr("198.18.0.2"), Protocol: 4}, Slave: "eth0", Routes: []netip.Prefix{pfx("203.0.113.0/24"), pfx("198.51.100.128/25")},
				MTU: 1400}, true},
		{"flags first, single dash", "-slave eth1 -local 198.18.0.1 vif1 192.0.2.9", vif.LinkConfig{Name: "vif1", Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.9/32")}, Local: addr("198.18.0.1")}, Slave: "eth1", Publish: true}, false},
		{"flag=value", "vif0 192.0.2.1 --proto=ipip --mtu=9000", vif.LinkConfig{Name: "vif0", Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32")}, Protocol: 94}, MTU: 9000, Publish: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseUp(strings.Fields(tt.args), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.req, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			if c.foreground != tt.fg {
				t.Errorf("foreground = %v, want %v", c.foreground, tt.fg)
			}
		})
	}
}

func TestParseUpErrors(t *testing.T) {
	tests := []struct{ args, want string }{
		{"", "needs a name and at least one address"},
		{"vif0", "needs a name and at least one address"},
		{"vif0 192.0.2", "bad address \"192.0.2\""},
		{"vif0 2001:db8::1", "bad address"},
		{"vif0 192.0.2.1/33", "bad address"},
		{"vif0 127.0.0.1", "must be unicast"},
		{"vif0 224.0.0.1", "must be unicast"},
		{"vif0 0.1.2.3", "must be unicast"},
		{"vif0 255.255.255.255", "must be unicast"},
		{"this-name-is-too-long 192.0.2.1", "bad name"},
		{"vif/0 192.0.2.1", "bad name"},
		{"vif0 192.0.2.1 --proto 17", "bad --proto \"17\": use 94"},
		{"vif0 192.0.2.1 --mtu 67", "bad --mtu \"67\""},
		{"vif0 192.0.2.1 --mtu 65516", "bad --mtu"},
		{"vif0 192.0.2.1 --mtu big", "bad --mtu"},
		{"vif0 192.0.2.1 --peer nowhere", "bad --peer \"nowhere\""},
		{"vif0 192.0.2.1 --peer 224.1.1.1", "bad --peer"},
		{"vif0 192.0.2.1 --local ::1", "bad --local"},
		{"vif0 192.0.2.1 --route 198.51.100.7/24", "host bits are set; did you mean 198.51.100.0/24?"},
		{"vif0 192.0.2.1 --route 198.51.100.0", "bad --route"},
		{"vif0 192.0.2.1 --frobnicate", "flag provided but not defined: -frobnicate"},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			_, err := parseUp(strings.Fields(tt.args), &bytes.Buffer{})
			if err == nil {
				t.Fatalf("parseUp(%q) succeeded, want error containing %q", tt.args, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d for bad input, want 2", exitCode(err))
			}
		})
	}
}

func TestExtractNetns(t *testing.T) {
	tests := []struct {
		in       string
		out, ns  string
		wantFail bool
	}{
		{"up vif0 192.0.2.1", "up vif0 192.0.2.1", "", false},
		{"--netns blue up vif0 192.0.2.1", "up vif0 192.0.2.1", "blue", false},
		{"up vif0 --netns=red 192.0.2.1", "up vif0 192.0.2.1", "red", false},
		{"show -netns /proc/1/ns/net --json", "show --json", "/proc/1/ns/net", false},
		{"up vif0 -- --netns x", "up vif0 -- --netns x", "", false},
		{"show --netns", "", "", true},
		{"show --netns=", "", "", true},
	}
	for _, tt := range tests {
		out, ns, err := extractNetns(strings.Fields(tt.in))
		if (err != nil) != tt.wantFail {
			t.Errorf("extractNetns(%q) error = %v, want failure %v", tt.in, err, tt.wantFail)
			continue
		}
		if err == nil && (strings.Join(out, " ") != tt.out || ns != tt.ns) {
			t.Errorf("extractNetns(%q) = %q, %q; want %q, %q", tt.in, strings.Join(out, " "), ns, tt.out, tt.ns)
		}
	}
}

func TestRunUsage(t *testing.T) {
	ctx := context.Background()
	var out, errb bytes.Buffer
	if err := run(ctx, nil, &out, &errb); exitCode(err) != 2 {
		t.Errorf("no command: err %v, want a usage error", err)
	}
	if err := run(ctx, []string{"frob"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "unknown command \"frob\"") {
		t.Errorf("unknown command: %v", err)
	}
	for _, cmd := range []string{"up", "down", "show", "demo"} {
		out.Reset()
		errb.Reset()
		if err := run(ctx, []string{cmd, "--help"}, &out, &errb); err != nil {
			t.Errorf("%s --help: %v", cmd, err)
		}
		if !strings.Contains(errb.String(), "Usage: vif "+cmd) || !strings.Contains(errb.String(), "xample") {
			t.Errorf("%s --help lacks usage or examples:\n%s", cmd, errb.String())
		}
	}
	out.Reset()
	if err := run(ctx, []string{"help"}, &out, &errb); err != nil || !strings.Contains(out.String(), "vif up NAME") {
		t.Errorf("help: %v\n%s", err, out.String())
	}
	if err := run(ctx, []string{"down"}, &out, &errb); exitCode(err) != 2 {
		t.Errorf("down without a name: %v", err)
	}
	if err := run(ctx, []string{"show", "a", "b"}, &out, &errb); exitCode(err) != 2 {
		t.Errorf("show with two names: %v", err)
	}
	if err := run(ctx, []string{"--netns", "vif-no-such-ns-x", "show"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "ip netns list") {
		t.Errorf("unknown netns: %v", err)
	}
}

func TestNotRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		if err := needRoot("up"); err != nil {
			t.Fatal(err)
		}
		return
	}
	err := run(context.Background(), []string{"up", "vif0", "192.0.2.1"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "needs root") || !strings.Contains(err.Error(), "sudo") {
		t.Errorf("vif up as non-root: %v", err)
	}
}

// FuzzParseAddr checks that the address and prefix parsers never panic and
// only accept what they promise.
func FuzzParseAddr(f *testing.F) {
	seeds, _ := filepath.Glob("../../testdata/cli/*.txt")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			f.Add(l)
		}
	}
	f.Add("192.0.2.1")
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := parseAddr(s); err == nil {
			if !p.Addr().Is4() || !p.IsValid() {
				t.Errorf("parseAddr(%q) accepted %v", s, p)
			}
			if a := p.Addr().As4(); a[0] == 0 || a[0] == 127 || a[0] >= 224 {
				t.Errorf("parseAddr(%q) accepted non-unicast %v", s, p)
			}
		} else if !errors.Is(err, errUsage) || strings.Contains(err.Error(), "\n") {
			t.Errorf("parseAddr(%q) error %q is not a one-line usage error", s, err)
		}
		if p, err := parsePrefix("route", s); err == nil && (p != p.Masked() || !p.Addr().Is4()) {
			t.Errorf("parsePrefix(route, %q) accepted %v", s, p)
		}
		if p, _, err := parsePeer(s); err == nil && !vif.IsHostAddr(p.Addr) {
			t.Errorf("parsePeer(%q) accepted %v", s, p)
		}
		if a, err := parseHost("peer", s); err == nil && !a.Is4() {
			t.Errorf("parseHost(%q) accepted %v", s, a)
		}
		if n, err := parseMTU(s); err == nil && n != 0 && (n < 68 || n > 65515) {
			t.Errorf("parseMTU(%q) accepted %d", s, n)
		}
		parseProto(s)
		extractNetns(strings.Fields(s))
	})
}

// A bad flag or --timeout is one error line, exit status 2, and nothing
// else on the terminal.
func TestBadFlagsOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"show", "--timeout=5"}, {"show", "--timeout", "0s"}, {"down", "vif0", "--timeout=-1s"},
		{"up", "vif0", "192.0.2.1", "--timeout", "0"}, {"up", "--bogus"}, {"down", "-x"}, {"demo", "--nope"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, &out, &errb)
		if exitCode(err) != 2 || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want a one-line usage error", args, err)
		}
		if out.Len()+errb.Len() > 0 {
			t.Errorf("%v printed besides its error:\n%s%s", args, out.String(), errb.String())
		}
	}
}

// VIF_CPUPROFILE is written as root would write into /tmp: never through
// a symbolic link, never into another user's file.
func TestCreateOwn(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "precious")
	os.WriteFile(target, []byte("keep"), 0o600)
	link := filepath.Join(dir, "vif.pprof")
	os.Symlink(target, link)
	if f, err := createOwn(link); err == nil {
		f.Close()
		t.Error("createOwn followed a symbolic link")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the link's target was changed: %q", b)
	}
	if err := os.Link(target, filepath.Join(dir, "hard")); err == nil {
		if f, err := createOwn(filepath.Join(dir, "hard")); err == nil {
			f.Close()
			t.Error("createOwn wrote into a file with another name")
		}
	}
	fifo := filepath.Join(dir, "fifo.pprof")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	if f, err := createOwn(fifo); err == nil { // and it must not block
		f.Close()
		t.Error("createOwn opened a FIFO")
	}
	own := filepath.Join(dir, "own.pprof")
	os.WriteFile(own, []byte("old profile"), 0o600)
	f, err := createOwn(own)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := os.ReadFile(own); len(b) != 0 {
		t.Errorf("an own file was not truncated: %q", b)
	}
}

func TestVersion(t *testing.T) {
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"--version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "vif ") || !strings.Contains(out.String(), "go1.") {
		t.Errorf("vif --version: %v, %q", err, out.String())
	}
}
