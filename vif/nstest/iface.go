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

// Capture starts capturing packets on the interface; see Host.Capture.
func (i *Iface) Capture(filter string) *Capture {
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
func (s *Segment) Attach(h *Host, addr string, opts ...LinkOption) *Iface {
	n := s.host.net
	n.t.Helper()
	if h == nil || h.net != n {
		n.t.Fatalf("nstest: Attach: the host must belong to the segment's Net")
	}
	cfg := n.linkConfig(opts)
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
	h.mustIP(vethArgs(name, mac, port, randomMAC(), s.host.ns, cfg.mtu)...)
	s.host.mustIP("link", "set", port, "master", bridgeName, "up")
	return h.setUp(name, mac, p)
}

// Netns returns the name of the segment's network namespace, which holds
// the bridge "br0" and one port per attached interface. Tests rarely need
// it; it helps to inspect the bridge with `ip netns exec` when debugging.
func (s *Segment) Netns() string { return s.host.ns }

// String returns the segment's name, such as "seg0".
func (s *Segment) String() string { return s.host.name }
