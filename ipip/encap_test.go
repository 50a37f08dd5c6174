package ipip_test

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/ipip"
)

// outerFields are the outer-header fields Encap decides, as gopacket
// decodes them.
type outerFields struct {
	Version    uint8
	IHL        uint8
	TOS        uint8
	Length     uint16
	Flags      layers.IPv4Flag
	FragOffset uint16
	TTL        uint8
	Protocol   layers.IPProtocol
	SrcIP      string
	DstIP      string
}

func fieldsOf(ip *layers.IPv4) outerFields {
	return outerFields{
		Version:    ip.Version,
		IHL:        ip.IHL,
		TOS:        ip.TOS,
		Length:     ip.Length,
		Flags:      ip.Flags,
		FragOffset: ip.FragOffset,
		TTL:        ip.TTL,
		Protocol:   ip.Protocol,
		SrcIP:      ip.SrcIP.String(),
		DstIP:      ip.DstIP.String(),
	}
}

func TestEncap(t *testing.T) {
	df := func(ip *layers.IPv4) { ip.Flags = layers.IPv4DontFragment }
	withTOS := func(b uint8) func(*layers.IPv4) { return func(ip *layers.IPv4) { ip.TOS = b } }
	withTTL := func(n uint8) func(*layers.IPv4) { return func(ip *layers.IPv4) { ip.TTL = n } }
	tun := func(mods ...func(*ipip.Encapsulator)) ipip.Encapsulator {
		e := ipip.Encapsulator{Src: tunSrc, Dst: tunDst}
		for _, m := range mods {
			m(&e)
		}
		return e
	}
	// want is the expected outer header for an inner packet of length n.
	want := func(n int, mods ...func(*outerFields)) outerFields {
		f := outerFields{
			Version:  4,
			IHL:      5,
			Length:   uint16(n + ipip.IPv4MinLen),
			TTL:      ipip.DefaultTTL,
			Protocol: layers.IPProtocol(ipip.ProtoIPIP),
			SrcIP:    tunSrc.String(),
			DstIP:    tunDst.String(),
		}
		for _, m := range mods {
			m(&f)
		}
		return f
	}

	icmp := icmpPacket(t, 32)
	tests := []struct {
		name  string
		enc   ipip.Encapsulator
		inner []byte
		off   int // headroom; 0 means ipip.IPv4MinLen
		want  outerFields
	}{
		{
			name:  "default protocol 94",
			enc:   tun(),
			inner: icmp,
			want:  want(len(icmp)),
		},
		{
			name:  "protocol 94 explicit",
			enc:   tun(func(e *ipip.Encapsulator) { e.Protocol = ipip.ProtoIPIP }),
			inner: icmp,
			want:  want(len(icmp)),
		},
		{
			name:  "protocol 4 (RFC 2003)",
			enc:   tun(func(e *ipip.Encapsulator) { e.Protocol = ipip.ProtoIPinIP }),
			inner: icmp,
			want:  want(len(icmp), func(f *outerFields) { f.Protocol = layers.IPProtocolIPv4 }),
		},
		{
			name:  "swapped endpoints",
			enc:   ipip.Encapsulator{Src: tunDst, Dst: tunSrc},
			inner: icmp,
			want: want(len(icmp), func(f *outerFields) {
				f.SrcIP, f.DstIP = tunDst.String(), tunSrc.String()
			}),
		},
		{
			name:  "DF set in inner is set in outer",
			enc:   tun(),
			inner: icmpPacket(t, 32, df),
			want:  want(len(icmp), func(f *outerFields) { f.Flags = layers.IPv4DontFragment }),
		},
		{
			name:  "DF clear in inner is clear in outer",
			enc:   tun(),
			inner: icmpPacket(t, 32, func(ip *layers.IPv4) { ip.Flags = 0 }),
			want:  want(len(icmp)),
		},
		{
			name: "inner fragment: MF and offset not copied, DF copied",
			enc:  tun(),
			inner: icmpPacket(t, 32, func(ip *layers.IPv4) {
				ip.Flags = layers.IPv4MoreFragments
				ip.FragOffset = 100
			}),
			want: want(len(icmp)),
		},
		{
			name:  "TOS Not-ECT copied",
			enc:   tun(),
			inner: icmpPacket(t, 32, withTOS(tos(46, ipip.NotECT))),
			want:  want(len(icmp), func(f *outerFields) { f.TOS = tos(46, ipip.NotECT) }),
		},
		{
			name:  "TOS ECT(1) copied",
			enc:   tun(),
			inner: icmpPacket(t, 32, withTOS(tos(46, ipip.ECT1))),
			want:  want(len(icmp), func(f *outerFields) { f.TOS = tos(46, ipip.ECT1) }),
		},
		{
			name:  "TOS ECT(0) copied",
			enc:   tun(),
			inner: icmpPacket(t, 32, withTOS(tos(10, ipip.ECT0))),
			want:  want(len(icmp), func(f *outerFields) { f.TOS = tos(10, ipip.ECT0) }),
		},
		{
			name:  "TOS CE copied (RFC 6040 normal mode, not reset to ECT(0))",
			enc:   tun(),
			inner: icmpPacket(t, 32, withTOS(tos(0, ipip.CE))),
			want:  want(len(icmp), func(f *outerFields) { f.TOS = tos(0, ipip.CE) }),
		},
		{
			name:  "TTL default 64 regardless of inner",
			enc:   tun(),
			inner: icmpPacket(t, 32, withTTL(3)),
			want:  want(len(icmp)),
		},
		{
			name:  "TTL fixed",
			enc:   tun(func(e *ipip.Encapsulator) { e.TTL = 200 }),
			inner: icmpPacket(t, 32, withTTL(3)),
			want:  want(len(icmp), func(f *outerFields) { f.TTL = 200 }),
		},
		{
			name:  "TTL inherited",
			enc:   tun(func(e *ipip.Encapsulator) { e.InheritTTL = true }),
			inner: icmpPacket(t, 32, withTTL(3)),
			want:  want(len(icmp), func(f *outerFields) { f.TTL = 3 }),
		},
		{
			name:  "TTL inherited wins over fixed",
			enc:   tun(func(e *ipip.Encapsulator) { e.InheritTTL, e.TTL = true, 200 }),
			inner: icmpPacket(t, 32, withTTL(1)),
			want:  want(len(icmp), func(f *outerFields) { f.TTL = 1 }),
		},
		{
			name:  "UDP inner",
			enc:   tun(),
			inner: udpPacket(t, 100),
			want:  want(len(udpPacket(t, 100))),
		},
		{
			name:  "inner with IP options",
			enc:   tun(),
			inner: icmpPacket(t, 32, func(ip *layers.IPv4) { ip.Options = []layers.IPv4Option{routerAlert} }),
			want:  want(len(icmp) + 4),
		},
		{
			name:  "large headroom (Ethernet header in front)",
			enc:   tun(),
			inner: icmp,
			off:   ipip.IPv4MinLen + 14,
			want:  want(len(icmp)),
		},
		{
			name:  "1400-byte UDP inner",
			enc:   tun(),
			inner: udpPacket(t, 1400-28),
			want:  want(1400),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off := tt.off
			if off == 0 {
				off = ipip.IPv4MinLen
			}
			buf := withHeadroom(tt.inner, off)
			enc := tt.enc
			out, err := enc.Encap(buf, off)
			if err != nil {
				t.Fatalf("Encap: %v", err)
			}

			// In place: out is buf[off-IPv4MinLen:], the payload is not copied.
			if !sameMemory(out, buf[off-ipip.IPv4MinLen:]) {
				t.Error("Encap result does not start at buf[off-HeaderLen]")
			}
			if &out[ipip.IPv4MinLen] != &buf[off] {
				t.Error("Encap copied the payload: &out[HeaderLen] != &buf[off]")
			}
			if diff := cmp.Diff(bytes.Repeat([]byte{0xa5}, off-ipip.IPv4MinLen), buf[:off-ipip.IPv4MinLen]); diff != "" {
				t.Errorf("Encap wrote in front of the outer header (-want +got):\n%s", diff)
			}
			if got, want := len(out), ipip.IPv4MinLen+len(tt.inner); got != want {
				t.Errorf("len(out) = %d, want %d", got, want)
			}

			outer := decodeIPv4(t, out)
			if diff := cmp.Diff(tt.want, fieldsOf(outer)); diff != "" {
				t.Errorf("outer header (-want +got):\n%s", diff)
			}
			if !gopacketChecksumOK(t, out) {
				t.Error("gopacket: outer checksum invalid")
			}
			if !ipip.IPv4(out).ChecksumValid() {
				t.Error("Header.ChecksumValid: outer checksum invalid")
			}
			if outer.Id != 1 {
				t.Errorf("first outer ID = %d, want 1", outer.Id)
			}
			if diff := cmp.Diff(tt.inner, outer.Payload); diff != "" {
				t.Errorf("outer payload is not the inner packet (-want +got):\n%s", diff)
			}
			// gopacket sees the inner packet as IPv4 under both protocols.
			inner := decodeIPv4(t, outer.Payload)
			if got, want := inner.DstIP.String(), net.IP(innerDst).String(); got != want {
				t.Errorf("inner dst = %s, want %s", got, want)
			}
		})
	}
}

