//go:build linux

// Command vifbench measures the throughput, packet rate and latency of a vif
// tunnel against the bare veth it runs over, in one run, on this machine.
//
// It builds the vif command (or takes -vif), creates two network
// namespaces "vb-XXXXXXXX-a" and "vb-XXXXXXXX-b" joined by a veth
// (198.18.0.1/24 and 198.18.0.2/24, RFC 2544), runs
//
//	vif up vif0 192.0.2.1 --slave eth0 --peer 198.18.0.2 --route 198.51.100.0/24 --foreground --no-arp-proxy
//
// in a and the mirror image (198.51.100.1) in b, then measures, alternating
// between the veth path (a → 198.18.0.2) and the vif path (a → 198.51.100.1)
// for -rounds rounds of -time each:
//
//   - tcp1, tcp4: TCP with one and -streams streams, Gbit/s received
//     (iperf3 -J);
//   - tcp6in4, tcp6in6: TCP over IPv6 with one stream, through vif0 as
//     6in4 (RFC 4213: vif0 also holds 2001:db8:a::1 and b's peer
//     2001:db8:b::/64) and through a second vif, vif1 (2001:db8:c::1 and
//     2001:db8:d::1), over IPv6 addresses (2001:db8:ffff::1 and ::2) of
//     a second veth pair, eth1 (-6in6-own-link=false: of eth0), as 6in6
//     (RFC 2473), on the path's underlay; the veth path is IPv6 to
//     2001:db8:ffff::2. vif1 is served by the same process as vif0 (vif
//     up without --foreground joins it), so the CPU figures count both;
//   - udp: UDP with -udp-len byte payloads sent flat out (-b 0), packets per
//     second delivered to the receiver, and the loss;
//   - ping: ICMP echo round-trip time, average of -ping-count pings sent
//     every 10 ms;
//   - during every vif measurement, the CPU time (user+system, from
//     /proc/PID/stat) both vif processes used, in cores, and per Gbit or
//     per packet delivered (steadier than throughput on a shared machine);
//   - ceiling: how fast one thread pushes 1500-byte IP packets through a
//     raw socket from a to b, doing nothing else: the most any raw-socket
//     tunnel could carry here (IP protocol 253, so the vifs don't see it).
//
// It prints the median and the range of each measurement and the ratio of
// the vif median to the veth median, as a text table or, with -markdown,
// as a Markdown table. -compare OLD measures further vif binaries (say, a
// build of the previous commit) in their own namespace pairs, in the same
// rotation, for before/after figures that share the machine's load (a
// binary that predates tunnels over IPv6 needs -tests without tcp6in6).
// Everything happens inside its own namespaces, which it deletes on exit,
// also on SIGINT and SIGTERM.
//
// It needs root, ip (iproute2), iperf3 and ping. Run it from the module:
//
//	go run -exec sudo ./internal/cmd/vifbench                  # 3 rounds of 5 s
//	go run -exec sudo ./internal/cmd/vifbench -markdown -rounds 5
//	go run -exec sudo ./internal/cmd/vifbench -vif ./vif-new -compare ./vif-old
//
// -underlays xdp,raw,offload,offload/4 measures the -vif binary on each
// path — an underlay (vif up --underlay) or the kernel offload (vif up
// --offload, whose loop sends through AF_XDP; offload-raw is --offload
// --underlay raw), /4 or /94 overriding -proto — each in its own
// namespace pair, in the same rotation: the columns vif-xdp, vif-raw,
// vif-offload and vif-offload-4.
//
// -hold sets the testbed up and waits for SIGINT, for perf, tcpdump or a
// manual iperf3. -cpuprofile DIR has the vifs write CPU profiles
// (DIR/vif-a.pprof, DIR/vif-b.pprof; the vif command honours
// VIF_CPUPROFILE) when they exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vif-project/vif/vif/nstest"
)

