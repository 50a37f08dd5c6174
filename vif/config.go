package vif

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"

	"github.com/vif-project/vif/internal/inet"
	"github.com/vif-project/vif/ipip"
)

// Config configures the packet loop of an Interface (New). It is also the
// heart of LinkConfig, which Up takes. A nil *Config is not valid for New:
// an interface needs at least one address. Its JSON form is what the vif
// daemon is asked for.
type Config struct {
	// Addrs are the interface's own addresses. Packets read from the TUN
	// for one of them are looped back into it; decapsulated packets are
	// delivered only when their inner destination is one of them. The
	// loop uses the addresses; Up also installs the prefixes: a /32 is a
	// host address only, a shorter prefix also routes that network into
	// the vif.
	Addrs []netip.Prefix `json:"addrs"`
	// Ranges are whole prefixes the interface owns, every address in
	// them (but Exclude) as if it were in Addrs, at the cost of one
	// address: Up makes each local to the host with one route (as "ip
	// route add local PREFIX dev NAME" does) and, with Publish, the ARP
	// proxy answers for all of an IPv4 range but the network and
	// broadcast addresses, the NDP proxy for all of an IPv6 range but
	// its Subnet-Router anycast address (the first, RFC 4291 section
	// 2.6.1), which is not the interface's either. A range must not hold
	// an address of the host. IPv4 ranges are /8 or longer, IPv6 ones
	// MinRangeBits6 or longer.
	Ranges []netip.Prefix `json:"ranges,omitempty"`
	// Exclude lists addresses of Ranges that are not the interface's:
	// other hosts on the slave's segment use them. They are neither
	// looped back, decapsulated to nor published, and Up routes them to
	// the slave's segment. The vif daemon adds those its probe finds.
	Exclude []netip.Addr `json:"exclude,omitempty"`
	// Local is this host's underlay address, the outer source of
	// encapsulated packets, IPv4 or IPv6: the tunnel's underlay family
	// (RFC 2473 over IPv6), which every peer's address must share. New
	// requires it with a Peer; Up defaults it to the slave's first IPv4
	// address, or its first global IPv6 address when the peers are IPv6.
	Local netip.Addr `json:"local,omitzero"`
	// Peer is the underlay address of the tunnel's other end when there
	// is one: the peer of every IPv4 packet that is not looped back, and
	// from which any IPv4 inner source is accepted (a Peer with the prefix
	// 0.0.0.0/0; IPv4 only: IPv6 goes to a peer of Peers with an IPv6
	// prefix, ::/0 for all of it). Peers holds more.
	Peer netip.Addr `json:"peer,omitzero"`
	// Peers are the tunnel's peers, each with the inner networks behind
	// it (Peer). Without Peer or Peers the interface has no peer: packets
	// for other destinations are dropped and nothing is decapsulated.
	// Peers can be changed on a running interface (SetPeer, RemovePeer)
	// when it has a tunnel: a peer or a Local address.
	Peers []Peer `json:"peers,omitempty"`
	// Forward lists the inner destinations, besides Addrs, that
	// decapsulated packets may have: they are handed to the kernel, which
	// routes them on (with net.ipv4.ip_forward=1), as a site-to-site
	// gateway does. IPv6 prefixes are for 6in4 packets (with
	// net.ipv6.conf.all.forwarding=1). Empty by default: a vif relays
	// nothing (CVE-2020-10136).
	Forward []netip.Prefix `json:"forward,omitempty"`
	// Protocol is the outer IP protocol of IPv4 inner packets,
	// ipip.ProtoIPIP (94, the default when zero over IPv4) or
	// ipip.ProtoIPinIP (4). Over an IPv6 underlay it is 4, the default
	// there: protocol 94 is an IPv4 encapsulation, and asking for it with
	// an IPv6 local or peer address fails with ErrProtocolFamily. IPv6
	// inner packets are always carried as protocol 41.
	Protocol uint8 `json:"protocol,omitempty"`
	// TTL is the outer TTL; zero means ipip.DefaultTTL. InheritTTL copies
	// the inner TTL instead.
	TTL        uint8 `json:"ttl,omitempty"`
	InheritTTL bool  `json:"inherit_ttl,omitempty"`
	// PathMTU, when set, returns the path MTU of the underlay towards a
	// peer (outer packets), as the kernel learns it from ICMP
	// "fragmentation needed". The loop asks when the underlay refuses a
	// packet as too big, and now and then afterwards; the tunnel MTU
	// towards that peer is that minus 20. Up sets it; nil means the path
	// MTU is the device's.
	PathMTU func(peer netip.Addr) (int, error) `json:"-"`
	// Logger receives lifecycle messages and recovered errors; nil
	// discards them. Nothing is logged per packet.
	Logger *slog.Logger `json:"-"`
}

