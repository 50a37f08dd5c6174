package xdp

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// frame returns an Ethernet frame holding an IPv4 header from src to dst
// of protocol proto, and 20 bytes of payload; mod changes it before the
// header's checksum is computed.
func frame(src, dst string, proto uint8, mod func(f []byte)) []byte {
	return frameLen(src, dst, proto, 14+20+20, mod)
}

// frameLen is frame with a frame of n bytes.
func frameLen(src, dst string, proto uint8, n int, mod func(f []byte)) []byte {
	f := make([]byte, n)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(n-14))
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	if mod != nil {
		mod(f)
	}
	var sum uint32
	for k := 0; k < 20; k += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[k:]))
	}
	sum = sum>>16 + sum&0xffff
	sum += sum >> 16
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	return f
}

// frame6 returns an Ethernet frame holding an IPv6 header from src to dst
// with next header nh, hop limit 64, and 20 bytes of payload; mod changes
// it.
func frame6(src, dst string, nh uint8, mod func(f []byte)) []byte {
	return frame6Len(src, dst, nh, 14+40+20, mod)
}

// frame6Len is frame6 with a frame of n bytes.
func frame6Len(src, dst string, nh uint8, n int, mod func(f []byte)) []byte {
	f := make([]byte, n)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:]
	binary.BigEndian.PutUint32(ip[0:], 6<<28|0xb8<<20|0x12345) // traffic class, flow label
	binary.BigEndian.PutUint16(ip[4:], uint16(n-14-40))
	ip[6] = nh
	ip[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	if mod != nil {
		mod(f)
	}
	return f
}

func badSum(f []byte) []byte {
	f[14+10] ^= 0xff
	return f
}

