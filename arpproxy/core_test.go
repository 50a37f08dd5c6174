package arpproxy_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"

	"github.com/vif-project/vif/arpproxy"
)

func TestFrameAccessors(t *testing.T) {
	spec := reply(otherMAC, owned1, peerMAC, peerIP)
	b := spec.bytes(t)
	d := decode(t, b)
	f := arpproxy.Frame(b)
	if err := f.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	type fields struct {
		EthDst, EthSrc, SHA, THA string
		EtherType, HwType, Proto uint16
		HwLen, ProtLen           uint8
		Op                       uint16
		SPA, TPA                 netip.Addr
	}
	got := fields{
		EthDst: f.EthernetDst().String(), EthSrc: f.EthernetSrc().String(),
		SHA: f.SenderHardwareAddr().String(), THA: f.TargetHardwareAddr().String(),
		EtherType: f.EtherType(), HwType: f.HardwareType(), Proto: f.ProtocolType(),
		HwLen: f.HardwareLen(), ProtLen: f.ProtocolLen(), Op: uint16(f.Op()),
		SPA: f.SenderIP(), TPA: f.TargetIP(),
	}
	want := fields{
		EthDst: d.eth.DstMAC.String(), EthSrc: d.eth.SrcMAC.String(),
		SHA: net.HardwareAddr(d.arp.SourceHwAddress).String(), THA: net.HardwareAddr(d.arp.DstHwAddress).String(),
		EtherType: uint16(d.eth.EthernetType), HwType: uint16(d.arp.AddrType), Proto: uint16(d.arp.Protocol),
		HwLen: d.arp.HwAddressSize, ProtLen: d.arp.ProtAddressSize, Op: d.arp.Operation,
		SPA: d.spa(), TPA: d.tpa(),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("accessors differ from gopacket (-want +got):\n%s", diff)
	}
}

func TestPutAnnouncement(t *testing.T) {
	buf := bytes.Repeat([]byte{0xaa}, 64)
	f := arpproxy.PutAnnouncement(buf, ourMAC, owned2)
	if len(f) != arpproxy.FrameLen || &f[0] != &buf[0] {
		t.Fatalf("PutAnnouncement returned %d bytes, want the %d-byte prefix of buf", len(f), arpproxy.FrameLen)
	}
	checkAnnouncement(t, f, owned2)
	// Our own announcement, heard back, is never answered nor a conflict.
	res := arpproxy.Respond(make([]byte, 64), f, ourMAC, arpproxy.NewAddrSet(owned2))
	if res.Verdict != arpproxy.VerdictDrop || res.Reason != arpproxy.DropFromSelf {
		t.Errorf("Respond(own announcement) = %+v, want drop from_self", res)
	}
	// Heard from another host, it is a conflict and is not answered.
	res = arpproxy.Respond(make([]byte, 64), f, otherMAC, arpproxy.NewAddrSet(owned2))
	if res.Verdict != arpproxy.VerdictIgnore || !res.Conflict {
		t.Errorf("Respond(announcement by another host) = %+v, want ignore with conflict", res)
	}
}