// LinkConfig describes a vif to create on this host with Up: the packet
// loop's Config and what Up installs around it. Zero fields take their
// defaults, which Resolve fills in; Interface.Link returns the result.
type LinkConfig struct {
	// Name is the interface name, such as "vif0" (at most 15 bytes).
	Name string `json:"name"`
	Config
	// Slave is the physical interface the tunnel runs over and the
	// addresses are published on. Default, when there is a Peer or
	// Publish: the interface of the IPv4 default route.
	Slave string `json:"slave,omitempty"`
	// Routes are prefixes routed into the vif (and so to the peer).
	Routes []netip.Prefix `json:"routes,omitempty"`
	// MTU of the vif; zero means the slave's MTU minus 20 (the outer
	// header), or 1480 without a slave.
	MTU int `json:"mtu,omitempty"`
	// Publish makes the addresses reachable from the slave's segment: an
	// ARP proxy answers for the IPv4 ones and an NDP proxy (package
	// ndpproxy, RFC 4861) for the IPv6 ones with the slave's MAC, and
	// announces them, for as long as the interface lives. Up opens them
	// on the slave unless Publisher is set (the NDP proxy only for the
	// first IPv6 address; it needs the slave's link-local address). Up does not ask the segment first whether
	// another host uses the addresses: call arpproxy.Responder.Probe
	// before Up for that (RFC 5227), as the vif daemon does.
	Publish bool `json:"publish,omitempty"`
	// Underlay chooses what carries the tunnel's outer packets:
	// UnderlayAuto (the zero value), UnderlayXDP or UnderlayRaw.
	// Interface.Underlay tells which one is in use, and why.
	Underlay string `json:"underlay,omitempty"`
	// Offload moves the packet loop's common case into the kernel: tc
	// programs on the vif's egress and the slave's ingress encapsulate
	// to the peers and decapsulate from them under the loop's rules, and
	// hand everything else to the loop (package internal/offload). It
	// needs a tunnel, CAP_BPF and a kernel with TCX (Linux 6.6). The
	// loop's packets leave through AF_XDP where it runs (UnderlayAuto,
	// UnderlayXDP: transmit only, UnderlayInfo.TransmitOnly) or the raw
	// socket (UnderlayRaw); the loop receives from the raw sockets, what
	// the program on the slave's ingress passes. Stats and Peers count
	// the offloaded traffic with the loop's.
	Offload bool `json:"offload,omitempty"`
	// Publisher, when set with Publish, is the ARP proxy to publish
	// through, such as an *arpproxy.Responder shared by the vifs of one
	// slave.
	Publisher Publisher `json:"-"`
}

// Publisher publishes addresses on the slave's segment, so neighbours send
// their packets for them to this host. *arpproxy.Responder implements it:
// Add answers ARP for the address (and announces it), Remove stops;
// AddRange answers for a whole prefix but the excluded addresses,
// RemoveRange stops.
type Publisher interface {
	Add(addr netip.Addr) error
	Remove(addr netip.Addr)
	AddRange(p netip.Prefix, exclude []netip.Addr) error
	RemoveRange(p netip.Prefix)
}

// The underlays of LinkConfig.Underlay.
const (
	// UnderlayAuto uses UnderlayXDP where it works and falls back to
	// UnderlayRaw, per peer, where it does not.
	UnderlayAuto = ""
	// UnderlayXDP moves outer packets through AF_XDP sockets on the
	// slave, past the kernel's IP stack: neither tcpdump on the slave nor
	// netfilter sees them.
	UnderlayXDP = "xdp"
	// UnderlayRaw moves outer packets through raw IP sockets and the
	// kernel's IP stack.
	UnderlayRaw = "raw"
)

