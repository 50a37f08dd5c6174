// Package craft builds IPv4, IPIP and ARP packets byte by byte and sends
// them from inside a network namespace, for tests that attack vif on the
// wire: packets from strangers, spoofed peers, malformed and nested
// headers, ECN combinations (RFC 6040) and ARP floods.
//
// The builders write every field themselves and never use the ipip codec,
// so that a bug in the codec cannot hide in the test that checks it. A
// packet is plain bytes: a test that wants it malformed builds it valid
// and then breaks it (SetHeaderLen, Truncate, a flipped byte), fixing the
// header checksum with SetChecksum where only one fault is wanted.
//
// RawConn sends complete IPv4 packets with IP_HDRINCL (raw(7)) and
// EtherConn complete Ethernet frames on an AF_PACKET socket
// (github.com/mdlayher/packet). Both belong to the network namespace of
// the thread that opens them: open them inside nstest's Host.Do, use them
// from anywhere. Both need CAP_NET_RAW.
//
// With IP_HDRINCL the Linux kernel rewrites the Total Length and the
// header checksum of every packet whose IHL is at least 5, and fills in a
// zero Identification; a fault in those fields, or an IHL below 5, can
// only be sent as an Ethernet frame (EtherConn with Ethernet). The
// receiving kernel drops such outer headers itself (ip_rcv), before any
// raw socket sees them; the inner header, which the kernel never looks
// at, is where the tunnel's own checks are tested.
package craft
