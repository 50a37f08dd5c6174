// Package ipip implements IP-in-IP encapsulation of IPv4 packets: the
// IPIP protocol of John Ioannidis' VIF (IP protocol 94) and IP
// Encapsulation within IP as described in RFC 2003 (IP protocol 4).
//
// The package is a pure codec: it performs no I/O, starts no goroutines,
// never logs and never allocates. Packets are handled in place:
//
//   - Encapsulator.Encap writes the outer IPv4 header into the IPv4MinLen
//     bytes of headroom in front of the inner packet, so the payload is never
//     copied.
//   - Decap validates an outer packet and returns the inner packet as a
//     sub-slice of its argument (it aliases the caller's buffer).
//
// The rules applied are those of RFC 2003 section 3.1 (the outer
// Don't Fragment bit mirrors the inner one, the outer TTL is fixed or
// inherited, decapsulation leaves the inner TTL alone) and the normal mode
// of RFC 6040 for ECN (encapsulation copies the inner ECN field;
// decapsulation combines the outer and inner fields by the table of RFC
// 6040 section 4.2, dropping outer CE over inner Not-ECT). At most one
// level of encapsulation is undone per packet: an inner packet that is
// itself IPIP is rejected, so nested tunnels can't be used to loop or
// amplify traffic.
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
