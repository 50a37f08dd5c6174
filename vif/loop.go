package vif

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vif-project/vif/ipip"
	"golang.zx2c4.com/wireguard/tun"
)

// newBufs allocates the buffers of one loop direction, once: n buffers of
// Headroom plus size bytes.
func newBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for j := range bufs {
		bufs[j] = make([]byte, Headroom+size)
	}
	return bufs, make([]int, n)
}

// errSegmentTooLarge is returned by readTUN when the device split a GSO
// super-packet into segments larger than the buffers.
var errSegmentTooLarge = errors.New("vif: tun: a GSO segment larger than the read buffers (the MTU was raised)")

// readTUN is dev.Read into bufs at Headroom. wireguard's GSO split
// (gsoSplit, tun/offload_linux.go) copies each segment into its buffer
// unchecked: a segment larger than the buffers, which the kernel sends
// once the MTU is raised from outside (ip link set mtu) and before the
// loop has grown its buffers, panics in it with a bounds error, and that
// would end the daemon. readTUN returns that as errSegmentTooLarge
// instead: the super-packet is lost (TCP sends it again), the loop grows
// its buffers and goes on. The Read's lock is released by its own defer;
// any other panic goes on.
func readTUN(dev tun.Device, bufs [][]byte, sizes []int) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			if re, ok := r.(runtime.Error); ok && strings.Contains(re.Error(), "out of range") {
				n, err = 0, errSegmentTooLarge
				return
			}
			panic(r)
		}
	}()
	return dev.Read(bufs, sizes, Headroom)
}

// isClosed reports whether err means the device or socket was closed (by
// Close, or because the interface was deleted).
func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) ||
		errBadFD != nil && errors.Is(err, errBadFD)
}

// ipv6HeaderLen is the length of an IPv6 header (RFC 8200 section 3).
const ipv6HeaderLen = 40

// maxReadErrors is how many read errors in a row a loop tolerates before it
// gives up on its device.
const maxReadErrors = 100

