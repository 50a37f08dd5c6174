//go:build linux

package nstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A Host is a network namespace created by Net.Host: one machine of a
// topology. Its methods that return an error may be called from any
// goroutine; the others may fail the test and must be called from the
// test's goroutine (see Net).
type Host struct {
	net  *Net
	name string
	ns   string
	nsh  netns.NsHandle // open from creation until cleanup

	mu  sync.Mutex
	nif map[string]int  // next interface number per name prefix
	nlh *netlink.Handle // opened on first use
}

// newHost creates the namespace ns of a host, registers its removal and
// sets it up as cfg says.
func (n *Net) newHost(name, ns string, cfg hostConfig) *Host {
	t := n.t
	t.Helper()
	h := n.newNS(name, ns)
	if !cfg.ipv6 {
		err := h.Do(func() error {
			for _, key := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
				if err := writeSysctl(key, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("nstest: host %s: disable IPv6: %v", name, err)
		}
	}
	h.mustIP("link", "set", "lo", "up")
	return h
}

// newNS creates the namespace ns, which messages call name, and registers
// its removal.
func (n *Net) newNS(name, ns string) *Host {
	t := n.t
	t.Helper()
	if _, err := run(context.Background(), setupTimeout, "ip", "netns", "add", ns); err != nil {
		t.Fatalf("nstest: create namespace of %s: %v", name, err)
	}
	h := &Host{net: n, name: name, ns: ns, nsh: netns.None(), nif: make(map[string]int)}
	t.Cleanup(h.destroy)
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("nstest: open network namespace %s: %v", ns, err)
	}
	h.nsh = nsh
	return h
}

// Name returns the name the host was created with.
func (h *Host) Name() string { return h.name }

// String returns the host's name.
func (h *Host) String() string { return h.name }

// Netns returns the name of the host's network namespace, as used by
// `ip netns exec NAME` and `ip -n NAME`, and as the file /run/netns/NAME.
func (h *Host) Netns() string { return h.ns }

// NsHandle returns a handle to the host's network namespace, for netns.Set,
// netlink.NewHandleAt and the like. The handle belongs to the host: it
// stays open until cleanup and must not be closed by the caller.
func (h *Host) NsHandle() netns.NsHandle { return h.nsh }

// Netlink returns a netlink handle that operates in the host's network
// namespace. It is opened on first use, belongs to the host and is closed
// at cleanup. Like every netlink.Handle it is not safe for concurrent use.
func (h *Host) Netlink() *netlink.Handle {
	h.net.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nlh == nil {
		nlh, err := netlink.NewHandleAt(h.nsh)
		if err != nil {
			h.net.t.Fatalf("nstest: host %s: open netlink handle: %v", h.name, err)
		}
		h.nlh = nlh
	}
	return h.nlh
}

// Command returns an exec.Cmd that runs name with args inside the host's
// namespace (through `ip netns exec`), for callers that need control over
// its input, output or environment. Inside, /sys shows the host's
// interfaces. The caller owns the command: nstest does not stop it, although
// anything still running in the namespace is killed at cleanup.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
}

