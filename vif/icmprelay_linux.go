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
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return fmt.Errorf("vif: ICMP relay socket: %w", err)
	}
	if slave != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, slave); err != nil {
			unix.Close(fd)
			return fmt.Errorf("vif: ICMP relay socket: %w", err)
		}
	}
	r := &icmpRelay{f: os.NewFile(uintptr(fd), "icmp-relay"), done: make(chan struct{})}
	if r.rc, err = r.f.SyscallConn(); err != nil {
		r.f.Close()
		return err
	}
	go i.relayICMP(r)
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
	out := [][]byte{make([]byte, Headroom+ipip.ICMPMaxErrorLen)}
	var lim icmpLimiter
	for {
		n, err := r.f.Read(buf)
		if err != nil {
			if isClosed(err) {
				return
			}
			continue
		}
		inner, code, mtu, p, ok := i.tunnelError(buf[:n])
		if !ok || !ipip.ErrorAllowed(inner) {
			continue
		}
		if code == ipip.ICMPFragNeeded {
			mtu = i.learnPathMTU(p, mtu)
		}
		if !lim.allow(nanotime()) {
			i.rx.icmpLimited.Add(1)
			continue
		}
		msg := ipip.Unreachable(out[0][Headroom:], inner.DstBytes(), inner, code, mtu)
		b := out[0]
		out[0] = b[:Headroom+len(msg)]
		if _, err := i.dev.Write(out, Headroom); err == nil {
			i.rx.icmpSent.Add(1)
		}
		out[0] = b[:cap(b)]
	}
}

// tunnelError parses pkt, an IPv4 packet carrying ICMP, and reports
// whether it is an error about one of this tunnel's packets that must be
// relayed; then it returns the quoted inner header and the code to relay
// (with the next-hop MTU for fragmentation needed), and the peer the
// packet went to.
func (i *Interface) tunnelError(pkt []byte) (inner ipip.IPv4, code uint8, mtu int, p *peer, ok bool) {
	ip := ipip.IPv4(pkt)
	if ip.Valid() != nil || ip.Protocol() != 1 {
		return nil, 0, 0, nil, false
	}
	icmp := pkt[ip.HeaderLen():ip.TotalLen()]
	if len(icmp) < 8 {
		return nil, 0, 0, nil, false
	}
	typ, c := icmp[0], icmp[1]
	quoted := ipip.IPv4(icmp[8:])
	// The quote holds our outer header and, as Linux and RFC 1812 routers
	// quote, at least the inner header after it.
	if len(quoted) < ipip.IPv4MinLen || quoted.Version() != 4 || quoted.HeaderLen() < ipip.IPv4MinLen ||
		len(quoted) < quoted.HeaderLen()+ipip.IPv4MinLen {
		return nil, 0, 0, nil, false
	}
	tab := i.peers.Load()
	p = tab.byAddr(key(quoted.DstBytes()))
	if quoted.Protocol() != i.proto || quoted.Src() != i.Local() || p == nil {
		return nil, 0, 0, nil, false
	}
	inner = ipip.IPv4(quoted[quoted.HeaderLen():])
	if inner.Version() != 4 || inner.HeaderLen() < ipip.IPv4MinLen || len(inner) < inner.HeaderLen() {
		return nil, 0, 0, nil, false
	}
	if !i.routedTo(inner.Dst(), tab, p) {
		// Anyone can forge the quote: relay only errors about packets
		// that could have gone through this tunnel, or the vif becomes
		// a reflector of ICMP from any source to anyone.
		return nil, 0, 0, nil, false
	}
	switch {
	case typ == ipip.ICMPDestUnreach && c == ipip.ICMPFragNeeded:
		return inner, ipip.ICMPFragNeeded, int(binary.BigEndian.Uint16(icmp[6:])), p, true
	case typ == ipip.ICMPDestUnreach && (c == ipip.ICMPNetUnreach || c == 6): // 6: network unknown
		return inner, ipip.ICMPNetUnreach, 0, p, true
	case typ == ipip.ICMPDestUnreach, typ == 11 && c == 0: // 11: time exceeded in transit
		return inner, ipip.ICMPHostUnreach, 0, p, true
	}
	return nil, 0, 0, nil, false // source quench, redirect, others: never relayed
}

// routedTo reports whether the tunnel could have carried a packet for dst
// to the peer p: a prefix of p holds it (but 0.0.0.0/0, which holds
// anything), or it is in LinkConfig.Routes or the network of one of the
// vif's addresses and p takes it.
func (i *Interface) routedTo(dst netip.Addr, tab *peerTable, p *peer) bool {
	pfx, q, ok := tab.route.LookupPrefixLPM(netip.PrefixFrom(dst, 32))
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
		if p.Bits() < 32 && p.Masked().Contains(dst) {
			return true
		}
	}
	return false
}