// txLoop reads what the kernel routed into the TUN and loops it back,
// encapsulates it to the peer or drops it.
func (i *Interface) txLoop(enc *ipip.Encapsulator) {
	defer i.wg.Done()
	defer i.stop()
	bs := i.dev.BatchSize()
	// What the TUN hands over is at most its MTU long (GSO super-packets
	// are split into MTU-sized segments): buffers of the MTU keep an idle
	// vif small, which matters with hundreds of them. Loopback writes then
	// have no room for GRO coalescing, which they do not need.
	size := int(i.devMTU.Load())
	bufs, sizes := newBufs(bs, size)
	loop := make([][]byte, 0, bs)
	send := make([][]byte, 0, bs)
	c := &i.tx
	var pc peerCount
	errRun := 0
	var lastProbe int64
	i.frags.size = size
	i.frags.id = rand.Uint32() // IPv6 fragment IDs (RFC 7739)
	local := i.local.Load()
	hl := i.outer() // the outer header's length

	for {
		m := int(i.devMTU.Load())
		r := i.grow.Load()
		if r != nil {
			m = max(m, r.mtu)
		}
		if m > size {
			// The device's MTU was raised, or is about to be
			// (growTxBuffers): read into buffers that hold it
			// (allocated once per change, not per packet).
			size = m
			bufs, sizes = newBufs(bs, size)
			i.frags = fragPool{size: size, id: i.frags.id}
		}
		if r != nil && i.grow.CompareAndSwap(r, nil) {
			close(r.done)
		}
		n, err := readTUN(i.dev, bufs, sizes)
		if err != nil {
			switch {
			case isClosed(err):
				i.log.Debug("tun closed, tx loop exits")
				return
			case errors.Is(err, os.ErrDeadlineExceeded):
				// growTxBuffers woke the read, which took no packet:
				// clear the deadline, and take the buffers it asks for.
				if f := i.dev.File(); f != nil {
					f.SetReadDeadline(time.Time{})
				}
				continue
			case errors.Is(err, tun.ErrTooManySegments):
				c.drops[dropTunRead].Add(1)
				// n packets were still read: handle them.
			default:
				c.drops[dropTunRead].Add(1)
				if m, err := i.deviceMTU(); err == nil && m > size {
					// The MTU was raised before its event came: that
					// packet did not fit, the next ones will.
					i.setDevMTU(m)
					errRun = 0
					continue
				}
				if errRun++; errRun >= maxReadErrors {
					i.log.Error("tun read failing, stopping interface", "err", err)
					failed := err // its own variable: err itself must not escape
					i.failed.Store(&failed)
					return
				}
				if n == 0 {
					continue
				}
			}
		} else {
			errRun = 0
		}

		set, tab := i.addrs.Load(), i.peers.Load()
		rt := txRoute{}
		if l := i.local.Load(); l != local {
			local = l
			enc.Src = *l
		}
		loop, send = loop[:0], send[:0]
		i.frags.used = 0
		var loopBytes uint64
		if len(tab.list) > 0 && i.pathMTU != nil {
			// A path MTU learnt from the kernel expires there (10
			// minutes by default); look again now and then so the
			// tunnel grows back.
			if now := nanotime(); now-lastProbe > int64(pmtuProbeInterval) {
				lastProbe = now
				dev := i.devMTU.Load()
				for _, p := range tab.list {
					if p.st.pmtu.Load() < dev {
						i.probePathMTU(p)
					}
				}
			}
		}
		for j := 0; j < n; j++ {
			if Headroom+sizes[j] > len(bufs[j]) {
				// Longer than the buffer (the MTU was raised after the
				// vif came up): the read was truncated.
				c.drops[dropTunRead].Add(1)
				continue
			}
			buf := bufs[j][:Headroom+sizes[j]]
			if sizes[j] >= ipv6HeaderLen && buf[Headroom]>>4 == 6 {
				// IPv6 is looped back for the vif's own addresses and
				// tunnelled to the peers of its prefixes (6in4, or 6in6
				// over an IPv6 underlay).
				if set.has6([16]byte(buf[Headroom+24 : Headroom+40])) {
					loop = append(loop, buf)
					loopBytes += uint64(sizes[j])
					continue
				}
				out, p := i.tx6(enc, set, tab, buf, sizes[j])
				if out == nil {
					continue
				}
				pc.addTx(p, len(out))
				if sizes[j] > int(p.st.pmtu.Load()) {
					// At most IPv6MinMTU long (and over IPv4 sent
					// without DF): in fragments of the path MTU (RFC
					// 4213 section 3.2.2, RFC 2473 section 7.1).
					send = i.fragment(send, out, int(p.st.pmtu.Load()))
					continue
				}
				send = append(send, buf[:Headroom-hl+len(out)])
				continue
			}
			h := ipip.IPv4(buf[Headroom:])
			if err := h.Valid(); err != nil {
				c.codec[err.(ipip.Error).Inner()].Add(1)
				continue
			}
			dstb := h.DstBytes()
			dst := key(dstb)
			if set.has(dst) {
				loop = append(loop, buf)
				loopBytes += uint64(sizes[j])
				continue
			}
			if h.Protocol() == 1 && h.HeaderLen() < sizes[j] && buf[Headroom+h.HeaderLen()] == icmpRedirect {
				// The kernel redirects a sender whose packet it forwards
				// back out of the vif it came in on (a hub between its
				// spokes): no host behind a peer can use a next hop on
				// this side of the tunnel.
				c.drops[dropRedirect].Add(1)
				continue
			}
			if !rt.valid || dst != rt.dst {
				// Packets of a batch mostly go to one destination: look
				// it up once.
				rt = txRoute{valid: true, dst: dst, p: tab.lookup(dstb), isPeer: tab.byAddr(dst) != nil}
			}
			p := rt.p
			var pmtu int
			if p != nil {
				pmtu = int(p.st.pmtu.Load())
			}
			switch {
			case p == nil:
				c.drops[dropNoPeer].Add(1)
				i.icmpError(h, ipip.ICMPHostUnreach, 0)
				continue
			case rt.isPeer:
				// Routing a peer's own address into the tunnel would
				// loop every packet back into it (RFC 2003 section 4).
				c.drops[dropLoop].Add(1)
				continue
			case !enc.Src.IsValid():
				c.drops[dropNoLocal].Add(1)
				i.icmpError(h, ipip.ICMPHostUnreach, 0)
				continue
			case sizes[j] > pmtu && h.DF():
				// Too big for the path to the peer and not to be
				// fragmented: tell the sender the tunnel's MTU (RFC
				// 2003 section 5.1).
				c.drops[dropTooBig].Add(1)
				i.icmpError(h, ipip.ICMPFragNeeded, pmtu)
				continue
			}
			enc.Dst = p.Addr
			out, err := enc.Encap(buf, Headroom)
			if err != nil {
				c.codec[err.(ipip.Error)].Add(1)
				continue
			}
			pc.addTx(p, len(out))
			if sizes[j] > pmtu {
				// Without DF (the outer DF is copied from the inner)
				// the packet goes out in fragments of the path MTU, as
				// RFC 2003 section 5.1 wants (over IPv6, fragments of
				// the outer IPv6 packet, RFC 2473 section 7.2); the
				// raw socket would not fragment it.
				send = i.fragment(send, out, pmtu)
				continue
			}
			send = append(send, buf[:Headroom-hl+len(out)])
		}

		pc.flushTx()
		if len(loop) > 0 {
			if _, err := i.dev.Write(loop, Headroom); err != nil {
				if isClosed(err) {
					return
				}
				c.drops[dropLoopbackWrite].Add(1)
			} else {
				c.looped.Add(uint64(len(loop)))
				c.loopedBytes.Add(loopBytes)
			}
		}
		if len(send) > 0 && !i.send(send) {
			return
		}
	}
}

