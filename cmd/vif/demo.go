package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/internal/demo"
)

// demoCmd is "vif demo".
func demoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "a live tour in throwaway network namespaces",
		Long: `Walk through the seed's scenario live, in throwaway network namespaces:
a host with one network card answers on extra vif addresses for a
neighbour on its segment (only vif's ARP proxy answers for them), then two
vifs tunnel traffic to each other in IPIP (protocol 94). It prints what it
does and what it observes, and removes everything at the end, also on
Ctrl-C. Needs root; touches nothing outside its namespaces.`,
		Example:           `  sudo vif demo`,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), args, cmd.OutOrStdout())
		},
	}
}

// runDemo runs the demo, printing to stdout; it takes no arguments.
func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usagef("demo takes no arguments")
	}
	if err := needRoot("demo"); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &demoRun{ctx: ctx, out: stdout, exe: exe, cancel: cancel}
	lab, err := demo.NewLab()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.lab = lab
	err = d.run()
	d.cleanup()
	if d.outErr != nil {
		return d.outErr // no one reads what it shows: it stopped
	}
	if ctx.Err() != nil {
		return errors.New("demo interrupted; everything it created has been removed")
	}
	return err
}

type demoRun struct {
	ctx   context.Context
	out   io.Writer
	exe   string
	lab   *demo.Lab
	fails int
	// cancel stops the demo; outErr is set when stdout's reader went
	// away (vif demo | head): showing nothing more, it stops and cleans up.
	cancel context.CancelFunc
	outErr error
}

func (d *demoRun) say(format string, args ...any) { d.print(fmt.Sprintf(format+"\n", args...)) }

// print writes s to the demo's output; when no one reads it any more, it
// stops the demo.
func (d *demoRun) print(s string) {
	if _, err := io.WriteString(d.out, s); err != nil && outputClosed(err) && d.outErr == nil {
		d.outErr = err
		d.cancel()
	}
}

func (d *demoRun) check(ok bool, format string, args ...any) {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		d.fails++
	}
	d.print(fmt.Sprintf("   [%s] %s\n", mark, fmt.Sprintf(format, args...)))
}

