package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/internal/demo"
	"github.com/vif-project/vif/vif/nstest"
)

const demoUsage = `Usage: vif demo

Walk through the seed's scenario live, in throwaway network namespaces:
a host with one network card answers on extra vif addresses for a
neighbour on its segment (only vif's ARP proxy answers for them), then two
vifs tunnel traffic to each other in IPIP (protocol 94). It prints what it
does and what it observes, and removes everything at the end, also on
Ctrl-C. Needs root; touches nothing outside its namespaces.

Example:
  sudo vif demo
`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, demoUsage)
		return nil
	} else if err != nil {
		return usagef("%v (see \"vif demo --help\")", err)
	}
	if fs.NArg() > 0 {
		return usagef("demo takes no arguments")
	}
	if err := needRoot("demo"); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	d := &demoRun{ctx: ctx, out: stdout, exe: exe}
	// The namespaces go at the end, and any daemon still in them gets
	// SIGTERM first, which makes it remove its vifs.
	p := nstest.NewProgram(stderr)
	if perr := p.Run(func() {
		d.net = nstest.NewNamed(p, demoPrefix)
		err = d.run()
	}); perr != nil {
		err = fmt.Errorf("demo: %w", perr)
	}
	p.Close()
	if ctx.Err() != nil {
		return errors.New("demo interrupted; everything it created has been removed")
	}
	return err
}

// demoPrefix starts the names of the demo's network namespaces.
const demoPrefix = "vifdemo-"

type demoRun struct {
	ctx   context.Context
	out   io.Writer
	exe   string
	net   *nstest.Net
	seg   *nstest.Segment
	fails int
}

// host attaches a new host to the demo's segment at addr, on eth0.
func (d *demoRun) host(name, addr string) (*nstest.Host, net.HardwareAddr) {
	if d.seg == nil {
		d.seg = d.net.Segment()
	}
	h := d.net.Host(name)
	return h, d.seg.Attach(h, addr).MAC()
}

func (d *demoRun) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demoRun) check(ok bool, format string, args ...any) {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		d.fails++
	}
	fmt.Fprintf(d.out, "   [%s] %s\n", mark, fmt.Sprintf(format, args...))
}

// vif runs this vif binary inside host h and shows the command line.
func (d *demoRun) vif(h *nstest.Host, args ...string) (string, error) {
	d.say("   %s$ vif %s", h.Name(), strings.Join(args, " "))
	cmd := exec.CommandContext(d.ctx, d.exe, append([]string{"--netns", h.Netns()}, args...)...)
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && args[0] != "show" {
			d.say("      %s", l)
		}
	}
	return string(out), err
}

func (d *demoRun) interrupted() error {
	if d.ctx.Err() != nil {
		return errors.New("demo interrupted; cleaning up")
	}
	return nil
}