// Run runs name with args inside the host's namespace, waits at most
// RunTimeout for it to finish, and returns what it wrote to standard
// output and standard error. The error, if the command fails, names the
// command and includes that output.
func (h *Host) Run(name string, args ...string) (string, error) {
	return run(context.Background(), RunTimeout, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
}

// RunContext is like Run but is bounded by ctx instead of RunTimeout.
func (h *Host) RunContext(ctx context.Context, name string, args ...string) (string, error) {
	return run(ctx, 0, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
}

// MustRun is like Run but fails the test, showing the command and its
// output, if the command fails. It returns the command's output.
func (h *Host) MustRun(name string, args ...string) string {
	h.net.t.Helper()
	out, err := h.Run(name, args...)
	if err != nil {
		h.net.t.Fatalf("host %s: %v", h.name, err)
	}
	return out
}

// IP runs `ip -n NETNS args...`, the ip command acting on the host's
// namespace, and returns its output; it fails the test if ip fails. For
// example h.IP("link", "set", "eth0", "down").
func (h *Host) IP(args ...string) string {
	h.net.t.Helper()
	return h.mustIP(args...)
}

// Do runs fn on an OS thread that is switched into the host's network
// namespace, and returns fn's error. Sockets, TUN devices and netlink
// sockets that fn opens belong to the namespace and stay there after Do
// returns; the calling goroutine's thread never changes namespace.
//
// Only fn itself runs in the namespace: goroutines it starts run on other
// threads, in the test process's namespace. Inside fn, /sys still shows
// the test process's interfaces; use netlink or net.Interfaces instead. A
// panic in fn is re-raised in the caller; fn must not call t.FailNow,
// t.Fatal or runtime.Goexit (Do then returns an error).
//
// Following the advice of github.com/vishvananda/netns, the thread is
// locked for fn's duration and returned to the Go runtime only if it could
// be switched back to its original namespace; otherwise it is left locked,
// so that it is destroyed rather than reused.
func (h *Host) Do(fn func() error) error {
	type result struct {
		err      error
		returned bool
		panicked bool
		value    any
		stack    []byte
	}
	done := make(chan result, 1)
	go func() {
		var res result
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("nstest: host %s: Do: get current namespace: %w", h.name, err), returned: true}
			return
		}
		defer orig.Close()
		if err := netns.Set(h.nsh); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("nstest: host %s: Do: enter namespace: %w", h.name, err), returned: true}
			return
		}
		defer func() {
			if !res.returned {
				if v := recover(); v != nil {
					res.panicked, res.value, res.stack = true, v, debug.Stack()
				}
			}
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			} // else leave the thread locked: it exits with this goroutine.
			done <- res
		}()
		res.err = fn()
		res.returned = true
	}()
	res := <-done
	switch {
	case res.panicked:
		panic(fmt.Sprintf("nstest: panic in Do on host %s: %v\n\n%s", h.name, res.value, res.stack))
	case !res.returned:
		return fmt.Errorf("nstest: host %s: Do: fn called runtime.Goexit (t.FailNow and t.Fatal are not allowed in fn)", h.name)
	}
	return res.err
}

// Sysctl sets the kernel parameter key to value in the host's namespace,
// like `sysctl -w key=value`. The key is written with dots, such as
// "net.ipv4.conf.eth0.arp_ignore", or with slashes when a part contains a
// dot itself, such as "net/ipv4/conf/eth0.100/arp_ignore". Only the
// parameters under net/ are per namespace; setting any other changes the
// whole machine and is best avoided. It fails the test on error.
func (h *Host) Sysctl(key, value string) {
	h.net.t.Helper()
	if err := h.Do(func() error { return writeSysctl(key, value) }); err != nil {
		h.net.t.Fatalf("nstest: host %s: sysctl %s=%s: %v", h.name, key, value, err)
	}
}

// ReadSysctl returns the value of the kernel parameter key (see Sysctl) in
// the host's namespace, without the trailing newline. It fails the test on
// error.
func (h *Host) ReadSysctl(key string) string {
	h.net.t.Helper()
	var v string
	err := h.Do(func() error {
		path, err := sysctlPath(key)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		h.net.t.Fatalf("nstest: host %s: read sysctl %s: %v", h.name, key, err)
	}
	return v
}

// AddAddr adds the address prefix, such as "198.18.0.1/24", to the
// interface ifname. It fails the test on error.
func (h *Host) AddAddr(ifname, prefix string) {
	h.net.t.Helper()
	h.addAddr(ifname, h.net.parseAddr("AddAddr", prefix))
}

func (h *Host) addAddr(ifname string, p netip.Prefix) {
	h.net.t.Helper()
	h.mustIP(addrArgs(ifname, p)...)
}

// addrArgs returns the ip arguments that add the address p to ifname.
func addrArgs(ifname string, p netip.Prefix) []string {
	args := []string{"addr", "add", p.String(), "dev", ifname}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	return args
}

// AddRoute adds a route to dst, a prefix such as "203.0.113.0/24" or
// "default", by running `ip route add dst args...` in the host. The
// arguments say where the route goes, for example "via", "198.18.0.2" or
// "dev", "eth0". It fails the test on error.
func (h *Host) AddRoute(dst string, args ...string) {
	h.net.t.Helper()
	h.mustIP(append([]string{"route", "add", dst}, args...)...)
}

// Iface returns the interface named name in the host, which may have been
// created by something other than nstest, such as a TUN device. Its
// address is the interface's first IPv4 address, or its first address if
// it has no IPv4 address. Its Capture is the host's own (CaptureHost),
// even for an end of a link: capture on the wire with the Iface that
// Net.Link or Segment.Attach returned. It fails the test if the interface
// does not exist.
func (h *Host) Iface(name string) *Iface {
	h.net.t.Helper()
	links, err := h.queryLinks("addr", "show", "dev", name)
	if err != nil || len(links) != 1 {
		h.net.t.Fatalf("nstest: host %s: no interface %s: %v", h.name, name, err)
	}
	l := links[0]
	mac, _ := net.ParseMAC(l.Address) // not every interface has one
	ifc := &Iface{host: h, name: l.IfName, mac: mac}
	for _, a := range l.AddrInfo {
		p, err := a.prefix()
		if err != nil {
			continue
		}
		if !ifc.prefix.IsValid() || !ifc.prefix.Addr().Is4() && p.Addr().Is4() {
			ifc.prefix = p
		}
	}
	return ifc
}

// Links returns the names of the interfaces in the host, in index order.
// It fails the test on error.
func (h *Host) Links() []string {
	h.net.t.Helper()
	links, err := h.queryLinks("link", "show")
	if err != nil {
		h.net.t.Fatalf("nstest: host %s: list links: %v", h.name, err)
	}
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = l.IfName
	}
	return names
}

