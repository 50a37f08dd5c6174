// Package arpproxy answers ARP for addresses this host publishes on an
// Ethernet interface, as described in RFC 826, and defends them as described
// in RFC 5227 ("IPv4 Address Conflict Detection"). It is the userspace
// replacement for "arp -s ADDR MAC pub": one Responder per slave interface
// answers requests for every vif address on that interface with the
// interface's own hardware address.
//
// The package has two layers.
//
// The core is pure and allocation-free: Frame is a view of an Ethernet II
// frame carrying ARP for IPv4 over Ethernet, and Respond decides, from a
// frame, the set of owned addresses (AddrSet) and our hardware address,
// whether to answer and writes the reply into a caller buffer (which may be
// the request itself). It never learns or caches anything from what it
// hears: the answer depends only on the frame and the owned set. (The
// Responder's rate limiter keeps a fixed-size table of recent requesters,
// which only ever withholds replies.) Every rejected frame has a
// DropReason.
//
// The Responder runs the core over a net.PacketConn: in production an
// AF_PACKET socket from github.com/mdlayher/packet opened by Listen, with a
// kernel BPF filter (Filter) so that only ARP frames reach the process
// (malformed ARP still does, to be counted); in tests any net.PacketConn given to New. Addresses are added
// and removed at run time (Add, Remove) and announced with gratuitous ARP
// when added (RFC 5227 section 2.3). Requests for owned addresses are
// answered, including RFC 5227 probes (sender IP 0.0.0.0), which is how a
// host probing for one of our addresses learns that it is taken. Packets
// from other hosts that claim an owned address are counted and logged as
// conflicts (RFC 5227 section 2.4). Replies are rate limited per requester
// and globally so that the proxy cannot be turned into an amplifier.
//
// The package knows nothing of TUN devices or tunnels; the vif daemon
// creates one Responder per slave interface and registers the addresses of
// every vif on it.
package arpproxy
