package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/vif-project/vif/vif"
)

const usage = `vif — virtual network interfaces that answer on extra IPv4 addresses
and tunnel in IPIP (protocol 94 or 4) to a peer.

Usage:
  vif up NAME ADDR[/LEN]... [flags]   create a vif; it serves until "vif down"
  vif down NAME                       remove a vif and all it installed
  vif set NAME CHANGE                 change a running vif: peer, addr,
                                      route or mtu
  vif show [NAME] [--json]            show vifs, their settings and counters
  vif demo                            walk through the seed's scenario in
                                      throwaway network namespaces
  vif help [COMMAND]                  show help
  vif --version                       show the version and the source revision

Every command takes --netns NS to act in another network namespace.
Run "vif COMMAND --help" for its flags and examples.
`

// errUsage marks errors caused by bad command-line input (exit status 2).
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }
func (e *usageError) Is(target error) bool {
	return target == errUsage
}

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// run executes the vif command line args and returns what went wrong.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command given: try \"vif up vif0 192.0.2.1 --foreground\" or \"vif help\"")
	}
	args, ns, err := extractNetns(args)
	if err != nil {
		return err
	}
	if ns != "" {
		return inNetns(ns, args)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		return runUp(ctx, rest, stdout, stderr)
	case "down":
		return runDown(ctx, rest, stdout, stderr)
	case "show":
		return runShow(ctx, rest, stdout, stderr)
	case "set":
		return runSet(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "daemon":
		return runDaemon(ctx, rest, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version())
		return nil
	case "help", "-h", "--help", "-help":
		if len(rest) > 0 {
			return run(ctx, []string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usagef("unknown command %q: use up, down, set, show or demo (see \"vif help\")", cmd)
}

// version describes this build: the module's version and the VCS
// revision it was built from, as the Go toolchain recorded them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "vif (no build information)"
	}
	v := "vif " + bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	if rev != "" {
		v += " (revision " + rev + dirty + ")"
	}
	return v + ", " + bi.GoVersion
}

// newFlags returns the flag set of a subcommand. It prints nothing itself:
// a bad flag is an error for the caller to report in one line, and help
// is printed by printHelp.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// printHelp prints a subcommand's usage text and flags to w.
func printHelp(w io.Writer, fs *flag.FlagSet, usage string) {
	fmt.Fprint(w, usage)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// checkTimeout refuses a --timeout that leaves no time to answer.
func checkTimeout(d time.Duration) error {
	if d <= 0 {
		return usagef("bad --timeout %v: give a positive duration such as 5s or 1m", d)
	}
	return nil
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments ("vif up vif0 192.0.2.1 --slave eth0") and returns
// the positional ones. "--" ends flag parsing.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseAddr parses a vif address, ADDR or ADDR/LEN; a bare address is a
// /32 host address.
func parseAddr(s string) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(s); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, usagef("bad address %q: give an IPv4 address such as 192.0.2.1 or 192.0.2.1/32", s)
	}
	if !vif.IsHostAddr(p.Addr()) {
		return netip.Prefix{}, usagef("bad address %q: a vif address must be unicast (not 0/8, 127/8, multicast or broadcast)", s)
	}
	return p, nil
}

// parseHost parses a unicast IPv4 underlay address (--peer, --local).
func parseHost(flagName, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, usagef("bad --%s %q: give an IPv4 address such as 198.18.0.2", flagName, s)
	}
	if !vif.IsHostAddr(a) {
		return netip.Addr{}, usagef("bad --%s %q: it must be a unicast address", flagName, s)
	}
	return a, nil
}

// parsePrefix parses a prefix for the flag or word what (--route,
// --forward, allowed-ips); host bits must be zero.
func parsePrefix(what, s string) (netip.Prefix, error) {
	if !strings.HasPrefix(what, "allowed") {
		what = "--" + what
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, usagef("bad %s %q: give an IPv4 prefix such as 198.51.100.0/24", what, s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, usagef("bad %s %q: host bits are set; did you mean %s?", what, s, p.Masked())
	}
	return p, nil
}

// parseProto parses --proto: 94 (IPIP) or 4 (RFC 2003); empty is the
// library's default (94).
func parseProto(s string) (uint8, error) {
	switch strings.ToLower(s) {
	case "":
		return 0, nil
	case "94", "ipip":
		return 94, nil
	case "4", "ipinip", "rfc2003":
		return 4, nil
	}
	return 0, usagef("bad --proto %q: use 94 (IPIP, the default) or 4 (RFC 2003)", s)
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func parseMTU(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 68 || n > 65515 {
		return 0, usagef("bad --mtu %q: use a number from 68 to 65515 (default: the slave's MTU minus 20)", s)
	}
	return n, nil
}

// needRoot fails early, with the fix, when not running as root.
func needRoot(cmd string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("vif %s needs root (CAP_NET_ADMIN and CAP_NET_RAW): run it with sudo", cmd)
	}
	return nil
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for k, p := range ps {
		s[k] = p.String()
	}
	return strings.Join(s, " ")
}
