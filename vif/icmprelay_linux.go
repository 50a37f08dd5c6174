package vif

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"github.com/vif-project/vif/ipip"
	"golang.org/x/sys/unix"
)

// ICMP errors that routers inside the tunnel return about our IPIP packets
// reach this host, not the packets' original senders. RFC 2003 section 4
// has the encapsulator relay them: the ICMP relay reads them from a raw
// ICMP socket on the slave, keeps those about this tunnel (the quoted outer
// header is ours: local to peer, our protocol), and sends the original
// sender — found in the quoted inner header — the error its packet earned:
//
//	network unreachable, network unknown    -> network unreachable
//	other destination unreachable codes     -> host unreachable
//	fragmentation needed (code 4)           -> adopt the path MTU, then
//	                                           fragmentation needed with
//	                                           the tunnel MTU
//	time exceeded (in transit)              -> host unreachable
//	source quench, redirect, anything else  -> nothing (never relayed)
type icmpRelay struct {
	f    *os.File
	rc   syscall.RawConn
	done chan struct{}
}

// startICMPRelay opens the relay's socket on slave and starts it; Close of
// the interface stops it.
func (i *Interface) startICMPRelay(slave string) error {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if i.under6 {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return fmt.Errorf("vif: ICMP relay socket: %w", err)
	}
	if slave != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, slave); err != nil {
			unix.Close(fd)
			return fmt.Errorf("vif: ICMP relay socket: %w", err)
		}
	}
	if i.under6 {
		// Only the errors the relay acts on wake it, not neighbour
		// discovery (a set bit blocks a type).
		var f unix.ICMPv6Filter
		for k := range f.Data {
			f.Data[k] = ^uint32(0)
		}
		for _, t := range []int{ipip.ICMPv6DestUnreach, ipip.ICMPv6PacketTooBig, icmpv6TimeExceeded, icmpv6ParamProblem} {
			f.Data[t>>5] &^= 1 << (t & 31)
		}
		if err := unix.SetsockoptICMPv6Filter(fd, unix.SOL_ICMPV6, unix.ICMPV6_FILTER, &f); err != nil {
			unix.Close(fd)
			return fmt.Errorf("vif: ICMPv6 relay socket: %w", err)
		}
	}
	r := &icmpRelay{f: os.NewFile(uintptr(fd), "icmp-relay"), done: make(chan struct{})}
	if r.rc, err = r.f.SyscallConn(); err != nil {
		r.f.Close()
		return err
	}
	if i.under6 {
		go i.relayICMPv6(r)
	} else {
		go i.relayICMP(r)
	}
	i.closers = append(i.closers, func() error {
		err := r.f.Close()
		<-r.done
		return err
	})
	return nil
}

// relayICMP is the relay's goroutine.
func (i *Interface) relayICMP(r *icmpRelay) {
	defer close(r.done)
	buf := make([]byte, 1500)
	out := [][]byte{make([]byte, Headroom+max(ipip.ICMPMaxErrorLen, ipip.ICMPv6MaxErrorLen))}
	var quote6 [ipip.IPv6HeaderLen + 64]byte
	var lim icmpLimiter
	for {
		n, err := r.f.Read(buf)
		if err != nil {
			if isClosed(err) {
				return
			}
			continue
		}
		e, ok := i.tunnelError(buf[:n])
		if !ok {
			continue
		}
		set := i.addrs.Load()
		if !i.relayAllowed(e, set, quote6[:]) {
			continue
		}
		if e.code == ipip.ICMPFragNeeded {
			e.mtu = i.learnPathMTU(e.peer, e.mtu)
		}
		if !i.relayLimit(&lim) {
			continue
		}
		var msg []byte
		switch dst := out[0][Headroom:]; {
		case e.inner6 == nil:
			msg = ipip.Unreachable(dst, e.inner.DstBytes(), e.inner, e.code, e.mtu)
		case e.code == ipip.ICMPFragNeeded:
			msg = ipip.PacketTooBig(dst, set.src6, e.inner6, e.mtu)
		case e.code == ipip.ICMPNetUnreach:
			msg = ipip.UnreachableIPv6(dst, set.src6, e.inner6, ipip.ICMPv6NoRoute)
		default:
			msg = ipip.UnreachableIPv6(dst, set.src6, e.inner6, ipip.ICMPv6AddrUnreach)
		}
		i.writeRelayed(out, msg)
	}
}

