package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vif-project/vif/internal/config"
	"github.com/vif-project/vif/vif"
)

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

var errNoCommand = usagef("no command given: try \"vif up vif0 192.0.2.1 --foreground\" or \"vif help\"")

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
// --netns is taken out first: the command then runs again inside that
// namespace.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		execute(ctx, newRoot(), []string{"--help"}, stderr, stderr) // an error: the usage goes to stderr
		return errNoCommand
	}
	args, ns, err := takeNetns(args)
	if err != nil {
		return err
	}
	if ns != "" {
		return inNetns(ns, args)
	}
	return execute(ctx, newRoot(), args, stdout, stderr)
}

// execute runs args on the command tree root, writing to stdout and
// stderr. Errors are returned, not printed: main prints them in one line.
func execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) error {
	root.SetArgs(append([]string{}, args...)) // never nil: cobra would read os.Args
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return flagError(cmd, args, err) })
	return root.ExecuteContext(ctx)
}

// newRoot returns the vif command. Each subcommand is defined in one
// place, its file: usage, help text, examples, flags and what it runs;
// the help, the shell completion and the man pages are made from that.
func newRoot() *cobra.Command {
	cobra.EnableCommandSorting = false // list the commands in the order below
	var showVersion bool
	root := &cobra.Command{
		Use:   "vif COMMAND",
		Short: "virtual network interfaces in userspace",
		Long: `vif — virtual network interfaces that answer on extra IPv4 addresses
and tunnel in IPIP (protocol 94 or 4) to a peer.

Every command takes --netns NS to act in another network namespace.`,
		// Any word that is not a command reaches RunE, which says so in
		// one line with a suggestion.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case showVersion:
				_, err := fmt.Fprintln(cmd.OutOrStdout(), version())
				return err
			case len(args) == 0: // "vif --"
				return errNoCommand
			}
			return unknownCommand(cmd, args[0])
		},
		ValidArgsFunction: cobra.NoFileCompletions,
		SilenceErrors:     true, // main prints the one line
		SilenceUsage:      true, // and nothing around it
		DisableAutoGenTag: true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true}, // see completionCmd
	}
	root.SetUsageFunc(usage)
	root.Flags().BoolVar(&showVersion, "version", false, "show the version and the source revision")
	root.PersistentFlags().String("netns", "", "act in the network namespace `NS`: a name, as in \"ip netns\", or a path to one")
	root.RegisterFlagCompletionFunc("netns", completeNetns)
	root.AddCommand(upCmd(runUp), downCmd(), setCmd(), showCmd(), captureCmd(), applyCmd(), serveCmd(), demoCmd(), completionCmd(),
		daemonCmd(), versionCmd(), manCmd())
	root.SetHelpCommand(helpCmd())
	return root
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

// versionCmd is "vif version", the same as "vif --version".
func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "version",
		Short:  "show the version and the source revision",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version())
			return err
		},
	}
}

// checkTimeout refuses a --timeout that leaves no time to answer.
func checkTimeout(d time.Duration) error {
	if d <= 0 {
		return usagef("bad --timeout %v: give a positive duration such as 5s or 1m", d)
	}
	return nil
}

// timeoutFlag adds --timeout, the deadline of the daemon's answer.
func timeoutFlag(cmd *cobra.Command, d *time.Duration, def time.Duration) {
	cmd.Flags().DurationVar(d, "timeout", def, "give up if the daemon has not answered within `D`, a duration such as 5s")
}

// parseAddr parses a vif address, ADDR or ADDR/LEN (config.ParseAddr).
func parseAddr(s string) (netip.Prefix, error) {
	p, err := config.ParseAddr(s)
	if err != nil {
		return p, usagef("%v", err)
	}
	return p, nil
}

// parseHost parses a unicast IPv4 or IPv6 underlay address (--peer,
// --local).
func parseHost(flagName, s string) (netip.Addr, error) {
	a, err := config.ParseUnderlay("--"+flagName, s)
	if err != nil {
		return a, usagef("%v", err)
	}
	return a, nil
}

// parsePrefix parses a prefix for the flag or word what (--route,
// --forward, allowed-ips); host bits must be zero.
func parsePrefix(what, s string) (netip.Prefix, error) {
	if !strings.HasPrefix(what, "allowed") {
		what = "--" + what
	}
	p, err := config.ParsePrefix(what, s)
	if err != nil {
		return p, usagef("%v", err)
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

func parseUnderlay(s string) (string, error) {
	switch s = strings.ToLower(s); s {
	case vif.UnderlayAuto, vif.UnderlayXDP, vif.UnderlayRaw:
		return s, nil
	}
	return "", usagef("bad --underlay %q: use xdp (AF_XDP) or raw (raw IP sockets), or leave it out to choose", s)
}

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
