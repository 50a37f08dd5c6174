//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/mdlayher/packet"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/vif/nstest"
)

// segment is the seed's setting: host a (one NIC, many vif addresses) and a
// neighbour c on one Ethernet segment.
type segment struct {
	a, c     *nstest.Host
	aIf, cIf *nstest.Iface
}

func newSegment(t *testing.T) *segment {
	n := nstest.New(t)
	s := &segment{a: n.Host("a"), c: n.Host("c")}
	seg := n.Segment()
	s.aIf = seg.Attach(s.a, "198.18.1.1/24")
	s.cIf = seg.Attach(s.c, "198.18.1.3/24")
	// The kernel of a answers ARP only for addresses of the interface a
	// request arrives on: the vif addresses must be answered by the proxy.
	s.a.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
	s.a.Sysctl("net.ipv4.conf."+s.aIf.Name()+".arp_ignore", "1")
	// The neighbour knows the vif addresses are on its cable.
	s.c.AddRoute("192.0.2.0/24", "dev", s.cIf.Name())
	return s
}

// vifCmd runs the vif command on h and fails the test if it fails.
func vifCmd(t *testing.T, h *nstest.Host, args ...string) string {
	t.Helper()
	out, err := h.Run(vifBin, args...)
	if err != nil {
		t.Fatalf("vif %s on %v: %v\n%s", strings.Join(args, " "), h, err, out)
	}
	return out
}

// show returns "vif show --json" on h.
func show(t *testing.T, h *nstest.Host) showJSON {
	t.Helper()
	var doc showJSON
	out := vifCmd(t, h, "show", "--json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("vif show --json: %v\n%s", err, out)
	}
	return doc
}

func vifStatus(t *testing.T, h *nstest.Host, name string) daemon.VifStatus {
	t.Helper()
	for _, v := range show(t, h).Vifs {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("vif %s not in vif show on %v", name, h)
	return daemon.VifStatus{}
}

// arping sends count ARP requests for addr from h and reports whether a
// reply came, and from which MAC.
func arping(h *nstest.Host, ifname, addr string, extra ...string) (net.HardwareAddr, bool) {
	args := append([]string{"-c", "2", "-w", "3", "-i", ifname}, extra...)
	out, err := h.Run("arping", append(args, addr)...)
	if err != nil {
		return nil, false
	}
	// "42 bytes from 02:..:.. (192.0.2.1): index=0 time=..."
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[1] == "bytes" && f[2] == "from" {
			if mac, err := net.ParseMAC(f[3]); err == nil {
				return mac, true
			}
		}
	}
	return nil, false
}

func TestSeedScenarioARPProxy(t *testing.T) {
	s := newSegment(t)
	addrs := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}

	capture := s.cIf.Capture("arp")
	for k, addr := range addrs {
		vifCmd(t, s.a, "up", fmt.Sprintf("vif%d", k), addr, "--slave", s.aIf.Name())
	}

	// Every vif address is reachable from the neighbour, through ARP
	// answered with a's slave MAC.
	for _, addr := range addrs {
		if err := s.c.Ping(addr, 2); err != nil {
			t.Errorf("neighbour cannot ping %s: %v", addr, err)
		}
		if got := s.c.NeighborMAC(addr); !bytes.Equal(got, s.aIf.MAC()) {
			t.Errorf("neighbour resolved %s to %v, want a's slave MAC %v", addr, got, s.aIf.MAC())
		}
	}

	// Each address was announced with gratuitous ARP when it came up.
	if !capture.Wait(len(addrs), func(p gopacket.Packet) bool { return isAnnouncement(p, s.aIf.MAC()) }, 5*time.Second) {
		t.Errorf("expected announcements of %v from %v", addrs, s.aIf.MAC())
	}
	for _, addr := range addrs {
		n := capture.Count(func(p gopacket.Packet) bool {
			arp := arpLayer(p)
			return arp != nil && isAnnouncement(p, s.aIf.MAC()) && net.IP(arp.DstProtAddress).String() == addr
		})
		if n == 0 {
			t.Errorf("no gratuitous ARP for %s on the wire", addr)
		}
	}

	// No reply for an address no vif owns.
	if mac, ok := arping(s.c, s.cIf.Name(), "192.0.2.99"); ok {
		t.Errorf("ARP reply from %v for 192.0.2.99, which no vif owns", mac)
	}
	// An RFC 5227 probe (sender IP 0.0.0.0) for an owned address is
	// answered.
	if mac, ok := arping(s.c, s.cIf.Name(), "192.0.2.2", "-0"); !ok || !bytes.Equal(mac, s.aIf.MAC()) {
		t.Errorf("probe for 192.0.2.2 answered by %v (ok=%v), want %v", mac, ok, s.aIf.MAC())
	}

	st := vifStatus(t, s.a, "vif0")
	if st.ARP == nil || st.ARP.Replies == 0 || st.ARP.Announcements < uint64(len(addrs)) || st.ARP.ProbesAnswered == 0 || st.ARP.NotOwned == 0 {
		t.Errorf("ARP counters %+v: want replies, %d+ announcements, a probe answered, a not-owned request", st.ARP, len(addrs))
	}

	for k := range addrs {
		vifCmd(t, s.a, "down", fmt.Sprintf("vif%d", k))
	}
	assertNothingLeft(t, s.a)
	if _, ok := arping(s.c, s.cIf.Name(), "192.0.2.1"); ok {
		t.Error("192.0.2.1 still answered after vif down")
	}
}

