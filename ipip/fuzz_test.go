package ipip_test

import (
	"bytes"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/ipip"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed files in "+seedDir)

// seedDir holds the binary seed packets of the fuzz targets, one packet
// per file, exactly as it would arrive from the underlay. Every target
// starts from all of them, whatever their outer IP version.
const seedDir = "../testdata/ipip"

// A seed is a seed file: how its packet is built (with gopacket) and what
// decap (Decap when nil) must say about it with proto.
type seed struct {
	file    string
	pkt     []byte
	proto   uint8
	wantErr error
	decap   decapFunc
}

// seeds describes the seed files. TestFuzzSeeds checks the files against
// these builders; run
//
//	go test ./ipip -run '^TestFuzzSeeds$' -update-seeds
//
// to regenerate them.
func seeds(tb testing.TB) []seed {
	inner := icmpPacket(tb, 8)
	ce := func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.CE) }
	good := outerPacket(tb, ipip.ProtoIPIP, inner)
	badSum := append([]byte(nil), good...)
	badSum[10] ^= 0xff
	badInnerSum := append([]byte(nil), inner...)
	badInnerSum[11] ^= 0x01
	return append([]seed{
		{"proto94_icmp.bin", good, ipip.ProtoIPIP, nil, nil},
		{"proto4_udp.bin", outerPacket(tb, ipip.ProtoIPinIP, udpPacket(tb, 4)), ipip.ProtoIPinIP, nil, nil},
		{"outer_options.bin", outerPacket(tb, ipip.ProtoIPIP, inner, func(ip *layers.IPv4) { ip.Options = []layers.IPv4Option{routerAlert} }), ipip.ProtoIPIP, nil, nil},
		{"trailing_padding.bin", append(outerPacket(tb, ipip.ProtoIPIP, append(append([]byte(nil), inner...), 0, 0)), 0, 0, 0, 0), ipip.ProtoIPIP, nil, nil},
		{"ecn_ce_over_ect0.bin", outerPacket(tb, ipip.ProtoIPIP, icmpPacket(tb, 8, func(ip *layers.IPv4) { ip.TOS = tos(0, ipip.ECT0) }), ce), ipip.ProtoIPIP, nil, nil},
		{"ecn_ce_over_notect.bin", outerPacket(tb, ipip.ProtoIPIP, inner, ce), ipip.ProtoIPIP, ipip.ErrECN, nil},
		{"nested_94_in_94.bin", outerPacket(tb, ipip.ProtoIPIP, rawInner(tb, layers.IPProtocol(ipip.ProtoIPIP), inner)), ipip.ProtoIPIP, ipip.ErrNested, nil},
		{"nested_4_in_4.bin", outerPacket(tb, ipip.ProtoIPinIP, rawInner(tb, layers.IPProtocolIPv4, inner)), ipip.ProtoIPinIP, ipip.ErrNested, nil},
		{"fragment_mf.bin", outerPacket(tb, ipip.ProtoIPIP, inner, func(ip *layers.IPv4) { ip.Flags = layers.IPv4MoreFragments }), ipip.ProtoIPIP, ipip.ErrFragment, nil},
		{"bad_checksum.bin", badSum, ipip.ProtoIPIP, ipip.ErrChecksum, nil},
		{"inner_bad_checksum.bin", outerPacket(tb, ipip.ProtoIPIP, badInnerSum), ipip.ProtoIPIP, ipip.ErrInnerChecksum, nil},
		{"inner_ttl0.bin", outerPacket(tb, ipip.ProtoIPIP, icmpPacket(tb, 8, func(ip *layers.IPv4) { ip.TTL = 0 })), ipip.ProtoIPIP, ipip.ErrInnerTTL, nil},
		{"truncated.bin", good[:16], ipip.ProtoIPIP, ipip.ErrTruncated, nil},
	}, seeds6(tb)...)
}