func TestRespond(t *testing.T) {
	owned := arpproxy.NewAddrSet(owned1, owned2)
	tests := []struct {
		name     string
		frame    []byte
		verdict  arpproxy.Verdict
		reason   arpproxy.DropReason
		probe    bool
		conflict bool
		req      arpSpec // the request answered, for VerdictReply
	}{
		{name: "request owned", frame: request(peerMAC, peerIP, owned1).bytes(t),
			verdict: arpproxy.VerdictReply, req: request(peerMAC, peerIP, owned1)},
		{name: "request second owned", frame: request(peerMAC, peerIP, owned2).bytes(t),
			verdict: arpproxy.VerdictReply, req: request(peerMAC, peerIP, owned2)},
		{name: "request unicast to us", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethDst = ourMAC }).bytes(t),
			verdict: arpproxy.VerdictReply, req: request(peerMAC, peerIP, owned1)},
		{name: "request to multicast", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethDst = mustMAC("01:00:5e:00:00:01") }).bytes(t),
			verdict: arpproxy.VerdictReply, req: request(peerMAC, peerIP, owned1)},
		{name: "request unpadded", frame: request(peerMAC, peerIP, owned1).bytes(t)[:42],
			verdict: arpproxy.VerdictReply, req: request(peerMAC, peerIP, owned1)},
		{name: "request with target hardware address set", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.tha = otherMAC }).bytes(t),
			verdict: arpproxy.VerdictReply, req: request(peerMAC, peerIP, owned1)},
		{name: "probe owned", frame: request(peerMAC, zeroIP, owned1).bytes(t),
			verdict: arpproxy.VerdictReply, probe: true, req: request(peerMAC, zeroIP, owned1)},
		{name: "request from owned sender for owned target", frame: request(otherMAC, owned2, owned1).bytes(t),
			verdict: arpproxy.VerdictReply, conflict: true, req: request(otherMAC, owned2, owned1)},
		{name: "request not owned", frame: request(peerMAC, peerIP, notOwned).bytes(t),
			verdict: arpproxy.VerdictNotOwned},
		{name: "probe not owned", frame: request(peerMAC, zeroIP, notOwned).bytes(t),
			verdict: arpproxy.VerdictNotOwned},
		{name: "request for peer's own address", frame: request(peerMAC, peerIP, peerIP).bytes(t),
			verdict: arpproxy.VerdictIgnore},
		{name: "gratuitous request for owned (announcement)", frame: request(otherMAC, owned1, owned1).bytes(t),
			verdict: arpproxy.VerdictIgnore, conflict: true},
		{name: "gratuitous reply for owned", frame: reply(otherMAC, owned1, bcastMAC, owned1).bytes(t),
			verdict: arpproxy.VerdictIgnore, conflict: true},
		{name: "broadcast reply claiming owned", frame: reply(otherMAC, owned2, peerMAC, peerIP).with(func(s *arpSpec) { s.ethDst = bcastMAC }).bytes(t),
			verdict: arpproxy.VerdictIgnore, conflict: true},
		{name: "reply to us, not owned", frame: reply(peerMAC, peerIP, ourMAC, owned1).bytes(t),
			verdict: arpproxy.VerdictIgnore},
		{name: "reply with source mismatch is inspected", frame: reply(otherMAC, owned1, peerMAC, peerIP).with(func(s *arpSpec) { s.ethSrc, s.ethDst = peerMAC, bcastMAC }).bytes(t),
			verdict: arpproxy.VerdictIgnore, conflict: true},

		// Drops, one per reason.
		{name: "empty", frame: nil, reason: arpproxy.DropShort},
		{name: "shorter than Ethernet", frame: request(peerMAC, peerIP, owned1).bytes(t)[:13], reason: arpproxy.DropShort},
		{name: "shorter than ARP header", frame: request(peerMAC, peerIP, owned1).bytes(t)[:21], reason: arpproxy.DropShort},
		{name: "truncated addresses", frame: request(peerMAC, peerIP, owned1).bytes(t)[:41], reason: arpproxy.DropShort},
		{name: "EtherType IPv4", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethType = layers.EthernetTypeIPv4 }).bytes(t),
			reason: arpproxy.DropEtherType},
		{name: "EtherType 802.1Q", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethType = layers.EthernetTypeDot1Q }).bytes(t),
			reason: arpproxy.DropEtherType},
		{name: "EtherType RARP", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethType = 0x8035 }).bytes(t),
			reason: arpproxy.DropEtherType},
		{name: "hardware type IEEE 802", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.hwType = 6 }).bytes(t),
			reason: arpproxy.DropHardwareType},
		{name: "protocol type IPv6", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.proto = layers.EthernetTypeIPv6 }).bytes(t),
			reason: arpproxy.DropProtocolType},
		{name: "hardware length 8", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.hwLen = 8 }).bytes(t),
			reason: arpproxy.DropHardwareLen},
		{name: "protocol length 16", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.protLen = 16 }).bytes(t),
			reason: arpproxy.DropProtocolLen},
		{name: "opcode 0", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.op = 0 }).bytes(t),
			reason: arpproxy.DropOpcode},
		{name: "opcode RARP request", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.op = 3 }).bytes(t),
			reason: arpproxy.DropOpcode},
		{name: "Ethernet source multicast", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethSrc = mustMAC("01:00:5e:00:00:01") }).bytes(t),
			reason: arpproxy.DropSenderMAC},
		{name: "sender hardware address broadcast", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.sha = bcastMAC }).bytes(t),
			reason: arpproxy.DropSenderMAC},
		{name: "sender hardware address zero", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.sha = zeroMAC }).bytes(t),
			reason: arpproxy.DropSenderMAC},
		{name: "reply from broadcast sender", frame: reply(bcastMAC, owned1, ourMAC, peerIP).with(func(s *arpSpec) { s.ethSrc = peerMAC }).bytes(t),
			reason: arpproxy.DropSenderMAC},
		{name: "source mismatch", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethSrc = otherMAC }).bytes(t),
			reason: arpproxy.DropSourceMismatch},
		{name: "sender IP broadcast", frame: request(peerMAC, netip.MustParseAddr("255.255.255.255"), owned1).bytes(t),
			reason: arpproxy.DropSenderIP},
		{name: "sender IP multicast", frame: request(peerMAC, netip.MustParseAddr("224.0.0.251"), owned1).bytes(t),
			reason: arpproxy.DropSenderIP},
		{name: "sender IP loopback", frame: request(peerMAC, netip.MustParseAddr("127.0.0.1"), owned1).bytes(t),
			reason: arpproxy.DropSenderIP},
		{name: "reply unicast to another host", frame: reply(otherMAC, owned1, peerMAC, peerIP).bytes(t),
			reason: arpproxy.DropOtherHost},
		{name: "unicast to another host", frame: request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethDst = otherMAC }).bytes(t),
			reason: arpproxy.DropOtherHost},
		{name: "our own request", frame: request(ourMAC, peerIP, owned1).bytes(t),
			reason: arpproxy.DropFromSelf},
		{name: "our own reply", frame: reply(ourMAC, owned1, peerMAC, peerIP).with(func(s *arpSpec) { s.ethDst = bcastMAC }).bytes(t),
			reason: arpproxy.DropFromSelf},
		{name: "our hardware address as ARP sender only", frame: reply(peerMAC, owned1, bcastMAC, owned1).with(func(s *arpSpec) { s.sha = ourMAC }).bytes(t),
			reason: arpproxy.DropFromSelf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.frame)
			out := make([]byte, arpproxy.FrameLen)
			got := arpproxy.Respond(out, tt.frame, ourMAC, owned)
			if !bytes.Equal(tt.frame, orig) {
				t.Error("Respond modified the request")
			}
			if got.Verdict != tt.verdict || got.Reason != tt.reason || got.Probe != tt.probe || got.Conflict != tt.conflict {
				t.Fatalf("Respond = {%v %v probe=%v conflict=%v}, want {%v %v probe=%v conflict=%v}",
					got.Verdict, got.Reason, got.Probe, got.Conflict, tt.verdict, tt.reason, tt.probe, tt.conflict)
			}
			if tt.verdict != arpproxy.VerdictReply {
				if got.Reply != nil {
					t.Errorf("Reply = % x, want nil", got.Reply)
				}
				if tt.verdict == arpproxy.VerdictDrop {
					if err := arpproxy.Frame(tt.frame).Validate(); tt.reason <= arpproxy.DropOpcode && !errors.Is(err, tt.reason) {
						t.Errorf("Validate = %v, want %v", err, tt.reason)
					}
				}
				return
			}
			checkReply(t, got.Reply, tt.req)

			// In place: the same reply, written over the request.
			inPlace := bytes.Clone(tt.frame)
			got2 := arpproxy.Respond(inPlace, inPlace, ourMAC, owned)
			if !bytes.Equal(got2.Reply, got.Reply) || &got2.Reply[0] != &inPlace[0] {
				t.Errorf("in-place reply = % x, want % x written over the request", got2.Reply, got.Reply)
			}
		})
	}
}