// tx6 classifies the IPv6 packet buf[Headroom:], n bytes read from the
// TUN and not for the vif, and encapsulates it to its peer, in IPv4 (6in4,
// RFC 4213) or IPv6 (6in6, RFC 2473) as the underlay is: it returns the
// outer packet, which starts i.outer() bytes before Headroom, and the peer,
// or nil when it dropped the packet (counted, and answered with an ICMPv6
// error where RFC 4213 or RFC 2473 wants one). The inner hop limit is
// left as the kernel set it when it routed the packet into the vif: the
// tunnel is one hop (RFC 4213 section 3.3, RFC 2473 section 3.1). It is
// called by the tx goroutine only and does not allocate.
func (i *Interface) tx6(enc *ipip.Encapsulator, set *addrSet, tab *peerTable, buf []byte, n int) ([]byte, *peer) {
	c := &i.tx
	h := ipip.IPv6(buf[Headroom:])
	if err := h.Valid(); err != nil {
		c.codec[err.(ipip.Error).Inner()].Add(1)
		return nil, nil
	}
	dst := h.DstBytes()
	p := tab.lookup6(dst)
	switch {
	case p == nil:
		c.drops[dropNoPeer].Add(1)
		i.icmp6Error(set, h, ipip.ICMPv6DestUnreach, 0)
		return nil, nil
	case tab.byAddr6(dst) != nil:
		// A peer's own underlay address routed into the tunnel
		// (6in6): every packet to it would loop (RFC 2473 section 8).
		c.drops[dropLoop].Add(1)
		return nil, nil
	case !enc.Src.IsValid():
		c.drops[dropNoLocal].Add(1)
		i.icmp6Error(set, h, ipip.ICMPv6DestUnreach, 0)
		return nil, nil
	}
	if pmtu := int(p.st.pmtu.Load()); n > pmtu && n > ipip.IPv6MinMTU {
		// Too big for the path to the peer: IPv6 routers do not
		// fragment, the sender does, told the tunnel's MTU (RFC 4213
		// section 3.2.2, RFC 2473 section 7.1, RFC 8201), never less
		// than IPv6MinMTU. Up to IPv6MinMTU the outer packet is
		// fragmented instead: no IPv6 link may refuse 1280 bytes.
		c.drops[dropTooBig].Add(1)
		i.icmp6Error(set, h, ipip.ICMPv6PacketTooBig, max(pmtu, ipip.IPv6MinMTU))
		return nil, nil
	}
	enc.Dst = p.Addr
	out, err := enc.EncapIPv6(buf, Headroom)
	if err != nil {
		c.codec[err.(ipip.Error)].Add(1)
		return nil, nil
	}
	return out, p
}

