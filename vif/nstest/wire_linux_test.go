//go:build linux

package nstest_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"testing"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vif-project/vif/vif/nstest"
)

// TestWireSeesPastTheTaps checks that a capture on the wire sees the
// frames that a host sends and receives past its own packet taps, as an
// AF_XDP underlay does, where a capture in the host sees none of them:
// frames sent by a packet socket with PACKET_QDISC_BYPASS (which, like
// AF_XDP transmit, hands them straight to the driver), and frames that an
// XDP program takes before the stack (which AF_XDP receive does with
// XDP_REDIRECT; here XDP_DROP).
func TestWireSeesPastTheTaps(t *testing.T) {
	t.Parallel()
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, bIf := n.Link(a, b, "", "")
	const etherType = 0x88b5 // IEEE 802 local experimental
	filter := fmt.Sprintf("ether proto 0x%x", etherType)

	// Transmit: a sends one frame through the qdisc and taps, one past them.
	aWire, aHost := aIf.Capture(filter), aIf.CaptureHost(filter)
	for _, bypass := range []bool{false, true} {
		if err := sendFrame(a, aIf, bIf.MAC(), etherType, bypass); err != nil {
			t.Fatalf("send a frame (bypass %v): %v", bypass, err)
		}
	}
	if got, want := payloads(aWire.Stop()), "tap,bypass"; got != want {
		t.Errorf("on the wire at a: frames %q, want %q", got, want)
	}
	if got, want := payloads(aHost.Stop()), "tap"; got != want {
		t.Errorf("in a: frames %q, want %q (the bypassing frame skips the host's taps)", got, want)
	}

	// Receive: an XDP program on b's interface drops every frame before
	// the stack and its taps see it.
	bWire, bHost := bIf.Capture(filter), bIf.CaptureHost(filter)
	if err := attachXDPDrop(b, bIf.Name()); err != nil {
		t.Fatalf("attach an XDP program to %v: %v", bIf, err)
	}
	if err := sendFrame(a, aIf, bIf.MAC(), etherType, false); err != nil {
		t.Fatal(err)
	}
	if got, want := payloads(bWire.Stop()), "tap"; got != want {
		t.Errorf("on the wire at b: frames %q, want %q", got, want)
	}
	if got := payloads(bHost.Stop()); got != "" {
		t.Errorf("in b: frames %q, want none (XDP took them)", got)
	}
}

// sendFrame sends, from the interface from in h, an Ethernet frame to dst
// with the given EtherType whose payload says whether it bypasses the
// qdisc and the packet taps.
func sendFrame(h *nstest.Host, from *nstest.Iface, dst net.HardwareAddr, etherType uint16, bypass bool) error {
	payload := []byte("tap")
	if bypass {
		payload = []byte("bypass")
	}
	frame := append(append(append(dst[:6:6], from.MAC()...), byte(etherType>>8), byte(etherType)), payload...)
	for len(frame) < 60 {
		frame = append(frame, 0)
	}
	return h.Do(func() error {
		ifi, err := net.InterfaceByName(from.Name())
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if bypass {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
				return err
			}
		}
		proto := make([]byte, 2)
		binary.BigEndian.PutUint16(proto, etherType)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{
			Ifindex: ifi.Index, Protocol: binary.NativeEndian.Uint16(proto), Halen: 6, Addr: [8]byte(append(dst[:6:6], 0, 0)),
		})
	})
}

// payloads returns the payloads of the frames in pkts, up to their
// padding, joined by commas.
func payloads(pkts []gopacket.Packet) string {
	var b []byte
	for i, p := range pkts {
		if i > 0 {
			b = append(b, ',')
		}
		if eth, ok := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); ok {
			b = append(b, bytes.TrimRight(eth.Payload, "\x00")...)
		}
	}
	return string(b)
}

// attachXDPDrop attaches to the interface ifname in h, in driver mode, an
// XDP program that drops every frame. The program goes with the
// interface's namespace.
func attachXDPDrop(h *nstest.Host, ifname string) error {
	const xdpDrop = 1 // XDP_DROP in enum xdp_action
	// r0 = XDP_DROP; exit
	insns := []uint64{
		0xb7 | xdpDrop<<32, // BPF_ALU64|BPF_MOV|BPF_K, dst r0, imm
		0x95,               // BPF_JMP|BPF_EXIT
	}
	license := []byte("MIT\x00")
	attr := struct {
		progType, insnCnt  uint32
		insns, license     uint64
		logLevel, logSize  uint32
		logBuf             uint64
		kernVersion, flags uint32
		name               [16]byte
		ifindex, attachTyp uint32
	}{
		progType: unix.BPF_PROG_TYPE_XDP,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	copy(attr.name[:], "nstest_drop")
	return h.Do(func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		runtime.KeepAlive(insns)
		runtime.KeepAlive(license)
		if errno != 0 {
			return fmt.Errorf("load the program: %w", errno)
		}
		defer unix.Close(int(fd)) // the interface holds the program
		return netlink.LinkSetXdpFdWithFlags(link, int(fd), unix.XDP_FLAGS_DRV_MODE)
	})
}