func TestARPProxyDropsMalformedFrames(t *testing.T) {
	s := newSegment(t)
	vifCmd(t, s.a, "up", "vif0", "192.0.2.1", "--slave", s.aIf.Name())

	// Build a valid request from c for 192.0.2.1, then break it in every
	// way the proxy must refuse.
	cMAC := s.cIf.MAC()
	good := arpRequest(t, cMAC, net.IP{198, 18, 1, 3}, net.IP{192, 0, 2, 1})
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	bad := map[string][]byte{
		"short":           good[:30],
		"hardware type":   mutate(func(b []byte) []byte { b[15] = 6; return b }),
		"protocol type":   mutate(func(b []byte) []byte { b[16] = 0x86; b[17] = 0xdd; return b }),
		"hardware length": mutate(func(b []byte) []byte { b[18] = 8; return b }),
		"protocol length": mutate(func(b []byte) []byte { b[19] = 16; return b }),
		"opcode":          mutate(func(b []byte) []byte { b[21] = 9; return b }),
		// (a bridge drops frames whose Ethernet source is multicast, so
		// only the ARP sender address is multicast here)
		"multicast sender": mutate(func(b []byte) []byte { b[22] |= 1; return b }),
	}
	// A foreign frame: another MAC claims 192.0.2.1 (a conflict).
	foreign := arpRequest(t, net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}, net.IP{192, 0, 2, 1}, net.IP{198, 18, 1, 3})

	err := s.c.Do(func() error {
		ifi, err := net.InterfaceByName(s.cIf.Name())
		if err != nil {
			return err
		}
		conn, err := packet.Listen(ifi, packet.Raw, 0x0806, nil)
		if err != nil {
			return err
		}
		defer conn.Close()
		bcast := &packet.Addr{HardwareAddr: layers.EthernetBroadcast}
		for name, f := range bad {
			for k := 0; k < 10; k++ {
				if _, err := conn.WriteTo(pad(f), bcast); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
		}
		_, err = conn.WriteTo(foreign, bcast)
		return err
	})
	if err != nil {
		t.Fatalf("injecting frames: %v", err)
	}

	deadline := time.Now().Add(5 * time.Second)
	var st daemon.VifStatus
	for {
		st = vifStatus(t, s.a, "vif0")
		if st.ARP.Dropped >= uint64(10*len(bad)) && st.ARP.Conflicts >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.ARP.Dropped < uint64(10*len(bad)) {
		t.Errorf("dropped %d malformed frames, want at least %d: %v", st.ARP.Dropped, 10*len(bad), st.ARP.Drops)
	}
	if st.ARP.Conflicts < 1 {
		t.Errorf("conflict of a foreign MAC claiming 192.0.2.1 not counted: %+v", st.ARP)
	}
	if st.ARP.Replies != 0 {
		t.Errorf("%d replies to malformed frames", st.ARP.Replies)
	}
	// And the proxy still answers.
	if mac, ok := arping(s.c, s.cIf.Name(), "192.0.2.1"); !ok || !bytes.Equal(mac, s.aIf.MAC()) {
		t.Errorf("after the garbage, 192.0.2.1 answered by %v (ok=%v), want %v", mac, ok, s.aIf.MAC())
	}
	vifCmd(t, s.a, "down", "vif0")
	assertNothingLeft(t, s.a)
}

func arpLayer(p gopacket.Packet) *layers.ARP {
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	return arp
}

// isAnnouncement reports whether p is a gratuitous ARP (sender IP = target
// IP) from mac.
func isAnnouncement(p gopacket.Packet, mac net.HardwareAddr) bool {
	arp := arpLayer(p)
	return arp != nil && bytes.Equal(arp.SourceHwAddress, mac) &&
		bytes.Equal(arp.SourceProtAddress, arp.DstProtAddress)
}

// arpRequest builds an Ethernet ARP request with gopacket.
func arpRequest(t *testing.T, mac net.HardwareAddr, senderIP, targetIP net.IP) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: mac, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: mac, SourceProtAddress: senderIP.To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: targetIP.To4(),
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pad makes a frame at least 14 bytes so the kernel sends it.
func pad(b []byte) []byte {
	if len(b) < 14 {
		return append(b, make([]byte, 14-len(b))...)
	}
	return b
}

// assertNothingLeft checks that no vif interface, daemon or vif route
// remains on h.
func assertNothingLeft(t *testing.T, h *nstest.Host) {
	t.Helper()
	assertLeft(t, h, true)
}

// assertLeft checks that no vif interface or vif route remains on h, nor,
// with control, its daemon's socket and lock files.
func assertLeft(t *testing.T, h *nstest.Host, control bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for _, l := range h.Links() {
			if strings.HasPrefix(l, "vif") {
				left = append(left, "link "+l)
			}
		}
		for _, r := range h.Routes() {
			if strings.Contains(r, "dev vif") {
				left = append(left, "route "+r)
			}
		}
		var st syscall.Stat_t
		if control && syscall.Stat("/run/netns/"+h.Netns(), &st) == nil {
			p := controlPaths(st.Ino)
			for _, f := range []string{p.Socket, p.Lock} {
				if _, err := os.Lstat(f); err == nil {
					left = append(left, "control file "+f)
				}
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind on %v: %v", h, left)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
