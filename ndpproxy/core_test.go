package ndpproxy_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"

	"github.com/vif-project/vif/ndpproxy"
)

func TestFrameAccessors(t *testing.T) {
	spec := advertise(otherMAC, peerLL, owned1).with(func(s *ndpSpec) { s.flags, s.dst, s.ethDst = 0xe0, ourLL, ourMAC })
	b := spec.bytes(t)
	f := ndpproxy.Frame(b)
	if err := f.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	na := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	type fields struct {
		EthDst, EthSrc, LLAddr    string
		EtherType                 uint16
		Version, NextHeader, Hop  uint8
		PayloadLen                int
		Src, Dst, Target          netip.Addr
		Type, Code                uint8
		Checksum                  uint16
		Flags                     uint8
		MessageLen                int
		HasLLAddr                 bool
		SolicitedNode, FlagString string
	}
	ll, ok := f.LinkLayerAddr()
	got := fields{
		EthDst: f.EthernetDst().String(), EthSrc: f.EthernetSrc().String(), LLAddr: ll.String(),
		EtherType: f.EtherType(), Version: f.Version(), NextHeader: f.NextHeader(), Hop: f.HopLimit(),
		PayloadLen: f.PayloadLen(), Src: f.Source(), Dst: f.Destination(), Target: f.Target(),
		Type: uint8(f.Type()), Code: f.Code(), Checksum: f.Checksum(), Flags: uint8(f.Flags()),
		MessageLen: len(f.Message()), HasLLAddr: ok,
		SolicitedNode: ndpproxy.SolicitedNode(f.Target()).String(), FlagString: f.Flags().String(),
	}
	src, _ := netip.AddrFromSlice(ip.SrcIP)
	dst, _ := netip.AddrFromSlice(ip.DstIP)
	target, _ := netip.AddrFromSlice(na.TargetAddress)
	sn, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		t.Fatal(err)
	}
	want := fields{
		EthDst: eth.DstMAC.String(), EthSrc: eth.SrcMAC.String(), LLAddr: net.HardwareAddr(na.Options[0].Data).String(),
		EtherType: uint16(eth.EthernetType), Version: ip.Version, NextHeader: uint8(ip.NextHeader), Hop: ip.HopLimit,
		PayloadLen: int(ip.Length), Src: src, Dst: dst, Target: target,
		Type: icmp.TypeCode.Type(), Code: icmp.TypeCode.Code(), Checksum: icmp.Checksum, Flags: na.Flags,
		MessageLen: int(ip.Length), HasLLAddr: true,
		SolicitedNode: sn.String(), FlagString: "RSO",
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("accessors differ from gopacket (-want +got):\n%s", diff)
	}
	if s := ndpproxy.Flags(0).String(); s != "-" {
		t.Errorf("Flags(0) = %q, want -", s)
	}
}

func TestPutAdvertisement(t *testing.T) {
	buf := bytes.Repeat([]byte{0xaa}, 100)
	// The Solicited flag is removed: a multicast advertisement must not
	// carry it (RFC 4861 section 4.4).
	f := ndpproxy.PutAdvertisement(buf, ourMAC, ourLL, owned2, ndpproxy.FlagOverride|ndpproxy.FlagSolicited)
	if len(f) != ndpproxy.ReplyLen || &f[0] != &buf[0] {
		t.Fatalf("PutAdvertisement returned %d bytes, want the %d-byte prefix of buf", len(f), ndpproxy.ReplyLen)
	}
	checkAnnouncement(t, f, owned2)
	if err := f.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// Our own advertisement, heard back, is neither answered nor a
	// conflict.
	res := ndpproxy.Respond(make([]byte, 100), f, ourSelf, ndpproxy.NewAddrSet(owned2))
	if res.Verdict != ndpproxy.VerdictDrop || res.Reason != ndpproxy.DropFromSelf {
		t.Errorf("Respond(own advertisement) = %+v, want drop from_self", res)
	}
	// Heard from another host, it is a conflict and is not answered.
	other := &ndpproxy.Self{HardwareAddr: otherMAC, Addr: peerLL}
	res = ndpproxy.Respond(make([]byte, 100), f, other, ndpproxy.NewAddrSet(owned2))
	if res.Verdict != ndpproxy.VerdictIgnore || !res.Conflict {
		t.Errorf("Respond(advertisement by another host) = %+v, want ignore with conflict", res)
	}
	// Router and proxy flags.
	f = ndpproxy.PutAdvertisement(buf, ourMAC, ourLL, owned2, (&ndpproxy.Self{Router: true, Proxy: true}).Flags())
	if d := decodeNA(t, f); !d.msg.Router || d.msg.Override || d.msg.Solicited {
		t.Errorf("router proxy advertisement has R=%v S=%v O=%v, want R only", d.msg.Router, d.msg.Solicited, d.msg.Override)
	}
}

