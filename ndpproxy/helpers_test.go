package ndpproxy_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"

	"github.com/vif-project/vif/ndpproxy"
)

// Addresses used throughout the tests: locally administered hardware
// addresses, IPv6 addresses from the documentation prefix 2001:db8::/32.
var (
	ourMAC   = mustMAC("02:00:00:00:00:01")
	peerMAC  = mustMAC("02:00:00:00:00:02")
	otherMAC = mustMAC("02:00:00:00:00:03")
	bcastMAC = mustMAC("ff:ff:ff:ff:ff:ff")
	zeroMAC  = mustMAC("00:00:00:00:00:00")
	nodesMAC = mustMAC("33:33:00:00:00:01")

	ourLL    = netip.MustParseAddr("fe80::1")
	owned1   = netip.MustParseAddr("2001:db8::10")
	owned2   = netip.MustParseAddr("2001:db8::20")
	notOwned = netip.MustParseAddr("2001:db8::11")
	peerIP   = netip.MustParseAddr("2001:db8::2")
	peerLL   = netip.MustParseAddr("fe80::2")
	unspec   = netip.IPv6Unspecified()
	allNodes = netip.MustParseAddr("ff02::1")

	ourIfi  = &net.Interface{Index: 7, MTU: 1500, Name: "slave0", HardwareAddr: ourMAC}
	ourSelf = &ndpproxy.Self{HardwareAddr: ourMAC, Addr: ourLL}
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// snMAC returns the Ethernet address of the solicited-node group of a.
func snMAC(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

// ndpSpec describes a frame to build with gopacket, independently of the
// package's own encoder. Zero fields get the values of a valid frame.
type ndpSpec struct {
	ethDst, ethSrc net.HardwareAddr
	ethType        layers.EthernetType
	hop            int // 0 means 255
	src, dst       netip.Addr
	advert         bool  // a Neighbor Advertisement, not a Solicitation
	code           uint8 // ICMPv6 code
	flags          uint8 // of an advertisement: 0x80 R, 0x40 S, 0x20 O
	target         netip.Addr
	lladdr         net.HardwareAddr // link-layer address option; nil: none
	// raw mutates the serialized frame; the checksum is then computed
	// again unless keepChecksum.
	raw          func([]byte) []byte
	keepChecksum bool
}

// solicit returns a multicast solicitation from mac/src for target, with
// a source link-layer address option.
func solicit(mac net.HardwareAddr, src, target netip.Addr) ndpSpec {
	return ndpSpec{ethDst: snMAC(target), ethSrc: mac, src: src, dst: ndpproxy.SolicitedNode(target), target: target, lladdr: mac}
}

// unicastSolicit returns a solicitation from mac/src sent to target at
// the hardware address to (Neighbor Unreachability Detection), without a
// link-layer address option.
func unicastSolicit(mac net.HardwareAddr, src, target netip.Addr, to net.HardwareAddr) ndpSpec {
	return ndpSpec{ethDst: to, ethSrc: mac, src: src, dst: target, target: target}
}

// dadProbe returns a Duplicate Address Detection probe from mac for
// target.
func dadProbe(mac net.HardwareAddr, target netip.Addr) ndpSpec {
	s := solicit(mac, unspec, target)
	s.lladdr = nil
	return s
}

// advertise returns an unsolicited advertisement of target by mac, from
// src to all nodes, with the Override flag.
func advertise(mac net.HardwareAddr, src, target netip.Addr) ndpSpec {
	return ndpSpec{ethDst: nodesMAC, ethSrc: mac, src: src, dst: allNodes, advert: true, flags: 0x20, target: target, lladdr: mac}
}

func (s ndpSpec) with(f func(*ndpSpec)) ndpSpec { f(&s); return s }

// bytes serializes s with gopacket.
func (s ndpSpec) bytes(tb testing.TB) []byte {
	tb.Helper()
	eth := &layers.Ethernet{DstMAC: s.ethDst, SrcMAC: s.ethSrc, EthernetType: s.ethType}
	if eth.EthernetType == 0 {
		eth.EthernetType = layers.EthernetTypeIPv6
	}
	hop := uint8(255)
	if s.hop != 0 {
		hop = uint8(s.hop)
	}
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: hop,
		SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice()}
	typ := uint8(layers.ICMPv6TypeNeighborSolicitation)
	optType := layers.ICMPv6OptSourceAddress
	if s.advert {
		typ, optType = layers.ICMPv6TypeNeighborAdvertisement, layers.ICMPv6OptTargetAddress
	}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, s.code)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	var opts layers.ICMPv6Options
	if s.lladdr != nil {
		opts = append(opts, layers.ICMPv6Option{Type: optType, Data: s.lladdr})
	}
	var body gopacket.SerializableLayer = &layers.ICMPv6NeighborSolicitation{TargetAddress: s.target.AsSlice(), Options: opts}
	if s.advert {
		body = &layers.ICMPv6NeighborAdvertisement{Flags: s.flags, TargetAddress: s.target.AsSlice(), Options: opts}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, icmp, body); err != nil {
		tb.Fatalf("serializing %+v: %v", s, err)
	}
	b := buf.Bytes()
	if s.raw != nil {
		b = s.raw(b)
		if !s.keepChecksum {
			fixChecksum(b)
		}
	}
	return b
}