// Errors of New, Up and Resolve.
var (
	// ErrNoAddress is returned when a Config has no address.
	ErrNoAddress = errors.New("vif: no address configured")
	// ErrBadAddress is returned for an address that is not a unicast
	// IPv4 address (see IsHostAddr).
	ErrBadAddress = errors.New("vif: not a unicast address")
	// ErrBadProtocol is returned for a protocol other than 94 or 4.
	ErrBadProtocol = errors.New("vif: protocol must be 94 or 4")
	// ErrProtocolFamily is returned for protocol 94 with an IPv6 underlay
	// (local or peer address): 94 was defined for IPv4 only; over IPv6
	// IPv4 is carried as protocol 4 (RFC 2473).
	ErrProtocolFamily = errors.New("vif: protocol 94 is IPv4-only")
	// ErrFamily is returned when a tunnel's addresses are not all of one
	// family: the local address and every peer's are IPv4, or all are
	// IPv6.
	ErrFamily = errors.New("vif: the local and peer addresses of a tunnel must be of one family")
	// ErrNoLocal is returned when a peer is set without a local address.
	ErrNoLocal = errors.New("vif: a peer needs a local underlay address")
	// ErrBadName is returned for an interface name that Linux would refuse.
	ErrBadName = errors.New("vif: bad interface name")
	// ErrExists is returned when an interface of that name already exists.
	ErrExists = errors.New("vif: interface already exists")
	// ErrNoSlave is returned when the slave interface does not exist.
	ErrNoSlave = errors.New("vif: no such slave interface")
	// ErrBadMTU is returned for an MTU outside MinMTU..MaxMTU.
	ErrBadMTU = errors.New("vif: MTU out of range")
	// ErrBadUnderlay is returned for an unknown LinkConfig.Underlay, or
	// an underlay that cannot run on the slave.
	ErrBadUnderlay = errors.New("vif: bad underlay")
	// ErrBadRange is returned for a range that cannot be the vif's.
	ErrBadRange = errors.New("vif: bad range")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// CheckName returns an error wrapping ErrBadName if name is not usable as
// a Linux interface name.
func CheckName(name string) error {
	if !nameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%w %q: use 1 to 15 letters, digits, '.', '-' or '_'", ErrBadName, name)
	}
	return nil
}

// CheckUnderlay returns an error wrapping ErrBadUnderlay when c's
// Underlay and Offload cannot carry its tunnel on any host: an unknown
// Underlay; UnderlayXDP or Offload without a tunnel; Offload for a tunnel
// over IPv6 (its programs carry IPv4 outer packets only). Offload over
// UnderlayXDP sends the loop's packets through AF_XDP and receives
// through the kernel. Resolve and Up call it; whether AF_XDP runs on the
// slave only Up finds.
func (c *LinkConfig) CheckUnderlay() error {
	switch c.Underlay {
	case UnderlayAuto, UnderlayXDP, UnderlayRaw:
	default:
		return fmt.Errorf("%w %q: use %q or %q, or none to choose", ErrBadUnderlay, c.Underlay, UnderlayXDP, UnderlayRaw)
	}
	if c.Underlay != UnderlayXDP && !c.Offload {
		return nil
	}
	what := "--underlay xdp"
	if c.Offload {
		what = "--offload"
	}
	switch {
	case !c.HasTunnel():
		return fmt.Errorf("%w: %s needs a tunnel: give a peer", ErrBadUnderlay, what)
	case c.Offload && c.underlay6():
		return fmt.Errorf("%w: %s carries tunnels over IPv4 only; leave it out for a tunnel over IPv6", ErrBadUnderlay, what)
	}
	return nil
}

// protocol returns the outer protocol, its default filled in: 94 over
// IPv4, 4 over IPv6.
func (c *Config) protocol() uint8 {
	if c.Protocol == 0 {
		if c.underlay6() {
			return ipip.ProtoIPinIP
		}
		return ipip.ProtoIPIP
	}
	return c.Protocol
}

// underlay6 reports whether c's tunnel runs over IPv6: its local address
// is IPv6, or without one its first peer's.
func (c *Config) underlay6() bool {
	switch {
	case c.Local.IsValid():
		return c.Local.Is6()
	case c.Peer.IsValid():
		return c.Peer.Is6()
	}
	return len(c.Peers) > 0 && c.Peers[0].Addr.Is6()
}

