//go:build linux

package offload

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vif-project/vif/internal/craft"
)

// The verifier of the running kernel accepts both programs.
func TestLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root (CAP_BPF)")
	}
	var objs offloadObjects
	if err := loadOffloadObjects(&objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("verifier: %+v", ve)
		}
		t.Fatal(err)
	}
	objs.Close()
}

// passNames names every reason of the programs.
func TestPassNames(t *testing.T) {
	spec, err := loadOffload()
	if err != nil {
		t.Fatal(err)
	}
	if n := spec.Maps["passed"].MaxEntries; int(n) != len(passNames) {
		t.Errorf("%d reasons in the program, %d names", n, len(passNames))
	}
}

var (
	local  = netip.MustParseAddr("198.18.0.1")
	peerB  = netip.MustParseAddr("198.18.0.2")
	other  = netip.MustParseAddr("198.18.0.3")
	vifA   = netip.MustParseAddr("192.0.2.1")
	vifB   = netip.MustParseAddr("198.51.100.1")
	fwdDst = netip.MustParseAddr("203.0.113.9")
)

// loaded returns the programs loaded, not attached, for a tunnel from
// local to peerB (198.51.100.0/24 behind it) with the vif address vifA and
// 203.0.113.0/24 forwarded.
func loaded(t *testing.T, proto uint8) *Offload {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root (CAP_BPF)")
	}
	o, err := load(Config{TUN: 1, Slave: 1, Protocol: proto, TTL: 64, Local: local, MTU: 1480})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	err = o.Sync(State{
		Own:     []netip.Prefix{netip.PrefixFrom(vifA, 32)},
		Forward: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
		Peers:   []Peer{{Addr: peerB, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, PathMTU: 1480}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

const (
	tcxNext     = 0xffffffff // TCX_NEXT, -1: the loop's
	tcxRedirect = 7          // TC_ACT_REDIRECT: delivered into the TUN
)

// The slave's program, run by the kernel on crafted frames
// (BPF_PROG_TEST_RUN): it delivers what the loop would deliver, as the
// loop would (outer header gone, RFC 6040 applied), and passes everything
// else to the loop, saying why.
func TestSlaveIngress(t *testing.T) {
	for _, proto := range []uint8{craft.ProtoIPIP, craft.ProtoIPinIP} {
		t.Run(fmt.Sprint("proto ", proto), func(t *testing.T) {
			o := loaded(t, proto)
			ping := func(src, dst netip.Addr, tos uint8) []byte { return craft.Ping(src, dst, tos, 0x77, 1) }
			from := func(src netip.Addr, tos uint8, inner []byte) []byte {
				return craft.Encap(proto, src, local, tos, inner)
			}
			valid := ping(vifB, vifA, 0)
			broken := func(f func([]byte) []byte) []byte { return f(from(peerB, 0, valid)) }
			for _, tt := range []struct {
				name      string
				pkt       []byte
				passed    string // "" for delivered
				wantInner []byte // delivered: the inner packet as it must arrive
			}{
				{"valid", from(peerB, 0, valid), "", valid},
				{"forwarded destination", from(peerB, 0, ping(vifB, fwdDst, 0)), "", ping(vifB, fwdDst, 0)},
				{"outer CE over inner ECT(0)", from(peerB, craft.CE, ping(vifB, vifA, craft.ECT0)), "", ping(vifB, vifA, craft.CE)},
				{"outer ECT(1) over inner ECT(0)", from(peerB, craft.ECT1, ping(vifB, vifA, craft.ECT0)), "", ping(vifB, vifA, craft.ECT1)},
				{"outer ECT(0) over inner Not-ECT", from(peerB, craft.ECT0, valid), "", valid},
				{"not a peer", from(other, 0, valid), "rx_not_peer", nil},
				{"outer CE over inner Not-ECT", from(peerB, craft.CE, valid), "rx_ecn", nil},
				{"inner source ours", from(peerB, 0, ping(vifA, vifA, 0)), "rx_bad_source", nil},
				{"inner source loopback", from(peerB, 0, ping(netip.MustParseAddr("127.0.0.1"), vifA, 0)), "rx_bad_source", nil},
				{"inner source multicast", from(peerB, 0, ping(netip.MustParseAddr("224.0.0.1"), vifA, 0)), "rx_bad_source", nil},
				{"inner source broadcast", from(peerB, 0, ping(netip.MustParseAddr("255.255.255.255"), vifA, 0)), "rx_bad_source", nil},
				{"inner source 0/8", from(peerB, 0, ping(netip.MustParseAddr("0.1.2.3"), vifA, 0)), "rx_bad_source", nil},
				{"inner source not the peer's", from(peerB, 0, ping(netip.MustParseAddr("198.51.101.1"), vifA, 0)), "rx_bad_source", nil},
				{"inner destination not ours", from(peerB, 0, ping(vifB, netip.MustParseAddr("192.0.2.2"), 0)), "rx_not_local", nil},
				{"nested", from(peerB, 0, craft.Encap(proto, vifB, vifA, 0, valid)), "rx_nested", nil},
				{"nested 6in4", from(peerB, 0, craft.IPv4{Protocol: 41, Src: vifB, Dst: vifA}.Packet(make([]byte, 40))), "rx_nested", nil},
				{"inner TTL 0", from(peerB, 0, craft.IPv4{ZeroTTL: true, Protocol: craft.ProtoICMP, Src: vifB, Dst: vifA}.Packet(craft.ICMPEcho(1, 1, nil))), "rx_ttl", nil},
				{"inner checksum", broken(func(p []byte) []byte { p[20+10] ^= 1; return p }), "rx_inner", nil},
				{"inner version 6", broken(func(p []byte) []byte { p[20] = 0x65; craft.SetChecksum(p[20:]); return p }), "rx_inner", nil},
				{"inner options", from(peerB, 0, craft.IPv4{Protocol: craft.ProtoICMP, Src: vifB, Dst: vifA, Options: []byte{1, 1, 1, 0}}.Packet(craft.ICMPEcho(1, 1, nil))), "rx_inner", nil},
				{"inner total length short", broken(func(p []byte) []byte { craft.SetTotalLen(p[20:], 24); craft.SetChecksum(p[20:]); return p }), "rx_inner", nil},
				{"outer checksum", broken(func(p []byte) []byte { p[10] ^= 1; return p }), "rx_outer", nil},
				{"outer fragment", broken(func(p []byte) []byte { p[6] |= 0x20; craft.SetChecksum(p); return p }), "rx_outer", nil},
				{"outer options", craft.IPv4{Protocol: proto, Src: peerB, Dst: local, Options: []byte{1, 1, 1, 0}}.Packet(valid), "rx_outer", nil},
				{"outer total length short of the frame", broken(func(p []byte) []byte { return append(p, 0, 0, 0, 0) }), "rx_outer", nil},
			} {
				t.Run(tt.name, func(t *testing.T) {
					before := o.Passed()
					frame := craft.Ethernet(make(net.HardwareAddr, 6), net.HardwareAddr{2, 0, 0, 0, 0, 2}, craft.EtherTypeIPv4, tt.pkt)
					out := make([]byte, len(frame)+64)
					ret, err := o.objs.VifSlaveIngress.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
					if err != nil {
						t.Fatal(err)
					}
					after := o.Passed()
					if tt.passed != "" {
						if ret != tcxNext {
							t.Errorf("returned %d; want TCX_NEXT", int32(ret))
						}
						if after[tt.passed] != before[tt.passed]+1 {
							t.Errorf("passed %v, before %v; want one more %s", after, before, tt.passed)
						}
						return
					}
					if ret != tcxRedirect {
						t.Fatalf("returned %d; want TC_ACT_REDIRECT (passed %v)", int32(ret), after)
					}
					if got := out[14 : 14+len(tt.wantInner)]; !bytes.Equal(got, tt.wantInner) {
						t.Errorf("delivered\n%x\nwant\n%x", got, tt.wantInner)
					}
				})
			}
			c := o.PeerCounters(peerB)
			if c.RxPackets != 5 || c.RxBytes != uint64(5*len(valid)) {
				t.Errorf("peer counters %+v; want 5 packets of %d bytes", c, len(valid))
			}
		})
	}
}

// The counters outlive Close, as the loop's do.
func TestCountersAfterClose(t *testing.T) {
	o := loaded(t, craft.ProtoIPinIP)
	frame := craft.Ethernet(make(net.HardwareAddr, 6), net.HardwareAddr{2, 0, 0, 0, 0, 2}, craft.EtherTypeIPv4,
		craft.Encap(craft.ProtoIPinIP, peerB, local, 0, craft.Ping(vifB, vifA, 0, 1, 1)))
	for range 3 {
		if ret, err := o.objs.VifSlaveIngress.Run(&ebpf.RunOptions{Data: frame}); err != nil || ret != tcxRedirect {
			t.Fatalf("run: %d, %v", ret, err)
		}
	}
	o.Close()
	if c, p := o.Counters(), o.PeerCounters(peerB); c.RxPackets != 3 || p.RxPackets != 3 {
		t.Errorf("after Close: %+v, peer %+v; want 3 packets received", c, p)
	}
}

// Sync follows changes, ranges and their exclusions included: an address
// of a range is delivered to but for an excluded one; a range, a peer's
// prefix or a peer removed is no longer accepted.
func TestSync(t *testing.T) {
	o := loaded(t, craft.ProtoIPIP)
	rng := netip.MustParsePrefix("192.0.2.64/26")
	excluded := netip.MustParseAddr("192.0.2.70")
	peerC := netip.MustParseAddr("198.18.0.4")
	state := State{
		Own:     []netip.Prefix{netip.PrefixFrom(vifA, 32), rng},
		Exclude: []netip.Addr{excluded},
		Peers: []Peer{
			{Addr: peerB, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, PathMTU: 1480},
			{Addr: peerC, Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, PathMTU: 1480},
		},
	}
	if err := o.Sync(state); err != nil {
		t.Fatal(err)
	}
	run := func(from, src, dst netip.Addr) uint32 {
		t.Helper()
		frame := craft.Ethernet(make(net.HardwareAddr, 6), net.HardwareAddr{2, 0, 0, 0, 0, 2}, craft.EtherTypeIPv4,
			craft.Encap(craft.ProtoIPIP, from, local, 0, craft.Ping(src, dst, 0, 1, 1)))
		ret, err := o.objs.VifSlaveIngress.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		return ret
	}
	srcC := netip.MustParseAddr("203.0.113.5")
	for _, tt := range []struct {
		name           string
		from, src, dst netip.Addr
		want           uint32
	}{
		{"an address of the range", peerB, vifB, netip.MustParseAddr("192.0.2.65"), tcxRedirect},
		{"the excluded address", peerB, vifB, excluded, tcxNext},
		{"the other peer, its prefix", peerC, srcC, vifA, tcxRedirect},
		{"the other peer, b's prefix", peerC, vifB, vifA, tcxNext},
		{"an address of the range as source", peerB, netip.MustParseAddr("192.0.2.66"), vifA, tcxNext},
	} {
		if got := run(tt.from, tt.src, tt.dst); got != tt.want {
			t.Errorf("%s: returned %d, want %d", tt.name, int32(got), int32(tt.want))
		}
	}
	// The range and peer c go; b keeps only 198.51.100.0/25.
	state.Own = state.Own[:1]
	state.Peers = []Peer{{Addr: peerB, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}, PathMTU: 1480}}
	if err := o.Sync(state); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name           string
		from, src, dst netip.Addr
		want           uint32
	}{
		{"an address of the removed range", peerB, vifB, netip.MustParseAddr("192.0.2.65"), tcxNext},
		{"the removed peer", peerC, srcC, vifA, tcxNext},
		{"b's remaining prefix", peerB, vifB, vifA, tcxRedirect},
		{"b's removed half", peerB, netip.MustParseAddr("198.51.100.200"), vifA, tcxNext},
	} {
		if got := run(tt.from, tt.src, tt.dst); got != tt.want {
			t.Errorf("after the change, %s: returned %d, want %d", tt.name, int32(got), int32(tt.want))
		}
	}
	if p := o.Passed(); p["rx_not_peer"] != 1 || p["rx_not_local"] != 2 || p["rx_bad_source"] != 3 {
		t.Errorf("passed %v; want rx_not_peer 1, rx_not_local 2, rx_bad_source 3", p)
	}
}