func TestPutSolicitation(t *testing.T) {
	for _, src := range []netip.Addr{unspec, peerIP} {
		buf := make([]byte, ndpproxy.ReplyLen)
		f := ndpproxy.PutSolicitation(buf, peerMAC, src, owned1)
		if err := f.Validate(); err != nil {
			t.Fatalf("%v: Validate: %v", src, err)
		}
		if !checksumOK(f) {
			t.Errorf("%v: bad checksum", src)
		}
		m, err := ndp.ParseMessage(f.Message())
		if err != nil {
			t.Fatalf("%v: ndp.ParseMessage: %v", src, err)
		}
		ns, ok := m.(*ndp.NeighborSolicitation)
		if !ok || ns.TargetAddress != owned1 {
			t.Fatalf("%v: ndp.ParseMessage gives %#v", src, m)
		}
		ll, has := f.LinkLayerAddr()
		if want := !src.IsUnspecified(); has != want || len(ns.Options) != len(map[bool][]int{true: {1}}[want]) ||
			want && ll.String() != peerMAC.String() {
			t.Errorf("%v: link-layer address %v, %v; ndp options %v", src, ll, has, ns.Options)
		}
		if f.Destination() != ndpproxy.SolicitedNode(owned1) || f.EthernetDst().String() != snMAC(owned1).String() {
			t.Errorf("%v: sent to %v at %v", src, f.Destination(), f.EthernetDst())
		}
		// Another host owning the address answers it.
		res := ndpproxy.Respond(make([]byte, 100), f, ourSelf, ndpproxy.NewAddrSet(owned1))
		if res.Verdict != ndpproxy.VerdictReply || res.DAD != src.IsUnspecified() {
			t.Errorf("%v: Respond = %+v", src, res)
		}
	}
}

