package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// usage prints the usage of c as cobra's default does, but with each
// command listed by its synopsis ("vif up NAME ADDR[/LEN]...") rather than
// by its name alone, and the flags wrapped to fit 80 columns. It is code,
// not a template: text/template would keep every exported method of the
// program in the binary, 3 MB of it (see cobra's TestDeadcodeElimination).
func usage(c *cobra.Command) error {
	w := c.OutOrStderr() // where cobra wants it: it captures this for the help
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "Usage:\n  %s COMMAND [flags]", c.CommandPath())
	} else {
		fmt.Fprintf(w, "Usage:\n  %s", c.UseLine())
	}
	if c.HasExample() {
		fmt.Fprintf(w, "\n\nExamples:\n%s", c.Example)
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprint(w, "\n\nCommands:")
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() || sub.Name() == "help" {
				fmt.Fprintf(w, "\n  %-30s %s", c.CommandPath()+" "+sub.Use, sub.Short)
			}
		}
	}
	if c.HasAvailableLocalFlags() {
		fmt.Fprintf(w, "\n\nFlags:\n%s", strings.TrimRight(c.LocalFlags().FlagUsagesWrapped(80), " \n"))
	}
	if c.HasAvailableInheritedFlags() {
		fmt.Fprintf(w, "\n\nGlobal Flags:\n%s", strings.TrimRight(c.InheritedFlags().FlagUsagesWrapped(80), " \n"))
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "\n\nRun \"%s COMMAND --help\" for its flags and examples.", c.CommandPath())
	}
	_, err := fmt.Fprintln(w)
	return err
}

// helpCmd is "vif help [COMMAND]": the help of vif or of COMMAND, on
// standard output. An unknown COMMAND is a usage error, as it is without
// "help".
func helpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND]",
		Short: "show help",
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			c, rest, err := root.Find(args)
			if err != nil {
				return err
			}
			if c == root && len(rest) > 0 {
				return unknownCommand(root, rest[0])
			}
			c.InitDefaultHelpFlag() // as "vif COMMAND --help" shows it
			return c.Help()
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			c, _, err := cmd.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []cobra.Completion
			for _, sub := range c.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					names = append(names, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	}
}

// unknownCommand is the usage error for "vif NAME" when NAME is no command.
func unknownCommand(root *cobra.Command, name string) error {
	var names []string
	for _, c := range root.Commands() {
		explicit := slices.ContainsFunc(c.SuggestFor, func(s string) bool { return strings.EqualFold(s, name) }) // "vif ls": show
		if c.IsAvailableCommand() && (explicit || len(didYouMean(name, []string{c.Name()})) > 0) {
			names = append(names, c.Name())
		}
	}
	if len(names) > 0 {
		return usagef("unknown command %q: did you mean %s? (see \"vif help\")", name, orList(names, "\"", "\""))
	}
	return usagef("unknown command %q: use up, down, set, show, capture, apply, serve or demo (see \"vif help\")", name)
}

// flagError turns a flag that cobra could not parse into a one-line
// usage error with the fix: a "did you mean" where one is obvious, and
// where to read more. args is the command line, in which it finds a long
// flag given with one dash ("-slave"): Go's flag package took those, pflag
// reads them as a row of one-letter flags.
func flagError(cmd *cobra.Command, args []string, err error) error {
	see := fmt.Sprintf("(see \"%s --help\")", cmd.CommandPath())
	var (
		notExist *pflag.NotExistError
		noValue  *pflag.ValueRequiredError
		badValue *pflag.InvalidValueError
	)
	switch {
	case errors.As(err, &notExist):
		typed := "--" + notExist.GetSpecifiedName()
		if short := notExist.GetSpecifiedShortnames(); short != "" {
			typed = "-" + short
			for _, a := range args {
				if a == "--" {
					break
				}
				if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.HasSuffix(a, short) {
					typed = a
					break
				}
			}
		}
		name, _, _ := strings.Cut(strings.TrimLeft(typed, "-"), "=")
		var flags []string
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden {
				flags = append(flags, f.Name)
			}
		})
		if s := didYouMean(name, flags); len(name) > 1 && len(s) > 0 {
			return usagef("unknown flag %s for \"%s\": did you mean %s? %s", typed, cmd.CommandPath(), orList(s, "--", ""), see)
		}
		return usagef("unknown flag %s for \"%s\" %s", typed, cmd.CommandPath(), see)
	case errors.As(err, &noValue):
		f := noValue.GetFlag()
		varname, _ := pflag.UnquoteUsage(f)
		return usagef("--%s needs a value, as in --%s %s %s", f.Name, f.Name, varname, see)
	case errors.As(err, &badValue):
		f := badValue.GetFlag()
		if f.Value.Type() == "duration" {
			return usagef("bad --%s %q: give a duration such as 5s or 1m", f.Name, badValue.GetValue())
		}
		return usagef("bad --%s %q: %v %s", f.Name, badValue.GetValue(), errors.Unwrap(err), see)
	}
	return usagef("%v %s", err, see)
}

// didYouMean returns the words that typed likely misspells: those it
// begins, and those within two edits of it (but for so short a typed that
// two edits make anything of it).
func didYouMean(typed string, words []string) []string {
	typed = strings.ToLower(typed)
	if typed == "" {
		return nil
	}
	var out []string
	for _, w := range words {
		if d := distance(typed, w); strings.HasPrefix(w, typed) || d <= 2 && d < len(typed) {
			out = append(out, w)
		}
	}
	return out
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	row := make([]int, len(b)+1)
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(a); i++ {
		diag := row[0]
		row[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			diag, row[j] = row[j], min(row[j]+1, row[j-1]+1, diag+cost)
		}
	}
	return row[len(b)]
}

// orList writes "a", "a or b", "a, b or c", each word between pre and post.
func orList(words []string, pre, post string) string {
	var b strings.Builder
	for k, w := range words {
		switch {
		case k == 0:
		case k == len(words)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(pre + w + post)
	}
	return b.String()
}

// manCmd is the hidden "vif man DIR": it writes the man pages, made from
// the same definitions as the help, into DIR.
func manCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "write the man pages vif.1, vif-up.1, ... into DIR",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("man takes the directory to write the pages into, as in \"vif man /usr/local/share/man/man1\"")
			}
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			src := "vif"
			if bi, ok := debug.ReadBuildInfo(); ok {
				src += " " + bi.Main.Version
			}
			return doc.GenManTree(cmd.Root(), &doc.GenManHeader{Section: "1", Source: src, Manual: "User Commands"}, args[0])
		},
	}
}