func TestEncapTrailingBytes(t *testing.T) {
	inner := icmpPacket(t, 32)
	buf := withHeadroom(append(append([]byte(nil), inner...), 0xde, 0xad, 0xbe, 0xef), ipip.IPv4MinLen)
	e := ipip.Encapsulator{Src: tunSrc, Dst: tunDst}
	out, err := e.Encap(buf, ipip.IPv4MinLen)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(out), ipip.IPv4MinLen+len(inner); got != want {
		t.Errorf("len(out) = %d, want %d (trailing bytes must not be sent)", got, want)
	}
	if got, want := ipip.IPv4(out).TotalLen(), uint16(ipip.IPv4MinLen+len(inner)); got != want {
		t.Errorf("outer total length = %d, want %d", got, want)
	}
}

func TestEncapID(t *testing.T) {
	inner := icmpPacket(t, 8)
	e := ipip.Encapsulator{Src: tunSrc, Dst: tunDst}

	// A failed Encap consumes no ID.
	if _, err := e.Encap(make([]byte, 10), 0); err == nil {
		t.Fatal("Encap with no headroom succeeded")
	}
	if _, err := e.Encap(withHeadroom([]byte{0x45}, ipip.IPv4MinLen), ipip.IPv4MinLen); err == nil {
		t.Fatal("Encap of a truncated inner packet succeeded")
	}

	var got []uint16
	for range 5 {
		out, err := e.Encap(withHeadroom(inner, ipip.IPv4MinLen), ipip.IPv4MinLen)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, decodeIPv4(t, out).Id)
	}
	if diff := cmp.Diff([]uint16{1, 2, 3, 4, 5}, got); diff != "" {
		t.Errorf("outer IDs (-want +got):\n%s", diff)
	}

	// The counter wraps after 65535 packets; all headers stay valid.
	buf := withHeadroom(inner, ipip.IPv4MinLen)
	var last uint16
	for range 1<<16 - 5 {
		out, err := e.Encap(buf, ipip.IPv4MinLen)
		if err != nil {
			t.Fatal(err)
		}
		last = ipip.IPv4(out).ID()
	}
	if last != 0 {
		t.Errorf("ID after 65536 packets = %d, want 0 (wrapped)", last)
	}
	out, _ := e.Encap(buf, ipip.IPv4MinLen)
	if id := ipip.IPv4(out).ID(); id != 1 {
		t.Errorf("ID after wrap = %d, want 1", id)
	}
	if !gopacketChecksumOK(t, out) {
		t.Error("checksum invalid after wrap")
	}
}