// send writes encapsulated packets to the underlay, skipping any packet it
// refuses, and counts them. It returns false when the underlay is closed.
func (i *Interface) send(pkts [][]byte) bool {
	off := Headroom - i.outer()
	c := &i.tx
	for len(pkts) > 0 {
		k, err := i.under.Write(pkts, off)
		if caps := i.capt.list.Load(); caps != nil {
			tap(*caps, Out, pkts[:min(k, len(pkts))], nil, off)
		}
		var bytes uint64
		for _, p := range pkts[:k] {
			bytes += uint64(len(p) - off)
		}
		c.pkts.Add(uint64(k))
		c.bytes.Add(bytes)
		switch {
		case err != nil && isClosed(err):
			return false
		case err != nil && errors.Is(err, syscall.EMSGSIZE) && k < len(pkts) && i.under6:
			var ok bool
			if k, ok = i.tooBig6(pkts, k); !ok {
				return false
			}
		case err != nil && errors.Is(err, syscall.EMSGSIZE) && k < len(pkts):
			// The kernel learnt a smaller path MTU to the peer (an
			// ICMP "fragmentation needed" from a router on the way):
			// adopt it, and send this packet in fragments or, if its
			// sender forbade that, tell it the tunnel's MTU.
			outer, inner := ipip.IPv4(pkts[k][off:]), ipip.IPv4(pkts[k][off+ipip.IPv4MinLen:])
			p := i.peers.Load().byAddr(key(outer.DstBytes()))
			if p == nil { // removed meanwhile
				c.drops[dropUnderlayWrite].Add(1)
				k++
				break
			}
			pmtu := i.probePathMTU(p)
			if outer.IsFragment() {
				// One of our fragments, cut for a larger MTU: the
				// packet is lost; skip its other fragments here.
				c.drops[dropTooBig].Add(1)
				for k+1 < len(pkts) && ipip.IPv4(pkts[k+1][off:]).IsFragment() && ipip.IPv4(pkts[k+1][off:]).ID() == outer.ID() {
					k++
				}
			} else if outer.Protocol() == ipip.ProtoIPv6 {
				// 6in4: IPv6 is not fragmented on the way; a packet
				// larger than IPv6MinMTU gets a Packet Too Big, a
				// smaller one outer fragments (RFC 4213 section 3.2.2).
				if n := len(pkts[k]) - off - ipip.IPv4MinLen; n > ipip.IPv6MinMTU || n <= pmtu {
					c.drops[dropTooBig].Add(1)
					i.icmp6Error(i.addrs.Load(), ipip.IPv6(inner), ipip.ICMPv6PacketTooBig, pmtu)
				} else if frags := i.fragment(nil, ipip.IPv4(pkts[k][off:]), pmtu); len(frags) > 0 && !i.send(frags) {
					return false
				}
			} else if inner.DF() || len(pkts[k])-off <= pmtu+ipip.IPv4MinLen {
				c.drops[dropTooBig].Add(1)
				i.icmpError(inner, ipip.ICMPFragNeeded, pmtu)
			} else if frags := i.fragment(nil, ipip.IPv4(pkts[k][off:]), pmtu); len(frags) > 0 && !i.send(frags) {
				return false
			}
			k++
		case err != nil:
			// pkts[k] failed (unreachable, no buffer space, link
			// down): drop it and go on with the rest.
			c.drops[dropUnderlayWrite].Add(1)
			k++
		case k == 0:
			c.drops[dropUnderlayWrite].Add(uint64(len(pkts)))
			return true
		}
		pkts = pkts[min(k, len(pkts)):]
	}
	return true
}

