package metrics_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/vif-project/vif/arpproxy"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/internal/metrics"
	"github.com/vif-project/vif/vif"
)

// fixture returns vifs whose every number is distinct: two vifs share the
// ARP responder of eth0, one on eth1 has no ARP proxy and no tunnel, one
// on eth2 has its own responder.
func fixture() []daemon.VifStatus {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	eth0 := &daemon.ARPCounters{
		Requests: 401, Replies: 402, ProbesAnswered: 403, Announcements: 404, NotOwned: 405,
		Conflicts: 406, RateLimited: 407, SocketDrops: 408,
		Dropped: 409 + 410, Drops: map[string]uint64{"short": 409, "other_host": 410},
	}
	eth2 := &daemon.ARPCounters{
		Requests: 501, Replies: 502, ProbesAnswered: 503, Announcements: 504, NotOwned: 505,
		Conflicts: 506, RateLimited: 507, SocketDrops: 508,
		Dropped: 509, Drops: map[string]uint64{"arp_from_the_future": 509},
	}
	return []daemon.VifStatus{
		{
			Name: "vif0", Addrs: []netip.Prefix{pfx("192.0.2.1/32")}, Slave: "eth0",
			Local: addr("192.0.2.10"), Peer: addr("192.0.2.20"), Protocol: 4, MTU: 1480,
			Underlay: vif.UnderlayInfo{Kind: vif.UnderlayRaw, Fallback: "the slave carries another XDP program"}, Offload: true,
			Routes: []netip.Prefix{pfx("192.0.2.128/25")}, ARPProxy: true,
			Peers: []daemon.PeerStatus{
				{Addr: addr("192.0.2.20"), Prefixes: []netip.Prefix{pfx("0.0.0.0/0")},
					EncapsulatedPackets: 121, EncapsulatedBytes: 1122, DecapsulatedPackets: 123, DecapsulatedBytes: 1124, PathMTU: 1400},
				{Addr: addr("192.0.2.21"), Prefixes: []netip.Prefix{pfx("192.0.2.64/26")},
					EncapsulatedPackets: 131, EncapsulatedBytes: 1132, DecapsulatedPackets: 133, DecapsulatedBytes: 1134, PathMTU: 1380},
			},
			AddrsMissing:  []netip.Prefix{pfx("192.0.2.2/32"), pfx("192.0.2.3/32")},
			RoutesMissing: []netip.Prefix{pfx("192.0.2.128/25")},
			Counters: daemon.Counters{
				LoopedPackets: 101, LoopedBytes: 1102, EncapsulatedPackets: 103, EncapsulatedBytes: 1104,
				FragmentedPackets: 105, DecapsulatedPackets: 106, DecapsulatedBytes: 1107,
				Dropped: 108 + 109 + 110, Drops: map[string]uint64{"tx_no_peer": 108, "rx_not_peer": 109, "rx_checksum": 110},
				ICMPSent: 111, ICMPLimited: 112,
			},
			ARP: eth0,
			NDP: &daemon.NDPCounters{
				Solicitations: 601, Replies: 602, DADAnswered: 603, Announcements: 604, NotOwned: 605,
				Conflicts: 606, RateLimited: 607, Dropped: 608, Drops: map[string]uint64{"hop_limit": 608},
				Groups: 609, AllMulticast: true,
			},
		},
		{
			Name: "vif1", Addrs: []netip.Prefix{pfx("192.0.2.4/32")}, Slave: "eth0",
			Local: addr("192.0.2.11"), Peer: addr("192.0.2.30"), Protocol: 94, MTU: 1476, ARPProxy: true,
			LocalMissing: true, Underlay: vif.UnderlayInfo{Kind: vif.UnderlayXDP},
			XDP: &daemon.XDPCounters{RxXDP: 231, TxXDP: 232, RxRaw: 233, TxRaw: 234, Dropped: 235},
			Peers: []daemon.PeerStatus{
				{Addr: addr("192.0.2.30"), Prefixes: []netip.Prefix{pfx("0.0.0.0/0")},
					EncapsulatedPackets: 221, EncapsulatedBytes: 2222, DecapsulatedPackets: 223, DecapsulatedBytes: 2224, PathMTU: 1476},
			},
			Counters: daemon.Counters{
				LoopedPackets: 201, LoopedBytes: 2202, EncapsulatedPackets: 203, EncapsulatedBytes: 2204,
				FragmentedPackets: 205, DecapsulatedPackets: 206, DecapsulatedBytes: 2207,
				Dropped: 213 + 214, Drops: map[string]uint64{"tx_no_local": 213, "rx_from_the_future": 214},
				ICMPSent: 211, ICMPLimited: 212,
			},
			ARP: eth0,
		},
		{
			Name: "vif2", Addrs: []netip.Prefix{pfx("192.0.2.5/32")}, Slave: "eth1", MTU: 65515,
			Counters: daemon.Counters{
				LoopedPackets: 301, LoopedBytes: 3302, Drops: map[string]uint64{},
			},
		},
		{
			Name: "vif3", Ranges: []netip.Prefix{pfx("192.0.2.192/26")}, Slave: "eth2",
			Local: addr("192.0.2.12"), Protocol: 4, MTU: 1480, ARPProxy: true,
			Counters: daemon.Counters{Drops: map[string]uint64{}},
			ARP:      eth2,
		},
	}
}

