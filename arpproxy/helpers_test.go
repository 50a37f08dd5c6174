package arpproxy_test

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/mdlayher/packet"

	"github.com/vif-project/vif/arpproxy"
)

// Addresses used throughout the tests. The hardware addresses are locally
// administered; the IPs come from the documentation ranges.
var (
	ourMAC   = mustMAC("02:00:00:00:00:01")
	peerMAC  = mustMAC("02:00:00:00:00:02")
	otherMAC = mustMAC("02:00:00:00:00:03")
	bcastMAC = mustMAC("ff:ff:ff:ff:ff:ff")
	zeroMAC  = mustMAC("00:00:00:00:00:00")

	owned1   = netip.MustParseAddr("192.0.2.1")
	owned2   = netip.MustParseAddr("192.0.2.2")
	notOwned = netip.MustParseAddr("192.0.2.99")
	peerIP   = netip.MustParseAddr("198.51.100.2")
	zeroIP   = netip.IPv4Unspecified()

	ourIfi = &net.Interface{Index: 7, MTU: 1500, Name: "slave0", HardwareAddr: ourMAC}
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// arpSpec describes a frame to build with gopacket, independently of the
// package's own encoder. Zero fields get the values of a well-formed ARP
// frame for IPv4 over Ethernet.
type arpSpec struct {
	ethDst, ethSrc net.HardwareAddr
	ethType        layers.EthernetType
	hwType         layers.LinkType
	proto          layers.EthernetType
	hwLen, protLen uint8
	op             uint16
	sha, tha       net.HardwareAddr
	spa, tpa       netip.Addr
}

// request returns a broadcast ARP request from sha/spa for tpa.
func request(sha net.HardwareAddr, spa, tpa netip.Addr) arpSpec {
	return arpSpec{ethDst: bcastMAC, ethSrc: sha, op: layers.ARPRequest, sha: sha, spa: spa, tha: zeroMAC, tpa: tpa}
}

// reply returns an ARP reply from sha/spa to tha/tpa.
func reply(sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) arpSpec {
	return arpSpec{ethDst: tha, ethSrc: sha, op: layers.ARPReply, sha: sha, spa: spa, tha: tha, tpa: tpa}
}

func (s arpSpec) with(f func(*arpSpec)) arpSpec { f(&s); return s }

// bytes serializes s with gopacket; the frame is padded to 60 bytes, like
// frames received from the wire.
func (s arpSpec) bytes(tb testing.TB) []byte {
	tb.Helper()
	def := func(v, d uint8) uint8 {
		if v == 0 {
			return d
		}
		return v
	}
	eth := &layers.Ethernet{DstMAC: s.ethDst, SrcMAC: s.ethSrc, EthernetType: s.ethType}
	if eth.EthernetType == 0 {
		eth.EthernetType = layers.EthernetTypeARP
	}
	arp := &layers.ARP{
		AddrType:          s.hwType,
		Protocol:          s.proto,
		HwAddressSize:     def(s.hwLen, 6),
		ProtAddressSize:   def(s.protLen, 4),
		Operation:         s.op,
		SourceHwAddress:   s.sha,
		SourceProtAddress: s.spa.AsSlice(),
		DstHwAddress:      s.tha,
		DstProtAddress:    s.tpa.AsSlice(),
	}
	if arp.AddrType == 0 {
		arp.AddrType = layers.LinkTypeEthernet
	}
	if arp.Protocol == 0 {
		arp.Protocol = layers.EthernetTypeIPv4
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp); err != nil {
		tb.Fatalf("serializing %+v: %v", s, err)
	}
	return buf.Bytes()
}

// decoded is an Ethernet/ARP frame decoded by gopacket.
type decoded struct {
	eth *layers.Ethernet
	arp *layers.ARP
}

// decode decodes b with gopacket and fails the test unless it is a
// well-formed Ethernet/ARP frame for IPv4 over Ethernet.
func decode(tb testing.TB, b []byte) decoded {
	tb.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		tb.Fatalf("gopacket cannot decode % x: %v", b, el.Error())
	}
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || arp == nil {
		tb.Fatalf("frame % x is not Ethernet/ARP", b)
	}
	if arp.AddrType != layers.LinkTypeEthernet || arp.Protocol != layers.EthernetTypeIPv4 ||
		arp.HwAddressSize != 6 || arp.ProtAddressSize != 4 {
		tb.Fatalf("frame % x is not ARP for IPv4 over Ethernet: %+v", b, arp)
	}
	return decoded{eth: eth, arp: arp}
}

