//go:build linux

package main

// Hostile input on the wire (DESIGN.md section 5; CVE-2020-10136 is the
// model attack: an IPIP endpoint that decapsulates from anyone is an open
// relay). Hosts a and b run vifs tunnelling to each other over one
// Ethernet segment; m, on the same segment, attacks a with packets built
// by internal/craft and sent from m's namespace. Every test checks that
// the hostile packets are dropped and counted by reason in "vif show
// --json", that nothing they carry is delivered or answered (tcpdump on
// the segment and on the vif), and that legitimate traffic still flows
// afterwards.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/internal/craft"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/vif/nstest"
)

// The addresses of the attack topology.
var (
	underA = netip.MustParseAddr("198.18.0.1")
	underB = netip.MustParseAddr("198.18.0.2")
	underM = netip.MustParseAddr("198.18.0.3")
	vifA   = netip.MustParseAddr("192.0.2.1")
	vifB   = netip.MustParseAddr("198.51.100.1")
)

// attackNet is three hosts on one segment: a and b run vif0 tunnelling to
// each other, m is the attacker.
type attackNet struct {
	a, b, m       *nstest.Host
	aIf, bIf, mIf *nstest.Iface
	pa, pb        *nstest.Proc
	proto         uint8
	raw           *craft.RawConn // m's raw IP socket (IP_HDRINCL)
}

// attackOpts configures newAttackNet.
type attackOpts struct {
	proto    uint8    // 94 (default) or 4
	arpProxy bool     // run a's vif with its ARP proxy
	aExtra   []string // more arguments for a's vif up
	extra    []string // more arguments for both vifs' vif up: the path
}

// A packetPath is a way vif carries a tunnel: a protocol, and the
// arguments of vif up that choose the underlay or the kernel offload.
// Every rule must hold on each; the hostile tests run against them.
type packetPath struct {
	name     string
	proto    uint8
	args     []string
	underlay string // what vif show must say carries it
	offload  bool
}

// check fails t unless vif0 on h runs on p: a silent fallback would test
// another path than the one named.
func (p packetPath) check(t *testing.T, h *nstest.Host) {
	t.Helper()
	st := vifStatus(t, h, "vif0")
	// The offload's loop sends through AF_XDP and receives through the
	// kernel.
	if st.Underlay.Kind != p.underlay || st.Offload != p.offload || st.Underlay.TransmitOnly != (p.offload && p.underlay == "xdp") {
		t.Errorf("vif0 on %v runs on underlay %q (fallback: %q), offload %v; %s wants %q, offload %v",
			h, st.Underlay.Kind, st.Underlay.Fallback, st.Offload, p.name, p.underlay, p.offload)
	}
}

// allPaths are both protocols on the default underlay (AF_XDP), the raw underlay,
// and the kernel offload, its loop sending through AF_XDP (both ends:
// between namespaces of one host, a receiving raw socket cannot finish
// the checksums the offload leaves).
var allPaths = []packetPath{
	{"proto94", craft.ProtoIPIP, nil, "xdp", false},
	{"proto4", craft.ProtoIPinIP, nil, "xdp", false},
	{"proto94-raw", craft.ProtoIPIP, []string{"--underlay", "raw"}, "raw", false},
	{"proto94-offload", craft.ProtoIPIP, []string{"--offload"}, "xdp", true},
	{"proto4-offload", craft.ProtoIPinIP, []string{"--offload"}, "xdp", true},
}

// underlayPaths are protocol 94 on each path.
var underlayPaths = []packetPath{allPaths[0], allPaths[2], allPaths[3]}

// forPaths runs f as a subtest for each of paths.
func forPaths(t *testing.T, paths []packetPath, f func(t *testing.T, p packetPath)) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) { f(t, p) })
	}
}

func newAttackNet(t *testing.T, o attackOpts) *attackNet {
	t.Helper()
	if o.proto == 0 {
		o.proto = craft.ProtoIPIP
	}
	n := nstest.New(t)
	an := &attackNet{a: n.Host("a"), b: n.Host("b"), m: n.Host("m"), proto: o.proto}
	seg := n.Segment()
	an.aIf = seg.Attach(an.a, "198.18.0.1/24")
	an.bIf = seg.Attach(an.b, "198.18.0.2/24")
	an.mIf = seg.Attach(an.m, "198.18.0.3/24")
	proto := strconv.Itoa(int(o.proto))
	aArgs := []string{"vif0", vifA.String(), "--slave", an.aIf.Name(), "--peer", underB.String(),
		"--route", "198.51.100.0/24", "--proto", proto}
	if !o.arpProxy {
		aArgs = append(aArgs, "--no-arp-proxy")
	}
	an.pa = startVif(t, an.a, slices.Concat(aArgs, o.aExtra, o.extra)...)
	an.pb = startVif(t, an.b, append([]string{"vif0", vifB.String(), "--slave", an.bIf.Name(), "--peer", underA.String(),
		"--route", "192.0.2.0/24", "--proto", proto, "--no-arp-proxy"}, o.extra...)...)
	if err := an.m.Do(func() (err error) {
		an.raw, err = craft.ListenRaw(an.mIf.Name())
		return err
	}); err != nil {
		t.Fatalf("raw socket on m: %v", err)
	}
	t.Cleanup(func() { an.raw.Close() })
	// Legitimate traffic works before the attack, and m knows a's MAC.
	if err := an.a.Ping(vifB.String(), 1); err != nil {
		t.Fatalf("tunnel a-b does not work before the attack: %v", err)
	}
	if err := an.m.Ping(underA.String(), 1); err != nil {
		t.Fatalf("m cannot reach a: %v", err)
	}
	return an
}

// send sends pkts from m's raw socket, n times each.
func (an *attackNet) send(t *testing.T, n int, pkts ...[]byte) {
	t.Helper()
	for range n {
		if err := an.raw.SendAll(pkts...); err != nil {
			t.Fatalf("m sending: %v", err)
		}
	}
}

