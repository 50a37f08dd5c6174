//go:build linux

package nstest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"go.uber.org/goleak"

	"github.com/vif-project/vif/vif/nstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestExample runs the test shown in example_test.go.
func TestExample(t *testing.T) {
	t.Parallel()
	testTwoHostsAndANeighbour(t)
}

func TestLinkPing(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24", nstest.WithMTU(1400))

	if aIf.Name() != "eth0" || bIf.Name() != "eth0" || aIf.Host() != a || bIf.Host() != b {
		t.Errorf("ends are %v and %v, want a/eth0 and b/eth0", aIf, bIf)
	}
	if got, want := aIf.Prefix(), netip.MustParsePrefix("198.18.0.1/24"); got != want {
		t.Errorf("a's prefix = %v, want %v", got, want)
	}
	if err := a.Ping(bIf.Addr().String(), 2); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(aIf.Addr().String(), 2); err != nil {
		t.Fatal(err)
	}
	// Each side has learnt the other's MAC, which is the one Iface reports.
	if got := a.NeighborMAC("198.18.0.2"); !bytes.Equal(got, bIf.MAC()) {
		t.Errorf("a's neighbour 198.18.0.2 is at %v, want %v", got, bIf.MAC())
	}
	if got := b.NeighborMAC("198.18.0.1"); !bytes.Equal(got, aIf.MAC()) {
		t.Errorf("b's neighbour 198.18.0.1 is at %v, want %v", got, aIf.MAC())
	}
	if got := linkMTU(t, b, "eth0"); got != 1400 {
		t.Errorf("b/eth0 MTU = %d, want 1400", got)
	}
	// A second link gets the next free names unless told otherwise.
	a2, b2 := n.Link(a, b, "198.18.2.1/24", "", nstest.WithNames("", "up0"))
	if a2.Name() != "eth1" || b2.Name() != "up0" || b2.Prefix().IsValid() {
		t.Errorf("second link is %v (%v) - %v (%v), want a/eth1 - b/up0 without address", a2, a2.Prefix(), b2, b2.Prefix())
	}
	if got := b.Links(); !slices.Equal(got, []string{"lo", "eth0", "up0"}) {
		t.Errorf("b's links = %q", got)
	}
	// The netlink handle works in the host's namespace.
	nl, err := a.Netlink().LinkByName("eth0")
	if err != nil || !bytes.Equal(nl.Attrs().HardwareAddr, aIf.MAC()) {
		t.Errorf("netlink: a/eth0 = %v, %v; want MAC %v", nl, err, aIf.MAC())
	}
	// Iface looks interfaces up.
	if got := a.Iface("eth0"); got.Name() != "eth0" || !bytes.Equal(got.MAC(), aIf.MAC()) || got.Prefix() != aIf.Prefix() {
		t.Errorf("a.Iface(eth0) = %v %v %v, want %v %v", got, got.MAC(), got.Prefix(), aIf.MAC(), aIf.Prefix())
	}
}

func TestSegment(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	seg := n.Segment()
	var ifs []*nstest.Iface
	for i, name := range []string{"a", "b", "c"} {
		ifs = append(ifs, seg.Attach(n.Host(name), fmt.Sprintf("198.18.1.%d/24", i+1)))
	}
	for _, from := range ifs {
		for _, to := range ifs {
			if from == to {
				continue
			}
			if err := from.Host().Ping(to.Addr().String(), 1); err != nil {
				t.Errorf("%v -> %v: %v", from, to, err)
			}
			if got := from.Host().NeighborMAC(to.Addr().String()); !bytes.Equal(got, to.MAC()) {
				t.Errorf("%v has %v at %v, want %v", from.Host(), to.Addr(), got, to.MAC())
			}
		}
	}
	if !strings.HasPrefix(seg.Netns(), n.Prefix()) {
		t.Errorf("segment namespace %q lacks the prefix %q", seg.Netns(), n.Prefix())
	}
}

