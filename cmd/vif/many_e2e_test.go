//go:build linux

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vif-project/vif/vif/nstest"
)

// manyAddrs returns n distinct vif addresses from the RFC 5737 ranges.
func manyAddrs(n int) []string {
	var out []string
	for _, net := range []string{"192.0.2.", "198.51.100.", "203.0.113."} {
		for k := 1; k <= 254 && len(out) < n; k++ {
			out = append(out, net+strconv.Itoa(k))
		}
	}
	return out
}

// daemonRSS returns the resident set size of h's vif daemon, in KiB.
func daemonRSS(t *testing.T, h *nstest.Host) int {
	t.Helper()
	doc := show(t, h)
	if doc.Daemon == nil {
		t.Fatal("vif show reports no daemon")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", doc.Daemon.PID))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func Test256Vifs(t *testing.T) {
	if testing.Short() {
		t.Skip("256 vifs take a while; run without -short")
	}
	s := newSegment(t)
	const n = 256
	addrs := manyAddrs(n)
	for _, p := range []string{"198.51.100.0/24", "203.0.113.0/24"} {
		s.c.AddRoute(p, "dev", s.cIf.Name())
	}

	start := time.Now()
	vifCmd(t, s.a, "up", "vif0", addrs[0], "--slave", s.aIf.Name())
	rss1 := daemonRSS(t, s.a)
	for k := 1; k < n; k++ {
		vifCmd(t, s.a, "up", fmt.Sprintf("vif%d", k), addrs[k], "--slave", s.aIf.Name())
	}
	upTime := time.Since(start)
	rssN := daemonRSS(t, s.a)
	t.Logf("brought up %d vifs in %v (%v each); daemon RSS %d KiB with 1 vif, %d KiB with %d",
		n, upTime.Round(time.Millisecond), (upTime / n).Round(time.Microsecond), rss1, rssN, n)

	doc := show(t, s.a)
	if len(doc.Vifs) != n {
		t.Fatalf("vif show --json lists %d vifs, want %d", len(doc.Vifs), n)
	}
	if doc.Vifs[0].Name != "vif0" || doc.Vifs[n-1].Name != fmt.Sprintf("vif%d", n-1) {
		t.Errorf("vifs not in natural order: first %s, last %s", doc.Vifs[0].Name, doc.Vifs[n-1].Name)
	}

	// Every address answers ARP (through the proxy: arp_ignore=1) and
	// ping from the neighbour; one shell loop keeps it quick.
	script := "fail=0; for a in " + strings.Join(addrs, " ") +
		"; do ping -c 1 -W 2 $a >/dev/null 2>&1 || { echo unreachable $a; fail=1; }; done; exit $fail"
	if out, err := s.c.Run("sh", "-c", script); err != nil {
		t.Fatalf("not every vif address answers from the neighbour:\n%s", out)
	}
	mac := s.aIf.MAC().String()
	for _, a := range []string{addrs[0], addrs[n/2], addrs[n-1]} {
		if got := s.c.NeighborMAC(a).String(); got != mac {
			t.Errorf("neighbour resolved %s to %s, want %s", a, got, mac)
		}
	}

	start = time.Now()
	for k := 0; k < n; k++ {
		vifCmd(t, s.a, "down", fmt.Sprintf("vif%d", k))
	}
	t.Logf("took down %d vifs in %v", n, time.Since(start).Round(time.Millisecond))
	assertNothingLeft(t, s.a)
	out := s.a.MustRun("ip", "-o", "-4", "addr")
	for _, v := range addrs {
		if strings.Contains(out, " "+v+"/") {
			t.Errorf("address %s left behind:\n%s", v, out)
		}
	}
}