// appendOpt returns a mutation appending the option bytes opt to a
// frame's message.
func appendOpt(opt []byte) func([]byte) []byte {
	return func(b []byte) []byte {
		b = append(b, opt...)
		plen := int(b[18])<<8 | int(b[19]) + len(opt)
		b[18], b[19] = byte(plen>>8), byte(plen)
		return b
	}
}

// icmpSum computes, independently of the package, the one's complement
// sum of the IPv6 pseudo-header and ICMPv6 message of the frame b (no
// extension headers), 16 bits at a time.
func icmpSum(b []byte) uint16 {
	plen := int(binary.BigEndian.Uint16(b[18:]))
	msg := b[54 : 54+plen]
	var s uint32
	add := func(p []byte) {
		for i := 0; i+1 < len(p); i += 2 {
			s += uint32(p[i])<<8 | uint32(p[i+1])
		}
		if len(p)%2 == 1 {
			s += uint32(p[len(p)-1]) << 8
		}
	}
	add(b[22:54]) // source and destination
	s += uint32(plen) + 58
	add(msg)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// fixChecksum sets the ICMPv6 checksum of the frame b (its payload length
// must fit in b).
func fixChecksum(b []byte) {
	if len(b) < 58 || 54+int(binary.BigEndian.Uint16(b[18:])) > len(b) {
		return
	}
	b[56], b[57] = 0, 0
	binary.BigEndian.PutUint16(b[56:], ^icmpSum(b))
}

// checksumOK reports whether the frame b carries a valid ICMPv6 checksum.
func checksumOK(b []byte) bool { return icmpSum(b) == 0xffff }

// decoded is an Ethernet/IPv6/ICMPv6 advertisement decoded by gopacket and
// by mdlayher/ndp.
type decoded struct {
	eth *layers.Ethernet
	ip  *layers.IPv6
	na  *layers.ICMPv6NeighborAdvertisement
	msg *ndp.NeighborAdvertisement
}

// decodeNA decodes b with gopacket and ndp.ParseMessage and fails the test
// unless it is a well-formed Neighbor Advertisement with a valid checksum.
func decodeNA(tb testing.TB, b []byte) decoded {
	tb.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		tb.Fatalf("gopacket cannot decode % x: %v", b, el.Error())
	}
	var d decoded
	d.eth, _ = p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	d.ip, _ = p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	d.na, _ = p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if d.eth == nil || d.ip == nil || icmp == nil || d.na == nil {
		tb.Fatalf("frame % x is not Ethernet/IPv6/ICMPv6 NA", b)
	}
	if icmp.TypeCode.Code() != 0 || d.ip.HopLimit != 255 || d.ip.NextHeader != layers.IPProtocolICMPv6 {
		tb.Fatalf("frame % x: code %d, hop limit %d, next header %v", b, icmp.TypeCode.Code(), d.ip.HopLimit, d.ip.NextHeader)
	}
	if !checksumOK(b) {
		tb.Fatalf("frame % x: bad ICMPv6 checksum", b)
	}
	m, err := ndp.ParseMessage(b[54 : 54+int(d.ip.Length)])
	if err != nil {
		tb.Fatalf("ndp.ParseMessage(% x): %v", b[54:], err)
	}
	var ok bool
	if d.msg, ok = m.(*ndp.NeighborAdvertisement); !ok {
		tb.Fatalf("ndp.ParseMessage gives %T, want *ndp.NeighborAdvertisement", m)
	}
	return d
}

