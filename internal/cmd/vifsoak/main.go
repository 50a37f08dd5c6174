//go:build linux

// Command vifsoak runs two vif daemons under load for a long time and
// tells whether their memory and goroutines stay flat. It is the long
// version of TestSoakShort (cmd/vif), which CI runs for half a minute; it
// is not run by CI.
//
// It builds the vif command into a temporary directory (or takes -vif),
// creates the namespaces "vsk-XXXXXXXX-a", "-b", "-c" and "-seg": a
// segment (a bridge in -seg) with hosts a (198.18.0.1), b (198.18.0.2) and
// c (198.18.0.3) attached by their eth0, and starts, in background mode
// (one daemon per namespace),
//
//	a$ vif up vif0 192.0.2.1    --slave eth0 --peer 198.18.0.2 --route 198.51.100.0/24
//	b$ vif up vif0 198.51.100.1 --slave eth0 --peer 198.18.0.1 --route 192.0.2.0/24
//
// with their ARP proxies on (a and b set arp_ignore=1, so only the proxies
// answer for the vif addresses). For -duration it then runs, at once:
//
//   - TCP load through the tunnel: iperf3 -c 198.51.100.1 from a, in runs
//     of -iperf-time, one after the other (at -bitrate, unlimited by
//     default);
//   - an ARP flood from c (package internal/soak): -rate requests per
//     second, each from a random MAC and a random sender in
//     198.19.0.0/16, for random addresses of 192.0.2.0/24 and, one in 16,
//     for 192.0.2.1 or 198.51.100.1 (owned: answered by a's or b's proxy);
//
// and every -interval it samples the RSS and goroutine count of both
// daemons ("vif show --json", whose "daemon" object the daemon fills at
// each call), printing a table row per sample. At the end it checks that
// the proxies still answer c's arping and the tunnel a ping, and judges
// each daemon: the median of the last third of the samples against the
// median of the second third (the first third is warm-up) must show RSS
// growth below -rss-pct percent and below -rss-mib MiB, and goroutines
// within ±-goroutines.
//
// Usage, from the module's root (it needs root, ip and bridge from
// iproute2, iperf3, ping and arping):
//
//	go run -exec sudo ./internal/cmd/vifsoak -duration 10m
//	go run -exec sudo ./internal/cmd/vifsoak -duration 1h -interval 30s -rate 5000 -bitrate 500M
//
// The exit status is 0 if both daemons stayed flat and the tunnel and the
// proxies kept working, and 1 otherwise (or on any error, or when
// interrupted). Everything happens inside its own namespaces, which it
// deletes on exit, also on SIGINT and SIGTERM; the daemons' log files in
// /run/vif are removed too unless the run failed (they are kept, and their
// paths printed, to look into) or -keep-logs is set.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vif-project/vif/internal/soak"
	"github.com/vif-project/vif/vif/nstest"
)