// TestSteer runs the program in the kernel (BPF_PROG_TEST_RUN) over
// frames it must steer and frames it must pass. A device map stands in
// for the socket map: the kernel redirects to either from the same helper,
// and a device map needs no socket.
func TestSteer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading a BPF program needs CAP_BPF (run as root)")
	}
	pairs, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer pairs.Close()
	pairs6, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 32, ValueSize: 4, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer pairs6.Close()
	devs, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.DevMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer devs.Close()
	// The bound on steered frames; the kernel's test run keeps frames
	// up to about 3.5 KB linear, so a smaller one than a socket's.
	const maxFrame = 1500
	if err := devs.Put(uint32(0), uint32(1)); err != nil { // lo
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual MIT/GPL", Instructions: steer(pairs.FD(), pairs6.FD(), devs.FD(), maxFrame)})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer prog.Close()
	p := &Program{pairs: pairs, pairs6: pairs6}
	peer, local := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")
	if err := p.Accept(peer, local, 94, 41); err != nil {
		t.Fatal(err)
	}
	const peer6, local6, other6 = "2001:db8:ffff:1::2", "2001:db8:ffff:1::1", "2001:db8:ffff:1::3"
	if err := p.Accept(netip.MustParseAddr(peer6), netip.MustParseAddr(local6), 4, 41); err != nil {
		t.Fatal(err)
	}
	// Only 41 from this one: 4 is another vif's.
	if err := p.Accept(netip.MustParseAddr(other6), netip.MustParseAddr(local6), 41); err != nil {
		t.Fatal(err)
	}
	// The families' maps are apart: an IPv4 pair does not steer the
	// IPv4-mapped IPv6 one, nor the reverse.
	if err := p.Accept(netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr(local6), 4); err == nil {
		t.Error("Accept of an IPv4 and an IPv6 address: no error")
	}
	const pass, redirect = 2, 4
	tests := []struct {
		name string
		in   []byte
		want uint32
	}{
		{"ipip 94", frame("198.18.0.2", "198.18.0.1", 94, nil), redirect},
		{"6in4", frame("198.18.0.2", "198.18.0.1", 41, nil), redirect},
		{"protocol 4 not accepted", frame("198.18.0.2", "198.18.0.1", 4, nil), pass},
		{"icmp", frame("198.18.0.2", "198.18.0.1", 1, nil), pass},
		{"other peer", frame("198.18.0.3", "198.18.0.1", 94, nil), pass},
		{"other destination", frame("198.18.0.2", "198.18.0.9", 94, nil), pass},
		{"first fragment", frame("198.18.0.2", "198.18.0.1", 94, func(f []byte) { f[14+6] = 0x20 }), pass},
		{"later fragment", frame("198.18.0.2", "198.18.0.1", 94, func(f []byte) { f[14+7] = 0x10 }), pass},
		{"options", frame("198.18.0.2", "198.18.0.1", 94, func(f []byte) { f[14] = 0x46 }), pass},
		{"arp", frame("198.18.0.2", "198.18.0.1", 94, func(f []byte) { f[12], f[13] = 0x08, 0x06 }), pass},
		{"truncated", frame("198.18.0.2", "198.18.0.1", 94, nil)[:30], pass},
		{"bad checksum", badSum(frame("198.18.0.2", "198.18.0.1", 94, nil)), pass},
		{"total length past the frame", frame("198.18.0.2", "198.18.0.1", 94, func(f []byte) { f[14+3] = 41 }), pass},
		{"total length below the header", frame("198.18.0.2", "198.18.0.1", 94, func(f []byte) { f[14+3] = 19 }), pass},
		{"longest frame a socket takes", frameLen("198.18.0.2", "198.18.0.1", 94, maxFrame, nil), redirect},
		{"frame longer than a socket takes", frameLen("198.18.0.2", "198.18.0.1", 94, maxFrame+1, nil), pass},
		{"header only, padded", frame("198.18.0.2", "198.18.0.1", 94, func(f []byte) { f[14+3] = 20 }), redirect},

		// IPv6 (RFC 2473): 4in6 and 6in6 of accepted pairs only.
		{"4in6", frame6(peer6, local6, 4, nil), redirect},
		{"6in6", frame6(peer6, local6, 41, nil), redirect},
		{"6in6 from a peer of 41 only", frame6(other6, local6, 41, nil), redirect},
		{"4in6 from a peer of 41 only", frame6(other6, local6, 4, nil), pass},
		{"ipv6 protocol 94", frame6(peer6, local6, 94, nil), pass},
		{"icmpv6", frame6(peer6, local6, 58, nil), pass},
		{"icmpv6 neighbour solicitation to multicast", frame6(peer6, "ff02::1:ff00:1", 58, nil), pass},
		{"ipv6 other peer", frame6("2001:db8:ffff:1::9", local6, 41, nil), pass},
		{"ipv6 other destination", frame6(peer6, "2001:db8:ffff:1::9", 41, nil), pass},
		{"ipv6 reversed pair", frame6(local6, peer6, 41, nil), pass},
		{"ipv4-mapped pair", frame6("::ffff:198.18.0.2", "::ffff:198.18.0.1", 4, nil), pass},
		{"fragment header", frame6(peer6, local6, 44, func(f []byte) { f[14+40] = 41 }), pass},
		{"hop-by-hop header", frame6(peer6, local6, 0, func(f []byte) { f[14+40] = 4 }), pass},
		{"destination options header", frame6(peer6, local6, 60, func(f []byte) { f[14+40] = 4 }), pass},
		{"routing header", frame6(peer6, local6, 43, func(f []byte) { f[14+40] = 41 }), pass},
		{"version 4 in an IPv6 EtherType", frame6(peer6, local6, 41, func(f []byte) { f[14] = 0x4b }), pass},
		{"version 7", frame6(peer6, local6, 41, func(f []byte) { f[14] = 0x7b }), pass},
		{"hop limit 0", frame6(peer6, local6, 41, func(f []byte) { f[14+7] = 0 }), pass},
		{"hop limit 1", frame6(peer6, local6, 41, func(f []byte) { f[14+7] = 1 }), redirect},
		{"ipv6 truncated header", frame6(peer6, local6, 41, nil)[:14+39], pass},
		{"ipv6 header only", frame6Len(peer6, local6, 41, 14+40, nil), redirect},
		{"payload length past the frame", frame6(peer6, local6, 41, func(f []byte) { f[14+5] = 21 }), pass},
		{"payload length the frame holds, padded", frame6(peer6, local6, 41, func(f []byte) { f[14+5] = 19 }), redirect},
		{"longest ipv6 frame a socket takes", frame6Len(peer6, local6, 41, maxFrame, nil), redirect},
		{"ipv6 frame longer than a socket takes", frame6Len(peer6, local6, 41, maxFrame+1, nil), pass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := prog.Test(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("verdict %d, want %d", got, tt.want)
			}
		})
	}
	if err := p.Accept(peer, local); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := prog.Test(frame("198.18.0.2", "198.18.0.1", 94, nil)); got != pass {
		t.Errorf("after forgetting the peer: verdict %d, want %d", got, pass)
	}
	if got, _, _ := prog.Test(frame6(peer6, local6, 41, nil)); got != redirect {
		t.Errorf("IPv6 peer after forgetting the IPv4 one: verdict %d, want %d", got, redirect)
	}
	if err := p.Accept(netip.MustParseAddr(peer6), netip.MustParseAddr(local6)); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := prog.Test(frame6(peer6, local6, 41, nil)); got != pass {
		t.Errorf("after forgetting the IPv6 peer: verdict %d, want %d", got, pass)
	}
}