func TestRespondNilSet(t *testing.T) {
	got := arpproxy.Respond(nil, request(peerMAC, peerIP, owned1).bytes(t), ourMAC, nil)
	if got.Verdict != arpproxy.VerdictNotOwned {
		t.Errorf("Respond with nil set = %v, want not_owned", got.Verdict)
	}
}

func TestRespondShortOutputPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Respond with a short output buffer did not panic")
		}
	}()
	arpproxy.Respond(make([]byte, 10), request(peerMAC, peerIP, owned1).bytes(t), ourMAC, arpproxy.NewAddrSet(owned1))
}

func TestRespondAllocs(t *testing.T) {
	owned := arpproxy.NewAddrSet(owned1, owned2)
	frames := [][]byte{
		request(peerMAC, peerIP, owned1).bytes(t),
		request(peerMAC, zeroIP, owned1).bytes(t),
		request(peerMAC, peerIP, notOwned).bytes(t),
		reply(otherMAC, owned1, peerMAC, peerIP).bytes(t),
		request(peerMAC, peerIP, owned1).bytes(t)[:30],
	}
	out := make([]byte, arpproxy.FrameLen)
	for _, f := range frames {
		if n := testing.AllocsPerRun(100, func() {
			res := arpproxy.Respond(out, f, ourMAC, owned)
			_ = arpproxy.Frame(f).Validate()
			_ = res.Reason.Error()
		}); n != 0 {
			t.Errorf("Respond(% x) allocates %v times, want 0", f, n)
		}
	}
}