// spoofed returns inner encapsulated as if b had sent it to a: outer source
// b's underlay address, the tunnel's protocol, outer TOS tos.
func (an *attackNet) spoofed(tos uint8, inner []byte) []byte {
	return craft.Encap(an.proto, underB, underA, tos, inner)
}

// checkVifAlive fails the test unless a still pings b's vif address
// through the tunnel and both vif processes still run, free of races
// (the vif binary is built with -race) and panics.
func (an *attackNet) checkVifAlive(t *testing.T) {
	t.Helper()
	for _, p := range []*nstest.Proc{an.pa, an.pb} {
		select {
		case <-p.Done():
			t.Fatalf("%v exited: %s", p, p.Output())
		default:
		}
		if out := p.Output(); strings.Contains(out, "DATA RACE") || strings.Contains(out, "panic") {
			t.Errorf("%v reported a race or a panic:\n%s", p, out)
		}
	}
	if err := an.a.Ping(vifB.String(), 3); err != nil {
		t.Errorf("after the attack, the tunnel no longer carries a ping: %v", err)
	}
}

// waitStatus polls "vif show" on h until cond holds for the vif name or
// timeout passes, and returns the last status.
func waitStatus(t *testing.T, h *nstest.Host, name string, timeout time.Duration, cond func(daemon.VifStatus) bool) daemon.VifStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := vifStatus(t, h, name)
		if cond(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// checkRx waits until vif0 on h has counted the rx drops in want (by key,
// as deltas from before) and decapsulated decap more packets, then checks
// that the counts are exact: no other rx drop reason moved and nothing
// more was decapsulated. It returns the new status.
func checkRx(t *testing.T, h *nstest.Host, before daemon.VifStatus, want map[string]uint64, decap uint64) daemon.VifStatus {
	t.Helper()
	delta := func(st daemon.VifStatus, k string) uint64 { return st.Counters.Drops[k] - before.Counters.Drops[k] }
	reached := func(st daemon.VifStatus) bool {
		for k, v := range want {
			if delta(st, k) < v {
				return false
			}
		}
		return st.Counters.DecapsulatedPackets-before.Counters.DecapsulatedPackets >= decap
	}
	waitStatus(t, h, "vif0", 5*time.Second, reached)
	time.Sleep(100 * time.Millisecond) // let any excess arrive
	st := vifStatus(t, h, "vif0")
	keys := slices.Sorted(maps.Keys(st.Counters.Drops))
	got := map[string]uint64{}
	for _, k := range keys {
		if d := delta(st, k); d != 0 && strings.HasPrefix(k, "rx_") {
			got[k] = d
		}
	}
	wantNZ := map[string]uint64{}
	for k, v := range want {
		if v != 0 {
			wantNZ[k] = v
		}
	}
	if !maps.Equal(got, wantNZ) {
		t.Errorf("rx drops on %v changed by %v, want %v", h, got, wantNZ)
	}
	if d := st.Counters.DecapsulatedPackets - before.Counters.DecapsulatedPackets; d != decap {
		t.Errorf("%d packets decapsulated on %v, want %d", d, h, decap)
	}
	t.Logf("%v: rx drops +%v, decapsulated +%d", h, got, st.Counters.DecapsulatedPackets-before.Counters.DecapsulatedPackets)
	return st
}

// ipChain returns the IPv4 headers of p from the outside in, descending
// through IPIP (protocol 4 or 94), which gopacket does not decode for 94.
func ipChain(p gopacket.Packet) []*layers.IPv4 {
	ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok {
		return nil
	}
	chain := []*layers.IPv4{ip}
	for len(chain) < 200 && (ip.Protocol == 4 || ip.Protocol == 94) {
		var in layers.IPv4
		if in.DecodeFromBytes(ip.Payload, gopacket.NilDecodeFeedback) != nil {
			break
		}
		ip = &in
		chain = append(chain, ip)
	}
	return chain
}

// icmpEcho returns the ICMP echo request or reply carried by the
// innermost IPv4 header of p, with that header.
func icmpEcho(p gopacket.Packet) (*layers.IPv4, *layers.ICMPv4, bool) {
	chain := ipChain(p)
	if len(chain) == 0 {
		return nil, nil, false
	}
	ip := chain[len(chain)-1]
	if ip.Protocol != layers.IPProtocolICMPv4 {
		return nil, nil, false
	}
	var icmp layers.ICMPv4
	if icmp.DecodeFromBytes(ip.Payload, gopacket.NilDecodeFeedback) != nil {
		return nil, nil, false
	}
	switch icmp.TypeCode.Type() {
	case layers.ICMPv4TypeEchoRequest, layers.ICMPv4TypeEchoReply:
		return ip, &icmp, true
	}
	return nil, nil, false
}

func isEchoReply(p gopacket.Packet) bool {
	_, icmp, ok := icmpEcho(p)
	return ok && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoReply
}

// captureAll starts captures on a's vif0 and on the segment ports of a, b
// and m.
func (an *attackNet) captureAll(t *testing.T) map[string]*nstest.Capture {
	t.Helper()
	return map[string]*nstest.Capture{
		"a/vif0":             an.a.Capture("vif0", ""),
		"a/" + an.aIf.Name(): an.aIf.Capture("ip"),
		"b/" + an.bIf.Name(): an.bIf.Capture("ip"),
		"m/" + an.mIf.Name(): an.mIf.Capture("ip"),
	}
}

// stopAll stops the captures and returns their packets by name.
func stopAll(t *testing.T, cs map[string]*nstest.Capture) map[string][]gopacket.Packet {
	t.Helper()
	out := map[string][]gopacket.Packet{}
	for name, c := range cs {
		out[name] = stopCapture(t, c)
	}
	return out
}

// stopCapture stops c and returns its packets. It fails the test if
// tcpdump lost packets: a capture with holes proves nothing about what
// was not sent.
func stopCapture(t *testing.T, c *nstest.Capture) []gopacket.Packet {
	t.Helper()
	pkts := c.Stop()
	if d := c.Dropped(); d != 0 {
		t.Errorf("%v: tcpdump reports %d packets dropped by the kernel; the capture is incomplete", c, d)
	}
	return pkts
}

// sentBy reports whether the Ethernet frame p was sent by mac.
func sentBy(p gopacket.Packet, mac net.HardwareAddr) bool {
	eth, ok := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	return ok && bytes.Equal(eth.SrcMAC, mac)
}

// arpOnce sends one ARP request for addr from h's interface ifname and
// reports whether a reply came within a second, and from which MAC.
func arpOnce(h *nstest.Host, ifname, addr string) (net.HardwareAddr, bool) {
	return arping(h, ifname, addr, "-c", "1", "-C", "1", "-w", "1")
}

// linkPackets returns the packets h's kernel counts as received and sent
// on the interface name (ip -s link).
func linkPackets(t *testing.T, h *nstest.Host, name string) (rx, tx uint64) {
	t.Helper()
	var links []struct {
		Stats struct {
			RX struct{ Packets uint64 } `json:"rx"`
			TX struct{ Packets uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	out := h.IP("-j", "-s", "link", "show", "dev", name)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s link show %s on %v: %v\n%s", name, h, err, out)
	}
	return links[0].Stats.RX.Packets, links[0].Stats.TX.Packets
}

// TestHostileNotPeer: IPIP from a host that is not the configured peer is
// never decapsulated (DESIGN.md 5.5), whatever it carries.
func TestHostileNotPeer(t *testing.T) {
	forPaths(t, allPaths, func(t *testing.T, path packetPath) {
		proto := path.proto
		an := newAttackNet(t, attackOpts{proto: proto, extra: path.args})
		path.check(t, an.a)
		path.check(t, an.b)
		before := vifStatus(t, an.a, "vif0")
		caps := an.captureAll(t)

		// A ping for a's vif address, as if from b's vif, in IPIP from
		// m's own address and from spoofed addresses of the segment
		// that are not the peer's.
		const n = 20
		inner := craft.Ping(vifB, vifA, 0, 0x4e50, 1)
		for _, src := range []string{"198.18.0.3", "198.18.0.99", "198.18.0.254", "203.0.113.5"} {
			an.send(t, n, craft.Encap(proto, netip.MustParseAddr(src), underA, 0, inner))
		}
		checkRx(t, an.a, before, map[string]uint64{"rx_not_peer": 4 * n}, 0)

		pkts := stopAll(t, caps)
		if got := len(pkts["a/vif0"]); got != 0 {
			t.Errorf("%d packets reached a's vif0; want none", got)
		}
		for name, ps := range pkts {
			for _, p := range ps {
				if isEchoReply(p) {
					t.Errorf("echo reply on %s: %v", name, p)
				}
				if name == "a/"+an.aIf.Name() && sentBy(p, an.aIf.MAC()) {
					t.Errorf("a sent a packet during the attack: %v", p)
				}
			}
		}
		an.checkVifAlive(t)
	})
}

// TestHostileOpenRelay: m spoofs b's underlay address, so the outer check
// passes, and asks a to deliver the inner packet elsewhere. a forwards IP
// and has a route to m's network behind 203.0.113.0/24, so an open relay
// would show on the wire; it must drop everything as rx_not_local. A
// spoofed packet for a's own vif address is decapsulated: the control
// that shows the attack reaches the vif at all.
func TestHostileOpenRelay(t *testing.T) {
	forPaths(t, allPaths, func(t *testing.T, path packetPath) {
		proto := path.proto
		an := newAttackNet(t, attackOpts{proto: proto, extra: path.args})
		an.a.Sysctl("net.ipv4.ip_forward", "1")
		an.a.AddRoute("203.0.113.0/24", "via", underM.String())
		before := vifStatus(t, an.a, "vif0")
		caps := an.captureAll(t)

		const n = 10
		targets := []string{
			"203.0.113.9",  // routed on to m
			"198.18.0.3",   // m itself
			"198.18.0.1",   // a's underlay address: local, but not the vif's
			"198.51.100.7", // back into the tunnel towards b
			"192.0.2.99",   // next to a's vif address
			"8.8.8.8",      // the Internet
		}
		for _, dst := range targets {
			an.send(t, n, an.spoofed(0, craft.Ping(vifB, netip.MustParseAddr(dst), 0, 0x7e1a, 1)))
		}
		an.send(t, 1, an.spoofed(0, craft.Ping(vifB, vifA, 0, 0x600d, 1)))
		checkRx(t, an.a, before, map[string]uint64{"rx_not_local": uint64(n * len(targets))}, 1)

		pkts := stopAll(t, caps)
		var requests []uint16
		for _, p := range pkts["a/vif0"] {
			if ip, icmp, ok := icmpEcho(p); ok && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoRequest {
				requests = append(requests, icmp.Id)
				if !ip.DstIP.Equal(vifA.AsSlice()) {
					t.Errorf("echo request for %v delivered into a's vif0", ip.DstIP)
				}
			}
		}
		if !slices.Equal(requests, []uint16{0x600d}) {
			t.Errorf("echo requests with ids %x reached a's vif0, want only the control 600d", requests)
		}
		for _, p := range pkts["a/"+an.aIf.Name()] {
			chain := ipChain(p)
			if !sentBy(p, an.aIf.MAC()) || len(chain) == 0 {
				continue
			}
			// The only thing a may send is its reply to the control
			// ping, to b's vif, through the tunnel.
			_, icmp, ok := icmpEcho(p)
			if !(ok && icmp.Id == 0x600d && len(chain) == 2 && chain[0].DstIP.Equal(underB.AsSlice())) {
				t.Errorf("a sent (relayed?) %v", p)
			}
		}
		for _, p := range pkts["m/"+an.mIf.Name()] {
			if _, icmp, ok := icmpEcho(p); ok && icmp.Id == 0x7e1a && len(ipChain(p)) == 1 {
				t.Errorf("m received a relayed packet: %v", p)
			}
		}
		an.checkVifAlive(t)
	})
}

// TestHostileBadSource: decapsulated packets whose inner source no tunnel
// may carry (one of our own addresses, loopback, 0/8, multicast, class E,
// broadcast) are dropped as rx_bad_source.
func TestHostileBadSource(t *testing.T) {
	forPaths(t, underlayPaths, func(t *testing.T, path packetPath) {
		an := newAttackNet(t, attackOpts{extra: path.args})
		before := vifStatus(t, an.a, "vif0")
		capVif := an.a.Capture("vif0", "")

		const n = 5
		srcs := []string{"192.0.2.1", "127.0.0.1", "127.1.2.3", "0.0.0.0", "0.1.2.3", "224.0.0.5",
			"239.255.255.250", "240.0.0.1", "255.255.255.255"}
		for _, s := range srcs {
			an.send(t, n, an.spoofed(0, craft.Ping(netip.MustParseAddr(s), vifA, 0, 0xbad5, 1)))
		}
		checkRx(t, an.a, before, map[string]uint64{"rx_bad_source": uint64(n * len(srcs))}, 0)
		if got := stopCapture(t, capVif); len(got) != 0 {
			t.Errorf("%d packets reached a's vif0, want none: %v", len(got), got[0])
		}
		an.checkVifAlive(t)
	})
}

// TestHostileMalformed: malformed inner headers, nested IPIP and an inner
// TTL of 0 are counted by reason; malformed outer headers never get past
// a's kernel (ip_rcv counts them) and never reach the vif; valid but
// unusual outer headers (options, fragments) are decapsulated.
func TestHostileMalformed(t *testing.T) {
	forPaths(t, underlayPaths, func(t *testing.T, path packetPath) {
		an := newAttackNet(t, attackOpts{extra: path.args})
		ping := func(id uint16) []byte { return craft.Ping(vifB, vifA, 0, id, 1) }
		broken := func(f func(in []byte) []byte) []byte {
			return an.spoofed(0, f(ping(0xbad0)))
		}
		// 100 levels of IPIP make a 2060-byte packet: m sends it in two
		// outer fragments, which a's kernel reassembles before the vif sees
		// it.
		nested := func(levels int, protos ...uint8) [][]byte {
			p := ping(0xbad1)
			for k := range levels {
				p = craft.Encap(protos[k%len(protos)], underB, underA, 0, p)
			}
			craft.SetID(p, 0x4000+uint16(levels))
			frags, err := craft.Fragment(p, 1500)
			if err != nil {
				t.Fatal(err)
			}
			return frags
		}
		cases := []struct {
			name string
			pkts [][]byte
			key  string
		}{
			{"inner truncated", [][]byte{broken(func(in []byte) []byte { return in[:12] })}, "rx_inner_truncated"},
			{"inner IHL 4", [][]byte{broken(func(in []byte) []byte { craft.SetHeaderLen(in, 4); return in })}, "rx_inner_header_len"},
			{"inner IHL 15 past the packet", [][]byte{broken(func(in []byte) []byte { craft.SetHeaderLen(in, 15); return in[:40] })}, "rx_inner_truncated"},
			{"inner bad checksum", [][]byte{broken(func(in []byte) []byte { in[10] ^= 0x5a; return in })}, "rx_inner_checksum"},
			{"inner total length past the outer payload", [][]byte{broken(func(in []byte) []byte { craft.SetTotalLen(in, uint16(len(in)+100)); return in })}, "rx_inner_total_len"},
			{"inner total length below its header", [][]byte{broken(func(in []byte) []byte { craft.SetTotalLen(in, 12); return in })}, "rx_inner_total_len"},
			{"inner version 6", [][]byte{broken(func(in []byte) []byte { in[0] = 0x65; craft.SetChecksum(in); return in })}, "rx_inner_version"},
			{"inner TTL 0", [][]byte{an.spoofed(0, craft.IPv4{ZeroTTL: true, Protocol: craft.ProtoICMP, Src: vifB, Dst: vifA}.Packet(craft.ICMPEcho(0xbad2, 1, nil)))}, "rx_inner_ttl"},
			{"nested twice", nested(2, an.proto), "rx_nested"},
			{"nested 100 times", nested(100, an.proto), "rx_nested"},
			{"nested 100 times, protocols mixed", nested(100, an.proto, craft.ProtoIPinIP, craft.ProtoIPIP), "rx_nested"},
		}
		const n = 5
		before := vifStatus(t, an.a, "vif0")
		capVif := an.a.Capture("vif0", "")
		want := map[string]uint64{}
		for _, c := range cases {
			an.send(t, n, c.pkts...)
			want[c.key] += n
		}
		after := checkRx(t, an.a, before, want, 0)
		if got := stopCapture(t, capVif); len(got) != 0 {
			t.Errorf("%d packets reached a's vif0, want none: %v", len(got), got[0])
		}

		// Malformed outer headers, as Ethernet frames to a (a raw IP socket
		// would have the kernel fix them). a's kernel drops them in ip_rcv.
		good := an.spoofed(0, ping(0xbad3))
		outer := func(f func(p []byte) []byte) []byte { return f(bytes.Clone(good)) }
		frames := map[string][]byte{
			"outer bad checksum":          outer(func(p []byte) []byte { p[10] ^= 0xff; return p }),
			"outer IHL 4":                 outer(func(p []byte) []byte { craft.SetHeaderLen(p, 4); return p }),
			"outer IHL 15 past the frame": outer(func(p []byte) []byte { craft.SetHeaderLen(p, 15); return p[:40] }),
			"outer total length too long": outer(func(p []byte) []byte { craft.SetTotalLen(p, uint16(len(p)+200)); return p }),
			"outer total length below IHL": outer(func(p []byte) []byte {
				craft.SetTotalLen(p, 16)
				return p
			}),
			"outer version 6":   outer(func(p []byte) []byte { p[0] = 0x65; craft.SetChecksum(p); return p }),
			"outer 12 bytes":    outer(func(p []byte) []byte { return p[:12] }),
			"outer header only": outer(func(p []byte) []byte { craft.SetTotalLen(p, 20); return p[:20] }),
		}
		kernelBefore := ipInErrors(t, an.a)
		if err := an.m.Do(func() error {
			ec, err := craft.ListenEthernet(an.mIf.Name(), craft.EtherTypeIPv4)
			if err != nil {
				return err
			}
			defer ec.Close()
			for name, p := range frames {
				for range n {
					if err := ec.Send(craft.Ethernet(an.aIf.MAC(), an.mIf.MAC(), craft.EtherTypeIPv4, p)); err != nil {
						return fmt.Errorf("%s: %w", name, err)
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("sending Ethernet frames from m: %v", err)
		}
		// "outer header only" is a well-formed IPIP packet with no inner
		// packet: it reaches the vif and is dropped there.
		wantKernel := uint64(n * (len(frames) - 1))
		deadline := time.Now().Add(3 * time.Second)
		var kernel uint64
		for {
			kernel = ipInErrors(t, an.a) - kernelBefore
			if kernel >= wantKernel || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if kernel != wantKernel {
			t.Errorf("a's kernel counted %d bad IPv4 headers (InHdrErrors+InTruncatedPkts), want %d", kernel, wantKernel)
		}
		after = checkRx(t, an.a, after, map[string]uint64{"rx_inner_truncated": n}, 0)

		// Valid outer headers the vif must not trip over: IP options (IHL 6)
		// and a packet that arrives in outer fragments.
		withOpts := craft.IPv4{Protocol: an.proto, Src: underB, Dst: underA, Options: []byte{1, 1, 1, 0}}.Packet(ping(0x0071))
		big := craft.IPv4{Protocol: craft.ProtoICMP, Src: vifB, Dst: vifA}.Packet(craft.ICMPEcho(0x0072, 1, make([]byte, 1300)))
		bigOuter := an.spoofed(0, big)
		craft.SetID(bigOuter, 0x0072)
		frags, err := craft.Fragment(bigOuter, 700)
		if err != nil {
			t.Fatal(err)
		}
		capVif = an.a.Capture("vif0", "icmp[icmptype] == icmp-echo")
		an.send(t, 1, withOpts)
		an.send(t, 1, frags...)
		checkRx(t, an.a, after, nil, 2)
		var ids []uint16
		for _, p := range stopCapture(t, capVif) {
			if _, icmp, ok := icmpEcho(p); ok {
				ids = append(ids, icmp.Id)
			}
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []uint16{0x71, 0x72}) {
			t.Errorf("echo requests %x delivered into vif0, want 71 (outer options) and 72 (outer fragments)", ids)
		}
		an.checkVifAlive(t)
	})
}

// ipInErrors returns the IPv4 header errors h's kernel has counted:
// InHdrErrors (Ip, /proc/net/snmp, which includes InCsumErrors) plus
// InTruncatedPkts (IpExt, /proc/net/netstat).
func ipInErrors(t *testing.T, h *nstest.Host) uint64 {
	t.Helper()
	out, err := h.Run("cat", "/proc/net/snmp", "/proc/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	stats := map[string]uint64{}
	var names []string
	var prefix string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		if _, err := strconv.ParseUint(f[1], 10, 64); err != nil {
			prefix, names = f[0], f[1:]
			continue
		}
		if f[0] != prefix {
			continue
		}
		for k, v := range f[1:] {
			if k < len(names) {
				n, _ := strconv.ParseUint(v, 10, 64)
				stats[prefix+names[k]] = n
			}
		}
	}
	return stats["Ip:InHdrErrors"] + stats["IpExt:InTruncatedPkts"]
}

// rfc6040 is the decapsulation table of RFC 6040 section 4.2 (Figure 4,
// normal mode), written out from the RFC independently of the codec:
// rfc6040[inner][outer] is the ECN field of the forwarded inner header,
// or drop.
const drop = 0xff

var rfc6040 = map[uint8]map[uint8]uint8{
	craft.NotECT: {craft.NotECT: craft.NotECT, craft.ECT0: craft.NotECT, craft.ECT1: craft.NotECT, craft.CE: drop},
	craft.ECT0:   {craft.NotECT: craft.ECT0, craft.ECT0: craft.ECT0, craft.ECT1: craft.ECT1, craft.CE: craft.CE},
	craft.ECT1:   {craft.NotECT: craft.ECT1, craft.ECT0: craft.ECT1, craft.ECT1: craft.ECT1, craft.CE: craft.CE},
	craft.CE:     {craft.NotECT: craft.CE, craft.ECT0: craft.CE, craft.ECT1: craft.CE, craft.CE: craft.CE},
}

// TestHostileECN checks RFC 6040 on the wire: all sixteen combinations of
// outer and inner ECN arrive at a, and what a's vif0 delivers (captured on
// the TUN) must follow the RFC's table, DSCP and TTL untouched and the
// inner checksum valid; outer CE over inner Not-ECT is dropped as rx_ecn. On
// the way out, the inner ECN field is copied to the outer header.
func TestHostileECN(t *testing.T) {
	forPaths(t, underlayPaths, func(t *testing.T, path packetPath) {
		an := newAttackNet(t, attackOpts{extra: path.args})
		const dscpIn, dscpOut = 0xb8, 0x20 // EF inside, CS1 outside
		const n = 3
		before := vifStatus(t, an.a, "vif0")
		capVif := an.a.Capture("vif0", "icmp[icmptype] == icmp-echo")
		var drops, delivered uint64
		for inner, row := range rfc6040 {
			for outer, res := range row {
				seq := uint16(inner)<<2 | uint16(outer)
				an.send(t, n, an.spoofed(dscpOut|outer, craft.Ping(vifB, vifA, dscpIn|inner, 0xec, seq)))
				if res == drop {
					drops += n
				} else {
					delivered += n
				}
			}
		}
		checkRx(t, an.a, before, map[string]uint64{"rx_ecn": drops}, delivered)

		seen := map[uint16]int{}
		allp := stopCapture(t, capVif)
		for _, p := range allp {
			ip, icmp, ok := icmpEcho(p)
			if !ok || icmp.Id != 0xec {
				continue
			}
			inner, outer := uint8(icmp.Seq>>2), uint8(icmp.Seq&3)
			seen[icmp.Seq]++
			want := rfc6040[inner][outer]
			if want == drop {
				t.Errorf("outer %s over inner %s delivered; RFC 6040 drops it", ecnName(outer), ecnName(inner))
				continue
			}
			if ip.TOS != dscpIn|want {
				t.Errorf("outer %s over inner %s delivered with TOS %#02x, want %#02x (%s, DSCP kept)",
					ecnName(outer), ecnName(inner), ip.TOS, dscpIn|want, ecnName(want))
			}
			if ip.TTL != 64 {
				t.Errorf("inner TTL %d after decapsulation, want the 64 it was sent with (RFC 2003 section 3.1)", ip.TTL)
			}
			if !craft.ChecksumValid(append(ip.Contents[:0:0], ip.Contents...)) {
				t.Errorf("outer %s over inner %s delivered with a bad header checksum", ecnName(outer), ecnName(inner))
			}
		}
		for inner, row := range rfc6040 {
			for outer, res := range row {
				if got := seen[uint16(inner)<<2|uint16(outer)]; res != drop && got != n {
					t.Errorf("outer %s over inner %s: %d delivered, want %d", ecnName(outer), ecnName(inner), got, n)
				}
			}
		}

		// Encapsulation copies the inner ECN field (RFC 6040 section 4.1,
		// normal mode): pings marked ECT(0) leave a with an ECT(0) outer
		// header.
		capOut := an.aIf.Capture(fmt.Sprintf("ip proto %d and src host %s", an.proto, underA))
		if out, err := an.a.Run("ping", "-n", "-c", "3", "-i", "0.1", "-W", "2", "-Q", "0x02", vifB.String()); err != nil {
			t.Errorf("ping -Q 0x02 through the tunnel: %v\n%s", err, out)
		}
		var marked int
		for _, p := range stopCapture(t, capOut) {
			chain := ipChain(p)
			if len(chain) != 2 {
				continue
			}
			if _, icmp, ok := icmpEcho(p); ok && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoRequest {
				marked++
				if chain[0].TOS&3 != chain[1].TOS&3 || chain[1].TOS&3 != craft.ECT0 {
					t.Errorf("encapsulated echo request: outer TOS %#02x, inner %#02x; want both ECT(0)", chain[0].TOS, chain[1].TOS)
				}
			}
		}
		if marked != 3 {
			t.Errorf("%d encapsulated echo requests seen leaving a, want 3", marked)
		}
		an.checkVifAlive(t)
	})
}

func ecnName(e uint8) string {
	return [...]string{"Not-ECT", "ECT(1)", "ECT(0)", "CE"}[e&3]
}

// TestHostileARPFlood: m floods a's segment with ARP requests for random
// addresses from random MACs, requests for a's own addresses from random
// MACs, and malformed ARP. a's proxy answers only its own addresses, each
// reply to its asker, counts the rest, learns nothing, and keeps answering
// b's arping during and after the flood.
func TestHostileARPFlood(t *testing.T) {
	an := newAttackNet(t, attackOpts{arpProxy: true})
	// Add a second address so the proxy owns more than one.
	vifCmd(t, an.a, "up", "vif1", "192.0.2.2", "--slave", an.aIf.Name())
	owned := map[netip.Addr]bool{vifA: true, netip.MustParseAddr("192.0.2.2"): true}
	// The kernel of a must not answer for the vif addresses itself.
	an.a.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
	an.a.Sysctl("net.ipv4.conf."+an.aIf.Name()+".arp_ignore", "1")

	if mac, ok := arpOnce(an.b, an.bIf.Name(), vifA.String()); !ok || !bytes.Equal(mac, an.aIf.MAC()) {
		t.Fatalf("before the flood, b's arping for %v answered by %v (ok=%v), want %v", vifA, mac, ok, an.aIf.MAC())
	}
	before := vifStatus(t, an.a, "vif0")
	capARP := an.aIf.Capture("arp and ether src " + an.aIf.MAC().String())

	randMAC := func() net.HardwareAddr {
		b := make([]byte, 6)
		rand.Read(b)
		b[0] = b[0]&^1 | 2
		return b
	}
	randAddr := func(prefix string) netip.Addr {
		p := netip.MustParsePrefix(prefix)
		a := p.Addr().As4()
		mask := ^uint32(0) << (32 - p.Bits())
		if p.Bits() == 0 {
			mask = 0
		}
		for {
			var r [4]byte
			rand.Read(r[:])
			v := binary.BigEndian.Uint32(a[:])&mask | binary.BigEndian.Uint32(r[:])&^mask
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], v)
			addr := netip.AddrFrom4(b)
			if !owned[addr] && b[3] != 0 && b[3] != 255 && b[0] != 0 && b[0] != 127 && b[0] < 224 {
				return addr
			}
		}
	}

	// The flood. Sender addresses come from 198.19.0.0/16, off the
	// segment's subnet: a request whose sender IP is a neighbour's would
	// rewrite the kernels' existing neighbour entries (RFC 826 merge), an
	// attack on the kernel that this test is not about.
	const notOwnedN, ownedN = 3000, 300
	var frames [][]byte
	askers := map[string]netip.Addr{} // requester MAC -> its sender IP, for owned requests
	for k := range notOwnedN {
		tpa := randAddr("192.0.2.0/24")
		if k%2 == 1 {
			tpa = randAddr("0.0.0.0/0")
		}
		frames = append(frames, craft.ARPRequestFrame(randMAC(), randAddr("198.19.0.0/16"), tpa))
	}
	ownedList := slices.SortedFunc(maps.Keys(owned), netip.Addr.Compare)
	for k := range ownedN {
		mac, spa := randMAC(), randAddr("198.19.0.0/16")
		askers[mac.String()] = spa
		frames = append(frames, craft.ARPRequestFrame(mac, spa, ownedList[k%len(ownedList)]))
	}
	// Malformed and refused frames, each asking for an owned address.
	mutate := func(f func(b []byte) []byte) []byte {
		return f(craft.ARPRequestFrame(an.mIf.MAC(), underM, vifA))
	}
	bad := [][]byte{
		mutate(func(b []byte) []byte { return b[:30] }),                                        // short
		mutate(func(b []byte) []byte { return b[:41] }),                                        // one byte short
		mutate(func(b []byte) []byte { b[15] = 6; return b }),                                  // hardware type
		mutate(func(b []byte) []byte { b[16], b[17] = 0x86, 0xdd; return b }),                  // protocol type
		mutate(func(b []byte) []byte { b[18] = 8; return b }),                                  // hardware length
		mutate(func(b []byte) []byte { b[19] = 16; return b }),                                 // protocol length
		mutate(func(b []byte) []byte { b[21] = 9; return b }),                                  // opcode
		mutate(func(b []byte) []byte { b[21] = 0; return b }),                                  // opcode 0
		mutate(func(b []byte) []byte { clear(b[22:28]); return b }),                            // zero sender MAC
		mutate(func(b []byte) []byte { b[22] |= 1; return b }),                                 // multicast sender MAC
		mutate(func(b []byte) []byte { copy(b[22:28], randMAC()); return b }),                  // Ethernet source != sender MAC
		mutate(func(b []byte) []byte { copy(b[28:32], []byte{224, 0, 0, 1}); return b }),       // multicast sender IP
		mutate(func(b []byte) []byte { copy(b[28:32], []byte{255, 255, 255, 255}); return b }), // broadcast sender IP
		mutate(func(b []byte) []byte { copy(b[28:32], []byte{127, 0, 0, 1}); return b }),       // loopback sender IP
		mutate(func(b []byte) []byte { copy(b[0:6], randMAC()); return b }),                    // unicast to another host
	}
	const badN = 20
	for range badN {
		frames = append(frames, bad...)
	}
	mrand := func(n int) int {
		var b [4]byte
		rand.Read(b[:])
		return int(binary.BigEndian.Uint32(b[:]) % uint32(n))
	}
	for k := len(frames) - 1; k > 0; k-- { // shuffle
		j := mrand(k + 1)
		frames[k], frames[j] = frames[j], frames[k]
	}

	// b arpings a's address while the flood runs.
	type arpResult struct {
		mac net.HardwareAddr
		ok  bool
	}
	during := make(chan arpResult, 1)
	start := make(chan struct{})
	go func() {
		<-start
		mac, ok := arpOnce(an.b, an.bIf.Name(), vifA.String())
		during <- arpResult{mac, ok}
	}()
	floodStart := time.Now()
	if err := an.m.Do(func() error {
		ec, err := craft.ListenEthernet(an.mIf.Name(), craft.EtherTypeARP)
		if err != nil {
			return err
		}
		defer ec.Close()
		for k, f := range frames {
			if k == len(frames)/4 {
				close(start)
			}
			if err := ec.Send(f); err != nil {
				return err
			}
			// Keep the rate (at most 8000 frames a second, a heavy
			// flood for ARP) within what the race-enabled daemon reads
			// on a busy machine before its socket buffer overflows, so
			// that every frame is counted.
			if k%32 == 31 {
				time.Sleep(4 * time.Millisecond)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("flooding from m: %v", err)
	}
	t.Logf("sent %d ARP frames in %v", len(frames), time.Since(floodStart))
	res := <-during
	if !res.ok || !bytes.Equal(res.mac, an.aIf.MAC()) {
		t.Errorf("during the flood, b's arping for %v answered by %v (ok=%v), want %v", vifA, res.mac, res.ok, an.aIf.MAC())
	}
	if mac, ok := arpOnce(an.b, an.bIf.Name(), vifA.String()); !ok || !bytes.Equal(mac, an.aIf.MAC()) {
		t.Errorf("after the flood, b's arping for %v answered by %v (ok=%v), want %v", vifA, mac, ok, an.aIf.MAC())
	}
	if _, ok := arpOnce(an.b, an.bIf.Name(), "192.0.2.77"); ok {
		t.Error("after the flood, b's arping for 192.0.2.77 (not owned) was answered")
	}

	st := waitStatus(t, an.a, "vif0", 5*time.Second, func(s daemon.VifStatus) bool {
		return s.ARP.NotOwned-before.ARP.NotOwned >= notOwnedN && s.ARP.Dropped-before.ARP.Dropped >= uint64(badN*len(bad))
	})
	a0, a1 := before.ARP, st.ARP
	t.Logf("ARP counters: requests +%d, replies +%d, not owned +%d, dropped +%d %v, rate limited +%d",
		a1.Requests-a0.Requests, a1.Replies-a0.Replies, a1.NotOwned-a0.NotOwned, a1.Dropped-a0.Dropped, a1.Drops, a1.RateLimited-a0.RateLimited)
	// b's arpings ask for owned addresses (answered) and for 192.0.2.77
	// (not owned): at most a few requests each.
	if d := a1.NotOwned - a0.NotOwned; d < notOwnedN || d > notOwnedN+4 {
		t.Errorf("not-owned requests counted +%d, want %d (+ b's arping)", d, notOwnedN)
	}
	if d := a1.Dropped - a0.Dropped; d != uint64(badN*len(bad)) {
		t.Errorf("dropped frames +%d, want %d: %v", d, badN*len(bad), a1.Drops)
	}
	if d := a1.Replies + a1.RateLimited - a0.Replies - a0.RateLimited; d < ownedN || d > ownedN+8 {
		t.Errorf("replies + rate limited +%d, want %d (+ b's arping)", d, ownedN)
	}

	var replies, toAskers int
	for _, p := range stopCapture(t, capARP) {
		arp := arpLayer(p)
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if arp == nil || eth == nil {
			continue
		}
		spa, _ := netip.AddrFromSlice(arp.SourceProtAddress)
		if arp.Operation != layers.ARPReply {
			if !isAnnouncement(p, an.aIf.MAC()) || !owned[spa] {
				t.Errorf("a sent an ARP request that is not an announcement of an owned address: %v", p)
			}
			continue
		}
		replies++
		tha := net.HardwareAddr(arp.DstHwAddress)
		tpa, _ := netip.AddrFromSlice(arp.DstProtAddress)
		switch {
		case !owned[spa]:
			t.Errorf("ARP reply for %v, which a does not own: %v", spa, p)
		case !bytes.Equal(eth.DstMAC, tha) || !bytes.Equal(arp.SourceHwAddress, an.aIf.MAC()):
			t.Errorf("ARP reply not from a's MAC to its asker: %v", p)
		case bytes.Equal(tha, an.bIf.MAC()):
		case askers[tha.String()] == tpa:
			toAskers++
		default:
			t.Errorf("ARP reply to %v %v, which never asked: %v", tha, tpa, p)
		}
	}
	if toAskers+int(a1.RateLimited-a0.RateLimited) != ownedN {
		t.Errorf("%d replies to the flood's requests for owned addresses on the wire (+%d rate limited), want %d",
			toAskers, a1.RateLimited-a0.RateLimited, ownedN)
	}
	// The flood taught a nothing: its neighbour table holds b and m at
	// most.
	if out := an.a.IP("neigh", "show", "dev", an.aIf.Name()); len(strings.Split(strings.TrimSpace(out), "\n")) > 2 {
		t.Errorf("a's neighbour table grew during the flood:\n%s", out)
	}
	an.checkVifAlive(t)
}

// TestHostileRouteToPeer: routing the peer's own underlay address into the
// vif must not make a loop. vif up refuses it (--route holding the peer:
// TestUpErrorsInNamespace); a route another tool adds afterwards is
// survived: what the kernel routes into the vif for the peer's address is
// dropped as tx_loop, nothing is encapsulated for it, the underlay stays
// quiet, and the tunnel itself keeps working because the underlay socket
// is bound to the slave.
func TestHostileRouteToPeer(t *testing.T) {
	for _, how := range []string{"route added after"} {
		t.Run(strings.ReplaceAll(how, " ", "_"), func(t *testing.T) {
			var o attackOpts
			an := newAttackNet(t, o)
			an.a.AddRoute(underB.String()+"/32", "dev", "vif0")
			if out := an.a.IP("route", "get", underB.String()); !strings.Contains(out, "dev vif0") {
				t.Fatalf("198.18.0.2 is not routed into vif0:\n%s", out)
			}
			before := vifStatus(t, an.a, "vif0")
			_, txBefore := linkPackets(t, an.a, "vif0")
			capUnder := an.aIf.Capture(fmt.Sprintf("ip and src host %s and not igmp", underA))

			// 2000 UDP datagrams and some pings for the peer's address.
			const n = 2000
			start := time.Now()
			if err := an.a.Do(func() error {
				c, err := net.Dial("udp4", underB.String()+":9")
				if err != nil {
					return err
				}
				defer c.Close()
				for k := range n {
					c.Write([]byte("loop?"))
					if k%100 == 99 {
						time.Sleep(time.Millisecond) // stay within vif0's queue
					}
				}
				return nil
			}); err != nil {
				t.Fatalf("sending UDP to the peer's address: %v", err)
			}
			if out, err := an.a.Run("ping", "-n", "-c", "3", "-i", "0.05", "-w", "1", underB.String()); err == nil {
				t.Errorf("a pinged %v through the vif routed to itself:\n%s", underB, out)
			}
			// What the kernel queued to vif0 (a full queue drops the
			// excess before the vif sees it): every one of those must be
			// a tx_loop drop.
			_, txAfter := linkPackets(t, an.a, "vif0")
			queued := txAfter - txBefore
			if queued < n/2 {
				t.Fatalf("only %d of %d packets reached vif0", queued, n+3)
			}
			st := waitStatus(t, an.a, "vif0", 5*time.Second, func(s daemon.VifStatus) bool {
				return s.Counters.Drops["tx_loop"]-before.Counters.Drops["tx_loop"] >= queued
			})
			elapsed := time.Since(start)
			if d := st.Counters.Drops["tx_loop"] - before.Counters.Drops["tx_loop"]; d != queued {
				t.Errorf("tx_loop +%d, want %d (the packets queued to vif0, of %d sent)", d, queued, n+3)
			}
			if d := st.Counters.EncapsulatedPackets - before.Counters.EncapsulatedPackets; d != 0 {
				t.Errorf("%d packets encapsulated for the peer's own address", d)
			}
			// The underlay stays quiet: no packet at all, let alone a
			// storm.
			under := stopCapture(t, capUnder)
			if len(under) != 0 {
				t.Errorf("%d IP packets left a on the underlay in %v while %d were routed to the peer's address into the vif; first: %v",
					len(under), elapsed, queued, under[0])
			}
			t.Logf("tx_loop +%d, underlay packets from a: %d", st.Counters.Drops["tx_loop"]-before.Counters.Drops["tx_loop"], len(under))
			an.checkVifAlive(t)
		})
	}
}
