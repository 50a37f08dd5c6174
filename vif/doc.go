// Package vif implements virtual network interfaces in the manner of John
// Ioannidis' VIF (1991): an interface that answers on its own IPv4
// addresses, loops back packets addressed to them, and tunnels every other
// packet in IPIP — IP protocol 94, or 4 as in RFC 2003 — to a peer, which
// decapsulates it.
//
// An Interface is a packet loop between a TUN device (a tun.Device of
// golang.zx2c4.com/wireguard/tun, with its batch I/O and offloads) and an
// Underlay that carries encapsulated packets to and from the peer:
//
//   - New runs the loop over any device and underlay, for tools that bring
//     their own (and for tests: see package viftest);
//   - Up creates everything on this host: the TUN device, its addresses and
//     routes through netlink, the underlay — AF_XDP sockets on the slave
//     (ListenXDP) where they work, the raw IP sockets (ListenUnderlay)
//     otherwise, as LinkConfig.Underlay asks and Interface.Underlay tells —
//     and the publication of the addresses on the slave's segment (an ARP
//     proxy such as *arpproxy.Responder, through the Publisher interface).
//
// # Rules
//
// Reading from the TUN, a packet for one of the interface's addresses is
// written back into it; any other is encapsulated (package ipip: outer DF
// copied from the inner packet, ECN copied, RFC 6040) and sent to the
// peer, unless there is no peer or its destination is the peer's own
// underlay address (a loop). Reading from the underlay, a packet is
// decapsulated only when its outer source is the configured peer, its
// inner destination one of the interface's addresses (no open relay,
// CVE-2020-10136), and its inner source a plausible remote unicast
// address; at most one level of IPIP is undone. Every dropped packet is
// counted by reason (Stats); the loop never logs per packet and never
// stops for a bad one.
//
// # Seeing the tunnel
//
// Interface.Capture copies the outer packets at the boundary between the
// loop and the underlay — after encapsulation, before decapsulation — to
// a channel, whatever the underlay: an underlay that bypasses the host's
// IP stack (AF_XDP) hides them from tcpdump on the slave. While no capture
// runs this costs the loop one atomic load per batch.
//
// # Concurrency, buffers and headroom
//
// The loop runs one goroutine per direction and allocates its buffers once:
// in steady state it does not allocate. Packets are read at offset
// Headroom so that the outer header (20 bytes, 40 over an IPv6 underlay)
// and the TUN's virtio header (10 bytes) are written in place; a tun.Device or Underlay given to New
// must accept that offset. Methods of Interface are safe for concurrent
// use; Close is idempotent and undoes everything the interface installed.
package vif
