//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A path is what a measurement goes through: the bare veth of the first
// testbed, or the vif tunnel of a testbed.
type path struct {
	label string
	tb    *testbed
	dst   string
	vif   bool
}

func paths(tbs []*testbed) []path {
	ps := []path{{label: "veth", tb: tbs[0], dst: underB}}
	for _, tb := range tbs {
		ps = append(ps, path{label: tb.label, tb: tb, dst: vifB, vif: true})
	}
	return ps
}

// metric is one row of the result table.
type metric struct {
	name         string
	unit         string
	higherBetter bool
	vals         [][]float64 // by path index
}

// results holds every metric in the order they are printed.
type results struct {
	paths []path
	rows  []*metric
	idx   map[string]*metric
}

func (r *results) add(name, unit string, higher bool, p int, v float64) {
	if r.idx == nil {
		r.idx = map[string]*metric{}
	}
	m := r.idx[name]
	if m == nil {
		m = &metric{name: name, unit: unit, higherBetter: higher, vals: make([][]float64, len(r.paths))}
		r.idx[name] = m
		r.rows = append(r.rows, m)
	}
	m.vals[p] = append(m.vals[p], v)
}

// sample is what one measurement yields: its main value and extra rows.
type sample struct {
	value float64
	extra map[string]float64 // e.g. loss
	pkts  float64            // inner packets delivered (TCP: estimated from the MSS)
}

// test describes one measurement.
type test struct {
	key, name, unit string
	higher          bool
	run             func(ctx context.Context, tb *testbed, o *options, dst string) (sample, error)
}

func tests(o *options) []test {
	all := map[string]test{
		"tcp1": {"tcp1", "TCP 1 stream", "Gbit/s", true, func(ctx context.Context, tb *testbed, o *options, dst string) (sample, error) {
			return iperfTCP(ctx, tb, o, dst, 1)
		}},
		"tcp4": {"tcp4", fmt.Sprintf("TCP %d streams", o.streams), "Gbit/s", true, func(ctx context.Context, tb *testbed, o *options, dst string) (sample, error) {
			return iperfTCP(ctx, tb, o, dst, o.streams)
		}},
		"tcp6in4": {"tcp6in4", "TCP 1 stream, IPv6: 6in4", "Gbit/s", true, func(ctx context.Context, tb *testbed, o *options, dst string) (sample, error) {
			return iperfTCP(ctx, tb, o, dst6(dst, vifB6in4), 1)
		}},
		"tcp6in6": {"tcp6in6", "TCP 1 stream, IPv6: 6in6", "Gbit/s", true, func(ctx context.Context, tb *testbed, o *options, dst string) (sample, error) {
			return iperfTCP(ctx, tb, o, dst6(dst, vifB6in6), 1)
		}},
		"udp":  {"udp", fmt.Sprintf("UDP %d B delivered", o.udpLen), "kpps", true, iperfUDP},
		"ping": {"ping", "ping RTT avg", "µs", false, ping},
		// run is not used: measureAll measures the ceiling once a round.
		"ceiling": {"ceiling", "underlay ceiling: raw socket, 1 thread, 1500 B", "Gbit/s", true, nil},
	}
	var out []test
	for _, k := range o.tests {
		out = append(out, all[k])
	}
	return out
}

// dst6 is the IPv6 destination of an IPv6 test on the path whose IPv4
// destination is dst: the veth's IPv6 address on the veth, vif on a vif.
func dst6(dst, vif string) string {
	if dst == underB {
		return underB6
	}
	return vif
}

