//go:build linux

package nstest

import (
	"net"
	"net/netip"
)

// An Iface is a network interface in a host: one end of a link made by
// Net.Link or Segment.Attach, or an interface looked up with Host.Iface.
// Its methods are safe for concurrent use.
type Iface struct {
	host   *Host
	name   string
	mac    net.HardwareAddr
	prefix netip.Prefix

	// wire is the namespace of the link's wire or the segment, and port
	// the interface there that faces this one; nil and "" for an
	// interface of a link made WithoutWire or looked up with Host.Iface.
	wire *Host
	port string
}

// Name returns the interface's name in its host, such as "eth0".
func (i *Iface) Name() string { return i.name }

// Host returns the host the interface is in.
func (i *Iface) Host() *Host { return i.host }

// MAC returns the interface's hardware address, or nil if it has none. The
// caller may modify the returned slice.
func (i *Iface) MAC() net.HardwareAddr { return append(net.HardwareAddr(nil), i.mac...) }

// Prefix returns the address the interface was given when it was created,
// such as 198.18.0.1/24, or the zero Prefix if it was given none.
func (i *Iface) Prefix() netip.Prefix { return i.prefix }

// Addr returns the address of Prefix without its length, such as
// 198.18.0.1, or the zero Addr if the interface was given no address.
func (i *Iface) Addr() netip.Addr { return i.prefix.Addr() }

// String returns the host and interface name, such as "a/eth0".
func (i *Iface) String() string { return i.host.name + "/" + i.name }

// Capture starts capturing the packets that pass the interface, on the
// wire: on the port that faces it in the namespace of its link's wire
// (see Net.Link) or of its segment, as a network engineer would capture
// on the switch. It sees every frame the host sends out of the
// interface and every frame sent to it, whether or not the host's stack
// and packet taps see them (AF_XDP bypasses both), and keeps working when
// the host renames the interface or changes its MTU. Frames that the
// interface drops on arrival (too big for its MTU, or sent while it is
// down) are seen going towards it. The filter and the rest are as for
// Host.Capture.
//
// For an interface that is not on a wire (a link made WithoutWire, or
// one found with Host.Iface), Capture is CaptureHost.
func (i *Iface) Capture(filter string) *Capture {
	i.host.net.t.Helper()
	if i.wire == nil {
		return i.CaptureHost(filter)
	}
	return i.wire.capture(i.port, filter, i.String(), "on the wire at "+i.String())
}

// CaptureHost starts capturing on the interface inside its host, under
// the name it was created with; see Host.Capture. This is the host's own
// view: it misses what the host sends and receives past its packet taps,
// such as AF_XDP traffic.
func (i *Iface) CaptureHost(filter string) *Capture {
	i.host.net.t.Helper()
	return i.host.Capture(i.name, filter)
}

// bridgeName is the name of a segment's bridge in its namespace.
const bridgeName = "br0"

// A Segment is an Ethernet segment made by Net.Segment: a bridge in a
// namespace of its own, without addresses, which forwards between the
// hosts attached to it as a switch would. Spanning tree and multicast
// snooping are off, so ports forward as soon as they are attached.
type Segment struct {
	host *Host // the segment's namespace; hidden from users
}

// Attach connects host h to the segment with a veth pair, gives h's end
// the address addr (a prefix such as "198.18.1.2/24", or "" for none),
// brings it up, and returns it. The end in h is named like those of
// Net.Link; the WithNames option sets it and the name of the bridge port.
// Iface.Capture captures on that bridge port. Option WithoutWire is not
// accepted: a segment is a wire.
func (s *Segment) Attach(h *Host, addr string, opts ...LinkOption) *Iface {
	n := s.host.net
	n.t.Helper()
	if h == nil || h.net != n {
		n.t.Fatalf("nstest: Attach: the host must belong to the segment's Net")
	}
	cfg := n.linkConfig(opts)
	if cfg.direct {
		n.t.Fatalf("nstest: Attach: a segment cannot be attached WithoutWire")
	}
	p := n.parseAddr("Attach", addr)
	name := cfg.aName
	if name == "" {
		name = h.nextIfName("eth")
	}
	port := cfg.bName
	if port == "" {
		port = s.host.nextIfName("p")
	}
	mac := randomMAC()
	s.host.mustBatch([][]string{
		vethArgs(port, randomMAC(), name, mac, h.ns, cfg.mtu),
		portArgs(port), upArgs(port),
	})
	ifc := h.setUp(name, mac, p)
	ifc.wire, ifc.port = s.host, port
	return ifc
}

// Netns returns the name of the segment's network namespace, which holds
// the bridge "br0" and one port per attached interface. Tests rarely need
// it; it helps to inspect the bridge with `ip netns exec` when debugging.
func (s *Segment) Netns() string { return s.host.ns }

// String returns the segment's name, such as "seg0".
func (s *Segment) String() string { return s.host.name }