// vif runs this vif binary inside host h and shows the command line.
func (d *demoRun) vif(h *demo.Host, args ...string) (string, error) {
	d.say("   %s$ vif %s", h.Name, strings.Join(args, " "))
	cmd := exec.CommandContext(d.ctx, d.exe, append([]string{"--netns", h.Netns}, args...)...)
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
	a, err := d.lab.AddHost("a", "198.18.1.1/24")
	if err != nil {
		return err
	}
	c, err := d.lab.AddHost("c", "198.18.1.3/24")
	if err != nil {
		return err
	}
	d.say("1. One host, one network card, many addresses")
	d.say("   host a (eth0 198.18.1.1, MAC %s) and its neighbour c (198.18.1.3) share an Ethernet segment.", a.MAC)
	d.say("   a's kernel is set to answer ARP only for eth0's own address (arp_ignore=1),")
	d.say("   so for the vif addresses only vif's ARP proxy can answer — as 'arp -s ADDR MAC pub' did in 1991.")
	if err := a.Sysctl("ipv4/conf/all/arp_ignore", "1"); err != nil {
		return err
	}
	if err := a.Sysctl("ipv4/conf/eth0/arp_ignore", "1"); err != nil {
		return err
	}
	if err := c.Route("192.0.2.0/24"); err != nil {
		return err
	}
	if err := c.Route("198.51.100.0/24"); err != nil {
		return err
	}
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
		rtt, err := c.Ping(dst, k+1)
		d.check(err == nil, "c pings %s: %s", addr, result(rtt, err))
		mac, err := c.NeighborMAC(dst)
		d.check(err == nil && mac.String() == a.MAC.String(), "c's ARP table: %s is at %s (a's eth0 is %s)", addr, mac, a.MAC)
	}
	if st, err := d.status(a, "vif0"); err == nil && st.ARP != nil {
		d.say("   a's ARP proxy so far: %d requests, %d replies, %d announcements (gratuitous ARP at 'vif up')",
			st.ARP.Requests, st.ARP.Replies, st.ARP.Announcements)
	}
	_, err = c.PingOnce(netip.MustParseAddr("192.0.2.99"), 9)
	d.check(err != nil, "c pings 192.0.2.99, which no vif owns: no ARP answer, no reply")

	d.say("\n2. Two vifs tunnel in IPIP (protocol 94)")
	b, err := d.lab.AddHost("b", "198.18.1.2/24")
	if err != nil {
		return err
	}
	d.say("   host b (198.18.1.2) joins the segment. a routes 203.0.113.128/25 to b, b routes 203.0.113.0/25 to a.")
	if _, err := d.vif(a, "up", "vif2", "203.0.113.1", "--slave", "eth0", "--peer", "198.18.1.2", "--route", "203.0.113.128/25"); err != nil {
		return errors.New("vif up vif2 failed")
	}
	if _, err := d.vif(b, "up", "vif0", "203.0.113.129", "--slave", "eth0", "--peer", "198.18.1.1", "--route", "203.0.113.0/25"); err != nil {
		return errors.New("vif up on b failed")
	}
	tap, err := d.lab.Tap(b, 94)
	if err != nil {
		return err
	}
	var ok int
	for k := 0; k < 3; k++ {
		if err := d.interrupted(); err != nil {
			tap.Stop()
			return err
		}
		rtt, err := a.Ping(netip.MustParseAddr("203.0.113.129"), 100+k)
		if err == nil {
			ok++
		}
		d.check(err == nil, "a pings 203.0.113.129 (b's vif) through the tunnel: %s", result(rtt, err))
	}
	n := tap.Stop()
	d.check(n >= 2*ok && ok > 0, "the segment saw %d IP protocol 94 packets to and from b (echo requests in, replies out)", n)
	if sa, err := d.status(a, "vif2"); err == nil {
		d.say("   a/vif2 (underlay %s): %d encapsulated, %d decapsulated, %d dropped", sa.Underlay.Kind, sa.Counters.EncapsulatedPackets,
			sa.Counters.DecapsulatedPackets, sa.Counters.Dropped)
	}
	if sb, err := d.status(b, "vif0"); err == nil {
		d.say("   b/vif0 (underlay %s): %d encapsulated, %d decapsulated, %d dropped", sb.Underlay.Kind, sb.Counters.EncapsulatedPackets,
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

func (d *demoRun) status(h *demo.Host, name string) (*daemon.VifStatus, error) {
	out, err := exec.Command(d.exe, "--netns", h.Netns, "show", name, "--json").Output()
	if err != nil {
		return nil, err
	}
	var doc struct{ Vifs []daemon.VifStatus }
	if err := json.Unmarshal(out, &doc); err != nil || len(doc.Vifs) == 0 {
		return nil, fmt.Errorf("vif show %s: %v", name, err)
	}
	return &doc.Vifs[0], nil
}

// cleanup stops every daemon in the lab's hosts (they remove their vifs)
// and deletes the namespaces.
func (d *demoRun) cleanup() {
	for _, h := range d.lab.Hosts() {
		out, err := exec.Command(d.exe, "--netns", h.Netns, "show", "--json").Output()
		if err != nil {
			continue
		}
		var doc showJSON
		if json.Unmarshal(out, &doc) != nil || doc.Daemon == nil {
			continue
		}
		p, err := os.FindProcess(doc.Daemon.PID)
		if err != nil {
			continue
		}
		p.Signal(syscall.SIGTERM)
		for k := 0; k < 100 && p.Signal(syscall.Signal(0)) == nil; k++ {
			time.Sleep(30 * time.Millisecond)
		}
	}
	if err := d.lab.Close(); err != nil {
		fmt.Fprintf(d.out, "vif demo: cleanup: %v\n", err)
	}
}