func TestCapture(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")

	icmp := bIf.Capture("icmp")
	arp := aIf.Capture("arp")
	if err := a.Ping("198.18.0.2", 3); err != nil {
		t.Fatal(err)
	}
	if !icmp.Wait(6, nil, 5*time.Second) {
		t.Errorf("saw %d ICMP packets before Stop, want 6", icmp.Count(nil))
	}
	pkts := icmp.Stop()
	if len(pkts) != 6 {
		t.Fatalf("captured %d packets, want 6", len(pkts))
	}
	if d := icmp.Dropped(); d != 0 {
		t.Errorf("Dropped = %d, want 0", d)
	}
	if got := icmp.Count(isICMP(layers.ICMPv4TypeEchoRequest, aIf, bIf)); got != 3 {
		t.Errorf("captured %d echo requests a -> b, want 3", got)
	}
	if got := icmp.Count(isICMP(layers.ICMPv4TypeEchoReply, bIf, aIf)); got != 3 {
		t.Errorf("captured %d echo replies b -> a, want 3", got)
	}
	if pkts[0].Metadata().Timestamp.IsZero() {
		t.Error("packet has no capture timestamp")
	}
	// a resolved b's address before its first echo request.
	who := func(p gopacket.Packet) bool {
		l, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		return ok && l.Operation == layers.ARPRequest && bytes.Equal(l.DstProtAddress, bIf.Addr().AsSlice())
	}
	arp.Stop()
	if arp.Count(who) < 1 {
		t.Errorf("no ARP request for %v among %d ARP packets", bIf.Addr(), arp.Count(nil))
	}
	if _, err := os.Stat(arp.File()); err != nil {
		t.Errorf("pcap file: %v", err)
	}
	// Stop is idempotent.
	if again := icmp.Stop(); len(again) != len(pkts) {
		t.Errorf("second Stop returned %d packets, want %d", len(again), len(pkts))
	}
}

