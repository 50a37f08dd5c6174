package arpproxy

import (
	"golang.org/x/net/bpf"
)

// Filter returns the classic BPF program Listen attaches to its socket: it
// accepts Ethernet frames with EtherType ARP and discards everything else
// in the kernel, so the process sees only ARP. Use it when opening a packet
// socket for New yourself:
//
//	packet.Listen(ifi, packet.Raw, arpproxy.EtherTypeARP, &packet.Config{Filter: arpproxy.Filter()})
//
// Everything inside the ARP header (hardware and protocol types and
// lengths, opcode) is left to the Responder, so that frames with bad values
// are counted by reason (DropHardwareType, DropProtocolType, ...), not
// silently discarded.
func Filter() []bpf.RawInstruction {
	const drop = 0
	// Keep whole frames: truncation would hide what was received.
	const keep = 0xffff
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: ethTypeOffset, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: EtherTypeARP, SkipTrue: 1},
		bpf.RetConstant{Val: keep},
		bpf.RetConstant{Val: drop},
	})
	if err != nil {
		panic("arpproxy: assembling BPF filter: " + err.Error())
	}
	return prog
}
