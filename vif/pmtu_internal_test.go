package vif

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

// A forged "fragmentation needed" with a tiny MTU shrinks the tunnel no
// further than the kernel would (552), and a flood of them, flapping
// against the kernel's own path MTU, costs one log line.
func TestLearnPathMTUForged(t *testing.T) {
	var logs bytes.Buffer
	i := &Interface{log: slog.New(slog.NewTextHandler(&logs, nil))}
	i.devMTU.Store(1480)
	p := &peer{st: &peerState{}}
	p.st.pmtu.Store(1480)
	i.pathMTU = func(netip.Addr) (int, error) { return 1500, nil } // the kernel's view
	if got := i.learnPathMTU(p, 100); got != minPathMTU-20 {
		t.Errorf("learnPathMTU(100) = %d, want %d", got, minPathMTU-20)
	}
	if got := i.learnPathMTU(p, 0); got != 1480 {
		t.Errorf("learnPathMTU(0) (a router predating RFC 1191) = %d, want the kernel's 1480", got)
	}
	for range 1000 {
		i.learnPathMTU(p, 80)
	}
	if n := strings.Count(logs.String(), "tunnel path MTU changed"); n != 1 {
		t.Errorf("%d log lines for 1000 flaps, want 1:\n%s", n, logs.String())
	}
}