// measureAll runs every test o.rounds times on each path, alternating
// paths (and which goes first, round by round) so that drift in the
// machine's load hits both alike.
func measureAll(ctx context.Context, tbs []*testbed, o *options) (*results, error) {
	res := &results{paths: paths(tbs)}
	for round := 0; round < o.rounds; round++ {
		for _, t := range tests(o) {
			if t.key == "ceiling" {
				// A property of the underlay: measured once a round.
				v, err := measureCeiling(ctx, res.paths[0].tb, o)
				if err != nil {
					return nil, fmt.Errorf("%s, round %d: %w", t.name, round+1, err)
				}
				res.add(t.name, t.unit, t.higher, 0, v)
				if o.verbose {
					fmt.Fprintf(os.Stderr, "round %d %-22s %10.3f %s\n", round+1, t.name, v, t.unit)
				}
				continue
			}
			for j := range res.paths {
				pi := (j + round) % len(res.paths) // rotate who goes first
				p := res.paths[pi]
				var cpu0 [2]float64
				for k, v := range p.tb.vifs {
					cpu0[k] = cpuSeconds(v.Pid())
				}
				// The decapsulating vif writes into its TUN with
				// write(2) and to the underlay with sendmmsg, so its
				// write count is its TUN writes.
				writes0 := syscw(p.tb.vifs[1].Pid())
				start := time.Now()
				s, err := t.run(ctx, p.tb, o, p.dst)
				if err != nil {
					return nil, fmt.Errorf("%s over %s, round %d: %w", t.name, p.label, round+1, err)
				}
				el := time.Since(start).Seconds()
				res.add(t.name, t.unit, t.higher, pi, s.value)
				for k, v := range s.extra {
					res.add(t.name+" "+k, "%", false, pi, v)
				}
				if p.vif && t.key != "ping" {
					var cores float64
					for k, v := range p.tb.vifs {
						cores += (cpuSeconds(v.Pid()) - cpu0[k]) / el
					}
					res.add(t.name+" vif CPU", "cores", false, pi, cores)
					if w := syscw(p.tb.vifs[1].Pid()) - writes0; w > 0 && s.pkts > 0 && !p.tb.offload {
						// GRO on the decap side: how many packets
						// each TUN write carries.
						res.add(t.name+" decap packets per TUN write", "pkts", true, pi, s.pkts/float64(w))
					}
					// CPU per unit of work is steadier than throughput
					// on a shared machine.
					switch {
					case s.value == 0:
					case t.unit == "Gbit/s":
						res.add(t.name+" vif CPU per Gbit", "core·s", false, pi, cores/s.value)
					case t.unit == "kpps":
						res.add(t.name+" vif CPU per packet", "µs", false, pi, cores/s.value*1e3)
					}
				}
				if o.verbose {
					fmt.Fprintf(os.Stderr, "round %d %-22s %-5s %10.3f %s %v\n", round+1, t.name, p.label, s.value, t.unit, s.extra)
				}
			}
			// Let queues drain and TCP state settle between runs.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return res, nil
}

// iperf3 runs the client in a against the server in b and decodes -J.
func iperf3(ctx context.Context, tb *testbed, o *options, args ...string) (map[string]any, error) {
	secs := strconv.FormatFloat(o.dur.Seconds(), 'f', -1, 64)
	args = append([]string{"-c", args[0], "-t", secs, "-J"}, args[1:]...)
	var out []byte
	var err error
	// The server takes one test at a time and is briefly busy after one
	// ends: retry when it says so.
	for try := 0; try < 5; try++ {
		tctx, cancel := context.WithTimeout(ctx, o.dur+30*time.Second)
		cmd := tb.a.Command(tctx, "iperf3", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		out, err = cmd.Output()
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !strings.Contains(string(out), "server is busy") {
			break
		}
		time.Sleep(time.Second)
	}
	var j map[string]any
	if jerr := json.Unmarshal(out, &j); jerr != nil {
		return nil, fmt.Errorf("iperf3: %v %v: %s", err, jerr, out)
	}
	if e, ok := j["error"].(string); ok {
		return nil, fmt.Errorf("iperf3: %s", e)
	}
	return j, nil
}

// num digs a number out of decoded JSON: num(j, "end", "sum", "packets").
func num(j map[string]any, keys ...string) (float64, bool) {
	var v any = j
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return 0, false
		}
		v = m[k]
	}
	f, ok := v.(float64)
	return f, ok
}

func iperfTCP(ctx context.Context, tb *testbed, o *options, dst string, streams int) (sample, error) {
	j, err := iperf3(ctx, tb, o, dst, "-P", strconv.Itoa(streams))
	if err != nil {
		return sample{}, err
	}
	bps, ok := num(j, "end", "sum_received", "bits_per_second")
	if !ok {
		return sample{}, fmt.Errorf("iperf3: no end.sum_received.bits_per_second")
	}
	s := sample{value: bps / 1e9}
	bytes, ok1 := num(j, "end", "sum_received", "bytes")
	mss, ok2 := num(j, "start", "tcp_mss_default")
	if ok1 && ok2 && mss > 0 {
		s.pkts = bytes / mss
	}
	return s, nil
}

func iperfUDP(ctx context.Context, tb *testbed, o *options, dst string) (sample, error) {
	j, err := iperf3(ctx, tb, o, dst, "-u", "-l", strconv.Itoa(o.udpLen), "-b", o.udpRate)
	if err != nil {
		return sample{}, err
	}
	// sum_received is the server's view: packets it expected (the
	// highest sequence number seen), of which lost_packets never came.
	pk, ok1 := num(j, "end", "sum_received", "packets")
	lost, ok2 := num(j, "end", "sum_received", "lost_packets")
	secs, ok3 := num(j, "end", "sum_received", "seconds")
	if !ok1 || !ok2 || !ok3 || secs == 0 {
		// iperf3 before 3.11 has only end.sum.
		pk, ok1 = num(j, "end", "sum", "packets")
		lost, ok2 = num(j, "end", "sum", "lost_packets")
		secs, ok3 = num(j, "end", "sum", "seconds")
		if !ok1 || !ok2 || !ok3 || secs == 0 {
			return sample{}, fmt.Errorf("iperf3: no UDP packet counts in the result")
		}
	}
	s := sample{value: (pk - lost) / secs / 1e3, extra: map[string]float64{}, pkts: pk - lost}
	if pk > 0 {
		s.extra["loss"] = 100 * lost / pk
	}
	return s, nil
}

var rttRE = regexp.MustCompile(`= ([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+) ms`)

func ping(ctx context.Context, tb *testbed, o *options, dst string) (sample, error) {
	cmd := tb.a.Command(ctx, "ping", "-q", "-c", strconv.Itoa(o.pingCount), "-i", "0.01", "-W", "1", dst)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	m := rttRE.FindSubmatch(out)
	if m == nil {
		return sample{}, fmt.Errorf("ping: %v: %s", err, out)
	}
	avg, _ := strconv.ParseFloat(string(m[2]), 64)
	return sample{value: avg * 1e3}, nil
}

// syscw returns how many write system calls process pid made
// (/proc/PID/io).
func syscw(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "syscw: "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// clkTck is the kernel's USER_HZ, from the auxiliary vector (AT_CLKTCK).
var clkTck = func() float64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err == nil {
		for i := 0; i+16 <= len(b); i += 16 {
			if binary.NativeEndian.Uint64(b[i:]) == 17 { // AT_CLKTCK
				return float64(binary.NativeEndian.Uint64(b[i+8:]))
			}
		}
	}
	return 100
}()

// cpuSeconds returns the user+system CPU time of process pid.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields count from after ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14
	st, _ := strconv.ParseFloat(f[12], 64) // field 15
	return (ut + st) / clkTck
}