// relayLimit reports whether lim lets a relayed error go now, and counts
// it as icmp_limited when not.
func (i *Interface) relayLimit(lim *icmpLimiter) bool {
	if lim.allow(nanotime()) {
		return true
	}
	i.rx.icmpLimited.Add(1)
	return false
}

// writeRelayed writes msg, built in out[0][Headroom:], into the TUN and
// counts it.
func (i *Interface) writeRelayed(out [][]byte, msg []byte) {
	b := out[0]
	out[0] = b[:Headroom+len(msg)]
	if _, err := i.dev.Write(out, Headroom); err == nil {
		i.rx.icmpSent.Add(1)
	}
	out[0] = b[:cap(b)]
}

// wholeQuote copies the quoted IPv6 packet inner, cut short by the ICMP
// error that quotes it, into scratch with the payload length of what is
// left, so that it reads as a whole packet (for ErrorAllowedIPv6).
func wholeQuote(scratch, inner []byte) ipip.IPv6 {
	q := scratch[:copy(scratch, inner)]
	binary.BigEndian.PutUint16(q[4:], uint16(len(q)-ipip.IPv6HeaderLen))
	return ipip.IPv6(q)
}

// relayAllowed reports whether an error may be sent about e's inner
// packet: RFC 1812's rules for IPv4, RFC 4443 section 2.4(e)'s for IPv6,
// which needs a vif IPv6 address to send from. The IPv6 quote is cut
// short: the check reads its wholeQuote in scratch.
func (i *Interface) relayAllowed(e tunnelError, set *addrSet, scratch []byte) bool {
	if e.inner6 == nil {
		return ipip.ErrorAllowed(e.inner)
	}
	q := wholeQuote(scratch, e.inner6)
	typ := uint8(ipip.ICMPv6DestUnreach)
	if e.code == ipip.ICMPFragNeeded {
		typ = ipip.ICMPv6PacketTooBig
	}
	return set.hasSrc6 && ipip.ErrorAllowedIPv6(q, typ)
}

// A tunnelError is an ICMP error about one of the tunnel's packets, to be
// relayed to the sender of the packet inside.
type tunnelError struct {
	inner  ipip.IPv4 // the quoted inner IPv4 header, or nil
	inner6 ipip.IPv6 // the quoted inner IPv6 header (6in4), or nil; cut short
	code   uint8     // the ICMP code to relay, in ICMPv4's terms
	mtu    int       // the next-hop MTU of fragmentation needed
	peer   *peer     // the peer the packet went to
}

// tunnelError parses pkt, an IPv4 packet carrying ICMP, and reports
// whether it is an error about one of this tunnel's packets that must be
// relayed. For IPv6 inside (protocol 41, RFC 4213 section 3.4) the relay
// sends the ICMPv6 counterpart, as Linux's sit does: Packet Too Big for
// fragmentation needed, Destination Unreachable "no route" for a network
// unreachable, "address unreachable" for the rest.
func (i *Interface) tunnelError(pkt []byte) (e tunnelError, ok bool) {
	ip := ipip.IPv4(pkt)
	if ip.Valid() != nil || ip.Protocol() != 1 {
		return e, false
	}
	icmp := pkt[ip.HeaderLen():ip.TotalLen()]
	if len(icmp) < 8 {
		return e, false
	}
	typ, c := icmp[0], icmp[1]
	quoted := ipip.IPv4(icmp[8:])
	// The quote holds our outer header and, as Linux and RFC 1812 routers
	// quote, at least the inner header after it.
	if len(quoted) < ipip.IPv4MinLen || quoted.Version() != 4 || quoted.HeaderLen() < ipip.IPv4MinLen ||
		len(quoted) < quoted.HeaderLen()+ipip.IPv4MinLen {
		return e, false
	}
	tab := i.peers.Load()
	e.peer = tab.byAddr(key(quoted.DstBytes()))
	if quoted.Src() != i.Local() || e.peer == nil {
		return e, false
	}
	var dst netip.Addr
	switch q := quoted[quoted.HeaderLen():]; quoted.Protocol() {
	case i.proto:
		e.inner = ipip.IPv4(q)
		if e.inner.Version() != 4 || e.inner.HeaderLen() < ipip.IPv4MinLen || len(e.inner) < e.inner.HeaderLen() {
			return e, false
		}
		dst = e.inner.Dst()
	case ipip.ProtoIPv6:
		e.inner6 = ipip.IPv6(q)
		if len(e.inner6) < ipip.IPv6HeaderLen || e.inner6.Version() != 6 {
			return e, false
		}
		dst = e.inner6.Dst()
	default:
		return e, false
	}
	if !i.routedTo(dst, tab, e.peer) {
		// Anyone can forge the quote: relay only errors about packets
		// that could have gone through this tunnel, or the vif becomes
		// a reflector of ICMP from any source to anyone.
		return e, false
	}
	switch {
	case typ == ipip.ICMPDestUnreach && c == ipip.ICMPFragNeeded:
		e.code, e.mtu = ipip.ICMPFragNeeded, int(binary.BigEndian.Uint16(icmp[6:]))
	case typ == ipip.ICMPDestUnreach && (c == ipip.ICMPNetUnreach || c == 6): // 6: network unknown
		e.code = ipip.ICMPNetUnreach
	case typ == ipip.ICMPDestUnreach, typ == 11 && c == 0: // 11: time exceeded in transit
		e.code = ipip.ICMPHostUnreach
	default:
		return e, false // source quench, redirect, others: never relayed
	}
	return e, true
}