// samples indexes gathered metrics by name and labels, as
// `vif_peer_path_mtu_bytes{peer="192.0.2.20",vif="vif0"}` (labels sorted).
type samples map[string]float64

func key(name string, labels map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+strconv.Quote(labels[k]))
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

func index(t *testing.T, mfs []*dto.MetricFamily) samples {
	t.Helper()
	s := samples{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			var v float64
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				v = m.GetUntyped().GetValue()
			default:
				continue // the Go collector's summaries and histograms
			}
			k := key(mf.GetName(), labels)
			if _, dup := s[k]; dup {
				t.Errorf("%s appears twice", k)
			}
			s[k] = v
		}
	}
	return s
}

func gather(t *testing.T, g prometheus.Gatherer) samples {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	return index(t, mfs)
}

func snapshotOf(vifs []daemon.VifStatus) func() ([]daemon.VifStatus, error) {
	return func() ([]daemon.VifStatus, error) { return vifs, nil }
}

// The metric of each number "vif show --json" prints, by its key: in
// counters (per vif), in peers (per vif and peer), in arp (per slave).
var (
	vifCounters = map[string]string{
		"looped_packets":       "vif_looped_packets_total",
		"looped_bytes":         "vif_looped_bytes_total",
		"encapsulated_packets": "vif_encapsulated_packets_total",
		"encapsulated_bytes":   "vif_encapsulated_bytes_total",
		"fragmented_packets":   "vif_fragmented_packets_total",
		"decapsulated_packets": "vif_decapsulated_packets_total",
		"decapsulated_bytes":   "vif_decapsulated_bytes_total",
		"icmp_sent":            "vif_icmp_errors_sent_total",
		"icmp_limited":         "vif_icmp_errors_rate_limited_total",
	}
	peerCounters = map[string]string{
		"encapsulated_packets": "vif_peer_encapsulated_packets_total",
		"encapsulated_bytes":   "vif_peer_encapsulated_bytes_total",
		"decapsulated_packets": "vif_peer_decapsulated_packets_total",
		"decapsulated_bytes":   "vif_peer_decapsulated_bytes_total",
		"path_mtu":             "vif_peer_path_mtu_bytes",
	}
	xdpCounters = map[string]string{
		"rx_xdp_packets":  "vif_xdp_received_packets_total",
		"tx_xdp_packets":  "vif_xdp_sent_packets_total",
		"rx_raw_packets":  "vif_xdp_raw_received_packets_total",
		"tx_raw_packets":  "vif_xdp_raw_sent_packets_total",
		"dropped_packets": "vif_xdp_ring_dropped_packets_total",
	}
	arpCounters = map[string]string{
		"requests":        "vif_arp_requests_total",
		"replies":         "vif_arp_replies_total",
		"probes_answered": "vif_arp_probes_answered_total",
		"announcements":   "vif_arp_announcements_total",
		"not_owned":       "vif_arp_requests_not_owned_total",
		"conflicts":       "vif_arp_conflicts_total",
		"rate_limited":    "vif_arp_requests_rate_limited_total",
		"socket_drops":    "vif_arp_socket_dropped_frames_total",
	}
	ndpCounters = map[string]string{
		"solicitations": "vif_ndp_solicitations_total",
		"replies":       "vif_ndp_replies_total",
		"dad_answered":  "vif_ndp_dad_answered_total",
		"announcements": "vif_ndp_announcements_total",
		"not_owned":     "vif_ndp_solicitations_not_owned_total",
		"conflicts":     "vif_ndp_conflicts_total",
		"rate_limited":  "vif_ndp_solicitations_rate_limited_total",
		"groups":        "vif_ndp_groups",
		"all_multicast": "vif_ndp_all_multicast",
	}
)

// checker compares the JSON of "vif show" with gathered samples, and
// remembers which samples it has seen.
type checker struct {
	t       *testing.T
	got     samples
	checked map[string]bool
}

func (c *checker) want(name string, labels map[string]string, want float64, from string) {
	c.t.Helper()
	k := key(name, labels)
	v, ok := c.got[k]
	switch {
	case !ok:
		c.t.Errorf("%s: no %s", from, k)
	case v != want:
		c.t.Errorf("%s: %s = %v, want %v", from, k, v, want)
	}
	c.checked[k] = true
}

