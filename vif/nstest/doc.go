// Package nstest builds network topologies out of Linux network
// namespaces for tests, and removes them when the test ends.
//
// A test creates a Net with New, hosts with Net.Host (each a network
// namespace), and connects them with links (Net.Link) or through an
// Ethernet segment, a bridge that several hosts attach to (Net.Segment and
// Segment.Attach). It then runs commands in a host (Host.Run,
// Host.MustRun, Host.Ping), starts background processes there such as
// iperf3 or a vif daemon (Host.Start), runs Go code on a thread inside the
// namespace to open sockets and TUN devices in-process (Host.Do), captures
// packets with tcpdump and decodes them with gopacket, and inspects the
// result (Host.Links, Host.Addrs, Host.Routes, Host.HasRoute,
// Host.NeighborMAC).
//
// # Capturing on the wire
//
// A link is a wire, not a bare veth pair: each host's end is a veth to a
// namespace of the link's own, where a bridge joins the two and sends
// nothing itself. Iface.Capture captures there, on the port facing the
// interface, as one would on a switch: it sees every frame that enters or
// leaves the interface, even when the host sends and receives them past
// its own packet taps, as an AF_XDP underlay does. An interface attached
// to a segment is captured on its bridge port the same way. Host.Capture
// and Iface.CaptureHost capture inside the host instead, for what only
// the host sees, such as its TUN devices. The option WithoutWire makes a
// link a single veth pair.
//
// # Privileges and dependencies
//
// Network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN). New
// skips the test, with a message saying so, when the process lacks them
// or when the ip command from iproute2 is missing, so that an
// unprivileged `go test ./...` passes and `sudo go test ./...` runs
// everything. Host.Capture needs tcpdump and Host.Ping needs ping
// (iputils). The package builds on Linux only.
//
// # Cleanup
//
// Everything is removed through t.Cleanup, whether the test passes, fails
// or panics: processes are stopped, captures ended, any process still
// running in a namespace is killed, and the namespaces are deleted, which
// deletes their interfaces. Links are created directly inside the hosts'
// namespaces, so nothing ever appears in the namespace of the test
// process, and nothing outside the namespaces a Net created is touched.
// If the test failed, the cleanup first logs every host's interfaces,
// addresses, routes and neighbours, and the output of its processes.
// Only a test binary that is killed (for example by the go test timeout)
// can leave namespaces behind; they are named NamePrefix followed by a
// random part, and `ip netns del NAME` removes them.
//
// # Names
//
// Each Net draws a random prefix (Net.Prefix), so tests may run with
// t.Parallel and in parallel test binaries. Host "a" of a Net is the
// namespace "nst-1a2b3c4d-a". Interface names are per namespace, so they
// need no such prefix: the ends of links are "eth0", "eth1" and so on in
// each host, unless the WithNames option says otherwise. The namespaces
// of links and segments are named with an underscore, which host names
// cannot have: "nst-1a2b3c4d_link0", "nst-1a2b3c4d_seg0".
//
// # Addresses
//
// Tests should use the address blocks reserved for documentation and
// benchmarking, which never clash with a real network: 198.18.0.0/15
// (RFC 2544) for the links between hosts, and 192.0.2.0/24,
// 198.51.100.0/24 and 203.0.113.0/24 (RFC 5737) for the addresses hosts
// serve. Hosts start with IPv6 disabled (see WithIPv6).
//
// # Example
//
// A test that connects two hosts and checks on the wire, next to b, that
// they can ping each other:
//
//	func TestPing(t *testing.T) {
//		n := nstest.New(t) // skips unless root
//		a, b := n.Host("a"), n.Host("b")
//		_, bIf := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
//
//		c := bIf.Capture("icmp")
//		if err := a.Ping("198.18.0.2", 3); err != nil {
//			t.Fatal(err)
//		}
//		echoes := func(p gopacket.Packet) bool {
//			icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
//			return ok && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoRequest
//		}
//		if got := c.Stop(); len(got) != 6 || c.Count(echoes) != 3 {
//			t.Errorf("captured %d packets, %d echo requests; want 6 and 3", len(got), c.Count(echoes))
//		}
//	}
package nstest