// routedTo reports whether the tunnel could have carried a packet for dst
// to the peer p: a prefix of p holds it (but 0.0.0.0/0, which holds
// anything), or it is in LinkConfig.Routes or the network of one of the
// vif's addresses and p takes it.
func (i *Interface) routedTo(dst netip.Addr, tab *peerTable, p *peer) bool {
	pfx, q, ok := tab.route.LookupPrefixLPM(netip.PrefixFrom(dst, dst.BitLen()))
	if !ok || q != p {
		return false
	}
	if pfx.Bits() > 0 {
		return true
	}
	for _, p := range *i.routes.Load() {
		if p.Contains(dst) {
			return true
		}
	}
	for _, p := range i.Addrs() {
		if p.Bits() < p.Addr().BitLen() && p.Masked().Contains(dst) {
			return true
		}
	}
	return false
}

// Over an IPv6 underlay (RFC 2473 section 8) the relay reads ICMPv6
// errors about our tunnel packets (the quoted outer header is ours: local
// to a peer, next header 4 or 41, or a first outer fragment of one) and
// sends the original sender what its packet earned:
//
//	packet too big                     -> adopt the path MTU (no less
//	                                      than 1280, RFC 8201), then Packet
//	                                      Too Big with the tunnel MTU (at
//	                                      least 1280) for an IPv6 packet
//	                                      over both, fragmentation needed
//	                                      for an IPv4 one with DF
//	destination unreachable, no route  -> IPv6: address unreachable;
//	                                      IPv4: network unreachable
//	other destination unreachable,     -> IPv6: address unreachable;
//	time exceeded, parameter problem      IPv4: host unreachable
//	anything else                      -> nothing
//
// A raw ICMPv6 socket reads the message without its IPv6 header.

// ICMPv6 error types (RFC 4443 section 2.1).
const (
	icmpv6TimeExceeded = 3
	icmpv6ParamProblem = 4
)

