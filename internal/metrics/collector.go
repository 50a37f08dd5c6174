package metrics

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vif-project/vif/arpproxy"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/ndpproxy"
	"github.com/vif-project/vif/vif"
)

// metric is one metric taken from a value of type T: a vif, a peer or an
// ARP responder's counters.
type metric[T any] struct {
	name, help string
	typ        prometheus.ValueType
	value      func(*T) float64
}

func counter[T any](name, help string, value func(*T) uint64) metric[T] {
	return metric[T]{name, help, prometheus.CounterValue, func(t *T) float64 { return float64(value(t)) }}
}

func gauge[T any](name, help string, value func(*T) float64) metric[T] {
	return metric[T]{name, help, prometheus.GaugeValue, value}
}

// vifMetrics are labelled by vif.
var vifMetrics = []metric[daemon.VifStatus]{
	counter("vif_looped_packets_total", "Packets routed into the vif for one of its own addresses and looped back into it.",
		func(s *daemon.VifStatus) uint64 { return s.Counters.LoopedPackets }),
	counter("vif_looped_bytes_total", "Bytes of the looped packets.",
		func(s *daemon.VifStatus) uint64 { return s.Counters.LoopedBytes }),
	counter("vif_encapsulated_packets_total", "Outer packets sent to the vif's peers; an outer packet sent in fragments counts once per fragment.",
		func(s *daemon.VifStatus) uint64 { return s.Counters.EncapsulatedPackets }),
	counter("vif_encapsulated_bytes_total", "Outer bytes sent to the vif's peers.",
		func(s *daemon.VifStatus) uint64 { return s.Counters.EncapsulatedBytes }),
	counter("vif_fragmented_packets_total", "Outer packets sent in fragments.",
		func(s *daemon.VifStatus) uint64 { return s.Counters.FragmentedPackets }),
	counter("vif_decapsulated_packets_total", "Packets received from the vif's peers and delivered into the vif.",
		func(s *daemon.VifStatus) uint64 { return s.Counters.DecapsulatedPackets }),
	counter("vif_decapsulated_bytes_total", "Inner bytes received from the vif's peers and delivered into the vif.",
		func(s *daemon.VifStatus) uint64 { return s.Counters.DecapsulatedBytes }),
	counter("vif_icmp_errors_sent_total", "ICMP errors sent back to senders, generated or relayed from inside the tunnel.",
		func(s *daemon.VifStatus) uint64 { return s.Counters.ICMPSent }),
	counter("vif_icmp_errors_rate_limited_total", "ICMP errors not sent because of the rate limit.",
		func(s *daemon.VifStatus) uint64 { return s.Counters.ICMPLimited }),
	gauge("vif_mtu_bytes", "MTU of the vif.",
		func(s *daemon.VifStatus) float64 { return float64(s.MTU) }),
	gauge("vif_local_missing", "1 while the tunnel is paused because its local address is gone from the host, else 0.",
		func(s *daemon.VifStatus) float64 { return boolValue(s.LocalMissing) }),
	gauge("vif_addresses_missing", "Addresses the vif installed that another tool removed.",
		func(s *daemon.VifStatus) float64 { return float64(len(s.AddrsMissing)) }),
	gauge("vif_routes_missing", "Routes the vif installed that another tool removed.",
		func(s *daemon.VifStatus) float64 { return float64(len(s.RoutesMissing)) }),
}

// peerMetrics are labelled by vif and peer.
var peerMetrics = []metric[daemon.PeerStatus]{
	counter("vif_peer_encapsulated_packets_total", "Outer packets sent to the peer.",
		func(p *daemon.PeerStatus) uint64 { return p.EncapsulatedPackets }),
	counter("vif_peer_encapsulated_bytes_total", "Outer bytes sent to the peer.",
		func(p *daemon.PeerStatus) uint64 { return p.EncapsulatedBytes }),
	counter("vif_peer_decapsulated_packets_total", "Packets received from the peer and delivered into the vif.",
		func(p *daemon.PeerStatus) uint64 { return p.DecapsulatedPackets }),
	counter("vif_peer_decapsulated_bytes_total", "Inner bytes received from the peer and delivered into the vif.",
		func(p *daemon.PeerStatus) uint64 { return p.DecapsulatedBytes }),
	gauge("vif_peer_path_mtu_bytes", "Tunnel MTU towards the peer, for inner packets.",
		func(p *daemon.PeerStatus) float64 { return float64(p.PathMTU) }),
}

// xdpMetrics are labelled by vif, for the vifs on AF_XDP. They count
// outer packets as the underlay moves them, before the loop's checks.
var xdpMetrics = []metric[daemon.XDPCounters]{
	counter("vif_xdp_received_packets_total", "Outer packets received through the AF_XDP sockets.",
		func(x *daemon.XDPCounters) uint64 { return x.RxXDP }),
	counter("vif_xdp_sent_packets_total", "Outer packets sent through the AF_XDP sockets.",
		func(x *daemon.XDPCounters) uint64 { return x.TxXDP }),
	counter("vif_xdp_raw_received_packets_total", "Outer packets of an AF_XDP vif received from its raw IP sockets instead (what the XDP program passed to the kernel).",
		func(x *daemon.XDPCounters) uint64 { return x.RxRaw }),
	counter("vif_xdp_raw_sent_packets_total", "Outer packets of an AF_XDP vif sent through its raw IP sockets instead.",
		func(x *daemon.XDPCounters) uint64 { return x.TxRaw }),
	counter("vif_xdp_ring_dropped_packets_total", "Packets the kernel steered to the AF_XDP sockets and dropped, their rings full.",
		func(x *daemon.XDPCounters) uint64 { return x.Dropped }),
}

