package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// MaxQueues is the number of receive queues a Program can steer to.
const MaxQueues = 64

// maxPairs bounds the accepted (source, destination) pairs of each
// family.
const maxPairs = 4096

// ErrOtherProgram is returned by Attach when the interface has an XDP
// program already: only one may sit on an interface.
var ErrOtherProgram = errors.New("xdp: the interface has another XDP program")

// A Program steers the IPv4 and IPv6 packets of accepted peers to
// Sockets (see the package documentation). Its methods are safe for
// concurrent use.
//
// The IPv4 pairs and the IPv6 pairs are in two maps, each keyed by the
// addresses as they sit in the header (8 and 32 bytes): the program
// branches on the EtherType anyway, an IPv4 lookup keeps hashing 8 bytes,
// and neither key needs a family tag or padding.
type Program struct {
	prog   *ebpf.Program
	xsks   *ebpf.Map // queue -> socket
	pairs  *ebpf.Map // IPv4 (source, destination) -> accepted protocols
	pairs6 *ebpf.Map // IPv6 (source, destination) -> accepted protocols
	link   link.Link // kept referenced: a collected link detaches
}

// pairKey is a key of the IPv4 pairs map: outer source then destination,
// in network byte order, as they sit in the header.
type pairKey [8]byte

// pairKey6 is a key of the IPv6 pairs map, as pairKey.
type pairKey6 [32]byte

func keyOf(src, dst netip.Addr) pairKey {
	var k pairKey
	s, d := src.As4(), dst.As4()
	copy(k[:4], s[:])
	copy(k[4:], d[:])
	return k
}

func keyOf6(src, dst netip.Addr) pairKey6 {
	var k pairKey6
	s, d := src.As16(), dst.As16()
	copy(k[:16], s[:])
	copy(k[16:], d[:])
	return k
}

// protoBit is the bit of an accepted protocol in a pairs value: 4, 41
// and 94 have distinct bits modulo 32.
func protoBit(proto uint8) uint32 { return 1 << (proto & 31) }

// Attach loads the program and attaches it to the interface with index
// ifindex, in the calling thread's network namespace: in the driver's
// receive path where the driver has one, in the generic path otherwise.
// Frames longer than maxFrame bytes (from the Ethernet header on) are
// passed to the kernel, never steered: maxFrame is the longest frame the
// sockets can receive (Socket.MaxRxFrame), as the kernel drops a longer
// one it steered to a socket. It returns an error wrapping
// ErrOtherProgram when the interface has an XDP program already. It
// needs CAP_BPF and CAP_NET_ADMIN.
func Attach(ifindex, maxFrame int) (p *Program, err error) {
	p = &Program{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	p.xsks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "vif_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: MaxQueues})
	if err != nil {
		return nil, fmt.Errorf("xdp: socket map: %w", err)
	}
	p.pairs, err = ebpf.NewMap(&ebpf.MapSpec{Name: "vif_peers", Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: maxPairs})
	if err != nil {
		return nil, fmt.Errorf("xdp: peer map: %w", err)
	}
	p.pairs6, err = ebpf.NewMap(&ebpf.MapSpec{Name: "vif_peers6", Type: ebpf.Hash, KeySize: 32, ValueSize: 4, MaxEntries: maxPairs})
	if err != nil {
		return nil, fmt.Errorf("xdp: IPv6 peer map: %w", err)
	}
	p.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "vif_steer",
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: steer(p.pairs.FD(), p.pairs6.FD(), p.xsks.FD(), maxFrame),
	})
	if err != nil {
		return nil, fmt.Errorf("xdp: load program: %w", err)
	}
	// The driver's path where there is one: veth's is faster than the
	// generic one. A driver refusing it (an MTU too large for it, say)
	// still has the generic path.
	// A program whose process just exited may linger a moment: EBUSY
	// is believed after a second.
	deadline := time.Now().Add(time.Second)
	for k := 0; k < 2; {
		flags := []link.XDPAttachFlags{0, link.XDPGenericMode}[k]
		p.link, err = link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: flags})
		switch {
		case err == nil:
			return p, nil
		case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST):
			if time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return nil, fmt.Errorf("%w: %w", ErrOtherProgram, err)
		}
		k++
	}
	return nil, fmt.Errorf("xdp: attach to interface %d: %w", ifindex, err)
}