type options struct {
	vifBin    string
	duration  time.Duration
	interval  time.Duration
	rate      int
	iperfTime time.Duration
	bitrate   string
	bounds    soak.Bounds
	keepLogs  bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vifsoak:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	var rssMiB int
	fs := flag.NewFlagSet("vifsoak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.vifBin, "vif", "", "path of the vif binary (default: go build ./cmd/vif into a temporary directory)")
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to run the load")
	fs.DurationVar(&o.interval, "interval", 10*time.Second, "time between samples")
	fs.IntVar(&o.rate, "rate", 2000, "ARP requests per second from c")
	fs.DurationVar(&o.iperfTime, "iperf-time", time.Minute, "length of each iperf3 run")
	fs.StringVar(&o.bitrate, "bitrate", "", "iperf3 -b target bitrate such as 500M (default: unlimited)")
	fs.Float64Var(&o.bounds.RSSPercent, "rss-pct", soak.DefaultBounds.RSSPercent, "RSS growth bound, percent")
	fs.IntVar(&rssMiB, "rss-mib", soak.DefaultBounds.RSSKiB>>10, "RSS growth bound, MiB")
	fs.IntVar(&o.bounds.Goroutines, "goroutines", soak.DefaultBounds.Goroutines, "goroutine count bound, ± from the base")
	fs.BoolVar(&o.keepLogs, "keep-logs", false, "keep the daemons' log files in /run/vif")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.duration <= 0 || o.interval <= 0 || o.rate <= 0 || o.iperfTime < time.Second {
		return errors.New("-duration, -interval and -rate must be positive, -iperf-time at least 1s")
	}
	o.bounds.RSSKiB = rssMiB << 10
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, CAP_NET_ADMIN and CAP_NET_RAW)")
	}
	for _, c := range []string{"ip", "bridge", "iperf3", "ping", "arping"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("needs %s: %w", c, err)
		}
	}

	if o.vifBin == "" {
		dir, err := os.MkdirTemp("", "vifsoak")
		if err != nil {
			return err
		}
		// Deferred first, so removed last: after the daemons exit.
		defer os.RemoveAll(dir)
		o.vifBin = filepath.Join(dir, "vif")
		fmt.Fprintln(stdout, "building vif ...")
		if out, err := exec.CommandContext(ctx, nstest.GoTool(), "build", "-o", o.vifBin, "github.com/vif-project/vif/cmd/vif").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/vif: %v\n%s", err, out)
		}
	}

	l := newLab(o.vifBin)
	failed := true
	defer func() {
		if err := l.close(o.keepLogs || failed); err != nil {
			fmt.Fprintln(stderr, "vifsoak: cleanup:", err)
		}
	}()
	fmt.Fprintf(stdout, "namespaces %s-{seg,a,b,c}\n", l.prefix)
	if err := l.build(ctx); err != nil {
		return err
	}
	if err := l.up(ctx); err != nil {
		return err
	}
	for _, h := range []string{"a", "b"} {
		fmt.Fprintf(stdout, "daemon %s: pid %d, log %s\n", h, l.daemon[h].PID, l.daemon[h].Log)
	}
	macA, macB := l.macs["a"], l.macs["b"]
	proxiesAnswer := func(when string) []string {
		var problems []string
		for _, q := range []struct {
			addr string
			want string
		}{{vifA, macA.String()}, {vifB, macB.String()}} {
			if mac, ok := l.arping(ctx, q.addr); !ok || mac.String() != q.want {
				problems = append(problems, fmt.Sprintf("%s, c's arping for %s answered by %v (ok=%v), want %s", when, q.addr, mac, ok, q.want))
			}
		}
		return problems
	}
	if p := proxiesAnswer("before the load"); len(p) > 0 {
		return errors.New(p[0])
	}

	var flood *soak.Flood
	if err := l.hosts["c"].Do(func() (err error) {
		flood, err = soak.ListenFlood("eth0", &soak.FloodConfig{
			Rate:  o.rate,
			Owned: []netip.Addr{netip.MustParseAddr(vifA), netip.MustParseAddr(vifB)},
		})
		return err
	}); err != nil {
		return err
	}
	defer flood.Close()

	fmt.Fprintf(stdout, "load for %v: iperf3 a -> %s in %v runs, ARP flood from c at %d/s; a sample every %v\n\n",
		o.duration, vifB, o.iperfTime, o.rate, o.interval)
	start := time.Now()
	deadline := start.Add(o.duration)
	loadCtx, stopLoad := context.WithDeadline(ctx, deadline)
	defer stopLoad()
	var wg sync.WaitGroup
	var floodErr error
	var runs []iperfRun
	wg.Go(func() { floodErr = flood.Run(loadCtx) })
	wg.Go(func() { runs = l.iperfLoop(loadCtx, o) })

	series := map[string][]soak.Sample{}
	var problems []string
	const rowFmt = "%7s %10s %6s %10s %6s %10s %10s %10s\n"
	fmt.Fprintf(stdout, rowFmt, "t", "a RSS KiB", "a gor", "b RSS KiB", "b gor", "a->b MiB", "ARP sent", "ARP answ")
	interrupted := false
	for k, last := 1, false; ; k++ {
		at := time.Since(start).Round(time.Second)
		row := []any{at.String()}
		tunnelMiB := "-"
		for _, h := range []string{"a", "b"} {
			doc, err := l.show(ctx, h)
			if err != nil || doc.Daemon == nil || len(doc.Vifs) != 1 {
				problems = append(problems, fmt.Sprintf("at %v, vif show in %s failed: %v", at, h, err))
				row = append(row, "-", "-")
				continue
			}
			d := doc.Daemon
			if d.PID != l.daemon[h].PID {
				problems = append(problems, fmt.Sprintf("at %v, the daemon of %s is pid %d, was %d", at, h, d.PID, l.daemon[h].PID))
			}
			series[h] = append(series[h], soak.Sample{At: at, PID: d.PID, Goroutines: d.Goroutines, RSSKiB: d.RSSKiB})
			row = append(row, strconv.Itoa(d.RSSKiB), strconv.Itoa(d.Goroutines))
			if h == "a" {
				tunnelMiB = strconv.FormatUint(doc.Vifs[0].Counters.EncapsulatedBytes>>20, 10)
			}
		}
		st := flood.Stats()
		row = append(row, tunnelMiB, strconv.FormatUint(st.Sent, 10), strconv.FormatUint(st.Replies, 10))
		fmt.Fprintf(stdout, rowFmt, row...)
		if last {
			break
		}
		// The last sample is taken as the load ends.
		next := start.Add(time.Duration(k) * o.interval)
		if next.After(deadline.Add(-o.interval / 2)) {
			next, last = deadline, true
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			interrupted = true
		}
		if interrupted {
			break
		}
	}
	wg.Wait()
	if interrupted {
		failed = false // nothing went wrong: the logs may go
		return errors.New("interrupted")
	}
	if floodErr != nil {
		problems = append(problems, floodErr.Error())
	}
	time.Sleep(500 * time.Millisecond) // the last replies
	fst := flood.Stats()

	// Health at the end.
	problems = append(problems, proxiesAnswer("after the load")...)
	if out, err := l.hosts["a"].RunContext(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", vifB); err != nil {
		problems = append(problems, fmt.Sprintf("after the load, no ping through the tunnel: %v\n%s", err, out))
	}
	var okRuns int
	var total uint64
	var bps []float64
	for _, r := range runs {
		if r.err != nil {
			problems = append(problems, fmt.Sprintf("iperf3 run at %v: %v", r.at.Round(time.Second), r.err))
			continue
		}
		okRuns++
		total += r.bytes
		bps = append(bps, r.bps)
	}
	if okRuns == 0 {
		problems = append(problems, "no iperf3 run completed")
	}
	if fst.Owned > 0 && fst.Replies < fst.Owned*9/10 {
		problems = append(problems, fmt.Sprintf("the proxies answered %d of the flood's %d requests for owned addresses", fst.Replies, fst.Owned))
	}

	fmt.Fprintf(stdout, "\nTCP: %d iperf3 runs (%d failed), %.2f GiB through the tunnel, %s\n",
		len(runs), len(runs)-okRuns, float64(total)/(1<<30), rates(bps))
	fmt.Fprintf(stdout, "ARP flood: %d requests sent (%d refused by c's kernel), %d for owned addresses, %d answered\n",
		fst.Sent, fst.Dropped, fst.Owned, fst.Replies)
	for _, h := range []string{"a", "b"} {
		doc, err := l.show(ctx, h)
		if err == nil && len(doc.Vifs) == 1 && doc.Vifs[0].ARP != nil {
			c, a := doc.Vifs[0].Counters, doc.Vifs[0].ARP
			fmt.Fprintf(stdout, "daemon %s: encapsulated %d packets, decapsulated %d, dropped %d %v; ARP requests %d, replies %d, not owned %d, rate limited %d, dropped %d %v\n",
				h, c.EncapsulatedPackets, c.DecapsulatedPackets, c.Dropped, c.Drops, a.Requests, a.Replies, a.NotOwned, a.RateLimited, a.Dropped, a.Drops)
		}
	}
	fmt.Fprintf(stdout, "\nverdict (median of the last third vs. the second third of %d samples; bounds: RSS < %g%% and < %d MiB, goroutines ±%d):\n",
		len(series["a"]), o.bounds.RSSPercent, o.bounds.RSSKiB>>10, o.bounds.Goroutines)
	for _, h := range []string{"a", "b"} {
		v := soak.Judge(series[h], o.bounds)
		fmt.Fprintf(stdout, "  daemon %s: %v\n", h, v)
		if !v.OK() {
			problems = append(problems, fmt.Sprintf("daemon %s is growing", h))
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stdout, "FAIL:", p)
		}
		return fmt.Errorf("%d problems", len(problems))
	}
	fmt.Fprintln(stdout, "PASS: both daemons flat; tunnel and ARP proxies working")
	failed = false
	return nil
}

