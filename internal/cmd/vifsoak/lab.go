//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/vif/nstest"
)

// Addresses of the lab: the segment 198.18.0.0/24 (RFC 2544) and the vif
// addresses (RFC 5737).
const (
	underA = "198.18.0.1"
	underB = "198.18.0.2"
	underC = "198.18.0.3"
	vifA   = "192.0.2.1"
	vifB   = "198.51.100.1"
)

// lab is the soak's namespaces, built with nstest: a segment with hosts
// a, b and c attached by their eth0, vif daemons in a and b, and an iperf3
// server in b. Every name starts with "vsk-" and a random part.
type lab struct {
	p      *nstest.Program
	vif    string // the vif binary
	prefix string
	hosts  map[string]*nstest.Host
	macs   map[string]net.HardwareAddr // of each host's eth0
	daemon map[string]daemon.Info      // host -> its vif daemon, once up
	once   sync.Once
}

func newLab(vifBin string) *lab {
	return &lab{p: nstest.NewProgram(os.Stderr), vif: vifBin, hosts: map[string]*nstest.Host{},
		macs: map[string]net.HardwareAddr{}, daemon: map[string]daemon.Info{}}
}

// build creates the namespaces and the segment. a and b answer ARP only
// for addresses of the interface a request comes in on (arp_ignore=1), so
// their vif addresses are answered by the vif proxies alone; c routes the
// vif networks on-link. c's bridge port learns no MACs: the flood's random
// requesters would otherwise fill the bridge's forwarding table.
func (l *lab) build(ctx context.Context) error {
	return l.p.Run(func() {
		n := nstest.NewNamed(l.p, "vsk-")
		l.prefix = n.Prefix()
		seg := n.Segment()
		for _, h := range []struct{ name, addr string }{{"a", underA}, {"b", underB}, {"c", underC}} {
			host := n.Host(h.name)
			l.hosts[h.name] = host
			l.macs[h.name] = seg.Attach(host, h.addr+"/24", nstest.WithNames("eth0", "p-"+h.name)).MAC()
		}
		c := l.hosts["c"]
		c.AddRoute("192.0.2.0/24", "dev", "eth0")
		c.AddRoute("198.51.100.0/24", "dev", "eth0")
		if out, err := runIn(ctx, "bridge", "-n", seg.Netns(), "link", "set", "dev", "p-c", "learning", "off"); err != nil {
			l.p.Fatalf("bridge link set p-c learning off: %v: %s", err, out)
		}
		for _, h := range []string{"a", "b"} {
			l.hosts[h].Sysctl("net.ipv4.conf.all.arp_ignore", "1")
			l.hosts[h].Sysctl("net.ipv4.conf.eth0.arp_ignore", "1")
		}
	})
}

// up starts the vif daemons of a and b ("vif up" in background mode),
// tunnelling to each other with their ARP proxies on.
func (l *lab) up(ctx context.Context) error {
	for _, v := range []struct{ h, addr, peer, route string }{
		{"a", vifA, underB, "198.51.100.0/24"},
		{"b", vifB, underA, "192.0.2.0/24"},
	} {
		if out, err := l.vifCmd(ctx, v.h, "up", "vif0", v.addr, "--slave", "eth0", "--peer", v.peer, "--route", v.route); err != nil {
			return fmt.Errorf("vif up in %s: %v\n%s", v.h, err, out)
		}
		doc, err := l.show(ctx, v.h)
		if err != nil {
			return err
		}
		if doc.Daemon == nil || doc.Daemon.PID == 0 {
			return fmt.Errorf("vif show in %s names no daemon", v.h)
		}
		l.daemon[v.h] = *doc.Daemon
	}
	if out, err := l.hosts["a"].RunContext(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", vifB); err != nil {
		return fmt.Errorf("no ping through the tunnel: %v\n%s", err, out)
	}
	return l.p.Run(func() {
		p := l.hosts["b"].Start("iperf3", "-s", "-B", vifB, "--forceflush")
		if err := p.WaitFor("Server listening", 5*time.Second); err != nil {
			l.p.Fatalf("iperf3 server: %v", err)
		}
	})
}

// showDoc is the document "vif show --json" prints.
type showDoc struct {
	Vifs   []daemon.VifStatus `json:"vifs"`
	Daemon *daemon.Info       `json:"daemon"`
}

// show returns "vif show --json" in host h.
func (l *lab) show(ctx context.Context, h string) (showDoc, error) {
	var doc showDoc
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := l.vifCmd(ctx, h, "show", "--json")
	if err != nil {
		return doc, fmt.Errorf("vif show in %s: %w", h, err)
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return doc, fmt.Errorf("vif show --json in %s: %w", h, err)
	}
	return doc, nil
}

// vifCmd runs the vif command in host h.
func (l *lab) vifCmd(ctx context.Context, h string, args ...string) (string, error) {
	return l.hosts[h].RunContext(ctx, l.vif, args...)
}

// arping asks from c for addr and returns the MAC that answered.
func (l *lab) arping(ctx context.Context, addr string) (net.HardwareAddr, bool) {
	out, _ := l.hosts["c"].RunContext(ctx, "arping", "-c", "2", "-w", "3", "-i", "eth0", addr)
	// "42 bytes from 02:..:.. (192.0.2.1): index=0 time=..."
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == "bytes" && f[2] == "from" {
			if mac, err := net.ParseMAC(f[3]); err == nil {
				return mac, true
			}
		}
	}
	return nil, false
}

// close stops the vif daemons ("vif down", which makes a daemon remove
// what it installed and exit), then removes the lab: nstest ends whatever
// still runs in its namespaces (the iperf3 server) and deletes them. With
// keepLogs unset it also removes the daemons' log files. It is safe to
// call more than once and on a partial lab.
func (l *lab) close(keepLogs bool) error {
	var errs []error
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, h := range []string{"a", "b"} {
			d, ok := l.daemon[h]
			if !ok {
				continue
			}
			if out, err := l.vifCmd(ctx, h, "down", "vif0"); err != nil {
				errs = append(errs, fmt.Errorf("vif down in %s: %v: %s", h, err, strings.TrimSpace(out)))
			}
			if !waitGone(d.PID, 5*time.Second) {
				errs = append(errs, fmt.Errorf("vif daemon %d in %s did not exit after vif down", d.PID, h))
			}
			if !keepLogs && d.Log != "" {
				os.Remove(d.Log)
			}
		}
		l.p.Close()
		if l.p.Failed() {
			errs = append(errs, errors.New("removing the namespaces failed (see above)"))
		}
	})
	return errors.Join(errs...)
}

// waitGone waits up to d for process pid to exit (a zombie has).
func waitGone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		// "pid (comm) S ...": the state follows the last ')'.
		if i := bytes.LastIndexByte(b, ')'); err != nil || (i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// runIn runs a command in the soak's own namespace (such as "bridge -n
// NS ...", which enters NS itself) and returns its output.
func runIn(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
