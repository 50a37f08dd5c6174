package main

import (
	"bytes"
	"context"
	"errors"
	"github.com/vif-project/vif/internal/daemon"
	"io"
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
		{"flags first", "--slave eth1 --local 198.18.0.1 vif1 192.0.2.9", vif.LinkConfig{Name: "vif1", Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.9/32")}, Local: addr("198.18.0.1")}, Slave: "eth1", Publish: true}, false},
		{"peer with prefixes, flags between", "vif0 --peer 198.18.0.2=198.51.100.0/24,203.0.113.2/32 192.0.2.1 -v --peer 198.18.0.3", vif.LinkConfig{Name: "vif0", Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32")},
			Peer: addr("198.18.0.3"), Peers: []vif.Peer{{Addr: addr("198.18.0.2"), Prefixes: []netip.Prefix{pfx("198.51.100.0/24"), pfx("203.0.113.2/32")}}}}, Publish: true}, false},
		{"-- ends the flags", "vif0 192.0.2.1 --foreground -- 192.0.2.2", vif.LinkConfig{Name: "vif0", Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32"), pfx("192.0.2.2/32")}}, Publish: true}, true},
		{"over IPv6", "vif0 192.0.2.1 --peer 2001:db8:ffff::2=198.51.100.0/24,2001:db8:b::/64 --local 2001:db8:ffff::1 --proto 4",
			vif.LinkConfig{Name: "vif0", Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32")}, Local: addr("2001:db8:ffff::1"), Protocol: 4,
				Peers: []vif.Peer{{Addr: addr("2001:db8:ffff::2"), Prefixes: []netip.Prefix{pfx("198.51.100.0/24"), pfx("2001:db8:b::/64")}}}}, Publish: true}, false},
		{"flag=value", "vif0 192.0.2.1 --proto=ipip --mtu=9000", vif.LinkConfig{Name: "vif0", Config: vif.Config{Addrs: []netip.Prefix{pfx("192.0.2.1/32")}, Protocol: 94}, MTU: 9000, Publish: true}, false},
		{"IPv6 and IPv4 ranges", "hosting 2001:db8:1::/64 203.0.113.0/24 --range", vif.LinkConfig{Name: "hosting", Config: vif.Config{Ranges: []netip.Prefix{pfx("2001:db8:1::/64"), pfx("203.0.113.0/24")}}, Publish: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseUp(strings.Fields(tt.args))
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
		{"vif0 fe80::1", "must be unicast (not ::, ::1, multicast or link-local)"},
		{"vif0 ::ffff:192.0.2.1", "give an IPv4 address as such (192.0.2.1)"},
		{"vif0 2001:db8::20%eth0", "a vif address has no zone: leave out %eth0"},
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
		{"vif0 192.0.2.1 --local fe80::1", "bad --local"},
		{"vif0 192.0.2.1 --peer ::ffff:198.18.0.2", "bad --peer"},
		{"vif0 192.0.2.1 --peer 2001:db8:ffff::2%eth0", "bad --peer"},
		{"vif0 192.0.2.1 --peer 2001:db8:ffff::2 --proto 94", "use --proto 4"},
		{"vif0 192.0.2.1 --local 2001:db8:ffff::1 --proto ipip", "use --proto 4"},
		{"vif0 192.0.2.1 --route 198.51.100.7/24", "host bits are set; did you mean 198.51.100.0/24?"},
		{"vif0 192.0.2.1 --route 198.51.100.0", "bad --route"},
		{"vif0 192.0.2.1 --frobnicate", `unknown flag --frobnicate for "vif up" (see "vif up --help")`},
		{"vif0 192.0.2.1 --slav eth1", `unknown flag --slav for "vif up": did you mean --slave? (see "vif up --help")`},
		{"vif0 192.0.2.1 --fore", "did you mean --force or --foreground?"},
		// Go's flag package took one dash; pflag reads -slave as -s -l -a...
		{"-slave eth1 -local 198.18.0.1 vif1 192.0.2.9", `unknown flag -slave for "vif up": did you mean --slave?`},
		{"vif0 192.0.2.1 -foreground", "unknown flag -foreground for \"vif up\": did you mean --foreground?"},
		{"vif0 192.0.2.1 -verbose", "unknown flag -verbose for \"vif up\": did you mean --verbose?"},
		{"vif0 192.0.2.1 -slave=eth1", "did you mean --slave?"},
		{"vif0 192.0.2.1 -x", `unknown flag -x for "vif up" (see "vif up --help")`},
		{"vif0 192.0.2.1 --slave", "--slave needs a value, as in --slave IFACE"},
		{"vif0 192.0.2.1 --timeout 5", `bad --timeout "5": give a duration`},
		{"vif0 192.0.2.1 --force=maybe", `bad --force "maybe"`},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			_, err := parseUp(strings.Fields(tt.args))
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

// parseUp parses the command line "vif up args...", through the command
// tree vif runs, and returns the configuration vif up would run.
func parseUp(args []string) (*upConfig, error) {
	root := newRoot()
	up, _, _ := root.Find([]string{"up"})
	root.RemoveCommand(up)
	var got *upConfig
	root.AddCommand(upCmd(func(_ context.Context, c *upConfig, _, _ io.Writer) error { got = c; return nil }))
	err := execute(context.Background(), root, append([]string{"up"}, args...), io.Discard, io.Discard)
	return got, err
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

func TestTakeNetns(t *testing.T) {
	tests := []struct{ in, out, ns string }{
		{"--netns blue show", "show", "blue"},
		// A completion request: the word being typed is the last.
		{"__complete --netns blue down ", "__complete down ", "blue"},
		{"__completeNoDesc down --netns=red v", "__completeNoDesc down v", "red"},
		{"__complete --netns ", "__complete --netns ", ""},     // the value is being typed
		{"__complete --netns=bl", "__complete --netns=bl", ""}, // likewise
	}
	for _, tt := range tests {
		out, ns, err := takeNetns(strings.Split(tt.in, " "))
		if err != nil || strings.Join(out, " ") != tt.out || ns != tt.ns {
			t.Errorf("takeNetns(%q) = %q, %q, %v; want %q, %q", tt.in, strings.Join(out, " "), ns, err, tt.out, tt.ns)
		}
	}
}

func TestRunUsage(t *testing.T) {
	ctx := context.Background()
	var out, errb bytes.Buffer
	if err := run(ctx, nil, &out, &errb); exitCode(err) != 2 || out.Len() > 0 || !strings.Contains(errb.String(), "vif up NAME") {
		t.Errorf("no command: err %v, want a usage error and the usage on stderr only; stdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	for _, tt := range []struct{ cmd, want string }{
		{"frob", `unknown command "frob": use up, down, set, show, capture, apply, serve or demo (see "vif help")`},
		{"dwon", `unknown command "dwon": did you mean "down"? (see "vif help")`},
		{"ls", `did you mean "show"?`},
		{"s", `did you mean "set", "show" or "serve"?`},
	} {
		err := run(ctx, []string{tt.cmd}, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != 2 {
			t.Errorf("vif %s: %v, want a usage error %q", tt.cmd, err, tt.want)
		}
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

// Help asked for goes to stdout, with the flags spelled as the README
// spells them.
func TestHelp(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"help"}, []string{"Usage:\n  vif COMMAND [flags]", "vif up NAME ADDR[/LEN]...", "vif set NAME CHANGE", "vif completion bash|zsh|fish", "--netns NS", "--version"}},
		{[]string{"--help"}, []string{"vif show [NAME]"}},
		{[]string{"-h"}, []string{"vif down NAME"}},
		{[]string{"up", "--help"}, []string{"Usage:\n  vif up NAME ADDR[/LEN]... [flags]", "Examples:\n  # answer on 192.0.2.1", "--foreground", "--slave IFACE", "--peer ADDR[=PREFIX,...]", "--timeout D", "(default 30s)", "-v, --verbose", "a daemon already running keeps its level", "--netns NS"}},
		{[]string{"help", "up"}, []string{"vif up NAME ADDR[/LEN]... [flags]"}},
		{[]string{"up", "-h"}, []string{"vif up NAME ADDR[/LEN]... [flags]"}},
		{[]string{"show", "--help"}, []string{"vif show [NAME] [flags]", "-j, --json", "rss_kib", "(default 5s)"}},
		{[]string{"set", "--help"}, []string{"vif set NAME CHANGE [flags]", "peer ADDR allowed-ips", "vif set vif0 mtu 1400", "--force"}},
		{[]string{"down", "--help"}, []string{"vif down NAME [flags]", "vif down vif0"}},
		{[]string{"demo", "--help"}, []string{"vif demo", "sudo vif demo"}},
		{[]string{"capture", "--help"}, []string{"vif capture NAME [flags]", "-c, --count COUNT", "--duration D", "-w, --write FILE", "--direction", "vif capture vif0 | tcpdump -nr -", "AF_XDP"}},
		{[]string{"help", "completion"}, []string{"vif completion bash > /etc/bash_completion.d/vif"}},
	} {
		var out, errb bytes.Buffer
		if err := run(ctx, tt.args, &out, &errb); err != nil {
			t.Errorf("vif %v: %v", tt.args, err)
		}
		for _, w := range tt.want { // the flags' help is wrapped
			if !strings.Contains(strings.Join(strings.Fields(out.String()), " "), strings.Join(strings.Fields(w), " ")) {
				t.Errorf("vif %v lacks %q on stdout:\n%s", tt.args, w, out.String())
			}
		}
		if strings.Contains(out.String(), " -foreground") || strings.Contains(out.String(), " -slave") {
			t.Errorf("vif %v spells a flag with one dash:\n%s", tt.args, out.String())
		}
		if errb.Len() > 0 {
			t.Errorf("vif %v wrote to stderr:\n%s", tt.args, errb.String())
		}
	}
	var out, errb bytes.Buffer
	err := run(ctx, []string{"help", "frob"}, &out, &errb)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), `unknown command "frob"`) || out.Len()+errb.Len() > 0 {
		t.Errorf("vif help frob: %v\n%s%s", err, out.String(), errb.String())
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
			if !p.IsValid() || !vif.IsHostAddr(p.Addr()) || p.Addr().Zone() != "" || p.Addr().Is6() && p.Bits() != 128 {
				t.Errorf("parseAddr(%q) accepted %v", s, p)
			}
			if a := p.Addr(); a.Is4() && (a.As4()[0] == 0 || a.As4()[0] == 127 || a.As4()[0] >= 224) {
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
		{"up", "vif0", "192.0.2.1", "-foreground"}, {"show", "-json"}, {"-version"}, {"-help"}, {"frob"}, {"help", "frob"},
		{"demo", "extra"}, {"--bogus"}, {"set", "vif0", "mtu"},
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
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var out, errOut strings.Builder
		if err := run(context.Background(), args, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "vif ") || !strings.Contains(out.String(), "go1.") || strings.Count(out.String(), "\n") != 1 {
			t.Errorf("vif %v: %v, %q", args, err, out.String())
		}
	}
}

// The man pages are made from the same definitions as the help.
func TestMan(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1") // made if missing
	if err := run(context.Background(), []string{"man", dir}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, page := range []string{"vif.1", "vif-up.1", "vif-down.1", "vif-set.1", "vif-show.1", "vif-capture.1", "vif-demo.1", "vif-completion.1"} {
		if _, err := os.Stat(filepath.Join(dir, page)); err != nil {
			t.Error(err)
		}
	}
	for _, page := range []string{"vif-daemon.1", "vif-man.1", "vif-help.1"} {
		if _, err := os.Stat(filepath.Join(dir, page)); err == nil {
			t.Errorf("%s was written: it is no command for people", page)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "vif-up.1"))
	if err != nil {
		t.Fatal(err)
	}
	// go-md2man writes a flag's dashes as they are: groff prints them as
	// hyphen-minus, fit to copy and paste.
	for _, w := range []string{"\\fB--slave\\fP", "--foreground", "\\fB--netns\\fP", "vif up vif0 192.0.2.1 --slave eth0", `.TH "VIF-UP" "1"`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("vif-up.1 lacks %q:\n%s", w, b)
		}
	}
	if err := run(context.Background(), []string{"man"}, io.Discard, io.Discard); exitCode(err) != 2 {
		t.Errorf("vif man without a directory: %v", err)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"completion", shell}, &out, io.Discard); err != nil {
			t.Fatalf("vif completion %s: %v", shell, err)
		}
		if out.Len() == 0 || !strings.Contains(out.String(), "vif") || !strings.Contains(out.String(), "__complete") {
			t.Errorf("vif completion %s:\n%s", shell, out.String())
		}
	}
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); exitCode(err) != 2 || out.Len()+errb.Len() > 0 {
			t.Errorf("vif %v: %v, want a one-line usage error", args, err)
		}
	}
	// What the shells ask: commands, flags and words; never a file.
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", ""}, []string{"up\t", "down\t", "set\t", "show\t", "demo\t", "completion\t", "help\t"}},
		{[]string{"__complete", "up", "vif0", "192.0.2.1", "--fo"}, []string{"--force\t", "--foreground\t"}},
		{[]string{"__complete", "show", "-"}, []string{"--json\t", "--netns\t", "--timeout\t"}},
		{[]string{"__complete", "set", "vif0", ""}, []string{"peer\t", "addr\t", "route\t", "mtu\t"}},
		{[]string{"__complete", "set", "vif0", "route", ""}, []string{"add", "del"}},
		{[]string{"__complete", "completion", ""}, []string{"bash", "zsh", "fish"}},
		{[]string{"__complete", "help", "u"}, []string{"up\t"}},
		{[]string{"__complete", "down", ""}, nil}, // the names of running vifs, if any
	} {
		var out bytes.Buffer
		if err := run(context.Background(), tt.args, &out, io.Discard); err != nil {
			t.Errorf("vif %q: %v", tt.args, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("vif %q lacks %q:\n%s", tt.args, w, out.String())
			}
		}
		if !strings.HasSuffix(out.String(), ":4\n") { // ShellCompDirectiveNoFileComp
			t.Errorf("vif %q may complete files:\n%s", tt.args, out.String())
		}
	}
}

// vif up and vif show name protocol 41 beside the tunnel's own when a
// peer has IPv6 prefixes (6in4).
func TestProtocols(t *testing.T) {
	st := daemon.VifStatus{Protocol: 94, Peers: []daemon.PeerStatus{{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}}}
	if got := protocols(st); got != "94" {
		t.Errorf("IPv4 prefixes only: %q", got)
	}
	st.Peers = append(st.Peers, daemon.PeerStatus{Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:b::/64")}})
	if got := protocols(st); got != "94, IPv6 in 41" {
		t.Errorf("with an IPv6 prefix: %q", got)
	}
}

// vif show names the underlay: with the offload, AF_XDP that only sends.
func TestShowUnderlay(t *testing.T) {
	for _, tt := range []struct {
		u       vif.UnderlayInfo
		offload bool
		want    string
	}{
		{vif.UnderlayInfo{Kind: vif.UnderlayXDP}, false, "  underlay: xdp\n"},
		{vif.UnderlayInfo{Kind: vif.UnderlayXDP, TransmitOnly: true}, true, "  underlay: xdp (transmit), offload in the kernel (tc)\n"},
		{vif.UnderlayInfo{Kind: vif.UnderlayRaw}, true, "  underlay: raw, offload in the kernel (tc)\n"},
		{vif.UnderlayInfo{Kind: vif.UnderlayRaw, Fallback: "no AF_XDP"}, false, "  underlay: raw (not xdp: no AF_XDP)\n"},
	} {
		var out strings.Builder
		printVif(&out, daemon.VifStatus{Name: "vif0", Underlay: tt.u, Offload: tt.offload})
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("%+v, offload %v: want %q in\n%s", tt.u, tt.offload, tt.want, out.String())
		}
	}
}
