// Package daemon is vif's per-network-namespace daemon: it owns every vif
// of its namespace, one ARP responder per slave interface shared by the
// vifs on that slave, and a control socket the vif command talks to.
//
// Requests and responses are JSON documents, one of each per connection
// of the control socket (package control), which serves only root.
package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vif-project/vif/vif"
)

// Operations of a Request.
const (
	OpUp   = "up"
	OpDown = "down"
	OpShow = "show"
	OpSet  = "set"
	// OpApply brings the namespace's vifs to Request.Vifs (Daemon.Apply).
	OpApply = "apply"
	// OpCapture streams the outer packets of the vif Request.Name
	// (capture.go); only StreamHandler serves it.
	OpCapture = "capture"
)

// maxRequest bounds a request's size; a larger one is refused.
const maxRequest = 1 << 20

// Request is one control request.
type Request struct {
	Op string `json:"op"`
	// Name selects a vif for down and show (empty: all, for show).
	Name string `json:"name,omitempty"`
	// Up describes the vif to create, for up; zero fields take the
	// library's defaults (vif.LinkConfig.Resolve).
	Up *vif.LinkConfig `json:"up,omitempty"`
	// Force, for up, claims the addresses without first asking the
	// segment whether another host uses them.
	Force bool `json:"force,omitempty"`
	// OuterFragments, for up and set mtu: see Spec.OuterFragments.
	OuterFragments bool `json:"outer_fragments,omitempty"`
	// For set, one change of the vif Name: Peer, the peer to add or
	// change; Addr, an address to add; Route, a prefix to route into the
	// vif; MTU, its new MTU. With Remove, the peer (Peer.Addr), address or
	// route goes.
	Peer   *vif.Peer     `json:"peer,omitempty"`
	Addr   *netip.Prefix `json:"addr,omitempty"`
	Route  *netip.Prefix `json:"route,omitempty"`
	MTU    int           `json:"mtu,omitempty"`
	Remove bool          `json:"remove,omitempty"`
	// Vifs, for apply, are every vif the namespace should have.
	Vifs []Spec `json:"vifs,omitempty"`
	// Config, for show, asks for each vif's Spec (VifStatus.Config).
	Config bool `json:"config,omitempty"`
	// Direction, for capture, is "in", "out" or "both" (empty).
	Direction string `json:"direction,omitempty"`
	// Deadline, if set, is when the command stops waiting: a request
	// taken later is refused without effect.
	Deadline time.Time `json:"deadline,omitzero"`
}

// Response answers a Request.
type Response struct {
	OK     bool        `json:"ok"`
	Error  string      `json:"error,omitempty"`
	Vifs   []VifStatus `json:"vifs,omitempty"`
	Daemon *Info       `json:"daemon,omitempty"`
	// Refused is set with Error when the request was refused as bad
	// input (Refused), nothing changed: the command exits with status 2.
	Refused bool `json:"refused,omitempty"`
	// Changes lists what an apply changed, one line each.
	Changes []string `json:"changes,omitempty"`
}

// Spec is a vif as "vif up" or a configuration file asks for it: its
// LinkConfig before the defaults fill it in (vif.LinkConfig.Resolve; an
// empty Slave is the default route's interface, a zero MTU the slave's
// minus 20), and Force to claim its addresses without first asking the
// segment whether another host uses them.
type Spec struct {
	vif.LinkConfig
	Force bool `json:"force,omitempty"`
	// OuterFragments allows a tunnel an MTU larger than its slave
	// carries (with the outer header): larger packets go in outer
	// fragments.
	OuterFragments bool `json:"outer_fragments,omitempty"`
}

// Info describes the daemon process.
type Info struct {
	PID int    `json:"pid"`
	Log string `json:"log,omitempty"`
	// Foreground is set when the daemon is a "vif up --foreground": its
	// vifs go when that process stops.
	Foreground bool `json:"foreground,omitempty"`
	// Serve is set, with Foreground, when the daemon is a "vif serve".
	Serve bool `json:"serve,omitempty"`
	// Goroutines and RSSKiB are sampled at each show request, for
	// watching the daemon over time (soak tests, monitoring).
	Goroutines int `json:"goroutines"`
	RSSKiB     int `json:"rss_kib"`
}

