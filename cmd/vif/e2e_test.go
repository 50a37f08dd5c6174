//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/vif"
	"github.com/vif-project/vif/vif/nstest"
)

// vifBin is the vif command built once for the namespace tests;
// attackerBin a copy of this test binary that ordinary users may run.
var vifBin, attackerBin string

func TestMain(m *testing.M) {
	if mode := os.Getenv(attackerEnv); mode != "" {
		runAttack(mode, os.Args[1:])
	}
	dir, err := os.MkdirTemp("", "vif-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755) // so the not-root test can run it as nobody
	vifBin = filepath.Join(dir, "vif")
	// The race runtime sleeps a second at exit by default: with hundreds
	// of short vif commands that is minutes. Children inherit this.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	start := time.Now()
	goBin := nstest.GoTool() // under "go test -exec sudo" PATH may lack go
	if out, err := exec.Command(goBin, "build", "-race", "-o", vifBin, ".").CombinedOutput(); err != nil {
		// Without -race support (no cgo), a plain build still tests.
		if out2, err2 := exec.Command(goBin, "build", "-o", vifBin, ".").CombinedOutput(); err2 != nil {
			fmt.Fprintf(os.Stderr, "building vif: %v\n%s\n%s", err, out, out2)
			os.Exit(1)
		}
	}
	attackerBin = filepath.Join(dir, "attacker")
	if err := copyExecutable(os.Args[0], attackerBin); err != nil {
		fmt.Fprintf(os.Stderr, "copying the test binary: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 && daemonRaces(start) {
		code = 1
	}
	os.Exit(code)
}

// startVif runs "vif up ... --foreground" on h and waits until it serves.
func startVif(t *testing.T, h *nstest.Host, args ...string) *nstest.Proc {
	t.Helper()
	p := h.Start(vifBin, append([]string{"up"}, append(args, "--foreground")...)...)
	if err := p.WaitFor(`msg="vif up"`, 10*time.Second); err != nil {
		t.Fatalf("vif did not come up on %v: %v\n%s", h, err, p.Output())
	}
	return p
}

// tunnelPair builds two hosts joined by a veth, each with a vif tunnelling
// to the other with protocol proto.
type tunnelPair struct {
	a, b         *nstest.Host
	aIf, bIf     *nstest.Iface
	pa, pb       *nstest.Proc
	addrA, addrB string
	proto        string
}

func newTunnelPair(t *testing.T, proto string, extra ...string) *tunnelPair {
	n := nstest.New(t)
	tp := &tunnelPair{a: n.Host("a"), b: n.Host("b"), addrA: "192.0.2.1", addrB: "198.51.100.1", proto: proto}
	tp.aIf, tp.bIf = n.Link(tp.a, tp.b, "198.18.0.1/24", "198.18.0.2/24")
	tp.pa = startVif(t, tp.a, append([]string{"vif0", tp.addrA, "--slave", tp.aIf.Name(), "--peer", "198.18.0.2",
		"--route", "198.51.100.0/24", "--proto", proto, "--no-arp-proxy"}, extra...)...)
	tp.pb = startVif(t, tp.b, append([]string{"vif0", tp.addrB, "--slave", tp.bIf.Name(), "--peer", "198.18.0.1",
		"--route", "192.0.2.0/24", "--proto", proto, "--no-arp-proxy"}, extra...)...)
	return tp
}

// outerProto returns the protocol of the outermost IPv4 header of p.
func outerProto(p gopacket.Packet) (layers.IPProtocol, bool) {
	ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok {
		return 0, false
	}
	return ip.Protocol, true
}

func TestTunnelBetweenNamespaces(t *testing.T) {
	for _, path := range allPaths {
		proto := strconv.Itoa(int(path.proto))
		t.Run(path.name, func(t *testing.T) {
			tp := newTunnelPair(t, proto, path.args...)
			path.check(t, tp.a)
			path.check(t, tp.b)
			capture := tp.bIf.Capture("")

			if err := tp.a.Ping(tp.addrB, 3); err != nil {
				t.Fatalf("ping through the tunnel: %v", err)
			}
			echoTCP(t, tp.a, tp.b, tp.addrB, 4<<20)
			checkXDPCounters(t, tp.a, path)

			pkts := capture.Stop()
			want := layers.IPProtocol(94)
			if proto == "4" {
				want = layers.IPProtocolIPv4
			}
			var tunnelled, plain int
			for _, p := range pkts {
				pr, ok := outerProto(p)
				switch {
				case !ok:
				case pr == want:
					tunnelled++
				case pr == layers.IPProtocolICMPv4 || pr == layers.IPProtocolTCP:
					plain++ // would mean traffic bypassed the tunnel
				}
			}
			if tunnelled < 100 {
				t.Errorf("only %d packets with IP protocol %d on the underlay", tunnelled, want)
			}
			if plain != 0 {
				t.Errorf("%d ICMP/TCP packets crossed the underlay unencapsulated", plain)
			}

			for _, h := range []*nstest.Host{tp.a, tp.b} {
				p := tp.pa
				if h == tp.b {
					p = tp.pb
				}
				if err := p.Stop(); err != nil {
					t.Errorf("vif on %v exited badly: %v\n%s", h, err, p.Output())
				}
				if h.LinkExists("vif0") {
					t.Errorf("vif0 left behind on %v", h)
				}
				for _, r := range []string{"198.51.100.0/24", "192.0.2.0/24", "192.0.2.1", "198.51.100.1"} {
					if h.HasRoute(r) {
						t.Errorf("route %s left behind on %v: %v", r, h, h.Routes())
					}
				}
				if out, _ := h.Run("ss", "-awn"); strings.Contains(out, ":"+proto+" ") || strings.Contains(out, "ipip") {
					t.Errorf("raw socket left behind on %v:\n%s", h, out)
				}
			}
		})
	}
}

// echoTCP sends size random bytes from a to an echo server on b and checks
// that the same bytes come back.
func echoTCP(t *testing.T, a, b *nstest.Host, addr string, size int) {
	t.Helper()
	var ln net.Listener
	if err := b.Do(func() (err error) {
		ln, err = net.Listen("tcp4", addr+":0")
		return err
	}); err != nil {
		t.Fatalf("listen on %v: %v", b, err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	var c net.Conn
	if err := a.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial through the tunnel: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	payload := make([]byte, size)
	rand.Read(payload)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v (after %d bytes)", err, len(got))
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("echo differs: got %d bytes, sent %d", len(got), len(payload))
	}
}

func TestUpErrorsInNamespace(t *testing.T) {
	n := nstest.New(t)
	h := n.Host("h")
	other := n.Host("o")
	hIf, _ := n.Link(h, other, "198.18.0.1/24", "198.18.0.2/24")

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown slave", []string{"vif0", "192.0.2.1", "--slave", "nosuch0"}, "no such slave interface"},
		{"bad address", []string{"vif0", "192.0.2.300", "--slave", hIf.Name()}, "bad address"},
		{"name too long", []string{"averyveryverylongname", "192.0.2.1", "--slave", hIf.Name()}, "bad name"},
		{"name taken", []string{hIf.Name(), "192.0.2.1", "--slave", hIf.Name()}, "already exists"},
		{"bad protocol", []string{"vif0", "192.0.2.1", "--proto", "17"}, "bad --proto"},
		{"bad mtu", []string{"vif0", "192.0.2.1", "--mtu", "20"}, "bad --mtu"},
		{"the slave's own address", []string{"vif0", "198.18.0.1", "--slave", hIf.Name()}, "198.18.0.1 is already an address of " + hIf.Name()},
		{"a broadcast address", []string{"vif0", "192.0.2.255/24", "--slave", hIf.Name()}, "broadcast address of 192.0.2.0/24"},
		{"a local address not on the host", []string{"vif0", "192.0.2.1", "--slave", hIf.Name(), "--peer", "198.18.0.2", "--local", "198.18.0.9"}, "not an address of this host"},
		{"a peer inside a route", []string{"vif0", "192.0.2.1", "--slave", hIf.Name(), "--peer", "198.18.0.2", "--route", "198.18.0.0/16"}, "inside --route 198.18.0.0/16"},
		{"the slave subnet's broadcast address", []string{"vif0", "198.18.0.255", "--slave", hIf.Name()}, "broadcast address of " + hIf.Name() + "'s subnet"},
		{"the slave subnet's broadcast address as a peer", []string{"vif0", "192.0.2.1", "--slave", hIf.Name(), "--peer", "198.18.0.255"}, "198.18.0.255 is the broadcast address of " + hIf.Name() + "'s subnet 198.18.0.0/24: a peer is one host"},
		{"loopback as the slave", []string{"vif0", "192.0.2.1", "--slave", "lo"}, "pick an Ethernet --slave, or pass --no-arp-proxy"},
		{"a default route without asking", []string{"vif0", "192.0.2.1", "--slave", hIf.Name(), "--peer", "198.18.0.2", "--route", "0.0.0.0/0"}, "--default-route"},
		{"a link-local route", []string{"vif0", "192.0.2.1", "--slave", hIf.Name(), "--peer", "198.18.0.2", "--route", "fe80::/10"}, "--route fe80::/10 is link-local"},
		{"a multicast forward prefix", []string{"vif0", "192.0.2.1", "--slave", hIf.Name(), "--peer", "198.18.0.2", "--forward", "ff00::/8"}, "forward prefix ff00::/8 is multicast"},
		{"an MTU the slave cannot carry", []string{"vif0", "192.0.2.1", "--slave", hIf.Name(), "--peer", "198.18.0.2", "--mtu", "1481"}, "use an MTU of 1480 or less, or pass --outer-fragments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.Links()
			out, err := h.Run(vifBin, append(append([]string{"up"}, tt.args...), "--foreground")...)
			if err == nil {
				t.Fatalf("vif up succeeded, want an error containing %q:\n%s", tt.want, out)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("exit status %v, want 2 (bad input)", err)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.want) || !strings.HasPrefix(lines[0], "vif: ") {
				t.Errorf("output = %q, want one line \"vif: ...%s...\"", out, tt.want)
			}
			if after := h.Links(); !bytes.Equal([]byte(strings.Join(after, ",")), []byte(strings.Join(before, ","))) {
				t.Errorf("links changed: before %v, after %v", before, after)
			}
		})
	}
	for _, args := range [][]string{{"down", "vif9"}, {"show", "vif9"}} {
		out, err := h.Run(vifBin, args...)
		if err == nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "no such vif: vif9") {
			t.Errorf("vif %v of an unknown vif: err %v, output %q; want one line \"no such vif\"", args, err, out)
		}
	}
	// With a daemon running, the error comes from the daemon.
	vifCmd(t, h, "up", "vif0", "192.0.2.1", "--slave", hIf.Name())
	vifCmd(t, h, "up", "vif5", "192.0.2.5", "--slave", hIf.Name(), "--peer", "198.18.0.2=198.51.100.0/28")
	if out, err := h.Run(vifBin, "set", "vif5", "peer", "198.18.0.0", "allowed-ips", "198.51.100.64/28"); err == nil || !strings.Contains(out, "198.18.0.0 is the network address of "+hIf.Name()+"'s subnet") {
		t.Errorf("vif set peer to the slave subnet's network address: err %v, output %q; want it refused", err, out)
	}
	vifCmd(t, h, "down", "vif5")
	if out, err := h.Run(vifBin, "down", "vif9"); err == nil || !strings.Contains(out, "no such vif: vif9") {
		t.Errorf("down of an unknown vif with a daemon: err %v, output %q", err, out)
	}
	if out, err := h.Run(vifBin, "up", "vif0", "192.0.2.2", "--slave", hIf.Name(), "--foreground"); err == nil || !strings.Contains(out, "already serves") {
		t.Errorf("--foreground beside a daemon: err %v, output %q", err, out)
	}
	var ee *exec.ExitError
	if out, err := h.Run(vifBin, "up", "vif1", "192.0.2.1", "--slave", hIf.Name()); !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(out, "already belongs to vif0") {
		t.Errorf("an address taken by another vif: err %v, output %q; want exit status 2", err, out)
	}
	vifCmd(t, h, "down", "vif0")
	assertNothingLeft(t, h)
}