// family names the underlay's IP version.
func family(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// protocolFamilyError is the error for protocol 94 over the IPv6 underlay
// address a: it says what to ask for instead.
func protocolFamilyError(a netip.Addr) error {
	return fmt.Errorf("%w: the tunnel's underlay is IPv6 (%s), which carries IPv4 as protocol 4 (RFC 2473): use --proto 4, or no --proto", ErrProtocolFamily, a)
}

// checkFamily returns an error wrapping ErrFamily unless local (if valid)
// and every peer of peers are addresses of one family.
func checkFamily(peers []Peer, local netip.Addr) error {
	first := local
	what := "the local address"
	for _, p := range peers {
		if !first.IsValid() {
			first, what = p.Addr, "peer "+p.Addr.String()
			continue
		}
		if p.Addr.Is4() != first.Is4() {
			return fmt.Errorf("%w: peer %s is %s, %s (%s) is %s: a tunnel runs over IPv4 or over IPv6, not both (make another vif for the other)",
				ErrFamily, p.Addr, family(p.Addr.Is6()), what, first, family(first.Is6()))
		}
	}
	return nil
}

// check validates c, its defaults filled in, as New needs it.
func (c *Config) check() error {
	if len(c.Addrs) == 0 && len(c.Ranges) == 0 {
		return ErrNoAddress
	}
	for _, p := range c.Ranges {
		if err := checkRange(p); err != nil {
			return err
		}
	}
	for _, p := range c.Addrs {
		if !p.IsValid() || !IsHostAddr(p.Addr()) {
			return fmt.Errorf("%w: %s", ErrBadAddress, p)
		}
		if p.Addr().Is6() && p.Bits() != 128 {
			// A shorter prefix would route the rest of it into the vif;
			// IPv6 networks behind peers are the peers' prefixes.
			return fmt.Errorf("%w: %s: give an IPv6 address as /128 (networks behind a peer are its prefixes)", ErrBadAddress, p)
		}
		if why := edgeOf(p); why != "" {
			rfc := "RFC 1122 section 3.2.1.3"
			if p.Addr().Is6() {
				rfc = "RFC 4291 section 2.6.1"
			}
			return fmt.Errorf("%w: %s is the %s address of %s (%s)", ErrBadAddress, p.Addr(), why, p.Masked(), rfc)
		}
	}
	if p := c.protocol(); p != ipip.ProtoIPIP && p != ipip.ProtoIPinIP {
		return ErrBadProtocol
	}
	peers := c.peers()
	if err := checkFamily(peers, c.Local); err != nil {
		return err
	}
	if c.protocol() == ipip.ProtoIPIP && c.underlay6() {
		a := c.Local
		if !a.IsValid() {
			a = peers[0].Addr
		}
		return protocolFamilyError(a)
	}
	if err := checkPeers(peers, c.Local); err != nil {
		return err
	}
	if err := checkOwn(peers, c.Addrs, c.Ranges); err != nil {
		return err
	}
	for _, p := range c.Forward {
		if why := badPrefix(p); why != "" {
			return fmt.Errorf("%w: forward prefix %v %s", ErrBadAddress, p, why)
		}
	}
	if len(c.Forward) > 0 && !c.HasTunnel() {
		return fmt.Errorf("%w: forwarding needs a tunnel (a peer or a local address): decapsulated packets are what is forwarded", ErrBadAddress)
	}
	if len(peers) > 0 && !c.Local.IsValid() {
		return ErrNoLocal
	}
	if c.Local.IsValid() && (!IsHostAddr(c.Local) || c.Local.Zone() != "") {
		return fmt.Errorf("%w: local %s", ErrBadAddress, c.Local)
	}
	return nil
}

// MinRangeBits6 is the shortest IPv6 prefix a range may be: a /48, the
// largest assignment to an end site that RFC 6177 considers (a /64, one
// subnet, is the common case). A range costs the same whatever its size
// (one route, one entry in the lookup tables, and all-multicast
// reception on the slave for the NDP proxy), so the limit keeps an
// operator from claiming, by a typo, more than a site can own. IPv4
// ranges may be as short as a /8.
const MinRangeBits6 = 48

// checkRange returns an error wrapping ErrBadRange if p cannot be a range
// of the vif: not a prefix of host addresses, host bits set, or shorter
// than a /8 (IPv4) or MinRangeBits6 (IPv6).
func checkRange(p netip.Prefix) error {
	switch {
	case !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "":
		return fmt.Errorf("%w %v: not an IPv4 or IPv6 prefix", ErrBadRange, p)
	case p != p.Masked():
		return fmt.Errorf("%w %s: host bits are set; did you mean %s?", ErrBadRange, p, p.Masked())
	case p.Addr().Is4() && p.Bits() < 8:
		return fmt.Errorf("%w %s: larger than a /8", ErrBadRange, p)
	case p.Addr().Is6() && p.Bits() < MinRangeBits6:
		return fmt.Errorf("%w %s: larger than a /%d, the largest end-site assignment (RFC 6177); a /64 is one subnet", ErrBadRange, p, MinRangeBits6)
	case p.Addr().Is4() && !IsHostAddr(p.Addr()):
		return fmt.Errorf("%w %s: %s", ErrBadRange, p, inet.Why(p.Addr()))
	case p.Addr().Is6():
		// Its first address, the Subnet-Router anycast one, is not
		// claimed, but it tells the range's kind: multicast,
		// link-local, loopback or unspecified ones are no host's.
		why := inet.Why6(p.Addr())
		if why == "" && p.Overlaps(v4Mapped) {
			why = "holds IPv4-mapped addresses"
		}
		if why != "" {
			return fmt.Errorf("%w %s: %s", ErrBadRange, p, why)
		}
	}
	return nil
}

// v4Mapped is ::ffff:0:0/96, the IPv4-mapped addresses (RFC 4291 section
// 2.5.5.2), which are no IPv6 host's.
var v4Mapped = netip.MustParsePrefix("::ffff:0:0/96")

// peers returns every peer of c: Peers, and Peer as the one that takes
// every destination and source the others don't.
func (c *Config) peers() []Peer {
	peers := slices.Clone(c.Peers)
	if c.Peer.IsValid() {
		peers = append(peers, Peer{Addr: c.Peer, Prefixes: []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0)}})
	}
	return peers
}

