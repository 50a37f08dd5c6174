package ndpproxy

import "golang.org/x/net/bpf"

// Filter returns the classic BPF program Listen attaches to its socket: it
// accepts Ethernet frames carrying IPv6 whose next header is ICMPv6 and
// whose ICMPv6 type is Neighbor Solicitation (135) or Neighbor
// Advertisement (136), and discards everything else in the kernel, so the
// process sees only Neighbor Discovery, not the interface's IPv6 traffic.
// Use it when opening a packet socket for New yourself:
//
//	packet.Listen(ifi, packet.Raw, ndpproxy.EtherTypeIPv6, &packet.Config{Filter: ndpproxy.Filter()})
//
// Everything else (hop limit, checksum, code, lengths, options) is left to
// the Responder, so that messages with bad values are counted by reason
// (DropHopLimit, DropChecksum, ...), not silently discarded. Messages after
// an IPv6 extension header do not pass: RFC 4861 messages carry none in
// practice, and passing every extension header would let all such IPv6
// traffic into the process.
func Filter() []bpf.RawInstruction {
	const drop = 0
	// Keep whole frames: truncation would hide what was received.
	const keep = 0xffff
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: ethTypeOffset, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: EtherTypeIPv6, SkipTrue: 6},
		bpf.LoadAbsolute{Off: nextHeaderOff, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtocolICMPv6, SkipTrue: 4},
		bpf.LoadAbsolute{Off: icmpOffset, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(TypeNeighborSolicitation), SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(TypeNeighborAdvertisement), SkipTrue: 1},
		bpf.RetConstant{Val: keep},
		bpf.RetConstant{Val: drop},
	})
	if err != nil {
		panic("ndpproxy: assembling BPF filter: " + err.Error())
	}
	return prog
}