// tooBig6 handles pkts[k], which the IPv6 underlay refused as larger than
// the path MTU to its peer (EMSGSIZE), as send does over IPv4: it adopts
// the kernel's path MTU, then sends the packet in outer fragments or tells
// its sender the tunnel MTU (RFC 2473 section 7). It returns the index of
// the packet that send goes on with, and false when the underlay is
// closed.
func (i *Interface) tooBig6(pkts [][]byte, k int) (int, bool) {
	const off = Headroom - ipip.IPv6HeaderLen
	c := &i.tx
	outer := ipip.IPv6(pkts[k][off:])
	p := i.peers.Load().byAddr6(outer.DstBytes())
	if p == nil { // removed meanwhile
		c.drops[dropUnderlayWrite].Add(1)
		return k + 1, true
	}
	pmtu := i.probePathMTU(p)
	inner := pkts[k][off+ipip.IPv6HeaderLen:]
	switch outer.NextHeader() {
	case nhFragment:
		// One of our fragments, cut for a larger MTU: the packet is
		// lost; skip its other fragments here.
		c.drops[dropTooBig].Add(1)
		id := fragID(outer)
		for k+1 < len(pkts) && fragID(pkts[k+1][off:]) == id {
			k++
		}
	case ipip.ProtoIPv6:
		if n := len(inner); n > ipip.IPv6MinMTU || n <= pmtu {
			c.drops[dropTooBig].Add(1)
			i.icmp6Error(i.addrs.Load(), ipip.IPv6(inner), ipip.ICMPv6PacketTooBig, max(pmtu, ipip.IPv6MinMTU))
		} else if frags := i.fragment(nil, outer, pmtu); len(frags) > 0 && !i.send(frags) {
			return k, false
		}
	default:
		if in := ipip.IPv4(inner); in.DF() || len(inner) <= pmtu {
			c.drops[dropTooBig].Add(1)
			i.icmpError(in, ipip.ICMPFragNeeded, pmtu)
		} else if frags := i.fragment(nil, outer, pmtu); len(frags) > 0 && !i.send(frags) {
			return k, false
		}
	}
	return k + 1, true
}

// nhFragment is the Next Header value of an IPv6 Fragment header.
const nhFragment = 44

// fragID returns the Identification of the outer IPv6 fragment pkt, or 0
// when it is not one.
func fragID(pkt []byte) uint32 {
	if len(pkt) < ipip.IPv6HeaderLen+ipip.FragmentHeaderLen || ipip.IPv6(pkt).NextHeader() != nhFragment {
		return 0
	}
	return binary.BigEndian.Uint32(pkt[ipip.IPv6HeaderLen+4:])
}

// fragPool holds the buffers of outer fragments, for the tx goroutine
// only: grown when a batch needs more, kept for the next ones, so that
// steady fragmenting does not allocate.
type fragPool struct {
	bufs [][]byte
	used int    // buffers taken in this batch
	size int    // the device MTU the buffers are sized for
	id   uint32 // the last IPv6 fragment Identification
}

// fragment appends to send the fragments of the encapsulated packet out,
// each at most pmtu plus the outer header long: IPv4 fragments (RFC 791
// section 3.2), or over IPv6 fragments with a Fragment header (RFC 8200
// section 4.5).
func (i *Interface) fragment(send [][]byte, out []byte, pmtu int) [][]byte {
	off := Headroom - i.outer()
	p := &i.frags
	mtu := pmtu + i.outer()
	var n int
	if i.under6 {
		n = ipip.FragmentCountIPv6(len(out), mtu)
	} else {
		n = ipip.FragmentCount(len(out), mtu)
	}
	for len(p.bufs) < p.used+n {
		p.bufs = append(p.bufs, make([]byte, Headroom+p.size+2*ipip.IPv6HeaderLen))
	}
	free := p.bufs[p.used : p.used+n]
	for k := range free {
		free[k] = free[k][:cap(free[k])]
	}
	var err error
	if i.under6 {
		p.id++
		n, err = ipip.FragmentIPv6(ipip.IPv6(out), mtu, p.id, free, off)
	} else {
		n, err = ipip.Fragment(ipip.IPv4(out), mtu, free, off)
	}
	if err != nil {
		i.tx.codec[err.(ipip.Error)].Add(1)
		return send
	}
	p.used += n
	i.tx.fragmented.Add(1)
	return append(send, free[:n]...)
}

