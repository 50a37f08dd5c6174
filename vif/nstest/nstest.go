//go:build linux

package nstest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NamePrefix starts the name of every network namespace that nstest creates.
// Each Net appends a random part to it; see Net.Prefix.
const NamePrefix = "nst-"

// RunTimeout bounds Host.Run, Host.MustRun, Host.IP and the other helpers
// that run a command to completion, so that a hung command fails its test
// instead of running into the go test timeout, which would skip every
// cleanup and leave the namespaces behind.
const RunTimeout = 2 * time.Minute

// setupTimeout bounds each ip command that builds or inspects a topology.
const setupTimeout = 30 * time.Second

// skipNotRoot and skipNoIP are the messages New skips a test with.
const (
	skipNotRoot = "nstest: requires root (CAP_NET_ADMIN) to create network namespaces; run as root, e.g. sudo go test"
	skipNoIP    = "nstest: requires the ip command (iproute2) to build network namespaces; install iproute2"
)

// hostNameRE is what Net.Host accepts as a host name. Underscores are
// reserved for the namespaces of segments, so a host can never collide
// with one.
var hostNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,15}$`)

// A Net is the set of network namespaces, links and processes of one test.
// Create it with New; everything it creates is removed when the test and
// its cleanups finish, whether the test passed, failed or panicked.
//
// A Net belongs to the test that created it. Methods that can fail the
// test (everything that builds a topology, the Must helpers, Capture and
// Start) call t.Fatalf and so must be called from that test's goroutine,
// never from a subtest, which should create a Net of its own. Methods that
// return an error instead (Run, Ping, Do, and the Proc and Capture
// queries) may be called from any goroutine.
type Net struct {
	t      TB
	prefix string // NamePrefix and a random part

	mu    sync.Mutex
	hosts map[string]*Host
	order []*Host // hosts in creation order, for diagnostics
	nseg  int     // segments created
	nwire int     // wires (links not WithoutWire) created
	wires []*Host // the namespaces of wires and segments, for diagnostics

	dumpOnce sync.Once
}

// TB is what a Net needs of its test: *testing.T and *testing.B have it,
// and so has a Program, for the programs that build namespaces (a demo,
// a soak test, a benchmark).
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Failed() bool
	Cleanup(func())
	TempDir() string
}

// New returns an empty Net for t. It skips t when the process lacks the
// privileges to create network namespaces (it needs root, or at least
// CAP_NET_ADMIN and CAP_SYS_ADMIN), and when the ip command from iproute2
// is not installed.
func New(t TB) *Net { return NewNamed(t, NamePrefix) }

// NewNamed is New with the prefix of the namespaces' names instead of
// NamePrefix, such as "vifdemo-": a program names its namespaces so that
// an operator knows whose they are.
func NewNamed(t TB, prefix string) *Net {
	t.Helper()
	if !privileged() {
		t.Skip(skipNotRoot)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip(skipNoIP)
	}
	return &Net{
		t:      t,
		prefix: prefix + randomHex(4),
		hosts:  make(map[string]*Host),
	}
}

// Prefix returns the prefix shared by the names of all network namespaces
// of n, for example "nst-1a2b3c4d". It is unique per Net, so tests that
// run in parallel never collide, and a test can check with `ip netns list`
// that nothing with this prefix remains after n's test has finished.
func (n *Net) Prefix() string { return n.prefix }

// Host creates a host: a new network namespace named after n.Prefix and
// name, with its loopback interface up. The name must be unique within n,
// 1 to 16 characters of letters, digits and '-', not starting with '-'.
//
// Hosts start with IPv6 disabled, so that captures and neighbour tables
// hold only what a test sends; pass WithIPv6 to keep it. The namespace,
// every interface in it and every process still running in it are removed
// at cleanup.
func (n *Net) Host(name string, opts ...HostOption) *Host {
	n.t.Helper()
	if !hostNameRE.MatchString(name) {
		n.t.Fatalf("nstest: invalid host name %q: use 1 to 16 letters, digits or '-', not starting with '-'", name)
	}
	var cfg hostConfig
	for _, o := range opts {
		o(&cfg)
	}
	n.mu.Lock()
	_, dup := n.hosts[name]
	if !dup {
		n.hosts[name] = nil // reserve the name
	}
	n.mu.Unlock()
	if dup {
		n.t.Fatalf("nstest: host %q already exists", name)
	}
	h := n.newHost(name, n.Prefix()+"-"+name, cfg)
	n.mu.Lock()
	n.hosts[name] = h
	n.order = append(n.order, h)
	n.mu.Unlock()
	return h
}

// dumpOnFailure logs the state of every host if the test has failed. Every
// cleanup of nstest calls it first, so that the state is logged once, by
// the first of them to run, before anything is torn down.
func (n *Net) dumpOnFailure() {
	if !n.t.Failed() {
		return
	}
	n.dumpOnce.Do(func() {
		n.mu.Lock()
		hosts := slices.Clone(n.order)
		wires := slices.Clone(n.wires)
		n.mu.Unlock()
		for _, h := range hosts {
			h.logState()
		}
		for _, w := range wires {
			w.logWireState()
		}
	})
}

// A HostOption configures a host created by Net.Host.
type HostOption func(*hostConfig)

type hostConfig struct {
	ipv6 bool
}

// WithIPv6 keeps IPv6 enabled in a new host. By default nstest disables it,
// which keeps IPv6 router and neighbour solicitations out of captures.
func WithIPv6() HostOption {
	return func(c *hostConfig) { c.ipv6 = true }
}

// A LinkOption configures a link created by Net.Link or Segment.Attach.
type LinkOption func(*linkConfig)

type linkConfig struct {
	mtu          int
	aName, bName string
	direct       bool
}

// WithMTU sets the MTU of every veth of a link: both ends, and the ports
// on the wire between them. Without it the kernel's default for veth
// (1500) applies.
func WithMTU(n int) LinkOption {
	return func(c *linkConfig) { c.mtu = n }
}

// WithNames sets the interface names of a link's ends: a for the end in the
// first host of Net.Link (or the host of Segment.Attach), b for the end in
// the second host (or the bridge port of the segment). An empty name keeps
// the default: the first free "ethN" in the host, "pN" in a segment.
// Names are at most 15 characters (IFNAMSIZ-1).
func WithNames(a, b string) LinkOption {
	return func(c *linkConfig) { c.aName, c.bName = a, b }
}

// WithoutWire makes Net.Link join its hosts with a single veth pair, end
// to end, instead of through a wire namespace. Nothing then stands between
// the hosts: deleting one end deletes the other, and taking one end down
// takes the other's carrier. Iface.Capture can then only capture on the
// host's own interface (see Iface.CaptureHost), which does not see what
// bypasses the host's packet taps, such as AF_XDP. Use it for a test
// about the pair itself, or for a benchmark that wants the plain veth's
// speed. Segment.Attach does not accept it.
func WithoutWire() LinkOption {
	return func(c *linkConfig) { c.direct = true }
}

// Link connects hosts a and b, gives the end in a the address aAddr and
// the end in b the address bAddr, and brings both ends up. Addresses are
// prefixes such as "198.18.0.1/24"; an empty string leaves that end
// without an address.
//
// The link is a wire that can be tapped: a veth from a to a namespace of
// the link's own, a veth from there to b, and a bridge joining the two
// that forwards every frame from one to the other and sends nothing of
// its own (spanning tree, MAC learning and multicast snooping off, no
// address, IPv6 disabled). Iface.Capture captures there, on the wire
// next to the host, so it sees the frames that enter and leave the host's
// interface whatever the host's stack does, even when the host sends and
// receives them past its own packet taps (AF_XDP). Like a switch, and
// unlike a single veth pair, the wire keeps one end's carrier up when the
// other end goes down or is deleted; the option WithoutWire makes a single
// veth pair instead.
//
// The wire's ports have the MTU of the ends (see WithMTU). An end whose
// MTU is later lowered drops the frames that are too big for it when they
// arrive, as the end of a veth pair does; a capture on the wire still
// sees them go towards it.
//
// Every interface is created directly in the namespaces it belongs to;
// none ever appears in the namespace of the test process.
func (n *Net) Link(a, b *Host, aAddr, bAddr string, opts ...LinkOption) (aIf, bIf *Iface) {
	n.t.Helper()
	if a == nil || b == nil || a.net != n || b.net != n {
		n.t.Fatalf("nstest: Link: both hosts must belong to this Net")
	}
	if a == b {
		n.t.Fatalf("nstest: Link: cannot link host %s to itself", a.name)
	}
	cfg := n.linkConfig(opts)
	aPfx := n.parseAddr("Link", aAddr)
	bPfx := n.parseAddr("Link", bAddr)
	aName := cfg.aName
	if aName == "" {
		aName = a.nextIfName("eth")
	}
	bName := cfg.bName
	if bName == "" {
		bName = b.nextIfName("eth")
	}
	aMAC, bMAC := randomMAC(), randomMAC()
	if cfg.direct {
		a.mustIP(vethArgs(aName, aMAC, bName, bMAC, b.ns, cfg.mtu)...)
		return a.setUp(aName, aMAC, aPfx), b.setUp(bName, bMAC, bPfx)
	}
	n.mu.Lock()
	idx := n.nwire
	n.nwire++
	n.mu.Unlock()
	// One ip command builds the wire: the bridge, and the ports facing a
	// (p0) and b (p1), each a veth whose other end is created in its host.
	w := n.newBridgeNS("link"+strconv.Itoa(idx), [][]string{
		vethArgs("p0", randomMAC(), aName, aMAC, a.ns, cfg.mtu),
		vethArgs("p1", randomMAC(), bName, bMAC, b.ns, cfg.mtu),
		portArgs("p0"), noLearningArgs("p0"), upArgs("p0"),
		portArgs("p1"), noLearningArgs("p1"), upArgs("p1"),
	})
	aIf = a.setUp(aName, aMAC, aPfx)
	aIf.wire, aIf.port = w, "p0"
	bIf = b.setUp(bName, bMAC, bPfx)
	bIf.wire, bIf.port = w, "p1"
	return aIf, bIf
}

// Segment creates an Ethernet segment: a bridge that lives in a namespace
// of its own, to which any number of hosts attach with Segment.Attach.
// The segment's namespace is removed at cleanup like a host's.
func (n *Net) Segment() *Segment {
	n.t.Helper()
	n.mu.Lock()
	idx := n.nseg
	n.nseg++
	n.mu.Unlock()
	return &Segment{host: n.newBridgeNS("seg"+strconv.Itoa(idx), nil)}
}

// newBridgeNS creates the namespace of a segment or of a link's wire,
// named name, with IPv6 and br_netfilter off and the bridge br0 up, and
// runs the ip commands more in it, all in one ip batch. Its namespace is
// removed at cleanup like a host's, which removes its veths and so their
// other ends in the hosts.
func (n *Net) newBridgeNS(name string, more [][]string) *Host {
	n.t.Helper()
	h := n.newNS(name, n.Prefix()+"_"+name)
	// IPv6 is off before the bridge and its ports exist, so that they
	// never send router or neighbour solicitations or MLD reports.
	//
	// A switch forwards frames as they are. With br_netfilter loaded the
	// bridge would pass IPv4, IPv6 and ARP through the namespace's
	// netfilter hooks, and first drop every IPv4 packet with a malformed
	// header (br_validate_ipv4): tests that inject such packets would
	// never see them arrive.
	if err := h.Do(func() error {
		for _, key := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := writeSysctl(key, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		for _, key := range []string{"net.bridge.bridge-nf-call-iptables",
			"net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-arptables"} {
			if err := writeSysctl(key, "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}); err != nil {
		n.t.Fatalf("nstest: %s: turn off IPv6 and br_netfilter: %v", name, err)
	}
	n.mu.Lock()
	n.wires = append(n.wires, h)
	n.mu.Unlock()
	cmds := [][]string{
		{"link", "add", bridgeName, "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"},
		upArgs(bridgeName),
	}
	h.mustBatch(append(cmds, more...))
	return h
}

// portArgs returns the ip arguments that make the interface name a port
// of the bridge.
func portArgs(name string) []string {
	return []string{"link", "set", name, "master", bridgeName}
}

// noLearningArgs returns the ip arguments that turn off MAC learning on
// the bridge port name, so that the bridge floods every frame to the
// other ports, as a hub or a wire does: no table to age, no frame held
// back or misdirected after a MAC address moves or changes.
func noLearningArgs(name string) []string {
	return []string{"link", "set", name, "type", "bridge_slave", "learning", "off"}
}

// upArgs returns the ip arguments that bring the interface name up.
func upArgs(name string) []string { return []string{"link", "set", name, "up"} }

func (n *Net) linkConfig(opts []LinkOption) linkConfig {
	n.t.Helper()
	var cfg linkConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.mtu < 0 || cfg.mtu > 65535 {
		n.t.Fatalf("nstest: invalid MTU %d", cfg.mtu)
	}
	for _, name := range []string{cfg.aName, cfg.bName} {
		if name != "" && !validIfName(name) {
			n.t.Fatalf("nstest: invalid interface name %q: use 1 to 15 characters, no '/', ':' or white space", name)
		}
	}
	return cfg
}

// parseAddr parses an interface address such as "198.18.0.1/24" for fn.
// An empty string yields the zero prefix.
func (n *Net) parseAddr(fn, addr string) netip.Prefix {
	n.t.Helper()
	if addr == "" {
		return netip.Prefix{}
	}
	p, err := netip.ParsePrefix(addr)
	if err != nil {
		n.t.Fatalf("nstest: %s: invalid address %q: want an address with a prefix length, such as 198.18.0.1/24", fn, addr)
	}
	return p
}

// vethArgs returns the ip arguments that create a veth pair whose first
// end stays in the namespace ip runs in and whose peer goes to peerNS.
func vethArgs(name string, mac net.HardwareAddr, peer string, peerMAC net.HardwareAddr, peerNS string, mtu int) []string {
	args := []string{"link", "add", name, "address", mac.String()}
	if mtu > 0 {
		args = append(args, "mtu", strconv.Itoa(mtu))
	}
	args = append(args, "type", "veth", "peer", "name", peer, "address", peerMAC.String())
	if mtu > 0 {
		args = append(args, "mtu", strconv.Itoa(mtu))
	}
	return append(args, "netns", peerNS)
}

// validIfName reports whether name is acceptable to the kernel as an
// interface name (see dev_valid_name in net/core/dev.c).
func validIfName(name string) bool {
	if name == "" || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	return !strings.ContainsAny(name, "/: \t\n\r\v\f")
}

// randomHex returns 2n hexadecimal digits from crypto/rand.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// randomMAC returns a random unicast, locally administered MAC address.
func randomMAC() net.HardwareAddr {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	b[0] = b[0]&^0x01 | 0x02
	return net.HardwareAddr(b)
}

// privileged reports whether the process may create network namespaces:
// it has CAP_NET_ADMIN and CAP_SYS_ADMIN (needed by `ip netns add`) in its
// effective set. Where the capability set can't be read, it falls back to
// checking for root.
func privileged() bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return os.Geteuid() == 0
	}
	defer f.Close()
	caps, ok := parseCapEff(f)
	if !ok {
		return os.Geteuid() == 0
	}
	const capNetAdmin, capSysAdmin = 12, 21
	return caps&(1<<capNetAdmin) != 0 && caps&(1<<capSysAdmin) != 0
}

// parseCapEff returns the effective capability set from the text of
// /proc/PID/status.
func parseCapEff(r io.Reader) (uint64, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		return caps, err == nil
	}
	return 0, false
}

// execError is the error of a command that failed: it names the command
// and carries what it printed.
type execError struct {
	cmd    string
	err    error
	output string
}

func (e *execError) Error() string {
	msg := "nstest: " + e.cmd + ": " + e.err.Error()
	if out := strings.TrimSpace(e.output); out != "" {
		msg += "\n" + out
	}
	return msg
}

func (e *execError) Unwrap() error { return e.err }

// run runs name with args to completion, within timeout unless it is 0,
// and returns its combined output. The error, if any, names the command and holds the
// output.
func run(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	return runInput(ctx, timeout, "", name, args...)
}

// runInput is run with stdin as the command's standard input.
func runInput(ctx context.Context, timeout time.Duration, stdin string, name string, args ...string) (string, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (timed out after %v)", err, timeout)
		}
		return out.String(), &execError{cmd: commandLine(name, args), err: err, output: out.String()}
	}
	return out.String(), nil
}

// commandLine formats a command for messages, quoting arguments that need
// it, so that it can be pasted into a shell.
func commandLine(name string, args []string) string {
	var b strings.Builder
	b.WriteString(name)
	for _, a := range args {
		b.WriteByte(' ')
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`|&;<>()*?[]#~") {
			b.WriteString(strconv.Quote(a))
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}