// sum returns the sum of the samples of name with the given label.
func (c *checker) sum(name, label, value string) float64 {
	var n float64
	for k, v := range c.got {
		if strings.HasPrefix(k, name+"{") && strings.Contains(k, label+"="+strconv.Quote(value)) {
			n += v
		}
	}
	return n
}

func number(t *testing.T, v any, from string) float64 {
	t.Helper()
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			t.Fatalf("%s: %v", from, err)
		}
		return f
	case bool:
		if v {
			return 1
		}
		return 0
	}
	return -1 // not a number: strings and lists are checked apart
}

// TestShowJSON checks every number "vif show --json" prints for the
// fixture against the metrics, and fails on a number no metric exports:
// a counter added to VifStatus must be added here and to the Collector.
func TestShowJSON(t *testing.T) {
	vifs := fixture()
	b, err := json.Marshal(map[string]any{"vifs": vifs})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Vifs []map[string]any `json:"vifs"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}

	c := &checker{t: t, got: gather(t, metrics.NewRegistry(snapshotOf(vifs))), checked: map[string]bool{}}
	for _, v := range doc.Vifs {
		name := v["name"].(string)
		slave, _ := v["slave"].(string)
		local, _ := v["local"].(string)
		arpProxy := v["arp_proxy"].(bool)
		offload, _ := v["offload"].(bool)
		var underlay string
		if u, ok := v["underlay"].(map[string]any); ok {
			underlay, _ = u["kind"].(string)
		}
		vl := map[string]string{"vif": name}
		for k, val := range v {
			from := name + "." + k
			switch k {
			case "mtu":
				c.want("vif_mtu_bytes", vl, number(t, val, from), from)
			case "protocol":
				c.want("vif_info", map[string]string{"vif": name, "slave": slave, "local": local,
					"protocol": val.(json.Number).String(), "arp_proxy": strconv.FormatBool(arpProxy), "underlay": underlay, "offload": strconv.FormatBool(offload)}, 1, from)
			case "local_missing":
				c.want("vif_local_missing", vl, number(t, val, from), from)
			case "addrs_missing":
				c.want("vif_addresses_missing", vl, float64(len(val.([]any))), from)
			case "routes_missing":
				c.want("vif_routes_missing", vl, float64(len(val.([]any))), from)
			case "counters":
				for ck, cv := range val.(map[string]any) {
					from := from + "." + ck
					switch ck {
					case "drops":
						for r, n := range cv.(map[string]any) {
							c.want("vif_dropped_packets_total", map[string]string{"vif": name, "reason": r}, number(t, n, from+"."+r), from+"."+r)
						}
					case "dropped":
						if got, want := c.sum("vif_dropped_packets_total", "vif", name), number(t, cv, from); got != want {
							t.Errorf("%s: sum of vif_dropped_packets_total = %v, want %v", from, got, want)
						}
					default:
						m, ok := vifCounters[ck]
						if !ok {
							t.Errorf("vif show --json prints %s; no metric exports it", from)
							continue
						}
						c.want(m, vl, number(t, cv, from), from)
					}
				}
			case "peers":
				for _, p := range val.([]any) {
					p := p.(map[string]any)
					pl := map[string]string{"vif": name, "peer": p["addr"].(string)}
					for pk, pv := range p {
						from := from + "[" + pl["peer"] + "]." + pk
						m, ok := peerCounters[pk]
						switch {
						case ok:
							c.want(m, pl, number(t, pv, from), from)
						case number(t, pv, from) >= 0:
							t.Errorf("vif show --json prints %s; no metric exports it", from)
						}
					}
				}
			case "xdp":
				for xk, xv := range val.(map[string]any) {
					from := from + "." + xk
					m, ok := xdpCounters[xk]
					if !ok {
						t.Errorf("vif show --json prints %s; no metric exports it", from)
						continue
					}
					c.want(m, vl, number(t, xv, from), from)
				}
			case "arp", "ndp":
				al := map[string]string{"slave": slave}
				dropped, counters := "vif_arp_dropped_frames_total", arpCounters
				if k == "ndp" {
					dropped, counters = "vif_ndp_dropped_frames_total", ndpCounters
				}
				for ak, av := range val.(map[string]any) {
					from := from + "." + ak
					switch ak {
					case "drops":
						for r, n := range av.(map[string]any) {
							c.want(dropped, map[string]string{"slave": slave, "reason": r}, number(t, n, from+"."+r), from+"."+r)
						}
					case "dropped":
						if got, want := c.sum(dropped, "slave", slave), number(t, av, from); got != want {
							t.Errorf("%s: sum of %s = %v, want %v", from, dropped, got, want)
						}
					default:
						m, ok := counters[ak]
						if !ok {
							t.Errorf("vif show --json prints %s; no metric exports it", from)
							continue
						}
						c.want(m, al, number(t, av, from), from)
					}
				}
			case "arp_proxy", "underlay", "offload": // labels of vif_info, checked with protocol
			default:
				if number(t, val, from) >= 0 {
					t.Errorf("vif show --json prints %s; no metric exports it", from)
				}
			}
		}
		// Omitted when zero or empty.
		for k, m := range map[string]string{"local_missing": "vif_local_missing", "addrs_missing": "vif_addresses_missing", "routes_missing": "vif_routes_missing"} {
			if _, ok := v[k]; !ok {
				c.want(m, vl, 0, name+"."+k+" (absent)")
			}
		}
	}

	// What remains is the process and Go collectors' metrics and the
	// drop reasons that have not happened, at 0.
	for k, v := range c.got {
		switch {
		case c.checked[k], !strings.HasPrefix(k, "vif_"):
		case (strings.HasPrefix(k, "vif_dropped_packets_total{") || strings.HasPrefix(k, "vif_arp_dropped_frames_total{") ||
			strings.HasPrefix(k, "vif_ndp_dropped_frames_total{")) && v == 0:
		default:
			t.Errorf("%s = %v is in no vif of vif show --json", k, v)
		}
	}
}

// TestEveryDropReason checks that every reason vif and arpproxy know of
// has a series from the start, at 0 when it has not happened.
func TestEveryDropReason(t *testing.T) {
	got := gather(t, metrics.NewRegistry(snapshotOf(fixture())))
	for _, r := range vif.DropReasons() {
		if _, ok := got[key("vif_dropped_packets_total", map[string]string{"vif": "vif2", "reason": r})]; !ok {
			t.Errorf("no vif_dropped_packets_total for vif2, reason %s", r)
		}
	}
	for _, r := range arpproxy.DropReasons() {
		if _, ok := got[key("vif_arp_dropped_frames_total", map[string]string{"slave": "eth2", "reason": r.Name()})]; !ok {
			t.Errorf("no vif_arp_dropped_frames_total for eth2, reason %s", r.Name())
		}
	}
}

// TestARPOncePerSlave checks that a responder shared by vifs is exported
// once, from the first vif on its slave, even when the vifs' snapshots
// of it differ (they are taken one after the other).
func TestARPOncePerSlave(t *testing.T) {
	vifs := fixture()
	later := *vifs[1].ARP
	later.Requests++
	vifs[1].ARP = &later

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(snapshotOf(vifs)))
	n, err := testutil.GatherAndCount(reg, "vif_arp_requests_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 { // eth0 and eth2; eth1 has no responder
		t.Errorf("vif_arp_requests_total has %d series, want 2 (eth0, eth2)", n)
	}
	got := gather(t, reg)
	if v := got[key("vif_arp_requests_total", map[string]string{"slave": "eth0"})]; v != 401 {
		t.Errorf("vif_arp_requests_total{slave=eth0} = %v, want 401 (vif0's)", v)
	}
}

// TestLint checks the names, help and types of the metrics with promlint.
func TestLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(metrics.NewCollector(snapshotOf(fixture())))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestNoVifs checks that a daemon without vifs exports no vif metrics,
// and the process and Go metrics still.
func TestNoVifs(t *testing.T) {
	got := gather(t, metrics.NewRegistry(snapshotOf(nil)))
	for k := range got {
		if strings.HasPrefix(k, "vif_") {
			t.Errorf("%s without vifs", k)
		}
	}
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := got[name+"{}"]; !ok {
			t.Errorf("no %s", name)
		}
	}
}

// TestSnapshotError checks that a failed snapshot fails the collection.
func TestSnapshotError(t *testing.T) {
	errShow := errors.New("no show today")
	reg := metrics.NewRegistry(func() ([]daemon.VifStatus, error) { return nil, errShow })
	if _, err := reg.Gather(); !errors.Is(err, errShow) {
		t.Errorf("Gather: %v, want %v", err, errShow)
	}
}

// TestBadNames checks that names the kernel takes but a label value may
// not hold (not UTF-8) are replaced rather than fail the collection.
func TestBadNames(t *testing.T) {
	vifs := fixture()[:1]
	vifs[0].Name, vifs[0].Slave = "vif\xff", "eth\xfe0"
	got := gather(t, metrics.NewRegistry(snapshotOf(vifs)))
	if v := got[key("vif_looped_packets_total", map[string]string{"vif": "vif\uFFFD"})]; v != 101 {
		t.Errorf("vif_looped_packets_total{vif=vif\\uFFFD} = %v, want 101", v)
	}
	if v := got[key("vif_arp_requests_total", map[string]string{"slave": "eth\uFFFD0"})]; v != 401 {
		t.Errorf("vif_arp_requests_total{slave=eth\\uFFFD0} = %v, want 401", v)
	}
}