// steer returns the program's instructions; frames longer than maxFrame
// are passed. Registers: R6 the context, R2 the packet's start (R8 across
// a call), R7 its protocol.
//
// IPv4 (RFC 791): no options, not a fragment, a total length the frame
// holds and a valid checksum, as ip_rcv wants. IPv6 (RFC 8200): version
// 6, the protocol directly in the fixed header's Next Header (an
// extension header, a Fragment header included, goes to the kernel,
// which processes it and reassembles), a payload length the frame holds,
// and a Hop Limit other than 0.
func steer(pairs, pairs6, xsks, maxFrame int) asm.Instructions {
	ne := binary.NativeEndian
	ethIPv4 := int32(ne.Uint16([]byte{0x08, 0x00}))  // EtherType as loaded
	ethIPv6 := int32(ne.Uint16([]byte{0x86, 0xdd}))  // EtherType as loaded
	fragMask := int32(ne.Uint16([]byte{0x3f, 0xff})) // MF and the offset
	const (
		eth      = 14
		ip6      = 40 // the fixed IPv6 header
		pass     = "pass"
		protoOK  = "proto_ok"
		v6       = "ipv6"
		proto6OK = "proto6_ok"
		lookup   = "lookup"
	)
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, eth+20),
		asm.JGT.Reg(asm.R4, asm.R3, pass),
		// A frame longer than the sockets' frames: the kernel would
		// drop it at the socket (rx_dropped); the raw sockets take it.
		asm.Mov.Reg(asm.R4, asm.R3),
		asm.Sub.Reg(asm.R4, asm.R2),
		asm.JGT.Imm(asm.R4, int32(maxFrame), pass),
		asm.LoadMem(asm.R4, asm.R2, 12, asm.Half),
		asm.JEq.Imm(asm.R4, ethIPv6, v6),
		asm.JNE.Imm(asm.R4, ethIPv4, pass),
		asm.LoadMem(asm.R4, asm.R2, eth, asm.Byte),
		asm.JNE.Imm(asm.R4, 0x45, pass), // IPv4 without options
		// A total length the frame does not hold, or shorter than the
		// header, or a bad checksum: ip_rcv drops it, and counts it.
		asm.LoadMem(asm.R4, asm.R2, eth+2, asm.Half),
		asm.HostTo(asm.BE, asm.R4, asm.Half),
		asm.JLT.Imm(asm.R4, 20, pass),
		asm.Mov.Reg(asm.R5, asm.R3),
		asm.Sub.Reg(asm.R5, asm.R2),
		asm.Sub.Imm(asm.R5, eth),
		asm.JGT.Reg(asm.R4, asm.R5, pass),
		asm.Mov.Reg(asm.R8, asm.R2),
		asm.Mov.Imm(asm.R1, 0),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R8),
		asm.Add.Imm(asm.R3, eth),
		asm.Mov.Imm(asm.R4, 20),
		asm.Mov.Imm(asm.R5, 0),
		asm.FnCsumDiff.Call(), // the one's complement sum of the header
		asm.Mov.Reg32(asm.R0, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.RSh.Imm(asm.R1, 16),
		asm.And.Imm(asm.R0, 0xffff),
		asm.Add.Reg(asm.R0, asm.R1),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.RSh.Imm(asm.R1, 16),
		asm.And.Imm(asm.R0, 0xffff),
		asm.Add.Reg(asm.R0, asm.R1),
		asm.JNE.Imm(asm.R0, 0xffff, pass),
		asm.Mov.Reg(asm.R2, asm.R8),
		asm.LoadMem(asm.R4, asm.R2, eth+6, asm.Half),
		asm.And.Imm(asm.R4, fragMask),
		asm.JNE.Imm(asm.R4, 0, pass), // a fragment
		asm.LoadMem(asm.R7, asm.R2, eth+9, asm.Byte),
		asm.JEq.Imm(asm.R7, 94, protoOK),
		asm.JEq.Imm(asm.R7, 4, protoOK),
		asm.JNE.Imm(asm.R7, 41, pass),
		asm.LoadMem(asm.R4, asm.R2, eth+12, asm.Word).WithSymbol(protoOK),
		asm.StoreMem(asm.RFP, -8, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, asm.R2, eth+16, asm.Word),
		asm.StoreMem(asm.RFP, -4, asm.R4, asm.Word),
		asm.LoadMapPtr(asm.R1, pairs),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.Ja.Label(lookup),

		// IPv6: R2 data, R3 data_end, the frame no longer than maxFrame.
		asm.Mov.Reg(asm.R4, asm.R2).WithSymbol(v6),
		asm.Add.Imm(asm.R4, eth+ip6),
		asm.JGT.Reg(asm.R4, asm.R3, pass),
		asm.LoadMem(asm.R4, asm.R2, eth, asm.Byte),
		asm.RSh.Imm(asm.R4, 4),
		asm.JNE.Imm(asm.R4, 6, pass),
		// A payload length the frame does not hold: ipv6_rcv drops it.
		// (0 with a Hop-by-Hop header, a jumbogram, has Next Header 0:
		// passed below.)
		asm.LoadMem(asm.R4, asm.R2, eth+4, asm.Half),
		asm.HostTo(asm.BE, asm.R4, asm.Half),
		asm.Mov.Reg(asm.R5, asm.R3),
		asm.Sub.Reg(asm.R5, asm.R2),
		asm.Sub.Imm(asm.R5, eth+ip6),
		asm.JGT.Reg(asm.R4, asm.R5, pass),
		asm.LoadMem(asm.R4, asm.R2, eth+7, asm.Byte),
		asm.JEq.Imm(asm.R4, 0, pass), // Hop Limit 0
		// The protocol in the fixed header: any extension header, a
		// Fragment header included, is the kernel's to process.
		asm.LoadMem(asm.R7, asm.R2, eth+6, asm.Byte),
		asm.JEq.Imm(asm.R7, 4, proto6OK),
		asm.JNE.Imm(asm.R7, 41, pass),
		asm.LoadMem(asm.R4, asm.R2, eth+8, asm.DWord).WithSymbol(proto6OK),
		asm.StoreMem(asm.RFP, -32, asm.R4, asm.DWord),
		asm.LoadMem(asm.R4, asm.R2, eth+16, asm.DWord),
		asm.StoreMem(asm.RFP, -24, asm.R4, asm.DWord),
		asm.LoadMem(asm.R4, asm.R2, eth+24, asm.DWord),
		asm.StoreMem(asm.RFP, -16, asm.R4, asm.DWord),
		asm.LoadMem(asm.R4, asm.R2, eth+32, asm.DWord),
		asm.StoreMem(asm.RFP, -8, asm.R4, asm.DWord),
		asm.LoadMapPtr(asm.R1, pairs6),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -32),

		// R1 the family's pairs, R2 the key on the stack, R7 the
		// protocol.
		asm.FnMapLookupElem.Call().WithSymbol(lookup),
		asm.JEq.Imm(asm.R0, 0, pass),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.And.Imm(asm.R7, 31),
		asm.Mov.Imm(asm.R2, 1),
		asm.LSh.Reg(asm.R2, asm.R7),
		asm.And.Reg(asm.R1, asm.R2),
		asm.JEq.Imm(asm.R1, 0, pass),
		asm.LoadMem(asm.R2, asm.R6, 16, asm.Word), // rx_queue_index
		asm.LoadMapPtr(asm.R1, xsks),
		asm.Mov.Imm(asm.R3, 2), // XDP_PASS without a socket on the queue
		asm.FnRedirectMap.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 2).WithSymbol(pass), // XDP_PASS
		asm.Return(),
	}
}