type options struct {
	vifBin     string
	compare    []string
	underlays  []string
	rounds     int
	dur        time.Duration
	streams    int
	proto      string
	udpLen     int
	udpRate    string
	pingCount  int
	tests      []string
	markdown   bool
	verbose    bool
	cpuprofile string
	gomaxprocs string
	gogc       string
	hold       bool
	role       string
	ipv6       bool // an IPv6 test is asked for: the testbed has IPv6
	ownLink6   bool // 6in6 runs over a veth pair of its own
}

func main() {
	var o options
	var tests, compare, underlays string
	flag.StringVar(&o.vifBin, "vif", "", "path of the vif binary (default: go build ./cmd/vif into a temporary directory)")
	flag.StringVar(&compare, "compare", "", "comma-separated paths of other vif binaries to measure too (e.g. a build of the previous commit), each in its own namespace pair, alternating with the others")
	flag.StringVar(&underlays, "underlays", "", "comma-separated paths to measure the -vif binary on, each in its own namespace pair: xdp, raw (vif up --underlay), offload (vif up --offload: the loop sends through AF_XDP), offload-raw (vif up --offload --underlay raw), each with /4 or /94 to override -proto, such as offload/4 (default: the binary's own choice)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of each measurement on each path")
	flag.DurationVar(&o.dur, "time", 5*time.Second, "duration of each iperf3 measurement")
	flag.IntVar(&o.streams, "streams", 4, "parallel streams of the multi-stream TCP test")
	flag.StringVar(&o.proto, "proto", "94", "outer IP protocol of the tunnel: 94 or 4")
	flag.IntVar(&o.udpLen, "udp-len", 64, "UDP payload length in bytes")
	flag.StringVar(&o.udpRate, "udp-rate", "0", "UDP offered rate for iperf3 -b (0: as fast as the sender can)")
	flag.IntVar(&o.pingCount, "ping-count", 50, "pings per ping measurement (10 ms apart)")
	flag.StringVar(&tests, "tests", "tcp1,tcp4,tcp6in4,tcp6in6,udp,ping,ceiling", "comma-separated measurements: tcp1, tcp4, tcp6in4, tcp6in6, udp, ping, ceiling")
	flag.BoolVar(&o.markdown, "markdown", false, "print the result as a Markdown table")
	flag.BoolVar(&o.verbose, "v", false, "print every measurement and the vifs' final counters")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "directory the vifs write CPU profiles to (VIF_CPUPROFILE)")
	flag.StringVar(&o.gomaxprocs, "vif-gomaxprocs", "", "GOMAXPROCS for the vif processes (default: unset)")
	flag.StringVar(&o.gogc, "vif-gogc", "", "GOGC for the vif processes (default: unset)")
	flag.BoolVar(&o.hold, "hold", false, "set up the testbed, print its namespaces and wait for SIGINT without measuring (for perf, tcpdump, ...)")
	flag.BoolVar(&o.ownLink6, "6in6-own-link", true, "run the 6in6 vif (vif1) over a second veth pair, eth1, so that it owns that slave's AF_XDP sockets; false: over eth0's IPv6 addresses beside vif0, where a vif other than the slave's first runs on raw sockets")
	flag.StringVar(&o.role, "role", "", "internal: run one side of a measurement inside a namespace")
	flag.Parse()
	if runRole(o.role, o.dur) {
		return
	}
	o.tests = strings.Split(tests, ",")
	if compare != "" {
		o.compare = strings.Split(compare, ",")
	}
	if underlays != "" {
		o.underlays = strings.Split(underlays, ",")
	}
	for _, u := range o.underlays {
		name, proto, _ := strings.Cut(u, "/")
		if name != "xdp" && name != "raw" && name != "offload" && name != "offload-raw" || proto != "" && proto != "94" && proto != "4" {
			fmt.Fprintf(os.Stderr, "vifbench: unknown path %q: use xdp, raw, offload or offload-raw, with /4 or /94 for the protocol\n", u)
			os.Exit(2)
		}
	}
	for _, t := range o.tests {
		switch t {
		case "tcp1", "tcp4", "udp", "ping", "ceiling":
		case "tcp6in4", "tcp6in6":
			o.ipv6 = true
		default:
			fmt.Fprintf(os.Stderr, "vifbench: unknown test %q\n", t)
			os.Exit(2)
		}
	}
	if o.proto != "94" && o.proto != "4" {
		fmt.Fprintln(os.Stderr, "vifbench: -proto must be 94 or 4")
		os.Exit(2)
	}
	if o.rounds < 1 || o.dur < time.Second {
		fmt.Fprintln(os.Stderr, "vifbench: need -rounds >= 1 and -time >= 1s")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, &o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vifbench:", err)
		os.Exit(1)
	}
}