func TestRespond(t *testing.T) {
	owned := ndpproxy.NewAddrSet(owned1, owned2)
	nonce := []byte{14, 1, 1, 2, 3, 4, 5, 6} // RFC 3971 nonce option, unknown to RFC 4861
	setPayloadLen := func(n int) func([]byte) []byte {
		return func(b []byte) []byte { b[18], b[19] = byte(n>>8), byte(n); return b }
	}
	setByte := func(off int, v byte) func([]byte) []byte {
		return func(b []byte) []byte { b[off] = v; return b }
	}
	tests := []struct {
		name     string
		frame    []byte
		verdict  ndpproxy.Verdict
		reason   ndpproxy.DropReason
		dad      bool
		conflict bool
		req      ndpSpec // the solicitation answered, for VerdictReply
	}{
		{name: "multicast solicitation", frame: solicit(peerMAC, peerIP, owned1).bytes(t),
			verdict: ndpproxy.VerdictReply, req: solicit(peerMAC, peerIP, owned1)},
		{name: "second owned address", frame: solicit(peerMAC, peerIP, owned2).bytes(t),
			verdict: ndpproxy.VerdictReply, req: solicit(peerMAC, peerIP, owned2)},
		{name: "from a link-local source", frame: solicit(peerMAC, peerLL, owned1).bytes(t),
			verdict: ndpproxy.VerdictReply, req: solicit(peerMAC, peerLL, owned1)},
		{name: "unicast (NUD) without source link-layer address", frame: unicastSolicit(peerMAC, peerIP, owned1, ourMAC).bytes(t),
			verdict: ndpproxy.VerdictReply, req: unicastSolicit(peerMAC, peerIP, owned1, ourMAC)},
		{name: "unicast with source link-layer address", frame: unicastSolicit(peerMAC, peerIP, owned1, ourMAC).with(func(s *ndpSpec) { s.lladdr = peerMAC }).bytes(t),
			verdict: ndpproxy.VerdictReply, req: unicastSolicit(peerMAC, peerIP, owned1, ourMAC).with(func(s *ndpSpec) { s.lladdr = peerMAC })},
		{name: "multicast without source link-layer address", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.lladdr = nil }).bytes(t),
			verdict: ndpproxy.VerdictReply, req: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.lladdr = nil })},
		{name: "to the broadcast Ethernet address", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.ethDst = bcastMAC }).bytes(t),
			verdict: ndpproxy.VerdictReply, req: solicit(peerMAC, peerIP, owned1)},
		{name: "DAD probe", frame: dadProbe(peerMAC, owned1).bytes(t),
			verdict: ndpproxy.VerdictReply, dad: true, req: dadProbe(peerMAC, owned1)},
		{name: "DAD probe with a nonce (RFC 7527)", frame: dadProbe(peerMAC, owned2).with(func(s *ndpSpec) { s.raw = appendOpt(nonce) }).bytes(t),
			verdict: ndpproxy.VerdictReply, dad: true, req: dadProbe(peerMAC, owned2)},
		{name: "unknown option before the link-layer address", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.lladdr = nil
			s.raw = func(b []byte) []byte { return appendOpt(append([]byte{1, 1}, peerMAC...))(appendOpt(nonce)(b)) }
		}).bytes(t), verdict: ndpproxy.VerdictReply, req: solicit(peerMAC, peerIP, owned1)},
		{name: "two source link-layer addresses: the first counts", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.raw = appendOpt(append([]byte{1, 1}, otherMAC...))
		}).bytes(t), verdict: ndpproxy.VerdictReply, req: solicit(peerMAC, peerIP, owned1)},
		{name: "reserved bits set are ignored", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.raw = func(b []byte) []byte { b[58], b[61] = 0xff, 0xff; return b }
		}).bytes(t), verdict: ndpproxy.VerdictReply, req: solicit(peerMAC, peerIP, owned1)},
		{name: "Ethernet padding after the payload", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.raw = func(b []byte) []byte { return append(b, 0, 0, 0, 0) }
		}).bytes(t), verdict: ndpproxy.VerdictReply, req: solicit(peerMAC, peerIP, owned1)},
		{name: "from a host using an owned address", frame: solicit(otherMAC, owned2, owned1).bytes(t),
			verdict: ndpproxy.VerdictReply, conflict: true, req: solicit(otherMAC, owned2, owned1)},

		{name: "not owned", frame: solicit(peerMAC, peerIP, notOwned).bytes(t), verdict: ndpproxy.VerdictNotOwned},
		{name: "DAD probe not owned", frame: dadProbe(peerMAC, notOwned).bytes(t), verdict: ndpproxy.VerdictNotOwned},
		{name: "unicast not owned", frame: unicastSolicit(peerMAC, peerIP, notOwned, ourMAC).bytes(t), verdict: ndpproxy.VerdictNotOwned},
		{name: "not owned from an owned source", frame: solicit(otherMAC, owned1, notOwned).bytes(t),
			verdict: ndpproxy.VerdictNotOwned, conflict: true},

		{name: "advertisement for another address", frame: advertise(otherMAC, peerLL, peerIP).bytes(t), verdict: ndpproxy.VerdictIgnore},
		{name: "advertisement for an owned address", frame: advertise(otherMAC, peerLL, owned1).bytes(t),
			verdict: ndpproxy.VerdictIgnore, conflict: true},
		{name: "solicited advertisement to us for an owned address", frame: advertise(otherMAC, owned2, owned2).with(func(s *ndpSpec) {
			s.ethDst, s.dst, s.flags = ourMAC, ourLL, 0x60
		}).bytes(t), verdict: ndpproxy.VerdictIgnore, conflict: true},
		{name: "advertisement without link-layer address", frame: advertise(otherMAC, peerLL, peerIP).with(func(s *ndpSpec) { s.lladdr = nil }).bytes(t),
			verdict: ndpproxy.VerdictIgnore},

		// Drops, every reason.
		{name: "empty", frame: nil, reason: ndpproxy.DropShort},
		{name: "shorter than Ethernet", frame: solicit(peerMAC, peerIP, owned1).bytes(t)[:13], reason: ndpproxy.DropShort},
		{name: "shorter than IPv6", frame: solicit(peerMAC, peerIP, owned1).bytes(t)[:53], reason: ndpproxy.DropShort},
		{name: "payload past the end", frame: solicit(peerMAC, peerIP, owned1).bytes(t)[:85], reason: ndpproxy.DropShort},
		{name: "EtherType IPv4", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.ethType = layers.EthernetTypeIPv4 }).bytes(t),
			reason: ndpproxy.DropEtherType},
		{name: "EtherType 802.1Q", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.ethType = layers.EthernetTypeDot1Q }).bytes(t),
			reason: ndpproxy.DropEtherType},
		{name: "version 4", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw = setByte(14, 0x40) }).bytes(t),
			reason: ndpproxy.DropVersion},
		{name: "after a hop-by-hop header", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw = setByte(20, 0) }).bytes(t),
			reason: ndpproxy.DropNextHeader},
		{name: "ICMPv6 echo request", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw = setByte(54, 128) }).bytes(t),
			reason: ndpproxy.DropICMPType},
		{name: "router solicitation", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw = setByte(54, 133) }).bytes(t),
			reason: ndpproxy.DropICMPType},
		{name: "hop limit 254", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.hop = 254 }).bytes(t),
			reason: ndpproxy.DropHopLimit},
		{name: "hop limit 1", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.hop = 1 }).bytes(t),
			reason: ndpproxy.DropHopLimit},
		{name: "advertisement with hop limit 64", frame: advertise(otherMAC, peerLL, owned1).with(func(s *ndpSpec) { s.hop = 64 }).bytes(t),
			reason: ndpproxy.DropHopLimit},
		{name: "ICMPv6 length 20", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.lladdr = nil
			s.raw = func(b []byte) []byte { return setPayloadLen(20)(b)[:74] }
		}).bytes(t), reason: ndpproxy.DropICMPLength},
		{name: "ICMPv6 length 3", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.raw = func(b []byte) []byte { return setPayloadLen(3)(b)[:57] }
		}).bytes(t), reason: ndpproxy.DropICMPLength},
		{name: "bad checksum", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.raw, s.keepChecksum = func(b []byte) []byte { b[57] ^= 1; return b }, true
		}).bytes(t), reason: ndpproxy.DropChecksum},
		{name: "checksum over another source", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.raw, s.keepChecksum = func(b []byte) []byte { b[37] ^= 1; return b }, true
		}).bytes(t), reason: ndpproxy.DropChecksum},
		{name: "code 1", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.code = 1 }).bytes(t),
			reason: ndpproxy.DropCode},
		{name: "multicast target", frame: solicit(peerMAC, peerIP, allNodes).bytes(t), reason: ndpproxy.DropTarget},
		{name: "advertisement for a multicast target", frame: advertise(otherMAC, peerLL, allNodes).bytes(t), reason: ndpproxy.DropTarget},
		{name: "option of length zero", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.raw = appendOpt([]byte{14, 0, 0, 0, 0, 0, 0, 0})
		}).bytes(t), reason: ndpproxy.DropOptionLength},
		{name: "option past the end", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.raw = appendOpt([]byte{14, 2, 0, 0, 0, 0, 0, 0})
		}).bytes(t), reason: ndpproxy.DropOptionLength},
		{name: "one byte of option", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.raw = appendOpt([]byte{14})
		}).bytes(t), reason: ndpproxy.DropOptionLength},
		{name: "source link-layer address of 16 bytes", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.lladdr = nil
			s.raw = appendOpt(append(append([]byte{1, 2}, peerMAC...), make([]byte, 8)...))
		}).bytes(t), reason: ndpproxy.DropLinkLayerOption},
		{name: "DAD probe to all nodes", frame: dadProbe(peerMAC, owned1).with(func(s *ndpSpec) { s.dst, s.ethDst = allNodes, nodesMAC }).bytes(t),
			reason: ndpproxy.DropDADDestination},
		{name: "DAD probe unicast", frame: dadProbe(peerMAC, owned1).with(func(s *ndpSpec) { s.dst, s.ethDst = owned1, ourMAC }).bytes(t),
			reason: ndpproxy.DropDADDestination},
		{name: "DAD probe with a source link-layer address", frame: dadProbe(peerMAC, owned1).with(func(s *ndpSpec) { s.lladdr = peerMAC }).bytes(t),
			reason: ndpproxy.DropDADOption},
		{name: "multicast advertisement with the solicited flag", frame: advertise(otherMAC, peerLL, peerIP).with(func(s *ndpSpec) { s.flags = 0x60 }).bytes(t),
			reason: ndpproxy.DropSolicitedMulticast},
		{name: "Ethernet source multicast", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.ethSrc = nodesMAC }).bytes(t),
			reason: ndpproxy.DropSenderMAC},
		{name: "Ethernet source zero", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.ethSrc = zeroMAC }).bytes(t),
			reason: ndpproxy.DropSenderMAC},
		{name: "source link-layer address broadcast", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.lladdr = bcastMAC }).bytes(t),
			reason: ndpproxy.DropSenderMAC},
		{name: "target link-layer address zero", frame: advertise(otherMAC, peerLL, owned1).with(func(s *ndpSpec) { s.lladdr = zeroMAC }).bytes(t),
			reason: ndpproxy.DropSenderMAC},
		{name: "source mismatch", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.lladdr = otherMAC }).bytes(t),
			reason: ndpproxy.DropSourceMismatch},
		{name: "source multicast", frame: solicit(peerMAC, allNodes, owned1).bytes(t), reason: ndpproxy.DropSource},
		{name: "source loopback", frame: solicit(peerMAC, netip.IPv6Loopback(), owned1).bytes(t), reason: ndpproxy.DropSource},
		{name: "source IPv4-mapped", frame: solicit(peerMAC, netip.MustParseAddr("::ffff:192.0.2.1"), owned1).bytes(t), reason: ndpproxy.DropSource},
		{name: "advertisement from the unspecified address", frame: advertise(otherMAC, unspec, owned1).bytes(t), reason: ndpproxy.DropSource},
		{name: "to another address's solicited-node group", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.dst, s.ethDst = ndpproxy.SolicitedNode(owned2), snMAC(owned2)
		}).bytes(t), reason: ndpproxy.DropDestination},
		{name: "unicast to another owned address", frame: unicastSolicit(peerMAC, peerIP, owned1, ourMAC).with(func(s *ndpSpec) { s.dst = owned2 }).bytes(t),
			reason: ndpproxy.DropDestination},
		{name: "to all nodes", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.dst, s.ethDst = allNodes, nodesMAC }).bytes(t),
			reason: ndpproxy.DropDestination},
		{name: "Ethernet destination another host", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.ethDst = otherMAC }).bytes(t),
			reason: ndpproxy.DropOtherHost},
		{name: "from our own MAC", frame: solicit(ourMAC, peerIP, owned1).bytes(t), reason: ndpproxy.DropFromSelf},
		{name: "source link-layer address ours", frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.lladdr = ourMAC }).bytes(t),
			reason: ndpproxy.DropFromSelf},
	}
	seen := map[ndpproxy.DropReason]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.frame)
			out := make([]byte, 128)
			res := ndpproxy.Respond(out, tt.frame, ourSelf, owned)
			if !bytes.Equal(tt.frame, orig) {
				t.Error("Respond modified its input")
			}
			if res.Verdict != tt.verdict || res.Reason != tt.reason || res.DAD != tt.dad || res.Conflict != tt.conflict {
				t.Fatalf("Respond = verdict %v, reason %v, DAD %v, conflict %v; want %v, %v, %v, %v",
					res.Verdict, res.Reason, res.DAD, res.Conflict, tt.verdict, tt.reason, tt.dad, tt.conflict)
			}
			if err := ndpproxy.Frame(tt.frame).Validate(); res.Verdict != ndpproxy.VerdictDrop && err != nil {
				t.Errorf("Validate = %v for a frame Respond did not drop", err)
			}
			seen[res.Reason] = true
			if res.Verdict != ndpproxy.VerdictReply {
				if res.Reply != nil {
					t.Errorf("Reply set with verdict %v", res.Verdict)
				}
				return
			}
			if len(res.Reply) != ndpproxy.ReplyLen || &res.Reply[0] != &out[0] {
				t.Fatal("Reply is not the ReplyLen-byte prefix of out")
			}
			checkReply(t, res.Reply, tt.req)
			// In place gives the same bytes.
			in := append(bytes.Clone(tt.frame), make([]byte, ndpproxy.ReplyLen)...)
			res2 := ndpproxy.Respond(in, in[:len(tt.frame)], ourSelf, owned)
			if !bytes.Equal(res2.Reply, res.Reply) {
				t.Errorf("in place:\n% x\nwant\n% x", res2.Reply, res.Reply)
			}
		})
	}
	for r := ndpproxy.DropReason(1); r < ndpproxy.NumDropReasons; r++ {
		if !seen[r] {
			t.Errorf("no case drops with %v", r)
		}
	}
}