// LinkExists reports whether the host has an interface named name. It
// fails the test on error.
func (h *Host) LinkExists(name string) bool {
	h.net.t.Helper()
	return slices.Contains(h.Links(), name)
}

// Addrs returns the addresses of interface ifname as prefixes, such as
// "198.18.0.1/24", in the kernel's order. It returns nil if ifname has no
// address or does not exist, and fails the test on any other error.
func (h *Host) Addrs(ifname string) []string {
	h.net.t.Helper()
	links, err := h.queryLinks("addr", "show", "dev", ifname)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		h.net.t.Fatalf("nstest: host %s: list addresses: %v", h.name, err)
	}
	var addrs []string
	for _, l := range links {
		for _, a := range l.AddrInfo {
			addrs = append(addrs, a.Local+"/"+strconv.Itoa(a.PrefixLen))
		}
	}
	return addrs
}

// Routes returns every IPv4 and IPv6 route of the host, in all routing
// tables, one per string as `ip route show table all` prints it, for
// example "203.0.113.0/24 dev vif0 scope link" or
// "local 192.0.2.1 dev vif0 table local proto kernel scope host src
// 192.0.2.1". It fails the test on error.
func (h *Host) Routes() []string {
	h.net.t.Helper()
	var routes []string
	for _, family := range []string{"-4", "-6"} {
		out := h.mustIP(family, "route", "show", "table", "all")
		for line := range strings.SplitSeq(out, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				routes = append(routes, line)
			}
		}
	}
	return routes
}

// HasRoute reports whether any routing table of the host, including the
// local table, holds a route whose destination is dst: a prefix such as
// "203.0.113.0/24", an address such as "192.0.2.1" (the same as
// "192.0.2.1/32"), or "default". It fails the test on error.
func (h *Host) HasRoute(dst string) bool {
	h.net.t.Helper()
	want, err := canonicalDst(dst)
	if err != nil {
		h.net.t.Fatalf("nstest: host %s: HasRoute: %v", h.name, err)
	}
	for _, family := range []string{"-4", "-6"} {
		out := h.mustIP("-j", family, "route", "show", "table", "all")
		var routes []struct {
			Dst string `json:"dst"`
		}
		if err := json.Unmarshal([]byte(out), &routes); err != nil {
			h.net.t.Fatalf("nstest: host %s: parse routes: %v\n%s", h.name, err, out)
		}
		for _, r := range routes {
			if got, err := canonicalDst(r.Dst); err == nil && got == want {
				return true
			}
		}
	}
	return false
}

// NeighborMAC returns the link-layer address that the host's neighbour
// (ARP) table holds for addr, or nil if it holds none, or only a failed or
// incomplete entry. It fails the test on error.
func (h *Host) NeighborMAC(addr string) net.HardwareAddr {
	h.net.t.Helper()
	out := h.mustIP("-j", "neigh", "show", "to", addr)
	var neigh []struct {
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &neigh); err != nil {
		h.net.t.Fatalf("nstest: host %s: parse neighbours: %v\n%s", h.name, err, out)
	}
	for _, n := range neigh {
		if n.LLAddr == "" || slices.Contains(n.State, "FAILED") || slices.Contains(n.State, "INCOMPLETE") {
			continue
		}
		if mac, err := net.ParseMAC(n.LLAddr); err == nil {
			return mac
		}
	}
	return nil
}

