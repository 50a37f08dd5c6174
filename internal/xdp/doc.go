// Package xdp moves Ethernet frames between a process and a network
// interface through AF_XDP sockets (Documentation/networking/af_xdp.rst),
// past the kernel's IP stack, and steers the frames of chosen IPv4 and
// IPv6 peers to them with an XDP program.
//
// A Socket is one UMEM (the frame memory the process shares with the
// kernel) and two sockets bound to one receive queue of an interface: one
// that receives (with the fill, completion and rx rings) and one that
// sends (its tx ring), sharing the UMEM (XDP_SHARED_UMEM). In copy mode,
// which veth and drivers without zero-copy support use, one socket for
// both directions serializes them under the socket's mutex: split, a
// receiving and a sending goroutine do not meet.
//
// A Program is the XDP program that picks what reaches a Socket: IPv4
// packets without options or fragmentation, of IP protocol 4, 41 or 94,
// and IPv6 packets without extension headers whose Next Header is 4 or 41
// (RFC 2473) and whose Hop Limit is not 0, from an accepted (source,
// destination) pair whose protocol is accepted (Program.Accept).
// Everything else — ARP, ICMP and ICMPv6 (the kernel must see
// "fragmentation needed" and Packet Too Big for its path MTU cache, and
// neighbour discovery), fragments and other extension headers, other
// hosts — goes on to the kernel (XDP_PASS), as does a packet on a queue
// without a socket. It is built with github.com/cilium/ebpf's asm package: no C
// compiler, no object file. Its link is owned by a file descriptor of this
// process: closing it, or the process dying, detaches it. Nothing is
// pinned.
//
// The rings are single-producer, single-consumer queues of free-running
// 32-bit indices shared with the kernel; ring holds the arithmetic, which
// the tests check without root.
package xdp