func (d decoded) spa() netip.Addr { a, _ := netip.AddrFromSlice(d.arp.SourceProtAddress); return a }
func (d decoded) tpa() netip.Addr { a, _ := netip.AddrFromSlice(d.arp.DstProtAddress); return a }

// checkReply checks, with gopacket, that b is the reply we owe to the
// request req for the owned address asked for.
func checkReply(tb testing.TB, b []byte, req arpSpec) {
	tb.Helper()
	d := decode(tb, b)
	checks := []struct {
		what      string
		got, want string
	}{
		{"Ethernet destination", d.eth.DstMAC.String(), req.sha.String()},
		{"Ethernet source", d.eth.SrcMAC.String(), ourMAC.String()},
		{"opcode", strconv.Itoa(int(d.arp.Operation)), strconv.Itoa(layers.ARPReply)},
		{"sender hardware address", net.HardwareAddr(d.arp.SourceHwAddress).String(), ourMAC.String()},
		{"sender IP", d.spa().String(), req.tpa.String()},
		{"target hardware address", net.HardwareAddr(d.arp.DstHwAddress).String(), req.sha.String()},
		{"target IP", d.tpa().String(), req.spa.String()},
	}
	for _, c := range checks {
		if c.got != c.want {
			tb.Errorf("reply %s = %s, want %s", c.what, c.got, c.want)
		}
	}
}

// checkAnnouncement checks, with gopacket, that b is an RFC 5227
// announcement of addr by ourMAC.
func checkAnnouncement(tb testing.TB, b []byte, addr netip.Addr) {
	tb.Helper()
	d := decode(tb, b)
	if d.eth.DstMAC.String() != bcastMAC.String() || d.eth.SrcMAC.String() != ourMAC.String() ||
		d.arp.Operation != layers.ARPRequest ||
		net.HardwareAddr(d.arp.SourceHwAddress).String() != ourMAC.String() ||
		net.HardwareAddr(d.arp.DstHwAddress).String() != zeroMAC.String() ||
		d.spa() != addr || d.tpa() != addr {
		tb.Errorf("not an announcement of %v by %v: eth %v > %v, op %d, %v/%v > %v/%v",
			addr, ourMAC, d.eth.SrcMAC, d.eth.DstMAC, d.arp.Operation,
			net.HardwareAddr(d.arp.SourceHwAddress), d.spa(), net.HardwareAddr(d.arp.DstHwAddress), d.tpa())
	}
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
func quiet() *arpproxy.Config { return &arpproxy.Config{AnnounceCount: -1} }

// newResponder returns a Responder over a new memConn, closed at the end
// of the test, owning addrs.
func newResponder(tb testing.TB, cfg *arpproxy.Config, addrs ...netip.Addr) (*arpproxy.Responder, *memConn) {
	tb.Helper()
	conn := newMemConn()
	r, err := arpproxy.New(ourIfi, conn, cfg)
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
func waitStats(tb testing.TB, r *arpproxy.Responder, cond func(arpproxy.Stats) bool) arpproxy.Stats {
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

// attr returns the value of attribute key of r as a string.
func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// seedDir holds the frames used as fuzz seeds and in TestSeedFrames.
var seedDir = filepath.Join("..", "testdata", "arp")

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
