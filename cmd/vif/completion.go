package main

import (
	"context"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vif-project/vif/internal/daemon"
)

// completionCmd is "vif completion SHELL". It replaces cobra's own, which
// also offers PowerShell and takes a wrong shell for a request for help.
func completionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "print the shell completion script",
		Long: `Print the script that completes vif's commands and flags in bash, zsh or
fish, and the names of the running vifs (for root, who may ask the daemon).
Install it with one of:

    vif completion bash > /etc/bash_completion.d/vif
    vif completion zsh > "${fpath[1]}/_vif"
    vif completion fish > ~/.config/fish/completions/vif.fish

or load it into the current shell with "source <(vif completion bash)".`,
		ValidArgs: []cobra.Completion{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			if len(args) == 1 {
				switch args[0] {
				case "bash":
					return root.GenBashCompletionV2(out, true)
				case "zsh":
					return root.GenZshCompletion(out)
				case "fish":
					return root.GenFishCompletion(out, true)
				}
			}
			return usagef("completion takes one shell: bash, zsh or fish, as in \"vif completion bash\"")
		},
	}
}

// completeNames completes the first argument with the names of this
// network namespace's vifs.
func completeNames(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return runningVifs(cmd.Context()), cobra.ShellCompDirectiveNoFileComp
}

// runningVifs asks the daemon for the names of its vifs, with their
// addresses as descriptions. It waits at most a second and never starts
// a daemon; without one, or an answer, there are no names.
func runningVifs(ctx context.Context) []cobra.Completion {
	resp, err := call(ctx, daemon.Request{Op: daemon.OpShow}, time.Second, nil)
	if err != nil {
		return nil
	}
	var names []cobra.Completion
	for _, st := range resp.Vifs {
		names = append(names, cobra.CompletionWithDesc(st.Name, joinPrefixes(append(st.Addrs, st.Ranges...))))
	}
	return names
}

// completeSet completes "vif set NAME CHANGE": the name, then the words of
// the change.
func completeSet(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	none := cobra.ShellCompDirectiveNoFileComp
	switch {
	case len(args) == 0:
		return completeNames(cmd, args, toComplete)
	case len(args) == 1:
		return []cobra.Completion{
			cobra.CompletionWithDesc("peer", "add, change or remove a peer"),
			cobra.CompletionWithDesc("addr", "add or remove an address"),
			cobra.CompletionWithDesc("route", "route a prefix into the vif, or no more"),
			cobra.CompletionWithDesc("mtu", "set the MTU"),
		}, none
	case len(args) == 2 && (args[1] == "addr" || args[1] == "route"):
		return []cobra.Completion{"add", "del"}, none
	case len(args) == 3 && args[1] == "peer":
		return []cobra.Completion{"allowed-ips", "remove"}, none
	}
	return nil, none
}

// completeInterfaces completes --slave with the host's interfaces.
func completeInterfaces(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	ifs, _ := net.Interfaces()
	var names []cobra.Completion
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback == 0 {
			names = append(names, ifi.Name)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeNetns completes --netns with the namespaces "ip netns" names,
// or with paths when a path is being typed.
func completeNetns(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if strings.Contains(toComplete, "/") {
		return nil, cobra.ShellCompDirectiveDefault
	}
	entries, _ := os.ReadDir("/run/netns")
	var names []cobra.Completion
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