// VifStatus is what "vif show --json" prints for one vif. Its JSON form is
// stable: fields are only ever added.
type VifStatus struct {
	Name  string         `json:"name"`
	Addrs []netip.Prefix `json:"addrs"`
	// Ranges are the prefixes the vif owns whole, but Exclude (addresses
	// other hosts on the segment use).
	Ranges   []netip.Prefix `json:"ranges,omitempty"`
	Exclude  []netip.Addr   `json:"exclude,omitempty"`
	Slave    string         `json:"slave,omitempty"`
	Local    netip.Addr     `json:"local,omitzero"`
	Peer     netip.Addr     `json:"peer,omitzero"`
	Protocol uint8          `json:"protocol"`
	MTU      int            `json:"mtu"`
	Routes   []netip.Prefix `json:"routes"`
	ARPProxy bool           `json:"arp_proxy"`
	// Underlay tells what carries the tunnel: "xdp" or "raw", and why
	// not "xdp" when vif chose.
	Underlay vif.UnderlayInfo `json:"underlay,omitzero"`
	// Offload is set when tc programs in the kernel carry the tunnel's
	// common case (vif up --offload).
	Offload bool `json:"offload,omitempty"`
	// Peers are the tunnel's peers with their counters; Peer is the only
	// one, or else the one that takes every destination no other takes
	// (0.0.0.0/0), if any. Routes lists the routes vif installed: --route
	// and the peers' prefixes.
	Peers []PeerStatus `json:"peers,omitempty"`
	// Forward lists the inner destinations, besides Addrs, that
	// decapsulated packets may have (vif up --forward).
	Forward []netip.Prefix `json:"forward,omitempty"`
	// LocalMissing is set while the tunnel is paused: Local is gone from
	// the host (and, when vif chose it, the slave has no other IPv4
	// address). Packets to the peer are dropped meanwhile (tx_no_local).
	LocalMissing bool `json:"local_missing,omitempty"`
	// AddrsMissing and RoutesMissing list what the vif installed and
	// another tool removed (Addrs and Routes are what the kernel has).
	AddrsMissing  []netip.Prefix `json:"addrs_missing,omitempty"`
	RoutesMissing []netip.Prefix `json:"routes_missing,omitempty"`
	Counters      Counters       `json:"counters"`
	// XDP holds the counters of the tunnel's AF_XDP underlay; present
	// exactly when Underlay.Kind is "xdp".
	XDP *XDPCounters `json:"xdp,omitempty"`
	// Warnings say what in the host's settings keeps the vif from
	// working as configured (vif.HostWarnings), at up.
	Warnings []string `json:"warnings,omitempty"`
	// ARP holds the counters of the ARP responder of the vif's slave,
	// shared by every vif on that slave; nil without an ARP proxy.
	ARP *ARPCounters `json:"arp,omitempty"`
	// NDP holds the counters of the NDP proxy of the vif's slave, shared
	// like ARP's; nil until an IPv6 address is published on the slave.
	NDP *NDPCounters `json:"ndp,omitempty"`
	// Config is the vif as a configuration would ask for it, when the
	// show request asked (Request.Config).
	Config *Spec `json:"config,omitempty"`
}

// PeerStatus is a peer of a vif, with its counters.
type PeerStatus struct {
	Addr                netip.Addr     `json:"addr"`
	Prefixes            []netip.Prefix `json:"prefixes"`
	EncapsulatedPackets uint64         `json:"encapsulated_packets"`
	EncapsulatedBytes   uint64         `json:"encapsulated_bytes"`
	DecapsulatedPackets uint64         `json:"decapsulated_packets"`
	DecapsulatedBytes   uint64         `json:"decapsulated_bytes"`
	// PathMTU is the tunnel MTU towards the peer (inner packets).
	PathMTU int `json:"path_mtu"`
}

// Counters are a vif's packet counters.
type Counters struct {
	LoopedPackets       uint64 `json:"looped_packets"`
	LoopedBytes         uint64 `json:"looped_bytes"`
	EncapsulatedPackets uint64 `json:"encapsulated_packets"`
	EncapsulatedBytes   uint64 `json:"encapsulated_bytes"`
	// FragmentedPackets counts the packets sent in outer fragments (each
	// fragment counts in EncapsulatedPackets).
	FragmentedPackets   uint64            `json:"fragmented_packets"`
	DecapsulatedPackets uint64            `json:"decapsulated_packets"`
	DecapsulatedBytes   uint64            `json:"decapsulated_bytes"`
	Dropped             uint64            `json:"dropped"`
	Drops               map[string]uint64 `json:"drops"`
	// ICMPSent counts ICMP errors sent back to senders, generated or
	// relayed from inside the tunnel; ICMPLimited those rate-limited.
	ICMPSent    uint64 `json:"icmp_sent"`
	ICMPLimited uint64 `json:"icmp_limited"`
}

// XDPCounters are the counters of a vif's AF_XDP underlay (vif.XDPStats),
// in packets, outer headers included; they are the underlay's and count
// what the loop then drops too.
type XDPCounters struct {
	// RxXDP and TxXDP count outer packets received and sent through the
	// AF_XDP sockets.
	RxXDP uint64 `json:"rx_xdp_packets"`
	TxXDP uint64 `json:"tx_xdp_packets"`
	// RxRaw counts outer packets received from the raw IP sockets
	// instead (what the XDP program passed to the kernel); TxRaw those
	// sent through them (when the Ethernet path cannot take a packet).
	RxRaw uint64 `json:"rx_raw_packets"`
	TxRaw uint64 `json:"tx_raw_packets"`
	// Dropped counts packets the kernel steered to an AF_XDP socket and
	// dropped, its rings full.
	Dropped uint64 `json:"dropped_packets"`
}