func TestEncapErrors(t *testing.T) {
	valid := icmpPacket(t, 32)
	mutate := func(f func(b []byte)) []byte {
		b := append([]byte(nil), valid...)
		f(b)
		return b
	}
	// A UDP packet whose outer packet is exactly MaxPacketLen, and one a
	// byte longer.
	maxInner := udpPacket(t, ipip.MaxPacketLen-ipip.IPv4MinLen-28)
	tooBig := udpPacket(t, ipip.MaxPacketLen-ipip.IPv4MinLen-28+1)

	tests := []struct {
		name    string
		pkt     []byte
		off     int
		wantErr error
	}{
		{name: "no headroom", pkt: valid, off: 0, wantErr: ipip.ErrHeadroom},
		{name: "19 bytes headroom", pkt: valid, off: 19, wantErr: ipip.ErrHeadroom},
		{name: "off past end of buf", pkt: nil, off: ipip.IPv4MinLen + 1, wantErr: ipip.ErrHeadroom},
		{name: "inner empty", pkt: []byte{}, off: ipip.IPv4MinLen, wantErr: ipip.ErrInnerTruncated},
		{name: "inner truncated to 19 bytes", pkt: valid[:19], off: ipip.IPv4MinLen, wantErr: ipip.ErrInnerTruncated},
		{name: "inner version 6", pkt: mutate(func(b []byte) { b[0] = 0x65 }), off: ipip.IPv4MinLen, wantErr: ipip.ErrInnerVersion},
		{name: "inner IHL 4", pkt: mutate(func(b []byte) { b[0] = 0x44 }), off: ipip.IPv4MinLen, wantErr: ipip.ErrInnerHeaderLen},
		{name: "inner IHL 6 past 22-byte buffer", pkt: mutate(func(b []byte) { b[0] = 0x46 })[:22], off: ipip.IPv4MinLen, wantErr: ipip.ErrInnerTruncated},
		{name: "inner IHL 15 past 36-byte buffer", pkt: mutate(func(b []byte) { b[0] = 0x4f })[:36], off: ipip.IPv4MinLen, wantErr: ipip.ErrInnerTruncated},
		{name: "inner total length < IHL", pkt: mutate(func(b []byte) { b[2], b[3] = 0, 19 }), off: ipip.IPv4MinLen, wantErr: ipip.ErrInnerTotalLen},
		{name: "inner total length > buffer", pkt: valid[:len(valid)-1], off: ipip.IPv4MinLen, wantErr: ipip.ErrInnerTotalLen},
		{name: "inner TTL 0 (RFC 2003 3.1 MUST NOT)", pkt: icmpPacket(t, 32, func(ip *layers.IPv4) { ip.TTL = 0 }), off: ipip.IPv4MinLen, wantErr: ipip.ErrInnerTTL},
		{name: "outer would exceed 65535", pkt: tooBig, off: ipip.IPv4MinLen, wantErr: ipip.ErrTooBig},
		{name: "outer exactly 65535", pkt: maxInner, off: ipip.IPv4MinLen, wantErr: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := withHeadroom(tt.pkt, tt.off)
			if tt.pkt == nil {
				buf = make([]byte, tt.off-1) // off points past the end
			}
			orig := append([]byte(nil), buf...)
			e := ipip.Encapsulator{Src: tunSrc, Dst: tunDst, InheritTTL: true}
			out, err := e.Encap(buf, tt.off)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Encap error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if out != nil {
					t.Errorf("Encap returned %d bytes with error %v", len(out), err)
				}
				if _, ok := err.(ipip.Error); !ok {
					t.Errorf("error %T is not an ipip.Error", err)
				}
				if diff := cmp.Diff(orig, buf); diff != "" {
					t.Errorf("failed Encap modified buf (-want +got):\n%s", diff)
				}
				return
			}
			if got := ipip.IPv4(out).TotalLen(); got != ipip.MaxPacketLen {
				t.Errorf("outer total length = %d, want %d", got, ipip.MaxPacketLen)
			}
		})
	}
}