// pingStatsRE matches ping's summary line.
var pingStatsRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)

// Ping sends count ICMP echo requests from the host to addr, 0.2 s apart,
// and returns nil if every one was answered. Otherwise, or if ping is not
// installed, the error includes ping's output.
func (h *Host) Ping(addr string, count int) error {
	count = max(count, 1)
	timeout := time.Duration(count)*200*time.Millisecond + 10*time.Second
	out, err := run(context.Background(), timeout, "ip", "netns", "exec", h.ns,
		"ping", "-n", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "2", addr)
	if err != nil {
		return err
	}
	m := pingStatsRE.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("nstest: host %s: ping %s: no summary in output:\n%s", h.name, addr, out)
	}
	if m[1] != m[2] {
		return fmt.Errorf("nstest: host %s: ping %s: %s of %s replies received:\n%s", h.name, addr, m[2], m[1], out)
	}
	return nil
}

// mustIP runs `ip -n NETNS args...` and fails the test if it fails.
func (h *Host) mustIP(args ...string) string {
	h.net.t.Helper()
	out, err := h.ip(args...)
	if err != nil {
		h.net.t.Fatalf("host %s: %v", h.name, err)
	}
	return out
}

// ip runs `ip -n NETNS args...`.
func (h *Host) ip(args ...string) (string, error) {
	return run(context.Background(), setupTimeout, "ip", append([]string{"-n", h.ns}, args...)...)
}

// mustBatch runs the ip commands cmds (each the arguments of one) in the
// host with a single `ip -n NETNS -batch -`, which stops at the first
// that fails, and fails the test if one does. One process instead of one
// per command keeps building topologies cheap.
func (h *Host) mustBatch(cmds [][]string) {
	h.net.t.Helper()
	var in strings.Builder
	for _, c := range cmds {
		in.WriteString(strings.Join(c, " "))
		in.WriteByte('\n')
	}
	if _, err := runInput(context.Background(), setupTimeout, in.String(), "ip", "-n", h.ns, "-batch", "-"); err != nil {
		h.net.t.Fatalf("host %s: %v\ncommands:\n%s", h.name, err, in.String())
	}
}

// ipLink is what `ip -j link show` and `ip -j addr show` print per
// interface.
type ipLink struct {
	IfName   string   `json:"ifname"`
	Address  string   `json:"address"`
	MTU      int      `json:"mtu"`
	Flags    []string `json:"flags"`
	AddrInfo []ipAddr `json:"addr_info"`
}

type ipAddr struct {
	Family    string `json:"family"`
	Local     string `json:"local"`
	PrefixLen int    `json:"prefixlen"`
}

func (a ipAddr) prefix() (netip.Prefix, error) {
	return netip.ParsePrefix(a.Local + "/" + strconv.Itoa(a.PrefixLen))
}