func TestDemo(t *testing.T) {
	nstest.New(t) // skips without root
	out, err := exec.Command(vifBin, "demo").CombinedOutput()
	if err != nil {
		t.Fatalf("vif demo: %v\n%s", err, out)
	}
	for _, want := range []string{"All checks passed", "through the tunnel", "c's ARP table"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "FAIL") {
		t.Errorf("demo reported a failed check:\n%s", out)
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "vifdemo-") {
			t.Errorf("demo left namespace %s behind", e.Name())
		}
	}
}

// daemonRaces reports whether a vif daemon started by these tests (they log
// to /run/vif) met a data race; background daemons have no test to fail.
func daemonRaces(since time.Time) bool {
	logs, _ := filepath.Glob("/run/vif/net-*.log*")
	found := false
	for _, l := range logs {
		fi, err := os.Stat(l)
		if err != nil || fi.ModTime().Before(since) {
			continue
		}
		b, _ := os.ReadFile(l)
		if bytes.Contains(b, []byte("DATA RACE")) {
			fmt.Fprintf(os.Stderr, "data race in a vif daemon, see %s:\n%s\n", l, b)
			found = true
		}
	}
	return found
}

func TestNotRootInNamespace(t *testing.T) {
	n := nstest.New(t)
	h := n.Host("h")
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is needed to run vif as an unprivileged user")
	}
	for _, args := range [][]string{{"up", "vif0", "192.0.2.1"}, {"down", "vif0"}, {"show"}} {
		out, err := h.Run("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", vifBin}, args...)...)
		if err == nil {
			t.Fatalf("vif %v as nobody succeeded:\n%s", args, out)
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(out, "needs root") || !strings.Contains(out, "sudo") {
			t.Errorf("vif %v as nobody: %q, want one line saying it needs root and to use sudo", args, out)
		}
	}
	if h.LinkExists("vif0") {
		t.Error("vif0 created by an unprivileged user")
	}
}