func (d decoded) src() netip.Addr    { a, _ := netip.AddrFromSlice(d.ip.SrcIP); return a }
func (d decoded) dst() netip.Addr    { a, _ := netip.AddrFromSlice(d.ip.DstIP); return a }
func (d decoded) target() netip.Addr { a, _ := netip.AddrFromSlice(d.na.TargetAddress); return a }

// tlla returns the target link-layer address option of d, as ndp parses
// it, and how many options there are.
func (d decoded) tlla() (net.HardwareAddr, int) {
	var mac net.HardwareAddr
	for _, o := range d.msg.Options {
		if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target {
			mac = l.Addr
		}
	}
	return mac, len(d.msg.Options)
}

// checkReply checks, with gopacket and mdlayher/ndp, that b is the
// advertisement ourSelf owes to the solicitation req for an owned target:
// RFC 4861 section 7.2.4.
func checkReply(tb testing.TB, b []byte, req ndpSpec) {
	tb.Helper()
	checkReplyFrom(tb, b, req, ourMAC, ourLL, 0x20)
}

// checkReplyFrom is checkReply for an answer with mac, from src, with the
// flags (R, O) of an unsolicited advertisement; S is added for a unicast
// source.
func checkReplyFrom(tb testing.TB, b []byte, req ndpSpec, mac net.HardwareAddr, src netip.Addr, flags uint8) {
	tb.Helper()
	d := decodeNA(tb, b)
	dad := req.src.IsUnspecified()
	wantEthDst, wantDst := req.ethSrc, req.src
	if req.lladdr != nil {
		wantEthDst = req.lladdr
	}
	if dad {
		wantEthDst, wantDst = nodesMAC, allNodes
	} else {
		flags |= 0x40
	}
	tlla, nopts := d.tlla()
	checks := []struct {
		what      string
		got, want any
	}{
		{"Ethernet destination", d.eth.DstMAC.String(), wantEthDst.String()},
		{"Ethernet source", d.eth.SrcMAC.String(), mac.String()},
		{"IPv6 source", d.src(), src},
		{"IPv6 destination", d.dst(), wantDst},
		{"flags", d.na.Flags, flags},
		{"ndp flags (R, S, O)", [3]bool{d.msg.Router, d.msg.Solicited, d.msg.Override}, [3]bool{flags&0x80 != 0, flags&0x40 != 0, flags&0x20 != 0}},
		{"target", d.target(), req.target},
		{"ndp target", d.msg.TargetAddress, req.target},
		{"target link-layer address", tlla.String(), mac.String()},
		{"options", nopts, 1},
		{"length", len(b), ndpproxy.ReplyLen},
	}
	for _, c := range checks {
		if c.got != c.want {
			tb.Errorf("reply %s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

// checkAnnouncement checks, with gopacket and mdlayher/ndp, that b is an
// unsolicited advertisement of addr by ourMAC (RFC 4861 section 7.2.6).
func checkAnnouncement(tb testing.TB, b []byte, addr netip.Addr) {
	tb.Helper()
	checkReplyFrom(tb, b, ndpSpec{src: unspec, target: addr}, ourMAC, ourLL, 0x20)
}

// written is one frame written to a memConn.
type written struct {
	frame []byte
	addr  net.Addr
}

// memConn is an in-memory net.PacketConn: tests inject frames with send and
// collect what the Responder writes with next.
type memConn struct {
	in       chan []byte
	inErr    chan error
	out      chan written
	closed   chan struct{}
	once     sync.Once
	mu       sync.Mutex
	writeErr error
}

var _ net.PacketConn = (*memConn)(nil)

func newMemConn() *memConn {
	return &memConn{
		in:     make(chan []byte),
		inErr:  make(chan error),
		out:    make(chan written, 1<<16),
		closed: make(chan struct{}),
	}
}

func (c *memConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case b := <-c.in:
		return copy(p, b), &packet.Addr{HardwareAddr: peerMAC}, nil
	case err := <-c.inErr:
		return 0, nil, err
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *memConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	err := c.writeErr
	c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if err != nil {
		return 0, err
	}
	c.out <- written{frame: append([]byte(nil), p...), addr: addr}
	return len(p), nil
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *memConn) LocalAddr() net.Addr                { return &packet.Addr{HardwareAddr: ourMAC} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

func (c *memConn) setWriteErr(err error) {
	c.mu.Lock()
	c.writeErr = err
	c.mu.Unlock()
}

// send hands frame to the Responder's next read.
func (c *memConn) send(tb testing.TB, frame []byte) {
	tb.Helper()
	select {
	case c.in <- frame:
	case <-time.After(5 * time.Second):
		tb.Fatal("responder did not read the frame within 5s")
	}
}

// next returns the next frame written, or fails the test after timeout.
func (c *memConn) next(tb testing.TB, timeout time.Duration) written {
	tb.Helper()
	select {
	case w := <-c.out:
		return w
	case <-time.After(timeout):
		tb.Fatalf("no frame written within %v", timeout)
		return written{}
	}
}

// none checks that nothing is written within d.
func (c *memConn) none(tb testing.TB, d time.Duration) {
	tb.Helper()
	select {
	case w := <-c.out:
		tb.Fatalf("unexpected frame written: % x", w.frame)
	case <-time.After(d):
	}
}

// quiet is a Config without announcements, for tests that count writes.
func quiet() *ndpproxy.Config { return &ndpproxy.Config{AnnounceCount: -1, SourceAddr: ourLL} }

// newResponder returns a Responder over a new memConn, closed at the end
// of the test, owning addrs. A cfg without SourceAddr gets ourLL.
func newResponder(tb testing.TB, cfg *ndpproxy.Config, addrs ...netip.Addr) (*ndpproxy.Responder, *memConn) {
	tb.Helper()
	conn := newMemConn()
	if cfg == nil {
		cfg = &ndpproxy.Config{}
	}
	if !cfg.SourceAddr.IsValid() {
		c := *cfg
		c.SourceAddr = ourLL
		cfg = &c
	}
	r, err := ndpproxy.New(ourIfi, conn, cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = r.Close() })
	for _, a := range addrs {
		if err := r.Add(a); err != nil {
			tb.Fatalf("Add(%v): %v", a, err)
		}
	}
	return r, conn
}

// waitStats polls r.Stats until cond holds, or fails the test after 5s.
func waitStats(tb testing.TB, r *ndpproxy.Responder, cond func(ndpproxy.Stats) bool) ndpproxy.Stats {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		s := r.Stats()
		if cond(s) {
			return s
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("stats condition not met within 5s; stats: %+v", s)
		case <-time.After(time.Millisecond):
		}
	}
}

// recordHandler is a slog.Handler that records every record.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// at returns the records at level.
func (h *recordHandler) at(level slog.Level) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.records {
		if r.Level == level {
			out = append(out, r)
		}
	}
	return out
}

// seedDir holds the frames used as fuzz seeds and in TestSeedFrames.
var seedDir = filepath.Join("..", "testdata", "ndp")

// readHexFrame reads a frame stored as hex digits; whitespace and
// everything after '#' on a line are ignored.
func readHexFrame(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var digits strings.Builder
	for line := range strings.Lines(string(b)) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	frame, err := hex.DecodeString(digits.String())
	if err != nil {
		return nil, errors.Join(errors.New(path), err)
	}
	return frame, nil
}