// arpMetrics are labelled by slave.
var arpMetrics = []metric[daemon.ARPCounters]{
	counter("vif_arp_requests_total", "ARP requests received from other hosts, whatever their target.",
		func(a *daemon.ARPCounters) uint64 { return a.Requests }),
	counter("vif_arp_replies_total", "ARP replies sent, probe replies included.",
		func(a *daemon.ARPCounters) uint64 { return a.Replies }),
	counter("vif_arp_probes_answered_total", "ARP probes (RFC 5227) for owned addresses answered.",
		func(a *daemon.ARPCounters) uint64 { return a.ProbesAnswered }),
	counter("vif_arp_announcements_total", "Gratuitous ARP announcements sent.",
		func(a *daemon.ARPCounters) uint64 { return a.Announcements }),
	counter("vif_arp_requests_not_owned_total", "ARP requests for addresses no vif on the slave owns.",
		func(a *daemon.ARPCounters) uint64 { return a.NotOwned }),
	counter("vif_arp_conflicts_total", "ARP frames from other hosts claiming an owned address (RFC 5227 section 2.4).",
		func(a *daemon.ARPCounters) uint64 { return a.Conflicts }),
	counter("vif_arp_requests_rate_limited_total", "ARP requests for owned addresses left unanswered by the rate limit.",
		func(a *daemon.ARPCounters) uint64 { return a.RateLimited }),
	counter("vif_arp_socket_dropped_frames_total", "ARP frames the kernel dropped before the responder read them, its socket's queue full.",
		func(a *daemon.ARPCounters) uint64 { return a.SocketDrops }),
}

// ndpMetrics are labelled by slave.
var ndpMetrics = []metric[daemon.NDPCounters]{
	counter("vif_ndp_solicitations_total", "Neighbor Solicitations received from other hosts, whatever their target.",
		func(a *daemon.NDPCounters) uint64 { return a.Solicitations }),
	counter("vif_ndp_replies_total", "Neighbor Advertisements sent in answer, duplicate address detection included.",
		func(a *daemon.NDPCounters) uint64 { return a.Replies }),
	counter("vif_ndp_dad_answered_total", "Duplicate address detection probes (RFC 4862 section 5.4) for owned addresses answered.",
		func(a *daemon.NDPCounters) uint64 { return a.DADAnswered }),
	counter("vif_ndp_announcements_total", "Unsolicited Neighbor Advertisements sent.",
		func(a *daemon.NDPCounters) uint64 { return a.Announcements }),
	counter("vif_ndp_solicitations_not_owned_total", "Neighbor Solicitations for addresses no vif on the slave owns.",
		func(a *daemon.NDPCounters) uint64 { return a.NotOwned }),
	counter("vif_ndp_conflicts_total", "Frames from other hosts using an owned address.",
		func(a *daemon.NDPCounters) uint64 { return a.Conflicts }),
	counter("vif_ndp_solicitations_rate_limited_total", "Neighbor Solicitations for owned addresses left unanswered by the rate limit.",
		func(a *daemon.NDPCounters) uint64 { return a.RateLimited }),
	gauge("vif_ndp_groups", "Solicited-node multicast groups joined on the slave.",
		func(a *daemon.NDPCounters) float64 { return float64(a.Groups) }),
	gauge("vif_ndp_all_multicast", "1 while the slave receives all multicast for an IPv6 range too large to join a group per address, else 0.",
		func(a *daemon.NDPCounters) float64 { return boolValue(a.AllMulticast) }),
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// described is a metric with its Desc.
type described[T any] struct {
	metric[T]
	desc *prometheus.Desc
}

func describe[T any](ms []metric[T], labels ...string) []described[T] {
	out := make([]described[T], len(ms))
	for i, m := range ms {
		out[i] = described[T]{m, prometheus.NewDesc(m.name, m.help, labels, nil)}
	}
	return out
}

// Collector is a prometheus.Collector of the counters of vifs, taken from
// a snapshot at each collection. It is safe for concurrent use if its
// snapshot function is.
type Collector struct {
	snapshot   func() ([]daemon.VifStatus, error)
	vifs       []described[daemon.VifStatus]
	peers      []described[daemon.PeerStatus]
	xdps       []described[daemon.XDPCounters]
	arps       []described[daemon.ARPCounters]
	ndps       []described[daemon.NDPCounters]
	ndpDropped *prometheus.Desc
	info       *prometheus.Desc
	dropped    *prometheus.Desc
	arpDropped *prometheus.Desc
	// vifReasons and arpReasons are the drop reasons exported at 0 until
	// they happen.
	vifReasons, arpReasons, ndpReasons []string
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector of the vifs snapshot returns, such as
// (*daemon.Daemon).Show(""). An error of snapshot fails the collection
// (the registry's Gather returns it).
func NewCollector(snapshot func() ([]daemon.VifStatus, error)) *Collector {
	c := &Collector{
		snapshot: snapshot,
		vifs:     describe(vifMetrics, "vif"),
		peers:    describe(peerMetrics, "vif", "peer"),
		xdps:     describe(xdpMetrics, "vif"),
		arps:     describe(arpMetrics, "slave"),
		ndps:     describe(ndpMetrics, "slave"),
		ndpDropped: prometheus.NewDesc("vif_ndp_dropped_frames_total", "NDP frames dropped, by reason.",
			[]string{"slave", "reason"}, nil),
		info: prometheus.NewDesc("vif_info", "Always 1; the labels describe the vif: its slave, tunnel source (local), protocol, whether it answers ARP, its underlay (xdp or raw) and whether the kernel offload runs.",
			[]string{"vif", "slave", "local", "protocol", "arp_proxy", "underlay", "offload"}, nil),
		dropped: prometheus.NewDesc("vif_dropped_packets_total", "Packets dropped, by reason (rx_: from the wire, tx_: routed into the vif).",
			[]string{"vif", "reason"}, nil),
		arpDropped: prometheus.NewDesc("vif_arp_dropped_frames_total", "ARP frames dropped, by reason.",
			[]string{"slave", "reason"}, nil),
	}
	seen := map[string]bool{}
	for _, r := range vif.DropReasons() {
		if !seen[r] { // the list may name a reason twice
			seen[r] = true
			c.vifReasons = append(c.vifReasons, r)
		}
	}
	for _, r := range arpproxy.DropReasons() {
		c.arpReasons = append(c.arpReasons, r.Name())
	}
	for _, r := range ndpproxy.DropReasons() {
		c.ndpReasons = append(c.ndpReasons, r.Name())
	}
	return c
}

// NewRegistry returns a registry of a Collector of snapshot and of
// client_golang's process and Go collectors, which describe the process
// that serves it (process_resident_memory_bytes, go_goroutines, ...).
func NewRegistry(snapshot func() ([]daemon.VifStatus, error)) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(snapshot),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	)
	return reg
}