// HasTunnel reports whether an interface made from c has a tunnel (an
// underlay to send to and receive from peers): it has a peer or a Local
// address.
func (c *Config) HasTunnel() bool {
	return c.Peer.IsValid() || len(c.Peers) > 0 || c.Local.IsValid()
}

// edgeOf returns "network" or "broadcast" if p's address is the first or
// the last of its prefix, which no host may take (a /31 or /32 has no such
// addresses, RFC 3021), or "".
func edgeOf(p netip.Prefix) string {
	if p.Addr().Is6() {
		// No broadcast in IPv6; a prefix's all-zeros address is its
		// Subnet-Router anycast address (RFC 4291 section 2.6.1).
		if p.Bits() < 127 && p.Addr() == p.Masked().Addr() {
			return "Subnet-Router anycast"
		}
		return ""
	}
	if p.Bits() >= 31 {
		return ""
	}
	a := p.Addr().As4()
	host := ^uint32(0) >> p.Bits()
	switch v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]); v & host {
	case 0:
		return "network"
	case host:
		return "broadcast"
	}
	return ""
}

// DefaultMTU returns the MTU Resolve gives c's vif over a slave of MTU
// slaveMTU: the slave's less the outer header, 20 bytes or over an IPv6
// underlay 40 (RFC 2473 section 6.7), at most MaxMTU; but 1280 at least
// for a tunnel that carries IPv6 (an IPv6 address, route or peer prefix),
// which offers IPv6 its minimum MTU whatever the path, in outer fragments
// (RFC 2473 section 7.1, RFC 4213 section 3.2); the kernel turns IPv6
// off on a smaller device.
func (c *LinkConfig) DefaultMTU(slaveMTU int) int {
	outer := ipip.IPv4MinLen
	if c.underlay6() {
		outer = ipip.IPv6HeaderLen
	}
	m := min(slaveMTU-outer, MaxMTU) // loopback's 65536 leaves no room
	if m >= ipip.IPv6MinMTU || !c.HasTunnel() {
		return m
	}
	if c.carries6() {
		return ipip.IPv6MinMTU
	}
	return m
}

// carries6 reports whether c's vif carries IPv6: an IPv6 address, route
// or peer prefix.
func (c *LinkConfig) carries6() bool {
	six := func(p netip.Prefix) bool { return p.Addr().Is6() }
	return slices.ContainsFunc(c.Addrs, six) || slices.ContainsFunc(c.Routes, six) ||
		slices.ContainsFunc(c.peers(), func(p Peer) bool { return slices.ContainsFunc(p.Prefixes, six) })
}

// checkMTU6 returns an error wrapping ErrBadMTU when mtu is below IPv6's
// minimum link MTU, 1280 (RFC 8200 section 5), and c's vif carries IPv6:
// the kernel turns IPv6 off on such a device, its IPv6 addresses and
// routes gone.
func (c *LinkConfig) checkMTU6(mtu int) error {
	if mtu < ipip.IPv6MinMTU && c.carries6() {
		return fmt.Errorf("%w: %d: the vif carries IPv6, whose links need an MTU of %d at least (RFC 8200 section 5); the kernel would turn IPv6 off on it", ErrBadMTU, mtu, ipip.IPv6MinMTU)
	}
	return nil
}

// clone returns a copy of c that shares no slice with it.
func (c LinkConfig) clone() LinkConfig {
	c.Addrs = slices.Clone(c.Addrs)
	c.Routes = slices.Clone(c.Routes)
	c.Forward = slices.Clone(c.Forward)
	c.Ranges = slices.Clone(c.Ranges)
	c.Exclude = slices.Clone(c.Exclude)
	c.Peers = slices.Clone(c.Peers)
	for k := range c.Peers {
		c.Peers[k] = clonePeer(c.Peers[k])
	}
	return c
}
