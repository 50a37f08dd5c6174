// Package ipip implements IP-in-IP encapsulation: the IPIP protocol of
// John Ioannidis' VIF (IP protocol 94) and IP Encapsulation within IP as
// described in RFC 2003 (IP protocol 4) for IPv4 in IPv4; IPv6 in IPv4
// (protocol 41, "6in4", RFC 4213 section 3); and IPv4 and IPv6 in IPv6
// (next header 4 and 41, RFC 2473).
//
// The package is a pure codec: it performs no I/O, starts no goroutines,
// never logs and never allocates. Packets are handled in place:
//
//   - Encapsulator.Encap (an IPv4 inner packet) and Encapsulator.EncapIPv6
//     (an IPv6 one) write the outer header into the headroom in front of
//     the inner packet, so the payload is never copied. The outer header is
//     IPv4 or IPv6 as the Encapsulator's endpoints are; it needs IPv4MinLen
//     (20) or IPv6HeaderLen (40) bytes of headroom.
//   - Decap (an IPv4 outer packet) and DecapIPv6 (an IPv6 one) validate an
//     outer packet and return the inner packet as a sub-slice of their
//     argument (it aliases the caller's buffer). The protocol they are
//     given says what the inner packet is: IPv4 for 94 and 4, IPv6 for 41.
//
// Lengths are in bytes throughout; Fragment's offsets are the header's
// 8-byte units.
//
// The rules applied:
//
//   - IPv4 in IPv4: RFC 2003 section 3.1 (the outer Don't Fragment bit
//     mirrors the inner one, the outer TTL is fixed or inherited,
//     decapsulation leaves the inner TTL alone, an inner TTL of 0 is
//     neither encapsulated nor passed).
//   - IPv6 in IPv4: RFC 4213. The outer TTL is fixed or inherited (section
//     3.3); Don't Fragment is set on packets longer than IPv6MinMTU and
//     clear on the others, the outcome of section 3.2.2's algorithm for a
//     tunnel that tracks its IPv4 path MTU, once the caller has answered a
//     packet larger than both the tunnel MTU and IPv6MinMTU with
//     PacketTooBig; the inner length is the IPv6 payload length, as the
//     IPv4 packet may be padded (section 3.6).
//   - Over IPv6: RFC 2473. The outer Hop Limit is fixed (DefaultTTL, 64,
//     section 6.3) or inherited, the Traffic Class is the inner TOS or
//     Traffic Class, and the Flow Label is a hash of the inner flow (RFC
//     6438). Protocol 94 was defined for IPv4: over IPv6 an IPv4 inner
//     packet is carried as 4, as RFC 2473 carries it, and 94 is refused
//     with ErrProtocolFamily rather than sent to a peer that would not
//     expect it. DecapIPv6 accepts the tunnel protocol directly after the
//     IPv6 header only: a Fragment header is refused (ErrFragment, nothing
//     is reassembled here) and so is any other extension header
//     (ErrExtensionHeader), among them the Tunnel Encapsulation Limit
//     option of RFC 2473 section 4.1.1, which vif does not send. Jumbograms
//     (RFC 2675) are refused outside and inside (ErrJumbogram).
//   - ECN: the normal mode of RFC 6040. Encapsulation copies the inner ECN
//     field (with the whole TOS or Traffic Class byte); decapsulation
//     combines the outer and inner fields by the table of RFC 6040 section
//     4.2, dropping outer CE over inner Not-ECT, whatever the IP versions.
//   - At most one level of encapsulation is undone per packet: an inner
//     packet that is itself a tunnel packet (protocol 4, 41 or 94; for
//     IPv6 after its Hop-by-Hop, Routing, Destination Options, Fragment and
//     Authentication headers) is rejected, so nested tunnels can't be used
//     to loop or amplify traffic.
//
// ICMP errors for what a tunnel entry point cannot send: Unreachable and
// ErrorAllowed for IPv4 (RFC 792, RFC 1812), PacketTooBig, UnreachableIPv6
// and ErrorAllowedIPv6 for IPv6 (RFC 4443: at most IPv6MinMTU bytes,
// section 2.4(c); the exceptions of section 2.4(e)), with ICMPv6Checksum
// over the pseudo-header of RFC 8200 section 8.1.
//
// Every rejection is one of the Error constants, so callers can count drops
// by reason without allocating:
//
//	inner, err := ipip.Decap(pkt, ipip.ProtoIPIP)
//	if err != nil {
//		drops[err.(ipip.Error)]++
//		continue
//	}
package ipip