func TestFuzzSeeds(t *testing.T) {
	if *updateSeeds {
		if err := os.MkdirAll(seedDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range seeds(t) {
		t.Run(s.file, func(t *testing.T) {
			path := filepath.Join(seedDir, s.file)
			if *updateSeeds {
				if err := os.WriteFile(path, s.pkt, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update-seeds to create it)", err)
			}
			if diff := cmp.Diff(s.pkt, data); diff != "" {
				t.Errorf("%s is stale; run with -update-seeds (-want +got):\n%s", path, diff)
			}
			decap := s.decap
			if decap == nil {
				decap = ipip.Decap
			}
			if _, err := decap(data, s.proto); err != s.wantErr {
				t.Errorf("decapsulating %s: error = %v, want %v", s.file, err, s.wantErr)
			}
		})
	}
}

// addSeedFiles adds every seed file to f's corpus, plus inline seeds.
func addSeedFiles(f *testing.F, add func(pkt []byte)) {
	files, err := filepath.Glob(filepath.Join(seedDir, "*.bin"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files in %s (%v); run go test -run '^TestFuzzSeeds$' -update-seeds", seedDir, err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		add(data)
	}
	add(nil)
	add([]byte{0x45})
	add(bytes.Repeat([]byte{0x45}, 20))
	add(icmpPacket(f, 0))
	add(udpPacket(f, 3, func(ip *layers.IPv4) { ip.Options = []layers.IPv4Option{routerAlert} }))
}

// rfc1071OK checks an IPv4 header checksum independently of the codec.
func rfc1071OK(b []byte) bool {
	n := int(b[0]&0x0f) * 4
	var sum uint32
	for i := 0; i < n; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

// gopacketAgrees cross-checks a header with gopacket when gopacket can
// decode it (it rejects some option encodings the codec need not parse).
// With computed, the codec wrote the checksum and it must be gopacket's;
// otherwise the codec passed the header through, and the checksum only
// has to verify: a sender may have written 0xffff (one's-complement -0)
// where a full computation gives 0x0000 (+0), which receivers accept
// (RFC 1624 section 3), and decapsulation is no reason to rewrite it.
func gopacketAgrees(t *testing.T, b []byte, computed bool) {
	var ip layers.IPv4
	if ip.DecodeFromBytes(b, gopacket.NilDecodeFeedback) != nil {
		return
	}
	if !computed {
		if !rfc1071OK(b) {
			t.Errorf("checksum of % x does not verify", b[:ip.IHL*4])
		}
	} else if !gopacketChecksumOK(t, b) {
		t.Errorf("gopacket: checksum of % x invalid", b[:ip.IHL*4])
	}
	if int(ip.Length) != len(b) {
		t.Errorf("gopacket: length %d, want %d", ip.Length, len(b))
	}
}

var innerTwin = map[error]error{
	ipip.ErrTruncated: ipip.ErrInnerTruncated,
	ipip.ErrVersion:   ipip.ErrInnerVersion,
	ipip.ErrHeaderLen: ipip.ErrInnerHeaderLen,
	ipip.ErrTotalLen:  ipip.ErrInnerTotalLen,
}

func isNested(p uint8) bool {
	return p == ipip.ProtoIPIP || p == ipip.ProtoIPinIP || p == ipip.ProtoIPv6
}

func FuzzDecap(f *testing.F) {
	addSeedFiles(f, func(pkt []byte) { f.Add(pkt) })
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, proto := range []uint8{ipip.ProtoIPIP, ipip.ProtoIPinIP} {
			p := append([]byte(nil), pkt...)
			res, err := ipip.Decap(p, proto)
			if err != nil {
				e, ok := err.(ipip.Error)
				if !ok || e < ipip.ErrTruncated || e > ipip.ErrECN {
					t.Fatalf("Decap(proto %d): error %#v is not a Decap reason", proto, err)
				}
				if res != nil {
					t.Fatalf("Decap(proto %d): %d bytes returned with error %v", proto, len(res), err)
				}
				if !bytes.Equal(p, pkt) {
					t.Fatalf("Decap(proto %d) failed with %v but modified its argument", proto, err)
				}
				continue
			}

			// The outer header really was acceptable.
			outer := ipip.IPv4(pkt)
			if outer.Valid() != nil || !rfc1071OK(pkt) || outer.IsFragment() || outer.Protocol() != proto {
				t.Fatalf("Decap(proto %d) accepted a bad outer header % x", proto, pkt[:min(len(pkt), 60)])
			}
			// The result is the inner packet, a sub-slice of the input.
			off, ok := subSliceOf(res, p)
			if !ok {
				t.Fatalf("Decap(proto %d) result is not a sub-slice of its argument", proto)
			}
			if off != outer.HeaderLen() {
				t.Fatalf("Decap(proto %d) result at offset %d, want %d", proto, off, outer.HeaderLen())
			}
			h := ipip.IPv4(res)
			if err := h.Valid(); err != nil {
				t.Fatalf("Decap(proto %d) result invalid: %v", proto, err)
			}
			if int(h.TotalLen()) != len(res) || off+len(res) > int(outer.TotalLen()) {
				t.Fatalf("Decap(proto %d) result length %d, inner total length %d, outer %d", proto, len(res), h.TotalLen(), outer.TotalLen())
			}
			if !rfc1071OK(res) || !h.ChecksumValid() {
				t.Fatalf("Decap(proto %d) result has a bad checksum", proto)
			}
			if h.TTL() == 0 || isNested(h.Protocol()) {
				t.Fatalf("Decap(proto %d) result has TTL %d, protocol %d", proto, h.TTL(), h.Protocol())
			}
			// Only the ECN bits and the checksum may change, as RFC 6040 says.
			origInner := ipip.IPv4(pkt[off : off+len(res)])
			wantECN, ok := ipip.DecapECN(outer.ECN(), origInner.ECN())
			gopacketAgrees(t, res, wantECN != origInner.ECN())
			if !ok || h.ECN() != wantECN {
				t.Fatalf("Decap(proto %d): ECN outer %v inner %v gave %v, want %v (ok %v)", proto, outer.ECN(), origInner.ECN(), h.ECN(), wantECN, ok)
			}
			want := append([]byte(nil), pkt...)
			want[off+1] = want[off+1]&^3 | uint8(wantECN)
			if wantECN != origInner.ECN() {
				copy(want[off+10:off+12], res[10:12])
			}
			if !bytes.Equal(want, p) {
				t.Fatalf("Decap(proto %d) changed more than the inner ECN field and checksum", proto)
			}

			// Encap of the result, then Decap, round-trips.
			e := ipip.Encapsulator{Protocol: proto, Src: tunSrc, Dst: tunDst}
			buf := withHeadroom(res, ipip.IPv4MinLen)
			out, err := e.Encap(buf, ipip.IPv4MinLen)
			if err != nil {
				t.Fatalf("Encap of a decapsulated packet: %v", err)
			}
			again, err := ipip.Decap(out, proto)
			if err != nil {
				t.Fatalf("Decap(Encap(Decap(pkt))): %v", err)
			}
			if !bytes.Equal(again, res) || !sameMemory(again, buf[ipip.IPv4MinLen:]) {
				t.Fatalf("Decap(Encap(inner)) != inner")
			}
		}

		// The input taken as an inner packet: Encap then Decap round-trips
		// unless the inner packet itself is one Decap must refuse.
		checkEncapDecap(t, pkt, ipip.IPv4MinLen, ipip.Encapsulator{Src: tunSrc, Dst: tunDst})
	})
}

func FuzzEncap(f *testing.F) {
	addSeedFiles(f, func(pkt []byte) {
		f.Add(pkt, uint8(ipip.IPv4MinLen), uint8(0), uint8(0))
		if len(pkt) > ipip.IPv4MinLen { // the inner packet of an outer seed
			f.Add(pkt[ipip.IPv4MinLen:], uint8(34), uint8(9), uint8(1|2))
		}
	})
	f.Add(icmpPacket(f, 8), uint8(19), uint8(0), uint8(0))
	f.Add(icmpPacket(f, 8, func(ip *layers.IPv4) { ip.Flags = layers.IPv4DontFragment; ip.TOS = 0xbb }), uint8(20), uint8(1), uint8(4))
	f.Fuzz(func(t *testing.T, inner []byte, headroom, ttl, flags uint8) {
		inner = append([]byte(nil), inner...)
		if flags&4 != 0 && ipip.IPv4(inner).Valid() == nil {
			// Steer towards the success path: make the inner checksum right.
			fixChecksum(t, inner)
		}
		e := ipip.Encapsulator{Src: tunSrc, Dst: tunDst, TTL: ttl, InheritTTL: flags&1 != 0}
		if flags&2 != 0 {
			e.Protocol = ipip.ProtoIPinIP
		}
		checkEncapDecap(t, inner, int(headroom), e)
	})
}

// checkEncapDecap encapsulates inner with headroom off and checks the outer
// header against an independent prediction, then decapsulates it and checks
// that the inner packet comes back intact or is refused for its own
// defects.
func checkEncapDecap(t *testing.T, inner []byte, off int, e ipip.Encapsulator) {
	t.Helper()
	buf := withHeadroom(inner, off)
	orig := append([]byte(nil), buf...)
	ih := ipip.IPv4(inner)

	var wantErr error
	switch {
	case off < ipip.IPv4MinLen:
		wantErr = ipip.ErrHeadroom
	case ih.Valid() != nil:
		wantErr = innerTwin[ih.Valid()]
	case ih.TTL() == 0:
		wantErr = ipip.ErrInnerTTL
	case int(ih.TotalLen())+ipip.IPv4MinLen > ipip.MaxPacketLen:
		wantErr = ipip.ErrTooBig
	}
	out, err := e.Encap(buf, off)
	if err != wantErr {
		t.Fatalf("Encap error = %v, want %v", err, wantErr)
	}
	if err != nil {
		if out != nil || !bytes.Equal(orig, buf) {
			t.Fatalf("failed Encap returned data or modified buf")
		}
		return
	}

	tl := int(ih.TotalLen())
	if len(out) != ipip.IPv4MinLen+tl || !sameMemory(out, buf[off-ipip.IPv4MinLen:]) || &out[ipip.IPv4MinLen] != &buf[off] {
		t.Fatalf("Encap result is not buf[off-HeaderLen : off+%d] in place", tl)
	}
	if !bytes.Equal(orig[:off-ipip.IPv4MinLen], buf[:off-ipip.IPv4MinLen]) || !bytes.Equal(orig[off:], buf[off:]) {
		t.Fatalf("Encap wrote outside the outer header")
	}
	proto := e.Protocol
	if proto == 0 {
		proto = ipip.ProtoIPIP
	}
	ttl := e.TTL
	switch {
	case e.InheritTTL:
		ttl = ih.TTL()
	case ttl == 0:
		ttl = ipip.DefaultTTL
	}
	var flags uint16
	if ih.DF() {
		flags = 0x4000
	}
	want := []byte{0x45, ih.TOS(), 0, 0, 0, 0, 0, 0, ttl, proto, 0, 0}
	binary.BigEndian.PutUint16(want[2:], uint16(ipip.IPv4MinLen+tl))
	binary.BigEndian.PutUint16(want[6:], flags)
	want = append(append(want, tunSrc.AsSlice()...), tunDst.AsSlice()...)
	got := append([]byte(nil), out[:ipip.IPv4MinLen]...)
	got[4], got[5], got[10], got[11] = 0, 0, 0, 0 // ID and checksum
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("outer header (-want +got):\n%s", diff)
	}
	if !rfc1071OK(out) {
		t.Fatalf("outer checksum invalid")
	}
	gopacketAgrees(t, out, true)

	res, err := ipip.Decap(out, proto)
	var wantDecapErr error
	switch {
	case !rfc1071OK(inner):
		wantDecapErr = ipip.ErrInnerChecksum
	case isNested(ih.Protocol()):
		wantDecapErr = ipip.ErrNested
	}
	if err != wantDecapErr {
		t.Fatalf("Decap(Encap(inner)) error = %v, want %v", err, wantDecapErr)
	}
	if err == nil && (!bytes.Equal(res, inner[:tl]) || !sameMemory(res, buf[off:])) {
		t.Fatalf("Decap(Encap(inner)) != inner[:%d]", tl)
	}
}
