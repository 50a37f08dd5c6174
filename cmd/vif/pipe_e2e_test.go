package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runClosedStdout runs vif with args, its standard output a pipe whose
// reader has gone (as "vif show | head -1" leaves it once head exits),
// and returns its exit status and what it wrote to stderr.
func runClosedStdout(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	cmd := exec.Command(vifBin, args...)
	var errb strings.Builder
	cmd.Stdout, cmd.Stderr = w, &errb
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), errb.String() // -1: killed by a signal (SIGPIPE)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, errb.String()
}

// Every command that writes to stdout stops quietly, with status 0, when
// no one reads it any more, as ip and ls do: no "broken pipe", no death
// by SIGPIPE (which "vif --netns" reported as an error).
func TestClosedStdout(t *testing.T) {
	h := newTunnelPair(t, "94").a
	for _, args := range [][]string{
		{"help"},
		{"--help"},
		{"up", "--help"},
		{"--version"},
		{"completion", "bash"},
		{"completion", "zsh"},
		{"completion", "fish"},
		{"--netns", h.Netns(), "show"},
		{"--netns", h.Netns(), "show", "--json"},
		{"--netns", h.Netns(), "show", "--config"},
		{"--netns", h.Netns(), "show", "--prometheus"},
		{"--netns", h.Netns(), "capture", "vif0"},
		{"--netns", h.Netns(), "capture", "vif0", "-w", "-"},
		{"--netns", h.Netns(), "help"},
		{"demo"}, // stops at its first line, and removes what it made
	} {
		if code, stderr := runClosedStdout(t, args...); code != 0 || stderr != "" {
			t.Errorf("vif %s > closed pipe: exit status %d, stderr %q; want 0 and nothing", strings.Join(args, " "), code, stderr)
		}
	}
	// Errors still say so: EPIPE is quiet only from stdout.
	if code, stderr := runClosedStdout(t, "--netns", h.Netns(), "show", "nosuchvif"); code == 0 || !strings.Contains(stderr, "nosuchvif") {
		t.Errorf("vif show nosuchvif > closed pipe: exit status %d, stderr %q; want the error", code, stderr)
	}
}