// copyExecutable copies the program src to dst, which anyone may run.
func copyExecutable(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// checkXDPCounters checks that vif show --json reports the AF_XDP
// underlay's counters for vif0 on h when it runs on AF_XDP, and moved
// packets both ways, and reports none on another path.
func checkXDPCounters(t *testing.T, h *nstest.Host, path packetPath) {
	t.Helper()
	st := vifStatus(t, h, "vif0")
	switch x := st.XDP; {
	case path.underlay != vif.UnderlayXDP:
		if x != nil {
			t.Errorf("vif0 on %s reports AF_XDP counters %+v", path.underlay, *x)
		}
	case x == nil:
		t.Errorf("vif0 on AF_XDP: vif show --json has no xdp counters")
	case path.offload:
		// Transmit only: the kernel receives, and the encapsulated
		// count holds the packets the offload sent without the loop.
		if x.RxXDP != 0 || x.TxXDP+x.TxRaw > st.Counters.EncapsulatedPackets {
			t.Errorf("vif0 offloaded, its loop sending through AF_XDP, after a ping and a TCP echo: xdp counters %+v; encapsulated %d",
				*x, st.Counters.EncapsulatedPackets)
		}
	case x.RxXDP == 0 || x.TxXDP == 0 || x.TxXDP+x.TxRaw != st.Counters.EncapsulatedPackets ||
		x.RxXDP+x.RxRaw < st.Counters.DecapsulatedPackets:
		// What the loop sent went out one way or the other; what it
		// decapsulated came in one way or the other.
		t.Errorf("vif0 on AF_XDP after a ping and a TCP echo: xdp counters %+v; encapsulated %d, decapsulated %d",
			*x, st.Counters.EncapsulatedPackets, st.Counters.DecapsulatedPackets)
	}
	if out := vifCmd(t, h, "show", "vif0"); (path.underlay == vif.UnderlayXDP) != strings.Contains(out, "  xdp: received ") {
		t.Errorf("vif show vif0 on %s:\n%s", path.underlay, out)
	}
}