// SetSocket steers the packets received on queue to s.
func (p *Program) SetSocket(queue int, s *Socket) error {
	if err := p.xsks.Put(uint32(queue), uint32(s.FD())); err != nil {
		return fmt.Errorf("xdp: steer queue %d: %w", queue, err)
	}
	return nil
}

// Accept steers the packets from src to dst of the protocols protos (4,
// 41, 94) to the sockets; with no protocols it stops steering them. src
// and dst are both IPv4 or both IPv6 (over IPv6 only 4 and 41 exist: RFC
// 2473).
func (p *Program) Accept(src, dst netip.Addr, protos ...uint8) error {
	var k any
	m := p.pairs
	switch {
	case src.Is4() && dst.Is4():
		k = keyOf(src, dst)
	case src.Is6() && dst.Is6() && !src.Is4In6() && !dst.Is4In6():
		k, m = keyOf6(src, dst), p.pairs6
	default:
		return fmt.Errorf("xdp: accept %s -> %s: not two IPv4 or two IPv6 addresses", src, dst)
	}
	if len(protos) == 0 {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdp: forget %s -> %s: %w", src, dst, err)
		}
		return nil
	}
	var v uint32
	for _, pr := range protos {
		v |= protoBit(pr)
	}
	if err := m.Put(k, v); err != nil {
		return fmt.Errorf("xdp: accept %s -> %s: %w", src, dst, err)
	}
	return nil
}

// Close detaches the program and releases it and its maps.
func (p *Program) Close() error {
	var errs []error
	if p.link != nil {
		errs = append(errs, p.link.Close())
	}
	if p.prog != nil {
		errs = append(errs, p.prog.Close())
	}
	for _, m := range []*ebpf.Map{p.pairs, p.pairs6, p.xsks} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}