// Describe sends the Desc of every metric c collects.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.vifs {
		ch <- m.desc
	}
	for _, m := range c.peers {
		ch <- m.desc
	}
	for _, m := range c.xdps {
		ch <- m.desc
	}
	for _, m := range c.arps {
		ch <- m.desc
	}
	for _, m := range c.ndps {
		ch <- m.desc
	}
	ch <- c.ndpDropped
	ch <- c.info
	ch <- c.dropped
	ch <- c.arpDropped
}

// Collect takes a snapshot and sends its metrics. The counters of an ARP
// responder are sent once per slave, from the first vif on it.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	vifs, err := c.snapshot()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.info, fmt.Errorf("metrics: taking a snapshot of the vifs: %w", err))
		return
	}
	slaves, ndpSlaves := map[string]bool{}, map[string]bool{}
	for i := range vifs {
		s := &vifs[i]
		name, slave := labelValue(s.Name), labelValue(s.Slave)
		for _, m := range c.vifs {
			ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(s), name)
		}
		local := ""
		if s.Local.IsValid() {
			local = s.Local.String()
		}
		ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1,
			name, slave, local, strconv.Itoa(int(s.Protocol)), strconv.FormatBool(s.ARPProxy), s.Underlay.Kind, strconv.FormatBool(s.Offload))
		drops(ch, c.dropped, c.vifReasons, s.Counters.Drops, name)
		if s.XDP != nil {
			for _, m := range c.xdps {
				ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(s.XDP), name)
			}
		}
		for j := range s.Peers {
			p := &s.Peers[j]
			for _, m := range c.peers {
				ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(p), name, p.Addr.String())
			}
		}
		if s.NDP != nil && !ndpSlaves[slave] {
			ndpSlaves[slave] = true
			for _, m := range c.ndps {
				ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(s.NDP), slave)
			}
			drops(ch, c.ndpDropped, c.ndpReasons, s.NDP.Drops, slave)
		}
		if s.ARP == nil || slaves[slave] {
			continue
		}
		slaves[slave] = true
		for _, m := range c.arps {
			ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(s.ARP), slave)
		}
		drops(ch, c.arpDropped, c.arpReasons, s.ARP.Drops, slave)
	}
}

// drops sends one counter per reason: the known reasons, at 0 if absent
// from counts, then any other reason in counts.
func drops(ch chan<- prometheus.Metric, desc *prometheus.Desc, known []string, counts map[string]uint64, label string) {
	for _, r := range known {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(counts[r]), label, r)
	}
	if len(counts) == 0 {
		return
	}
	for r, n := range counts {
		if !slices.Contains(known, r) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(n), label, labelValue(r))
		}
	}
}

// labelValue returns s as a valid label value. Interface names are bytes
// to the kernel, and a label value that is not UTF-8 would fail the
// whole collection.
func labelValue(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}