// queryLinks runs `ip -j args...` in the host and parses its output.
func (h *Host) queryLinks(args ...string) ([]ipLink, error) {
	out, err := h.ip(append([]string{"-j"}, args...)...)
	if err != nil {
		return nil, err
	}
	var links []ipLink
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return nil, fmt.Errorf("nstest: parse output of ip %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return links, nil
}

// isNotExist reports whether err is ip's complaint about a missing device.
func isNotExist(err error) bool {
	var e *execError
	return errors.As(err, &e) && strings.Contains(e.output, "does not exist")
}

// nextIfName returns the first name prefix+N that the host does not use
// and has not handed out before.
func (h *Host) nextIfName(prefix string) string {
	h.net.t.Helper()
	used := h.Links()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := h.nif[prefix]; ; i++ {
		name := prefix + strconv.Itoa(i)
		if !slices.Contains(used, name) {
			h.nif[prefix] = i + 1
			return name
		}
	}
}

// setUp gives the new interface name its address, if any, brings it up and
// returns it.
func (h *Host) setUp(name string, mac net.HardwareAddr, p netip.Prefix) *Iface {
	h.net.t.Helper()
	var cmds [][]string
	if p.IsValid() {
		cmds = append(cmds, addrArgs(name, p))
	}
	h.mustBatch(append(cmds, upArgs(name)))
	return &Iface{host: h, name: name, mac: mac, prefix: p}
}

// destroy removes the host at cleanup: it ends every process left in the
// namespace and deletes it.
func (h *Host) destroy() {
	t := h.net.t
	h.net.dumpOnFailure()
	h.killAll()
	h.mu.Lock()
	if h.nlh != nil {
		h.nlh.Close()
		h.nlh = nil
	}
	h.mu.Unlock()
	if h.nsh.IsOpen() {
		_ = h.nsh.Close()
		h.nsh = netns.None()
	}
	_, err := run(context.Background(), setupTimeout, "ip", "netns", "del", h.ns)
	var e *execError
	if err != nil && !(errors.As(err, &e) && strings.Contains(e.output, "No such file")) {
		t.Errorf("nstest: remove host %s: %v", h.name, err)
	}
}

// logState logs the host's interfaces, addresses, routes and neighbours,
// to help diagnose a failed test.
func (h *Host) logState() {
	var b strings.Builder
	for _, args := range [][]string{
		{"-br", "link"}, {"-br", "addr"}, {"route", "show", "table", "all"}, {"neigh"},
	} {
		out, err := h.ip(args...)
		if err != nil {
			out = err.Error()
		}
		fmt.Fprintf(&b, "$ ip %s\n%s", strings.Join(args, " "), out)
		if !strings.HasSuffix(out, "\n") {
			b.WriteByte('\n')
		}
	}
	h.net.t.Logf("nstest: state of host %s (netns %s) at cleanup:\n%s", h.name, h.ns, b.String())
}

// logWireState logs the ports of a wire or segment with their counters,
// which show where frames were dropped, to help diagnose a failed test.
func (h *Host) logWireState() {
	out, err := h.ip("-s", "link")
	if err != nil {
		out = err.Error()
	}
	h.net.t.Logf("nstest: state of %s (netns %s) at cleanup:\n$ ip -s link\n%s", h.name, h.ns, out)
}

// killAll ends every process still running in the host's namespace, such
// as daemons that escaped their Proc's process group: SIGTERM first, and
// SIGKILL for those still there after a grace period.
func (h *Host) killAll() {
	pids := h.pids()
	if len(pids) == 0 {
		return
	}
	var names []string
	for _, pid := range pids {
		comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
		names = append(names, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(string(comm))))
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	h.net.t.Logf("nstest: host %s: ending processes left in its namespace: %s", h.name, strings.Join(names, ", "))
	if h.waitNoPids(2 * time.Second) {
		return
	}
	for _, pid := range h.pids() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if !h.waitNoPids(5 * time.Second) {
		h.net.t.Errorf("nstest: host %s: processes %v survived SIGKILL", h.name, h.pids())
	}
}

// waitNoPids waits up to d for the namespace to have no processes.
func (h *Host) waitNoPids(d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(h.pids()) == 0 {
			return true
		}
	}
	return len(h.pids()) == 0
}

// pids returns the processes whose network namespace is the host's, other
// than the test process itself.
func (h *Host) pids() []int {
	out, err := run(context.Background(), setupTimeout, "ip", "netns", "pids", h.ns)
	if err != nil {
		return nil
	}
	var pids []int
	for f := range strings.FieldsSeq(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sysctlPath turns a sysctl key into its file under /proc/sys.
func sysctlPath(key string) (string, error) {
	k := strings.TrimPrefix(strings.TrimSpace(key), "/proc/sys/")
	if !strings.Contains(k, "/") {
		k = strings.ReplaceAll(k, ".", "/")
	}
	k = strings.Trim(k, "/")
	if k == "" || slices.Contains(strings.Split(k, "/"), "..") || slices.Contains(strings.Split(k, "/"), "") {
		return "", fmt.Errorf("invalid sysctl key %q", key)
	}
	return "/proc/sys/" + k, nil
}

// writeSysctl sets a kernel parameter in the namespace of the calling
// thread.
func writeSysctl(key, value string) error {
	path, err := sysctlPath(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// canonicalDst normalises a route destination for comparison: "default",
// or a masked prefix.
func canonicalDst(dst string) (string, error) {
	if dst == "default" {
		return dst, nil
	}
	if !strings.Contains(dst, "/") {
		a, err := netip.ParseAddr(dst)
		if err != nil {
			return "", fmt.Errorf("invalid route destination %q", dst)
		}
		return netip.PrefixFrom(a, a.BitLen()).String(), nil
	}
	p, err := netip.ParsePrefix(dst)
	if err != nil {
		return "", fmt.Errorf("invalid route destination %q", dst)
	}
	return p.Masked().String(), nil
}