// relayICMPv6 is the relay's goroutine over an IPv6 underlay.
func (i *Interface) relayICMPv6(r *icmpRelay) {
	defer close(r.done)
	buf := make([]byte, 1500)
	quote := make([]byte, ipip.ICMPv6MaxErrorLen)
	out := [][]byte{make([]byte, Headroom+max(ipip.ICMPMaxErrorLen, ipip.ICMPv6MaxErrorLen))}
	var lim icmpLimiter
	for {
		n, err := r.f.Read(buf)
		if err != nil {
			if isClosed(err) {
				return
			}
			continue
		}
		inner, typ, code, mtu, p, ok := i.tunnelError6(buf[:n])
		if !ok {
			continue
		}
		if typ == ipip.ICMPv6PacketTooBig {
			mtu = i.learnPathMTU(p, mtu)
		}
		var msg []byte
		dst := out[0][Headroom:]
		if inner[0]>>4 == 4 {
			in := ipip.IPv4(inner)
			var c uint8 = ipip.ICMPHostUnreach
			switch {
			case typ == ipip.ICMPv6PacketTooBig && (!in.DF() || int(in.TotalLen()) <= mtu):
				continue // fragmented from now on; its sender resends
			case typ == ipip.ICMPv6PacketTooBig:
				c = ipip.ICMPFragNeeded
			case typ == ipip.ICMPv6DestUnreach && code == ipip.ICMPv6NoRoute:
				c = ipip.ICMPNetUnreach
			}
			if !ipip.ErrorAllowed(in) || !i.relayLimit(&lim) {
				continue
			}
			msg = ipip.Unreachable(dst, in.DstBytes(), in, c, mtu)
		} else {
			in := wholeQuote(quote, inner)
			set := i.addrs.Load()
			var t uint8 = ipip.ICMPv6DestUnreach
			if typ == ipip.ICMPv6PacketTooBig {
				if l := int(binary.BigEndian.Uint16(inner[4:])) + ipip.IPv6HeaderLen; l <= ipip.IPv6MinMTU || l <= mtu {
					continue // fragmented from now on (RFC 2473 section 7.1)
				}
				t = ipip.ICMPv6PacketTooBig
			}
			if !set.hasSrc6 || !ipip.ErrorAllowedIPv6(in, t) || !i.relayLimit(&lim) {
				continue
			}
			if t == ipip.ICMPv6PacketTooBig {
				msg = ipip.PacketTooBig(dst, set.src6, in, mtu)
			} else {
				msg = ipip.UnreachableIPv6(dst, set.src6, in, ipip.ICMPv6AddrUnreach)
			}
		}
		i.writeRelayed(out, msg)
	}
}

// tunnelError6 parses msg, an ICMPv6 message, and reports whether it is an
// error about one of this tunnel's IPv6 packets that must be relayed; then
// it returns the quoted inner packet (IPv4 or IPv6, cut short), the type
// and code, the MTU of a Packet Too Big, and the peer the packet went to.
func (i *Interface) tunnelError6(msg []byte) (inner []byte, typ, code uint8, mtu int, p *peer, ok bool) {
	if len(msg) < 8+ipip.IPv6HeaderLen {
		return nil, 0, 0, 0, nil, false
	}
	typ, code = msg[0], msg[1]
	switch typ {
	case ipip.ICMPv6DestUnreach, ipip.ICMPv6PacketTooBig, icmpv6TimeExceeded, icmpv6ParamProblem:
	default:
		return nil, 0, 0, 0, nil, false
	}
	quoted := ipip.IPv6(msg[8:])
	tab := i.peers.Load()
	p = tab.byAddr6(quoted.DstBytes())
	if quoted.Version() != 6 || p == nil || quoted.Src() != i.Local() {
		return nil, 0, 0, 0, nil, false
	}
	nh, rest := quoted.NextHeader(), quoted[ipip.IPv6HeaderLen:]
	if nh == nhFragment {
		// One of our outer fragments: the first one quotes the inner
		// header; later ones quote none.
		if len(rest) < ipip.FragmentHeaderLen || binary.BigEndian.Uint16(rest[2:])&^7 != 0 {
			return nil, 0, 0, 0, nil, false
		}
		nh, rest = rest[0], rest[ipip.FragmentHeaderLen:]
	}
	var dst netip.Addr
	switch {
	case nh == ipip.ProtoIPv6 && len(rest) >= ipip.IPv6HeaderLen && rest[0]>>4 == 6:
		dst = ipip.IPv6(rest).Dst()
	case nh == i.proto && len(rest) >= ipip.IPv4MinLen && rest[0]>>4 == 4 &&
		ipip.IPv4(rest).HeaderLen() >= ipip.IPv4MinLen && len(rest) >= ipip.IPv4(rest).HeaderLen():
		dst = ipip.IPv4(rest).Dst()
	default:
		return nil, 0, 0, 0, nil, false
	}
	if !i.routedTo(dst, tab, p) {
		// Anyone can forge the quote: relay only errors about packets
		// that could have gone through this tunnel.
		return nil, 0, 0, 0, nil, false
	}
	if typ == ipip.ICMPv6PacketTooBig {
		mtu = int(min(binary.BigEndian.Uint32(msg[4:]), 1<<16))
	}
	return rest, typ, code, mtu, p, true
}
