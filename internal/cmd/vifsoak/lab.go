//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/internal/nsproc"
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

// lab is the soak's namespaces: a segment (a bridge in namespace "seg")
// with hosts a, b and c attached by their eth0, vif daemons in a and b, and
// an iperf3 server in b. Every name starts with "vsk-" and a random part.
type lab struct {
	prefix string
	vif    string // the vif binary
	made   []string
	daemon map[string]daemon.Info // host -> its vif daemon, once up
	iperf  *nsproc.Proc
	once   sync.Once
}

func newLab(vifBin string) *lab {
	var r [4]byte
	rand.Read(r[:])
	return &lab{prefix: "vsk-" + hex.EncodeToString(r[:]), vif: vifBin, daemon: map[string]daemon.Info{}}
}

// ns returns the namespace name of host h ("a", "b", "c" or "seg").
func (l *lab) ns(h string) string { return l.prefix + "-" + h }

// build creates the namespaces and the segment. a and b answer ARP only
// for addresses of the interface a request comes in on (arp_ignore=1), so
// their vif addresses are answered by the vif proxies alone; c routes the
// vif networks on-link. c's bridge port learns no MACs: the flood's random
// requesters would otherwise fill the bridge's forwarding table.
func (l *lab) build(ctx context.Context) error {
	for _, h := range []string{"seg", "a", "b", "c"} {
		if err := nsproc.IP(ctx, "netns", "add", l.ns(h)); err != nil {
			return err
		}
		l.made = append(l.made, l.ns(h))
		// Keep the segment quiet: IPv4 only.
		l.sysctl(h, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		if err := nsproc.IP(ctx, "-n", l.ns(h), "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	seg := l.ns("seg")
	if err := nsproc.IP(ctx, "-n", seg, "link", "add", "br0", "type", "bridge",
		"stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"); err != nil {
		return err
	}
	// A switch forwards frames as they are, whatever br_netfilter says
	// (the keys are missing when it is not loaded).
	l.sysctl("seg", "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-arptables=0")
	steps := [][]string{{"-n", seg, "link", "set", "br0", "up"}}
	for _, h := range []struct{ name, addr string }{{"a", underA}, {"b", underB}, {"c", underC}} {
		port := "p-" + h.name
		steps = append(steps,
			[]string{"-n", seg, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", l.ns(h.name)},
			[]string{"-n", seg, "link", "set", port, "master", "br0", "up"},
			[]string{"-n", l.ns(h.name), "addr", "add", h.addr + "/24", "dev", "eth0"},
			[]string{"-n", l.ns(h.name), "link", "set", "eth0", "up"})
	}
	steps = append(steps,
		[]string{"-n", l.ns("c"), "route", "add", "192.0.2.0/24", "dev", "eth0"},
		[]string{"-n", l.ns("c"), "route", "add", "198.51.100.0/24", "dev", "eth0"})
	for _, s := range steps {
		if err := nsproc.IP(ctx, s...); err != nil {
			return err
		}
	}
	if out, err := exec.CommandContext(ctx, "bridge", "-n", seg, "link", "set", "dev", "p-c", "learning", "off").CombinedOutput(); err != nil {
		return fmt.Errorf("bridge link set p-c learning off: %v: %s", err, bytes.TrimSpace(out))
	}
	for _, h := range []string{"a", "b"} {
		l.sysctl(h, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.eth0.arp_ignore=1")
	}
	return nil
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
	if out, err := l.exec(ctx, "a", "ping", "-c", "3", "-i", "0.2", "-W", "2", vifB); err != nil {
		return fmt.Errorf("no ping through the tunnel: %v\n%s", err, out)
	}
	p, err := nsproc.Start(l.ns("b"), nil, "iperf3", "-s", "-B", vifB, "--forceflush")
	if err != nil {
		return err
	}
	l.iperf = p
	if err := p.WaitFor(ctx, "Server listening", 5*time.Second); err != nil {
		return fmt.Errorf("iperf3 server: %w\n%s", err, p.Output())
	}
	return nil
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
	out, err := exec.CommandContext(ctx, l.vif, "--netns", l.ns(h), "show", "--json").Output()
	if err != nil {
		return doc, fmt.Errorf("vif show in %s: %w", h, err)
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return doc, fmt.Errorf("vif show --json in %s: %w", h, err)
	}
	return doc, nil
}

// vifCmd runs the vif command in host h.
func (l *lab) vifCmd(ctx context.Context, h string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, l.vif, append([]string{"--netns", l.ns(h)}, args...)...).CombinedOutput()
	return string(out), err
}

// exec runs a command in host h and returns its output.
func (l *lab) exec(ctx context.Context, h, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ns(h), name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// arping asks from c for addr and returns the MAC that answered.
func (l *lab) arping(ctx context.Context, addr string) (net.HardwareAddr, bool) {
	out, _ := l.exec(ctx, "c", "arping", "-c", "2", "-w", "3", "-i", "eth0", addr)
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

// mac returns the MAC address of eth0 in host h.
func (l *lab) mac(ctx context.Context, h string) (net.HardwareAddr, error) {
	var links []struct {
		Address string `json:"address"`
	}
	out, err := exec.CommandContext(ctx, "ip", "-n", l.ns(h), "-j", "link", "show", "dev", "eth0").Output()
	if err != nil {
		return nil, fmt.Errorf("ip link show eth0 in %s: %w", h, err)
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return nil, fmt.Errorf("ip link show eth0 in %s: %v: %s", h, err, out)
	}
	return net.ParseMAC(links[0].Address)
}

// sysctl sets keys ("name=value") in host h, ignoring errors: the keys
// are tuning, and some are missing on some kernels.
func (l *lab) sysctl(h string, kv ...string) {
	exec.Command("ip", append([]string{"netns", "exec", l.ns(h), "sysctl", "-qw"}, kv...)...).Run()
}

// do runs fn on an OS thread inside host h's namespace; sockets fn opens
// stay in that namespace.
func (l *lab) do(h string, fn func() error) error { return nsproc.Do(l.ns(h), fn) }

// close stops the iperf3 server and the vif daemons ("vif down", which
// makes a daemon remove what it installed and exit), kills whatever still
// runs in the lab's namespaces, and deletes them. With keepLogs unset it
// also removes the daemons' log files. It is safe to call more than once
// and on a partial lab.
func (l *lab) close(keepLogs bool) error {
	var errs []error
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if l.iperf != nil {
			l.iperf.Stop()
		}
		for _, h := range []string{"a", "b"} {
			d, ok := l.daemon[h]
			if !ok {
				continue
			}
			if out, err := l.vifCmd(ctx, h, "down", "vif0"); err != nil {
				errs = append(errs, fmt.Errorf("vif down in %s: %v: %s", h, err, strings.TrimSpace(out)))
			}
			if !waitGone(d.PID, 5*time.Second) {
				syscall.Kill(d.PID, syscall.SIGTERM)
				if !waitGone(d.PID, 5*time.Second) {
					syscall.Kill(d.PID, syscall.SIGKILL)
				}
				errs = append(errs, fmt.Errorf("vif daemon %d in %s did not exit after vif down", d.PID, h))
			}
			if !keepLogs && d.Log != "" {
				os.Remove(d.Log)
			}
		}
		for _, ns := range l.made {
			// Anything still running in one of our namespaces is ours,
			// and would keep its interfaces alive.
			if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
				for _, f := range strings.Fields(string(out)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", ns, err, bytes.TrimSpace(out)))
			}
		}
	})
	return errors.Join(errs...)
}

// waitGone waits up to d for process pid to exit.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		// "pid (comm) S ...": the state follows the last ')'.
		if i := bytes.LastIndexByte(b, ')'); err != nil || (i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