// rxLoop reads encapsulated packets from the underlay, checks and
// decapsulates them, and writes what is ours into the TUN.
func (i *Interface) rxLoop() {
	defer i.wg.Done()
	defer i.stop()
	bs := i.under.BatchSize()
	// TUN writes coalesce TCP segments (GRO) into the first buffer of a
	// flow, so these hold the largest IPv4 packet.
	bufs, sizes := newBufs(bs, maxPacket)
	write := make([][]byte, 0, bs)
	c := &i.rx
	var pc peerCount
	errRun := 0

	for {
		n, err := i.under.Read(bufs, sizes, Headroom)
		if err != nil {
			if isClosed(err) {
				i.log.Debug("underlay closed, rx loop exits")
				return
			}
			c.drops[dropUnderlayRead].Add(1)
			if errRun == 0 {
				i.log.Warn("underlay read failed", "err", err)
			}
			if errRun++; errRun >= maxReadErrors {
				// Persistent errors (the slave is gone): back off
				// instead of spinning; the loop keeps trying.
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		errRun = 0
		if caps := i.capt.list.Load(); caps != nil {
			tap(*caps, In, bufs[:n], sizes, Headroom)
		}

		set, tab := i.addrs.Load(), i.peers.Load()
		from, owner := rxFrom{}, rxFrom{}
		write = write[:0]
		var bytes uint64
		for j := 0; j < n; j++ {
			pkt := bufs[j][Headroom : Headroom+sizes[j]]
			if i.under6 {
				inner, p := i.rxOver6(set, tab, pkt)
				if inner == nil {
					continue
				}
				pc.addRx(p, len(inner))
				// The inner packet follows the 40-byte outer header:
				// slide the window as below.
				write = append(write, bufs[j][ipip.IPv6HeaderLen:Headroom+ipip.IPv6HeaderLen+len(inner)])
				bytes += uint64(len(inner))
				continue
			}
			outer := ipip.IPv4(pkt)
			var p *peer
			if len(pkt) >= ipip.IPv4MinLen {
				if src := key(outer.SrcBytes()); !from.valid || src != from.key {
					from = rxFrom{valid: true, key: src, p: tab.byAddr(src)}
				}
				p = from.p
			}
			if p == nil {
				c.drops[dropNotPeer].Add(1)
				continue
			}
			if outer.Protocol() == ipip.ProtoIPv6 {
				inner := i.rx6(set, tab, p, pkt)
				if inner == nil {
					continue
				}
				pc.addRx(p, len(inner))
				ihl := outer.HeaderLen()
				write = append(write, bufs[j][ihl:Headroom+ihl+len(inner)])
				bytes += uint64(len(inner))
				continue
			}
			inner, err := ipip.Decap(pkt, i.proto)
			if err != nil {
				c.codec[err.(ipip.Error)].Add(1)
				continue
			}
			ih := ipip.IPv4(inner)
			if !set.has(key(ih.DstBytes())) && (i.forward == nil || !i.forward.Lookup(ih.Dst())) {
				c.drops[dropNotLocal].Add(1)
				continue
			}
			// The source must be the sender's by longest-prefix match,
			// as the reply will be routed: a peer with a wider prefix
			// (0.0.0.0/0 even) cannot speak for another's networks.
			if isrc := key(ih.SrcBytes()); !owner.valid || isrc != owner.key {
				owner = rxFrom{valid: true, key: isrc, p: tab.lookup(ih.SrcBytes())}
			}
			if set.badSource(ih.SrcBytes()) || owner.p != p {
				c.drops[dropBadSource].Add(1)
				continue
			}
			pc.addRx(p, len(inner))
			// Slide the window so the inner packet starts at Headroom:
			// the TUN write needs a common offset, and this costs no copy.
			ihl := outer.HeaderLen()
			write = append(write, bufs[j][ihl:Headroom+ihl+len(inner)])
			bytes += uint64(len(inner))
		}
		pc.flushRx()
		if len(write) == 0 {
			continue
		}
		if _, err := i.dev.Write(write, Headroom); err != nil {
			if isClosed(err) {
				return
			}
			c.drops[dropTunWrite].Add(1)
			continue
		}
		c.pkts.Add(uint64(len(write)))
		c.bytes.Add(bytes)
	}
}

// rx6 checks and decapsulates the 6in4 packet pkt (RFC 4213) from the
// peer p, and returns the inner IPv6 packet (a sub-slice of pkt), or nil
// when it dropped it (counted). The inner destination must be the vif's
// or forwarded (no open relay); the inner source must be p's by
// longest-prefix match, as the answer will be routed, and a valid one
// (RFC 4213 section 3.6). It is called by the rx goroutine only and does
// not allocate.
func (i *Interface) rx6(set *addrSet, tab *peerTable, p *peer, pkt []byte) []byte {
	inner, err := ipip.Decap(pkt, ipip.ProtoIPv6)
	if err != nil {
		i.rx.codec[err.(ipip.Error)].Add(1)
		return nil
	}
	if !i.check6(set, tab, p, ipip.IPv6(inner)) {
		return nil
	}
	return inner
}

// check6 reports whether the decapsulated IPv6 packet ih from the peer p
// may be delivered, and counts it when not: the rules of rx6.
func (i *Interface) check6(set *addrSet, tab *peerTable, p *peer, ih ipip.IPv6) bool {
	c := &i.rx
	if !set.has6(ih.DstBytes()) && (i.forward == nil || !i.forward.Lookup(ih.Dst())) {
		c.drops[dropNotLocal].Add(1)
		return false
	}
	if src := ih.SrcBytes(); set.badSource6(src) || tab.lookup6(src) != p {
		c.drops[dropBadSource].Add(1)
		return false
	}
	return true
}

// rxOver6 checks and decapsulates the packet pkt read from an IPv6
// underlay (RFC 2473): IPv4 inside (next header 4) or IPv6 (41). It
// returns the inner packet, a sub-slice of pkt that starts after the
// 40-byte outer header, and the peer it came from, or nil when it dropped
// the packet (counted). The rules are the IPv4 underlay's: the outer
// source must be a peer; one level is undone (ipip.DecapIPv6, which also
// applies RFC 6040 from the outer Traffic Class and refuses inner packets
// whose TTL or Hop Limit is 0); the inner destination must be the vif's
// or forwarded; the inner source must be the peer's by longest-prefix
// match and plausible. It is called by the rx goroutine only and does not
// allocate.
func (i *Interface) rxOver6(set *addrSet, tab *peerTable, pkt []byte) ([]byte, *peer) {
	c := &i.rx
	var p *peer
	if len(pkt) >= ipip.IPv6HeaderLen {
		p = tab.byAddr6(ipip.IPv6(pkt).SrcBytes())
	}
	if p == nil {
		c.drops[dropNotPeer].Add(1)
		return nil, nil
	}
	proto := i.proto
	if ipip.IPv6(pkt).NextHeader() == ipip.ProtoIPv6 {
		proto = ipip.ProtoIPv6
	}
	inner, err := ipip.DecapIPv6(pkt, proto)
	if err != nil {
		c.codec[err.(ipip.Error)].Add(1)
		return nil, nil
	}
	if proto == ipip.ProtoIPv6 {
		if !i.check6(set, tab, p, ipip.IPv6(inner)) {
			return nil, nil
		}
		return inner, p
	}
	ih := ipip.IPv4(inner)
	if !set.has(key(ih.DstBytes())) && (i.forward == nil || !i.forward.Lookup(ih.Dst())) {
		c.drops[dropNotLocal].Add(1)
		return nil, nil
	}
	if set.badSource(ih.SrcBytes()) || tab.lookup(ih.SrcBytes()) != p {
		c.drops[dropBadSource].Add(1)
		return nil, nil
	}
	return inner, p
}

// txRoute is the tx loop's last lookup: the peer of destination dst, and
// whether dst is a peer's own underlay address.
type txRoute struct {
	valid  bool
	dst    uint32
	p      *peer
	isPeer bool
}

// rxFrom is the rx loop's last lookup of an address (key) to a peer.
type rxFrom struct {
	valid bool
	key   uint32
	p     *peer
}

// peerCount gathers one peer's packets and bytes of a batch, so that its
// counters take one atomic add per run of packets, not per packet.
type peerCount struct {
	p           *peer
	pkts, bytes uint64
}

// addTx counts a packet of n bytes sent to p, flushing the count of the
// previous peer when p is another.
func (c *peerCount) addTx(p *peer, n int) {
	if p != c.p {
		c.flushTx()
		c.p = p
	}
	c.pkts++
	c.bytes += uint64(n)
}

// addRx counts a packet of n bytes received from p, as addTx.
func (c *peerCount) addRx(p *peer, n int) {
	if p != c.p {
		c.flushRx()
		c.p = p
	}
	c.pkts++
	c.bytes += uint64(n)
}

func (c *peerCount) flushTx() {
	if c.pkts > 0 {
		c.p.st.txPkts.Add(c.pkts)
		c.p.st.txBytes.Add(c.bytes)
	}
	*c = peerCount{}
}

func (c *peerCount) flushRx() {
	if c.pkts > 0 {
		c.p.st.rxPkts.Add(c.pkts)
		c.p.st.rxBytes.Add(c.bytes)
	}
	*c = peerCount{}
}

// icmpRedirect is the ICMP type of a redirect (RFC 792).
const icmpRedirect = 5