// TestRespondFlags checks the flags of Self in solicited advertisements:
// the Router flag for a router (RFC 4861 section 7.2.4), the Override flag
// clear for a proxy (section 7.2.8), the Solicited flag only when the
// source is not the unspecified address.
func TestRespondFlags(t *testing.T) {
	owned := ndpproxy.NewAddrSet(owned1)
	for _, tt := range []struct {
		router, proxy bool
		req           ndpSpec
		want          uint8
	}{
		{false, false, solicit(peerMAC, peerIP, owned1), 0x60},
		{true, false, solicit(peerMAC, peerIP, owned1), 0xe0},
		{false, true, solicit(peerMAC, peerIP, owned1), 0x40},
		{true, true, solicit(peerMAC, peerIP, owned1), 0xc0},
		{false, false, dadProbe(peerMAC, owned1), 0x20},
		{false, true, dadProbe(peerMAC, owned1), 0x00},
		{true, false, dadProbe(peerMAC, owned1), 0xa0},
	} {
		self := &ndpproxy.Self{HardwareAddr: ourMAC, Addr: ourLL, Router: tt.router, Proxy: tt.proxy}
		res := ndpproxy.Respond(make([]byte, 128), tt.req.bytes(t), self, owned)
		if res.Verdict != ndpproxy.VerdictReply {
			t.Fatalf("router %v proxy %v: %+v", tt.router, tt.proxy, res)
		}
		checkReplyFrom(t, res.Reply, tt.req, ourMAC, ourLL, tt.want&^0x40)
		if got := uint8(res.Reply.Flags()); got != tt.want {
			t.Errorf("router %v proxy %v, from %v: flags %#x, want %#x", tt.router, tt.proxy, tt.req.src, got, tt.want)
		}
	}
}

