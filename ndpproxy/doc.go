// Package ndpproxy answers IPv6 Neighbor Discovery for addresses this host
// publishes on an Ethernet interface, as described in RFC 4861 ("Neighbor
// Discovery for IP version 6"), and takes part in Duplicate Address
// Detection as described in RFC 4862 section 5.4. It is the IPv6
// counterpart of arpproxy, and the userspace replacement for
// "ip -6 neigh add proxy ADDR dev eth0": one Responder per slave interface
// answers Neighbor Solicitations for every vif address on that interface
// with the interface's own hardware address.
//
// The package has two layers, as arpproxy has.
//
// The core is pure and allocation-free: Frame is a view of an Ethernet II
// frame carrying an IPv6 Neighbor Solicitation or Advertisement, and
// Respond decides, from a frame, the set of owned addresses (AddrSet) and
// what the interface answers with (Self), whether to answer and writes
// the Neighbor Advertisement into a caller buffer (which may be the
// solicitation itself). It applies the validity checks of RFC 4861
// section 7.1.1 (hop limit 255, ICMPv6 checksum, code 0, length, target
// not multicast, option lengths, and the rules for solicitations from
// the unspecified address) and 7.1.2, then refuses frames that could turn
// it into a reflector (a source link-layer address other than the
// Ethernet source, a group sender address, a solicitation sent to neither
// its target nor the target's solicited-node address). It answers a
// solicitation from a unicast source with a unicast advertisement with
// the Solicited flag set, and a Duplicate Address Detection probe (source
// ::) with an advertisement to all nodes without it (RFC 4861 section
// 7.2.4). Advertisements carry a target link-layer address option and,
// since the addresses are this host's own, the Override flag (section
// 7.2.4), unless Config.Proxy says they belong to nodes that may answer
// themselves (section 7.2.8). The core never learns or caches anything
// from what it hears: unlike a node, it creates no Neighbor Cache entry.
// Every rejected frame has a DropReason.
//
// The Responder runs the core over a net.PacketConn. Listen opens an
// AF_PACKET socket on the slave with a kernel filter (Filter) that passes
// only Neighbor Solicitations and Advertisements, and ICMPv6 sockets
// (from github.com/mdlayher/ndp) through which it joins the solicited-node
// multicast group of each owned address, so that the interface accepts
// the solicitations and MLD-snooping switches forward them (RFC 4861
// section 7.2.8). A packet socket, not an ICMPv6 socket, reads the
// solicitations because the kernel hands a unicast solicitation for an
// address it does not have to no ICMPv6 socket; such solicitations are how
// neighbours confirm that an entry is still reachable. In tests, New takes
// any net.PacketConn. Addresses are added and removed at run time (Add,
// Remove), and announced with unsolicited advertisements when added, when
// the hardware address changes (SetHardwareAddr) and when the caller says
// the link came back (Announce), as RFC 4861 section 7.2.6 describes.
// Whole prefixes are published with AddRange, down to a /48 (MinRangeBits):
// a range of a /120 or longer joins the groups of its addresses; a larger
// one, whose addresses span up to all 2^24 solicited-node groups, has the
// interface receive all multicast instead, for as long as it is owned
// (GroupRangeBits says what that costs). Probe performs Duplicate Address
// Detection before the caller claims addresses; ProbeRange and ProbeAll
// return every address of a small range, or of a list, that another host
// uses. Advertisements are sent from the interface's link-local
// address. Replies are rate limited per requester and globally so that
// the proxy cannot be turned into an amplifier.
//
// The kernel must not answer for the published addresses itself: Linux
// answers a solicitation only for an address of the interface it arrives
// on (or with proxy_ndp and a proxy entry), so addresses on a vif's TUN
// device, or published without being configured at all, are answered by
// the Responder alone.
//
// Errors are prefixed with "ndpproxy: " and wrap the sentinels ErrClosed,
// ErrInvalidAddr, ErrNotOwned, ErrInterface and ErrInUse, for errors.Is.
//
// The package knows nothing of TUN devices or tunnels. As with arpproxy,
// one Responder per slave interface is meant to serve every vif on it
// (Responder has the methods of vif.Publisher), as the vif daemon does.
package ndpproxy