// ARPCounters are the counters of an ARP responder.
type ARPCounters struct {
	Requests       uint64            `json:"requests"`
	Replies        uint64            `json:"replies"`
	ProbesAnswered uint64            `json:"probes_answered"`
	Announcements  uint64            `json:"announcements"`
	NotOwned       uint64            `json:"not_owned"`
	Conflicts      uint64            `json:"conflicts"`
	RateLimited    uint64            `json:"rate_limited"`
	SocketDrops    uint64            `json:"socket_drops"`
	Dropped        uint64            `json:"dropped"`
	Drops          map[string]uint64 `json:"drops"`
}

// checkUp checks the vif c asked for by up or apply.
func checkUp(c *vif.LinkConfig) error {
	if c.Name == "" || len(c.Addrs)+len(c.Ranges) == 0 {
		return fmt.Errorf("%w: up needs a name and an address", ErrBadRequest)
	}
	for _, p := range c.Addrs {
		if !p.IsValid() {
			return fmt.Errorf("%w: address %v is not valid", ErrBadRequest, p)
		}
	}
	for _, p := range c.Routes {
		if !p.IsValid() || p.Addr().Is4In6() {
			return fmt.Errorf("%w: route %v is not IPv4 nor IPv6", ErrBadRequest, p)
		}
	}
	return nil
}

// NDPCounters are the counters of an NDP proxy (package ndpproxy).
type NDPCounters struct {
	Solicitations uint64            `json:"solicitations"`
	Replies       uint64            `json:"replies"`
	DADAnswered   uint64            `json:"dad_answered"`
	Announcements uint64            `json:"announcements"`
	NotOwned      uint64            `json:"not_owned"`
	Conflicts     uint64            `json:"conflicts"`
	RateLimited   uint64            `json:"rate_limited"`
	Dropped       uint64            `json:"dropped"`
	Drops         map[string]uint64 `json:"drops"`
	// Groups is the number of solicited-node groups joined;
	// AllMulticast is set while the slave receives all multicast for an
	// IPv6 range too large to join a group per address.
	Groups       int  `json:"groups"`
	AllMulticast bool `json:"all_multicast"`
}

// ErrBadRequest is returned by DecodeRequest for a malformed request.
var ErrBadRequest = errors.New("daemon: bad request")

// DecodeRequest parses and checks one request. Unknown fields, unknown
// operations and missing arguments are errors wrapping ErrBadRequest.
func DecodeRequest(b []byte) (Request, error) {
	var r Request
	if len(b) > maxRequest {
		return r, fmt.Errorf("%w: larger than %d bytes", ErrBadRequest, maxRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if dec.More() {
		return Request{}, fmt.Errorf("%w: trailing data", ErrBadRequest)
	}
	switch r.Op {
	case OpUp:
		if r.Up == nil {
			return Request{}, fmt.Errorf("%w: up needs a name and an address", ErrBadRequest)
		}
		if err := checkUp(r.Up); err != nil {
			return Request{}, err
		}
	case OpApply:
		seen := make(map[string]bool, len(r.Vifs))
		for k := range r.Vifs {
			if err := checkUp(&r.Vifs[k].LinkConfig); err != nil {
				return Request{}, err
			}
			if seen[r.Vifs[k].Name] {
				return Request{}, fmt.Errorf("%w: vif %s given twice", ErrBadRequest, r.Vifs[k].Name)
			}
			seen[r.Vifs[k].Name] = true
		}
	case OpDown:
		if r.Name == "" {
			return Request{}, fmt.Errorf("%w: down needs a name", ErrBadRequest)
		}
	case OpSet:
		n := 0
		for _, set := range []bool{r.Peer != nil, r.Addr != nil, r.Route != nil, r.MTU != 0} {
			if set {
				n++
			}
		}
		if r.Name == "" || n != 1 {
			return Request{}, fmt.Errorf("%w: set needs a name and one change: a peer, an address, a route or an MTU", ErrBadRequest)
		}
		if r.Peer != nil && (!r.Peer.Addr.IsValid() || r.Peer.Addr.Is4In6()) {
			return Request{}, fmt.Errorf("%w: the peer's address is not IPv4 nor IPv6", ErrBadRequest)
		}
		var ps []netip.Prefix
		if r.Peer != nil {
			ps = r.Peer.Prefixes
		}
		if r.Route != nil {
			ps = append(ps, *r.Route)
		}
		if r.Addr != nil && !r.Addr.IsValid() {
			return Request{}, fmt.Errorf("%w: address %v is not valid", ErrBadRequest, *r.Addr)
		}
		for _, p := range ps {
			if !p.IsValid() || p.Addr().Is4In6() {
				return Request{}, fmt.Errorf("%w: prefix %v is not IPv4 nor IPv6", ErrBadRequest, p)
			}
		}
	case OpCapture:
		if r.Name == "" {
			return Request{}, fmt.Errorf("%w: capture needs a name", ErrBadRequest)
		}
		if _, err := vif.ParseDirection(r.Direction); err != nil {
			return Request{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
	case OpShow:
	default:
		return Request{}, fmt.Errorf("%w: unknown operation %q", ErrBadRequest, r.Op)
	}
	return r, nil
}