func TestDo(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24", nstest.WithNames("nstdo0", "nstdo1"))

	var inside *net.Interface
	err := a.Do(func() error {
		var err error
		inside, err = net.InterfaceByName("nstdo0")
		return err
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if !bytes.Equal(inside.HardwareAddr, aIf.MAC()) {
		t.Errorf("inside a, nstdo0 has MAC %v, want %v", inside.HardwareAddr, aIf.MAC())
	}
	if _, err := net.InterfaceByName("nstdo0"); err == nil {
		t.Error("nstdo0 is visible outside the namespace")
	}

	// Sockets opened in Do stay in their namespace: a UDP exchange between
	// the hosts, driven from the test goroutine.
	var server, client net.PacketConn
	if err := b.Do(func() (err error) {
		server, err = net.ListenPacket("udp4", bIf.Addr().String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if err := a.Do(func() (err error) {
		client, err = net.ListenPacket("udp4", ":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.WriteTo([]byte("hello"), server.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	nr, from, err := server.ReadFrom(buf)
	if err != nil || string(buf[:nr]) != "hello" {
		t.Fatalf("server read %q, %v", buf[:nr], err)
	}
	if got := from.(*net.UDPAddr).IP.String(); got != aIf.Addr().String() {
		t.Errorf("datagram from %s, want %v", got, aIf.Addr())
	}

	// Errors pass through, panics are re-raised, Goexit is reported.
	sentinel := errors.New("sentinel")
	if err := a.Do(func() error { return sentinel }); err != sentinel {
		t.Errorf("Do returned %v, want the sentinel", err)
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "boom") {
				t.Errorf("recovered %v, want the panic from fn", r)
			}
		}()
		_ = a.Do(func() error { panic("boom") })
	}()
	if err := a.Do(func() error { runtime.Goexit(); return nil }); err == nil || !strings.Contains(err.Error(), "Goexit") {
		t.Errorf("Do with Goexit returned %v", err)
	}
	// Many calls in parallel neither leak nor mix up namespaces.
	var wg sync.WaitGroup
	for i := range 20 {
		h, want := a, "nstdo0"
		if i%2 == 1 {
			h, want = b, "nstdo1"
		}
		wg.Go(func() {
			if err := h.Do(func() error { _, err := net.InterfaceByName(want); return err }); err != nil {
				t.Errorf("%v: %v", h, err)
			}
		})
	}
	wg.Wait()
}

func TestSysctl(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")

	a.Sysctl("net.ipv4.conf.eth0.arp_ignore", "1")
	if got := a.ReadSysctl("net.ipv4.conf.eth0.arp_ignore"); got != "1" {
		t.Errorf("a: arp_ignore = %q, want 1", got)
	}
	if got := b.ReadSysctl("net/ipv4/conf/eth0/arp_ignore"); got != "0" {
		t.Errorf("b: arp_ignore = %q, want 0 (untouched)", got)
	}
	if got := a.ReadSysctl("net.ipv6.conf.all.disable_ipv6"); got != "1" {
		t.Errorf("a: disable_ipv6 = %q, want 1", got)
	}
	// arp_ignore=1 answers only for addresses on the asking interface.
	a.AddAddr("lo", "192.0.2.1/32")
	b.AddRoute("192.0.2.1/32", "dev", "eth0")
	if err := b.Ping("192.0.2.1", 1); err == nil {
		t.Error("a answered ARP for a loopback address despite arp_ignore=1")
	}
	a.Sysctl("net.ipv4.conf.eth0.arp_ignore", "0")
	b.IP("neigh", "flush", "dev", "eth0")
	if err := b.Ping("192.0.2.1", 1); err != nil {
		t.Errorf("with arp_ignore=0: %v", err)
	}

	c := n.Host("c", nstest.WithIPv6())
	if got := c.ReadSysctl("net.ipv6.conf.all.disable_ipv6"); got != "0" {
		t.Errorf("c (WithIPv6): disable_ipv6 = %q, want 0", got)
	}
}

func TestAddrsRoutes(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")

	a.AddAddr("eth0", "198.51.100.1/24")
	if got := a.Addrs("eth0"); !slices.Equal(got, []string{"198.18.0.1/24", "198.51.100.1/24"}) {
		t.Errorf("a's addresses = %q", got)
	}
	b.AddRoute("198.51.100.0/24", "via", "198.18.0.1")
	b.AddRoute("default", "dev", "eth0")
	for _, dst := range []string{"198.51.100.0/24", "198.51.100.7/24", "default", "198.18.0.2", "198.18.0.2/32"} {
		if !b.HasRoute(dst) {
			t.Errorf("b has no route to %s; routes:\n%s", dst, strings.Join(b.Routes(), "\n"))
		}
	}
	if b.HasRoute("203.0.113.0/24") {
		t.Error("b has a route to 203.0.113.0/24")
	}
	if !slices.ContainsFunc(b.Routes(), func(r string) bool { return strings.HasPrefix(r, "198.51.100.0/24 via 198.18.0.1 dev eth0") }) {
		t.Errorf("b's routes lack the one via a:\n%s", strings.Join(b.Routes(), "\n"))
	}
	if err := b.Ping("198.51.100.1", 1); err != nil {
		t.Error(err)
	}

	// Removing the interface removes its addresses and routes.
	b.IP("link", "del", "eth0")
	if b.LinkExists("eth0") {
		t.Error("eth0 still exists after deleting it")
	}
	if got := b.Addrs("eth0"); got != nil {
		t.Errorf("addresses of a deleted interface: %q", got)
	}
	if b.HasRoute("198.51.100.0/24") || b.HasRoute("default") {
		t.Errorf("routes survived their interface:\n%s", strings.Join(b.Routes(), "\n"))
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	a := n.Host("a")
	if out := a.MustRun("ip", "-o", "link", "show"); strings.Count(out, "\n") != 1 || !strings.Contains(out, "lo:") {
		t.Errorf("a new host should have only lo:\n%s", out)
	}
	out, err := a.Run("sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("Run error = %v, want exit status 3", err)
	}
	if !strings.Contains(out, "to-stdout") || !strings.Contains(out, "to-stderr") || !strings.Contains(err.Error(), "to-stderr") {
		t.Errorf("output %q, error %q: want both streams in both", out, err)
	}
	cmd := a.Command(t.Context(), "cat", "/proc/self/net/dev")
	b, err := cmd.Output()
	if err != nil || strings.Contains(string(b), "eth0") {
		t.Errorf("Command ran outside the namespace? %v\n%s", err, b)
	}
	if err := a.Ping("198.18.99.1", 1); err == nil {
		t.Error("ping to an unreachable address succeeded")
	}
}

func TestProc(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	a := n.Host("a")

	p := a.Start("sh", "-c", "echo ready; ip -o link show; sleep 60")
	if err := p.WaitFor("ready", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor("lo:", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(10 * time.Millisecond); err == nil {
		t.Error("Wait returned nil for a running process")
	}
	start := time.Now()
	var exit *exec.ExitError
	if err := p.Stop(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("Stop = %v, want death by SIGTERM", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v", d)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
	}

	// A process that ignores SIGTERM is killed.
	stubborn := a.Start("sh", "-c", "trap '' TERM; echo trapped; while :; do sleep 0.05; done")
	if err := stubborn.WaitFor("trapped", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := stubborn.Terminate(200 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Terminate = %v, want an error about killing", err)
	}

	// A process that exits by itself reports its status.
	quick := a.Start("sh", "-c", "echo bye; exit 4")
	if err := quick.Wait(5 * time.Second); !errors.As(err, &exit) || exit.ExitCode() != 4 {
		t.Errorf("Wait = %v, want exit status 4", err)
	}
	if !strings.Contains(quick.Output(), "bye") {
		t.Errorf("output = %q", quick.Output())
	}
	if err := quick.WaitFor("never printed", 5*time.Second); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("WaitFor on an exited process = %v", err)
	}
	<-quick.Done()
}

// TestWireCapture checks that a capture on the wire sees what the host's
// own capture sees for ordinary traffic, adds nothing of its own, and
// goes on seeing the interface's frames when the host renames it and
// lowers its MTU, including a frame too big for it that only the wire
// sees, since the interface drops it on arrival as the end of a veth pair
// would.
func TestWireCapture(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")

	wire, host := bIf.Capture(""), bIf.CaptureHost("")
	if got, want := wire.String(), "capture on the wire at b/eth0"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := host.String(), "capture on b/eth0"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if err := a.Ping("198.18.0.2", 3); err != nil {
		t.Fatal(err)
	}
	wp, hp := wire.Stop(), host.Stop()
	if len(wp) < 8 || len(wp) != len(hp) { // ARP request and reply, 3 echoes and replies
		t.Fatalf("the wire saw %d frames, the host %d; want the same, at least 8", len(wp), len(hp))
	}
	for i := range wp {
		if !bytes.Equal(wp[i].Data(), hp[i].Data()) {
			t.Errorf("frame %d differs:\nwire: %v\nhost: %v", i, wp[i], hp[i])
		}
		eth, _ := wp[i].Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if eth == nil || !bytes.Equal(eth.SrcMAC, aIf.MAC()) && !bytes.Equal(eth.SrcMAC, bIf.MAC()) {
			t.Errorf("frame %d on the wire is not from a or b: %v", i, wp[i])
		}
	}
	if c := wire.Count(isICMP(layers.ICMPv4TypeEchoRequest, aIf, bIf)); c != 3 {
		t.Errorf("the wire saw %d echo requests, want 3", c)
	}

	wire = bIf.Capture("icmp")
	b.IP("link", "set", "eth0", "down")
	b.IP("link", "set", "eth0", "name", "wan0")
	b.IP("link", "set", "wan0", "mtu", "1300")
	b.IP("link", "set", "wan0", "up")
	host = b.Capture("wan0", "icmp")
	if err := a.Ping("198.18.0.2", 1); err != nil {
		t.Fatalf("after the rename: %v", err)
	}
	// 1400 bytes of data: a 1442-byte frame, past b's new MTU.
	if out, err := a.Run("ping", "-n", "-c", "1", "-W", "1", "-M", "dont", "-s", "1400", "198.18.0.2"); err == nil {
		t.Errorf("a frame too big for b's MTU was answered:\n%s", out)
	}
	big := func(p gopacket.Packet) bool { return len(p.Data()) == 14+20+8+1400 }
	wp, hp = wire.Stop(), host.Stop()
	if len(wp) != 3 || wire.Count(big) != 1 {
		t.Errorf("the wire saw %d frames, %d of 1442 bytes; want 3 (a small echo, its reply, the big echo), 1", len(wp), wire.Count(big))
	}
	if len(hp) != 2 || host.Count(big) != 0 {
		t.Errorf("b saw %d frames, %d of 1442 bytes; want 2 and none", len(hp), host.Count(big))
	}
}

// TestLinkCarrierDelete checks what the far end of a link sees when one
// end goes down or is deleted: through a wire, as behind a switch, it
// keeps its carrier and its interface; on a link made WithoutWire, a
// single veth pair, it loses both.
func TestLinkCarrierDelete(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	for _, direct := range []bool{false, true} {
		var opts []nstest.LinkOption
		if direct {
			opts = append(opts, nstest.WithoutWire())
		}
		aIf, bIf := n.Link(a, b, "", "", opts...)
		if direct {
			// Without a wire, Capture is the host's capture.
			c := bIf.Capture("")
			if got, want := c.String(), "capture on b/"+bIf.Name(); got != want {
				t.Errorf("WithoutWire: Capture is %q, want %q", got, want)
			}
			c.Stop() // before its interface goes
		}
		a.IP("link", "set", aIf.Name(), "down")
		carrier := slices.Contains(linkFlags(t, b, bIf.Name()), "LOWER_UP")
		a.IP("link", "del", aIf.Name())
		exists := b.LinkExists(bIf.Name())
		if direct && (carrier || exists) || !direct && (!carrier || !exists) {
			t.Errorf("WithoutWire %v: with a's end down b's has carrier %v; with it deleted b's exists %v", direct, carrier, exists)
		}
	}
}

// TestCleanup checks that a finished test leaves no namespace, process or
// interface behind.
func TestCleanup(t *testing.T) {
	// A sleep interval that no other process has on its command line.
	marker := fmt.Sprintf("300.%d%d", os.Getpid(), time.Now().UnixNano()%1000000)
	var prefix string
	var macs []string
	t.Run("topology", func(t *testing.T) {
		n := nstest.New(t)
		prefix = n.Prefix()
		a, b, c := n.Host("a"), n.Host("b"), n.Host("c")
		aIf, bIf := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
		seg := n.Segment()
		cIf := seg.Attach(c, "198.18.1.3/24")
		dIf := seg.Attach(a, "198.18.1.1/24")
		for _, i := range []*nstest.Iface{aIf, bIf, cIf, dIf} {
			macs = append(macs, i.MAC().String())
		}
		b.Start("sh", "-c", "exec sleep "+marker)
		// A daemon that leaves its process group and outlives its Proc.
		p := c.Start("sh", "-c", "setsid sh -c 'sleep "+marker+"; :' & sleep 0.2; echo forked")
		if err := p.WaitFor("forked", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		c.Capture("eth0", "")
		aIf.Capture("") // on the wire
		cIf.Capture("") // on the segment
		if err := a.Ping("198.18.1.3", 1); err != nil {
			t.Fatal(err)
		}
		// The hosts, the link's wire and the segment.
		if got := netnsList(t, prefix); len(got) != 5 {
			t.Errorf("namespaces during the test: %q, want 5", got)
		}
	})
	if prefix == "" {
		t.Skip("the subtest skipped")
	}
	if got := netnsList(t, prefix); len(got) != 0 {
		t.Errorf("namespaces left behind: %q", got)
	}
	if pids := processesWith(marker); len(pids) != 0 {
		t.Errorf("processes left behind: %v", pids)
	}
	out, err := exec.Command("ip", "-j", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, mac := range macs {
		if strings.Contains(string(out), mac) {
			t.Errorf("an interface with MAC %s appeared in the test process's namespace", mac)
		}
	}
}

// TestFailureDiagnostics runs a test that fails, through a testing.TB that
// records instead of failing, and checks that the state of hosts and the
// output of processes are logged, and that everything is removed.
func TestFailureDiagnostics(t *testing.T) {
	t.Parallel()
	nstest.New(t) // skips unless privileged
	rec := &recorder{TB: t}
	var prefix string
	rec.run(func() {
		n := nstest.New(rec)
		prefix = n.Prefix()
		a, b := n.Host("a"), n.Host("b")
		n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
		b.Start("sh", "-c", "echo diagnostic-output; sleep 60")
		b.MustRun("false") // fails the test
		t.Error("MustRun did not stop the test")
	})
	logs := strings.Join(rec.logs, "\n")
	if !rec.failed || !strings.Contains(logs, "ip netns exec "+prefix+"-b false") {
		t.Errorf("failed = %v, logs:\n%s", rec.failed, logs)
	}
	for _, want := range []string{"state of host a", "198.18.0.1/24", "state of host b", "state of link0", "p1@", "diagnostic-output"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if got := netnsList(t, prefix); len(got) != 0 {
		t.Errorf("namespaces left behind: %q", got)
	}
}

// TestParallelNames runs the same topology in parallel subtests.
func TestParallelNames(t *testing.T) {
	t.Parallel()
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			n := nstest.New(t)
			a, b := n.Host("a"), n.Host("b")
			n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
			if err := a.Ping("198.18.0.2", 1); err != nil {
				t.Error(err)
			}
		})
	}
}

// recorder is a testing.TB that records failures and logs and runs
// cleanups itself, so that a test can observe a failing test.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	failed   bool
	logs     []string
	cleanups []func()
}

// run runs fn as a test body on a goroutine of its own, so that FailNow can
// end it, and then runs the cleanups.
func (r *recorder) run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			for i := len(r.cleanups) - 1; i >= 0; i-- {
				r.cleanups[i]()
			}
		}()
		fn()
	}()
	<-done
}

func (r *recorder) Helper()           {}
func (r *recorder) Cleanup(f func())  { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Failed() bool      { r.mu.Lock(); defer r.mu.Unlock(); return r.failed }
func (r *recorder) Fail()             { r.mu.Lock(); r.failed = true; r.mu.Unlock() }
func (r *recorder) FailNow()          { r.Fail(); runtime.Goexit() }
func (r *recorder) Log(args ...any)   { r.Logf("%s", fmt.Sprintln(args...)) }
func (r *recorder) Error(args ...any) { r.Log(args...); r.Fail() }
func (r *recorder) Fatal(args ...any) { r.Log(args...); r.FailNow() }
func (r *recorder) Errorf(f string, args ...any) {
	r.Logf(f, args...)
	r.Fail()
}
func (r *recorder) Fatalf(f string, args ...any) {
	r.Logf(f, args...)
	r.FailNow()
}
func (r *recorder) Logf(f string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(f, args...))
}

// netnsList returns the network namespaces whose names start with prefix.
func netnsList(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names
}

// processesWith returns the processes whose command line contains s.
func processesWith(s string) []string {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var found []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err == nil && bytes.Contains(b, []byte(s)) {
			found = append(found, d)
		}
	}
	return found
}

// linkMTU returns the MTU of interface name in h.
func linkMTU(t *testing.T, h *nstest.Host, name string) int {
	t.Helper()
	var links []struct {
		MTU int `json:"mtu"`
	}
	out := h.IP("-j", "link", "show", "dev", name)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("parse %q: %v", out, err)
	}
	return links[0].MTU
}

// linkFlags returns the flags of interface name in h, such as "UP" and
// "LOWER_UP".
func linkFlags(t *testing.T, h *nstest.Host, name string) []string {
	t.Helper()
	var links []struct {
		Flags []string `json:"flags"`
	}
	out := h.IP("-j", "link", "show", "dev", name)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("parse %q: %v", out, err)
	}
	return links[0].Flags
}

// isICMP returns a matcher for ICMP messages of type typ from one
// interface's address to another's.
func isICMP(typ uint8, from, to *nstest.Iface) func(gopacket.Packet) bool {
	return func(p gopacket.Packet) bool {
		ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok || !ip.SrcIP.Equal(from.Addr().AsSlice()) || !ip.DstIP.Equal(to.Addr().AsSlice()) {
			return false
		}
		icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		return ok && icmp.TypeCode.Type() == typ
	}
}