// A variant is a vif measured in its own namespace pair: a binary, the
// extra arguments of its "vif up", and its label in the table.
type variant struct {
	bin   string
	args  []string
	label string
	proto string // the outer protocol; "" for -proto
}

// variants lists what o measures besides veth: the -vif binary with each
// of -underlays (or its default), then the -compare binaries.
func variants(o *options) []variant {
	var vs []variant
	for _, u := range o.underlays {
		name, proto, _ := strings.Cut(u, "/")
		v := variant{bin: o.vifBin, args: []string{"--underlay", name}, label: "vif-" + name, proto: proto}
		switch name {
		case "offload":
			v.args = []string{"--offload"}
		case "offload-raw":
			v.args = []string{"--offload", "--underlay", "raw"}
		}
		if proto != "" {
			v.label += "-" + proto
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		vs = append(vs, variant{bin: o.vifBin, label: "vif"})
	}
	for k, bin := range o.compare {
		vs = append(vs, variant{bin: bin, label: fmt.Sprintf("vif%d", k+2)})
	}
	return vs
}

func run(ctx context.Context, o *options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root for network namespaces: run it with sudo")
	}
	for _, c := range []string{"ip", "iperf3", "ping"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s not found in $PATH", c)
		}
	}
	if o.vifBin == "" {
		dir, err := os.MkdirTemp("", "vifbench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.vifBin = filepath.Join(dir, "vif")
		fmt.Fprintln(os.Stderr, "building vif ...")
		cmd := exec.CommandContext(ctx, nstest.GoTool(), "build", "-o", o.vifBin, "github.com/vif-project/vif/cmd/vif")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	} else if o.vifBin, err = filepath.Abs(o.vifBin); err != nil {
		return err
	}
	for k, c := range o.compare {
		if o.compare[k], err = filepath.Abs(c); err != nil {
			return err
		}
		if _, err := os.Stat(o.compare[k]); err != nil {
			return err
		}
	}
	if o.cpuprofile != "" {
		if o.cpuprofile, err = filepath.Abs(o.cpuprofile); err != nil {
			return err
		}
		if err := os.MkdirAll(o.cpuprofile, 0o755); err != nil {
			return err
		}
	}

	var tbs []*testbed
	// Close also cleans up after a partial setup.
	defer func() {
		for _, tb := range tbs {
			if cerr := tb.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	for _, v := range variants(o) {
		tb, err := newTestbed(ctx, o, v)
		if tb != nil {
			tbs = append(tbs, tb)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s: %s %s in namespaces %s and %s\n", v.label, v.bin, strings.Join(v.args, " "), tb.nsA, tb.nsB)
	}
	tb := tbs[0]
	fmt.Fprintf(os.Stderr, "%d rounds of %v, alternating paths\n", o.rounds, o.dur)

	if o.hold {
		fmt.Printf("A=%s B=%s\nvif PIDs: a=%d b=%d\n", tb.nsA, tb.nsB, tb.vifs[0].Pid(), tb.vifs[1].Pid())
		fmt.Printf("try: ip netns exec %s iperf3 -c %s   (veth: %s); Ctrl-C ends\n", tb.nsA, vifB, underB)
		<-ctx.Done()
		return nil
	}
	res, err := measureAll(ctx, tbs, o)
	if err != nil {
		return err
	}
	if o.verbose {
		for _, tb := range tbs {
			tb.stopVifs()
			for _, v := range tb.vifs {
				if line := v.finalCounters(); line != "" {
					fmt.Fprintf(os.Stderr, "%s: %s\n", v.name, line)
				}
			}
		}
	}
	printTable(os.Stdout, res, o)
	return nil
}