// iperfRun is the result of one iperf3 client run.
type iperfRun struct {
	at    time.Duration // start, since the load began
	bytes uint64        // received by the server
	bps   float64
	err   error
}

// iperfLoop runs iperf3 from a to b's vif address, in runs of o.iperfTime,
// until ctx is done. A run cut short by ctx is not reported.
func (l *lab) iperfLoop(ctx context.Context, o options) []iperfRun {
	var runs []iperfRun
	start := time.Now()
	deadline, _ := ctx.Deadline()
	for ctx.Err() == nil {
		d := min(o.iperfTime, time.Until(deadline)-time.Second).Truncate(time.Second)
		if d < time.Second {
			break
		}
		args := []string{"-c", vifB, "-t", strconv.Itoa(int(d.Seconds())), "-J"}
		if o.bitrate != "" {
			args = append(args, "-b", o.bitrate)
		}
		r := iperfRun{at: time.Since(start)}
		cmd := l.hosts["a"].Command(ctx, "iperf3", args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if ctx.Err() != nil {
			break
		}
		res, perr := soak.ParseIperf(stdout.Bytes())
		var reported soak.IperfError
		switch {
		case errors.As(perr, &reported):
			r.err = perr
		case err != nil:
			r.err = fmt.Errorf("%v: %s", err, bytes.TrimSpace(stderr.Bytes()))
		case perr != nil:
			r.err = perr
		case res.Bytes == 0:
			r.err = errors.New("no bytes received")
		}
		r.bytes, r.bps = res.Bytes, res.BitsPerSecond
		runs = append(runs, r)
		if r.err != nil {
			// Don't spin on a broken tunnel.
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return runs
}

// rates summarises throughputs in bit/s as "min/median/max Gbit/s".
func rates(bps []float64) string {
	if len(bps) == 0 {
		return "no throughput"
	}
	s := slices.Sorted(slices.Values(bps))
	return fmt.Sprintf("%.2f/%.2f/%.2f Gbit/s (min/median/max of the runs)", s[0]/1e9, s[len(s)/2]/1e9, s[len(s)-1]/1e9)
}