func TestRespondNilSet(t *testing.T) {
	res := ndpproxy.Respond(make([]byte, 128), solicit(peerMAC, peerIP, owned1).bytes(t), ourSelf, nil)
	if res.Verdict != ndpproxy.VerdictNotOwned {
		t.Errorf("Respond with a nil set = %+v, want not owned", res)
	}
}

func TestRespondShortOutputPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Respond with a short output buffer did not panic")
		}
	}()
	ndpproxy.Respond(make([]byte, ndpproxy.ReplyLen-1), solicit(peerMAC, peerIP, owned1).bytes(t), ourSelf, ndpproxy.NewAddrSet(owned1))
}

func TestRespondAllocs(t *testing.T) {
	owned := ndpproxy.NewAddrSet(manyAddrs(300)...)
	owned1Set := ndpproxy.NewAddrSet(owned1)
	out := make([]byte, 128)
	for _, tt := range []struct {
		name  string
		frame []byte
		set   *ndpproxy.AddrSet
	}{
		{"reply", solicit(peerMAC, peerIP, manyAddrs(300)[123]).bytes(t), owned},
		{"reply small set", solicit(peerMAC, peerIP, owned1).bytes(t), owned1Set},
		{"DAD", dadProbe(peerMAC, owned1).bytes(t), owned1Set},
		{"not owned", solicit(peerMAC, peerIP, notOwned).bytes(t), owned},
		{"advertisement", advertise(otherMAC, peerLL, owned1).bytes(t), owned1Set},
		{"drop", solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.hop = 1 }).bytes(t), owned1Set},
	} {
		if n := testing.AllocsPerRun(1000, func() { ndpproxy.Respond(out, tt.frame, ourSelf, tt.set) }); n != 0 {
			t.Errorf("%s: Respond allocates %v times, want 0", tt.name, n)
		}
	}
}

