// Package metrics exposes the counters of "vif show" as Prometheus
// metrics, in the text exposition format, through
// github.com/prometheus/client_golang: over HTTP from the daemon (Listen,
// Serve), or as a file for node_exporter's textfile collector (WriteText).
//
// Each number "vif show --json" prints for a vif has one metric:
//
//	JSON (per vif)                 metric
//	mtu                            vif_mtu_bytes{vif}
//	slave, local, protocol,        vif_info{vif,slave,local,protocol,arp_proxy} 1
//	  arp_proxy
//	local_missing                  vif_local_missing{vif} (1 while the tunnel is paused)
//	addrs_missing (count)          vif_addresses_missing{vif}
//	routes_missing (count)         vif_routes_missing{vif}
//	counters.looped_packets        vif_looped_packets_total{vif}
//	counters.looped_bytes          vif_looped_bytes_total{vif}
//	counters.encapsulated_packets  vif_encapsulated_packets_total{vif}
//	counters.encapsulated_bytes    vif_encapsulated_bytes_total{vif}
//	counters.fragmented_packets    vif_fragmented_packets_total{vif}
//	counters.decapsulated_packets  vif_decapsulated_packets_total{vif}
//	counters.decapsulated_bytes    vif_decapsulated_bytes_total{vif}
//	counters.drops.REASON          vif_dropped_packets_total{vif,reason}
//	counters.dropped               sum by (vif) (vif_dropped_packets_total)
//	counters.icmp_sent             vif_icmp_errors_sent_total{vif}
//	counters.icmp_limited          vif_icmp_errors_rate_limited_total{vif}
//	peers[].encapsulated_packets   vif_peer_encapsulated_packets_total{vif,peer}
//	peers[].encapsulated_bytes     vif_peer_encapsulated_bytes_total{vif,peer}
//	peers[].decapsulated_packets   vif_peer_decapsulated_packets_total{vif,peer}
//	peers[].decapsulated_bytes     vif_peer_decapsulated_bytes_total{vif,peer}
//	peers[].path_mtu               vif_peer_path_mtu_bytes{vif,peer}
//
// A vif on AF_XDP (underlay.kind "xdp") has its underlay's counters, in
// outer packets as the underlay moves them, before the packet loop's
// checks (absent, and not exported, on raw sockets):
//
//	xdp.rx_xdp_packets             vif_xdp_received_packets_total{vif}
//	xdp.tx_xdp_packets             vif_xdp_sent_packets_total{vif}
//	xdp.rx_raw_packets             vif_xdp_raw_received_packets_total{vif}
//	xdp.tx_raw_packets             vif_xdp_raw_sent_packets_total{vif}
//	xdp.dropped_packets            vif_xdp_ring_dropped_packets_total{vif} (rings full)
//
// The ARP responder of a slave is shared by the vifs on that slave, so its
// counters are labelled by slave and exported once per slave:
//
//	arp.requests                   vif_arp_requests_total{slave}
//	arp.replies                    vif_arp_replies_total{slave}
//	arp.probes_answered            vif_arp_probes_answered_total{slave}
//	arp.announcements              vif_arp_announcements_total{slave}
//	arp.not_owned                  vif_arp_requests_not_owned_total{slave}
//	arp.conflicts                  vif_arp_conflicts_total{slave}
//	arp.rate_limited               vif_arp_requests_rate_limited_total{slave}
//	arp.socket_drops               vif_arp_socket_dropped_frames_total{slave}
//	arp.drops.REASON               vif_arp_dropped_frames_total{slave,reason}
//	arp.dropped                    sum by (slave) (vif_arp_dropped_frames_total)
//
// So are the NDP proxy's (ndp.*, vif_ndp_*{slave}, the same names), and:
//
//	ndp.groups                     vif_ndp_groups{slave}
//	ndp.all_multicast              vif_ndp_all_multicast{slave} (1 while the slave receives all multicast for an IPv6 range)
//
// Every drop reason vif and arpproxy know of is exported, at 0 until it
// happens, so that rate and increase see the first drops of a reason.
//
// The daemon's own figures come from client_golang's process and Go
// collectors over HTTP (process_resident_memory_bytes, go_goroutines); in
// the text dump, which the vif command writes and not the daemon, from
// the daemon's answer: vif_daemon_resident_memory_bytes and
// vif_daemon_goroutines.
package metrics