func (d *demoRun) run() error {
	d.say("vif demo — John Ioannidis' VIF (1991), live in throwaway network namespaces\n")
	a, aMAC := d.host("a", "198.18.1.1/24")
	c, _ := d.host("c", "198.18.1.3/24")
	d.say("1. One host, one network card, many addresses")
	d.say("   host a (eth0 198.18.1.1, MAC %s) and its neighbour c (198.18.1.3) share an Ethernet segment.", aMAC)
	d.say("   a's kernel is set to answer ARP only for eth0's own address (arp_ignore=1),")
	d.say("   so for the vif addresses only vif's ARP proxy can answer — as 'arp -s ADDR MAC pub' did in 1991.")
	a.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
	a.Sysctl("net.ipv4.conf.eth0.arp_ignore", "1")
	c.AddRoute("192.0.2.0/24", "dev", "eth0")
	c.AddRoute("198.51.100.0/24", "dev", "eth0")
	d.say("   c knows 192.0.2.0/24 and 198.51.100.0/24 are on its cable (on-link routes).")
	for _, v := range [][2]string{{"vif0", "192.0.2.1"}, {"vif1", "198.51.100.1"}} {
		if _, err := d.vif(a, "up", v[0], v[1], "--slave", "eth0"); err != nil {
			return fmt.Errorf("vif up %s failed", v[0])
		}
	}
	for k, addr := range []string{"192.0.2.1", "198.51.100.1"} {
		if err := d.interrupted(); err != nil {
			return err
		}
		dst := netip.MustParseAddr(addr)
		rtt, err := demo.Ping(c, dst, k+1)
		d.check(err == nil, "c pings %s: %s", addr, result(rtt, err))
		mac := c.NeighborMAC(addr)
		d.check(mac.String() == aMAC.String(), "c's ARP table: %s is at %s (a's eth0 is %s)", addr, mac, aMAC)
	}
	if st, err := d.status(a, "vif0"); err == nil && st.ARP != nil {
		d.say("   a's ARP proxy so far: %d requests, %d replies, %d announcements (gratuitous ARP at 'vif up')",
			st.ARP.Requests, st.ARP.Replies, st.ARP.Announcements)
	}
	_, err := demo.PingOnce(c, netip.MustParseAddr("192.0.2.99"), 9)
	d.check(err != nil, "c pings 192.0.2.99, which no vif owns: no ARP answer, no reply")

	d.say("\n2. Two vifs tunnel in IPIP (protocol 94)")
	b, _ := d.host("b", "198.18.1.2/24")
	d.say("   host b (198.18.1.2) joins the segment. a routes 203.0.113.128/25 to b, b routes 203.0.113.0/25 to a.")
	if _, err := d.vif(a, "up", "vif2", "203.0.113.1", "--slave", "eth0", "--peer", "198.18.1.2", "--route", "203.0.113.128/25"); err != nil {
		return errors.New("vif up vif2 failed")
	}
	if _, err := d.vif(b, "up", "vif0", "203.0.113.129", "--slave", "eth0", "--peer", "198.18.1.1", "--route", "203.0.113.0/25"); err != nil {
		return errors.New("vif up on b failed")
	}
	tap, err := demo.NewTap(b, "eth0", 94)
	if err != nil {
		return err
	}
	var ok int
	for k := 0; k < 3; k++ {
		if err := d.interrupted(); err != nil {
			tap.Stop()
			return err
		}
		rtt, err := demo.Ping(a, netip.MustParseAddr("203.0.113.129"), 100+k)
		if err == nil {
			ok++
		}
		d.check(err == nil, "a pings 203.0.113.129 (b's vif) through the tunnel: %s", result(rtt, err))
	}
	n := tap.Stop()
	d.check(n >= 2*ok && ok > 0, "b's eth0 saw %d IP protocol 94 packets (echo requests in, replies out)", n)
	if sa, err := d.status(a, "vif2"); err == nil {
		d.say("   a/vif2: %d encapsulated, %d decapsulated, %d dropped", sa.Counters.EncapsulatedPackets,
			sa.Counters.DecapsulatedPackets, sa.Counters.Dropped)
	}
	if sb, err := d.status(b, "vif0"); err == nil {
		d.say("   b/vif0: %d encapsulated, %d decapsulated, %d dropped", sb.Counters.EncapsulatedPackets,
			sb.Counters.DecapsulatedPackets, sb.Counters.Dropped)
	}

	d.say("\n3. Cleaning up")
	for _, v := range []string{"vif0", "vif1", "vif2"} {
		d.vif(a, "down", v)
	}
	d.vif(b, "down", "vif0")
	if d.fails > 0 {
		return fmt.Errorf("demo: %d checks failed", d.fails)
	}
	d.say("\nAll checks passed. Try it by hand: \"vif up vif0 192.0.2.1 --slave eth0\", \"vif show\", \"vif down vif0\".")
	return nil
}

func result(rtt time.Duration, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("reply in %.2f ms", float64(rtt.Microseconds())/1000)
}

func (d *demoRun) status(h *nstest.Host, name string) (*daemon.VifStatus, error) {
	out, err := exec.Command(d.exe, "--netns", h.Netns(), "show", name, "--json").Output()
	if err != nil {
		return nil, err
	}
	var doc struct{ Vifs []daemon.VifStatus }
	if err := json.Unmarshal(out, &doc); err != nil || len(doc.Vifs) == 0 {
		return nil, fmt.Errorf("vif show %s: %v", name, err)
	}
	return &doc.Vifs[0], nil
}