// TestNDPMarshalAllocates measures why Respond writes advertisements by
// hand: mdlayher/ndp's MarshalMessage allocates for every message. Its
// parser stays in the tests, as an independent check of ours.
func TestNDPMarshalAllocates(t *testing.T) {
	na := &ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: owned1,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ourMAC}}}
	n := testing.AllocsPerRun(1000, func() {
		if _, err := ndp.MarshalMessageChecksum(na, ourLL, peerIP); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("ndp.MarshalMessageChecksum allocates %v times per advertisement", n)
	if n == 0 {
		t.Log("ndp's marshal no longer allocates: Respond could use it")
	}
	// Both encoders agree on the bytes.
	b, err := ndp.MarshalMessageChecksum(na, ourLL, peerIP)
	if err != nil {
		t.Fatal(err)
	}
	res := ndpproxy.Respond(make([]byte, 128), solicit(peerMAC, peerIP, owned1).bytes(t), ourSelf, ndpproxy.NewAddrSet(owned1))
	if got := res.Reply.Message(); !bytes.Equal(got, b) {
		t.Errorf("Respond's message differs from ndp's:\n% x\n% x", got, b)
	}
}

func TestValidateErrorsIs(t *testing.T) {
	f := solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.hop = 64 }).bytes(t)
	err := ndpproxy.Frame(f).Validate()
	if !errors.Is(err, ndpproxy.DropHopLimit) {
		t.Errorf("Validate = %v, want DropHopLimit", err)
	}
	if err.Error() != "ndpproxy: hop limit is not 255" {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestDropReasonNames(t *testing.T) {
	names := map[string]bool{}
	rs := ndpproxy.DropReasons()
	if len(rs) != int(ndpproxy.NumDropReasons)-1 {
		t.Fatalf("DropReasons has %d reasons, want %d", len(rs), ndpproxy.NumDropReasons-1)
	}
	for _, r := range rs {
		n := r.Name()
		if n == "" || n == "unknown" || names[n] || r.String() != n {
			t.Errorf("reason %d: name %q (duplicate or empty)", r, n)
		}
		names[n] = true
		if len(r.Error()) < len("ndpproxy: ") || r.Error()[:10] != "ndpproxy: " {
			t.Errorf("reason %v: error %q lacks the package prefix", r, r.Error())
		}
	}
	if ndpproxy.DropReason(0).Name() != "unknown" || ndpproxy.NumDropReasons.Error() != "ndpproxy: unknown drop reason" {
		t.Error("out-of-range reasons are not unknown")
	}
}

func TestStrings(t *testing.T) {
	for got, want := range map[string]string{
		ndpproxy.VerdictDrop.String():                          "drop",
		ndpproxy.VerdictReply.String():                         "reply",
		ndpproxy.VerdictNotOwned.String():                      "not_owned",
		ndpproxy.VerdictIgnore.String():                        "ignore",
		ndpproxy.Verdict(9).String():                           "verdict(9)",
		ndpproxy.TypeNeighborSolicitation.String():             "neighbor_solicitation",
		ndpproxy.TypeNeighborAdvertisement.String():            "neighbor_advertisement",
		ndpproxy.Type(128).String():                            "type(128)",
		(ndpproxy.FlagRouter | ndpproxy.FlagOverride).String(): "RO",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestAddrSet(t *testing.T) {
	s := ndpproxy.NewAddrSet(owned2, owned1, owned1, netip.MustParseAddr("192.0.2.1"), allNodes, ourLL, unspec,
		netip.IPv6Loopback(), netip.MustParseAddr("::ffff:192.0.2.1"))
	if got := s.Addrs(); len(got) != 2 || got[0] != owned1 || got[1] != owned2 || s.Len() != 2 {
		t.Errorf("NewAddrSet kept %v, want [%v %v]", got, owned1, owned2)
	}
	for a, want := range map[netip.Addr]bool{owned1: true, owned2: true, notOwned: false,
		netip.MustParseAddr("192.0.2.1"): false, netip.Addr{}: false} {
		if s.Contains(a) != want {
			t.Errorf("Contains(%v) = %v, want %v", a, !want, want)
		}
	}
	var nilSet *ndpproxy.AddrSet
	if nilSet.Contains(owned1) || nilSet.Len() != 0 || len(nilSet.Addrs()) != 0 || nilSet.Ranges() != nil {
		t.Error("a nil AddrSet is not empty")
	}
	big := ndpproxy.NewAddrSet(manyAddrs(1000)...)
	for i, a := range manyAddrs(1000) {
		if !big.Contains(a) {
			t.Fatalf("address %d (%v) missing", i, a)
		}
	}
	if big.Contains(notOwned) {
		t.Error("a non-member is found among 1000")
	}
	a := manyAddrs(1000)[500]
	if n := testing.AllocsPerRun(100, func() { big.Contains(a) }); n != 0 {
		t.Errorf("Contains allocates %v times", n)
	}
}

func TestFilter(t *testing.T) {
	raw := ndpproxy.Filter()
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("Filter does not disassemble")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		frame []byte
		keep  bool
	}{
		{"solicitation", solicit(peerMAC, peerIP, owned1).bytes(t), true},
		{"advertisement", advertise(otherMAC, peerLL, owned1).bytes(t), true},
		{"hop limit 1 (counted by the responder)", solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.hop = 1 }).bytes(t), true},
		{"echo request", solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw = func(b []byte) []byte { b[54] = 128; return b } }).bytes(t), false},
		{"router advertisement", solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw = func(b []byte) []byte { b[54] = 134; return b } }).bytes(t), false},
		{"after a hop-by-hop header", solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw = func(b []byte) []byte { b[20] = 0; return b } }).bytes(t), false},
		{"TCP", solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw = func(b []byte) []byte { b[20] = 6; return b } }).bytes(t), false},
		{"IPv4", solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.ethType = layers.EthernetTypeIPv4 }).bytes(t), false},
		{"short", []byte{1, 2, 3}, false},
	} {
		n, err := vm.Run(tt.frame)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if (n > 0) != tt.keep {
			t.Errorf("%s: filter returned %d, want keep=%v", tt.name, n, tt.keep)
		}
		if tt.keep && n < len(tt.frame) {
			t.Errorf("%s: filter truncates to %d bytes", tt.name, n)
		}
	}
}

// manyAddrs returns n addresses in 2001:db8:1::/64.
func manyAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
	}
	return out
}