func TestValidateErrorsIs(t *testing.T) {
	err := arpproxy.Frame(nil).Validate()
	if !errors.Is(err, arpproxy.DropShort) || errors.Is(err, arpproxy.DropOpcode) {
		t.Errorf("Validate(nil) = %v, want DropShort", err)
	}
	if err := arpproxy.Frame(request(peerMAC, peerIP, owned1).bytes(t)).Validate(); err != nil {
		t.Errorf("Validate(request) = %v, want nil", err)
	}
}

func TestDropReasonNames(t *testing.T) {
	names := map[string]bool{}
	texts := map[string]bool{}
	rs := arpproxy.DropReasons()
	if len(rs) != int(arpproxy.NumDropReasons)-1 {
		t.Fatalf("DropReasons() has %d reasons, want %d", len(rs), arpproxy.NumDropReasons-1)
	}
	for _, r := range rs {
		n, e := r.Name(), r.Error()
		if n == "" || n == "unknown" || names[n] {
			t.Errorf("reason %d: bad or duplicate name %q", r, n)
		}
		if len(e) < len("arpproxy: x") || e[:len("arpproxy: ")] != "arpproxy: " || texts[e] {
			t.Errorf("reason %d: bad or duplicate error text %q", r, e)
		}
		if r.String() != n {
			t.Errorf("reason %d: String() = %q, want %q", r, r.String(), n)
		}
		names[n], texts[e] = true, true
	}
	for _, r := range []arpproxy.DropReason{0, arpproxy.NumDropReasons} {
		if r.Name() != "unknown" || r.Error() != "arpproxy: unknown drop reason" {
			t.Errorf("reason %d: Name %q, Error %q", r, r.Name(), r.Error())
		}
	}
}

func TestOpAndVerdictStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{arpproxy.OpRequest.String(), "request"},
		{arpproxy.OpReply.String(), "reply"},
		{arpproxy.Op(8).String(), "op(8)"},
		{arpproxy.VerdictReply.String(), "reply"},
		{arpproxy.VerdictNotOwned.String(), "not_owned"},
		{arpproxy.Verdict(9).String(), "verdict(9)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestAddrSet(t *testing.T) {
	var nilSet *arpproxy.AddrSet
	if nilSet.Contains(owned1) || nilSet.Len() != 0 || len(nilSet.Addrs()) != 0 {
		t.Error("nil AddrSet is not empty")
	}
	s := arpproxy.NewAddrSet(owned2, owned1, owned2, netip.MustParseAddr("2001:db8::1"), netip.Addr{},
		netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("224.0.0.1"), netip.MustParseAddr("127.0.0.1"))
	if diff := cmp.Diff([]netip.Addr{owned1, owned2}, s.Addrs(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Addrs (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		a    netip.Addr
		want bool
	}{
		{owned1, true},
		{owned2, true},
		{notOwned, false},
		{netip.MustParseAddr("::ffff:192.0.2.1"), false},
		{netip.Addr{}, false},
	} {
		if got := s.Contains(tt.a); got != tt.want {
			t.Errorf("Contains(%v) = %v, want %v", tt.a, got, tt.want)
		}
	}
}

func TestFilter(t *testing.T) {
	vm, err := bpf.NewVM(toInstructions(t, arpproxy.Filter()))
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	ipv4 := request(peerMAC, peerIP, owned1).bytes(t)
	ipv4[12], ipv4[13] = 0x08, 0x00
	tests := []struct {
		name   string
		frame  []byte
		accept bool
	}{
		{"request", request(peerMAC, peerIP, owned1).bytes(t), true},
		{"reply", reply(otherMAC, owned1, peerMAC, peerIP).bytes(t), true},
		{"bad opcode reaches the counters", request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.op = 9 }).bytes(t), true},
		{"bad hardware length reaches the counters", request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.hwLen = 8 }).bytes(t), true},
		{"IPv4 frame", ipv4, false},
		{"hardware type IEEE 802 reaches the counters", request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.hwType = 6 }).bytes(t), true},
		{"protocol type IPv6 reaches the counters", request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.proto = layers.EthernetTypeIPv6 }).bytes(t), true},
		{"VLAN tagged", request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethType = layers.EthernetTypeDot1Q }).bytes(t), false},
		{"truncated reaches the counters", request(peerMAC, peerIP, owned1).bytes(t)[:15], true},
		{"no EtherType", request(peerMAC, peerIP, owned1).bytes(t)[:12], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := vm.Run(tt.frame)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := n > 0; got != tt.accept {
				t.Errorf("filter kept %d bytes; accept = %v, want %v", n, got, tt.accept)
			}
			if tt.accept && n < len(tt.frame) {
				t.Errorf("filter truncated the frame to %d bytes", n)
			}
		})
	}
}

func toInstructions(t *testing.T, raw []bpf.RawInstruction) []bpf.Instruction {
	t.Helper()
	out := make([]bpf.Instruction, 0, len(raw))
	for _, r := range raw {
		out = append(out, r.Disassemble())
	}
	return out
}

func TestPutRequest(t *testing.T) {
	for _, tt := range []struct {
		name     string
		spa, tpa netip.Addr
	}{
		{"request", peerIP, owned1},
		{"probe", zeroIP, owned1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := arpproxy.PutRequest(make([]byte, 60), peerMAC, tt.spa, tt.tpa)
			want := request(peerMAC, tt.spa, tt.tpa).bytes(t)[:arpproxy.FrameLen]
			if !bytes.Equal(got, want) {
				t.Errorf("PutRequest = % x, gopacket builds % x", []byte(got), want)
			}
		})
	}
	for name, f := range map[string]func(){
		"short buffer": func() { arpproxy.PutRequest(make([]byte, 41), peerMAC, peerIP, owned1) },
		"long MAC":     func() { arpproxy.PutRequest(make([]byte, 60), make(net.HardwareAddr, 8), peerIP, owned1) },
		"IPv6":         func() { arpproxy.PutAnnouncement(make([]byte, 60), peerMAC, netip.IPv6Loopback()) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}
