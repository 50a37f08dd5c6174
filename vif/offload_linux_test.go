package vif

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket/layers"
	"github.com/vif-project/vif/internal/craft"
	"github.com/vif-project/vif/internal/offload"
	"github.com/vif-project/vif/vif/nstest"
	"golang.org/x/sys/unix"
)

var (
	offUnderA = netip.MustParseAddr("198.18.0.1")
	offUnderB = netip.MustParseAddr("198.18.0.2")
	offVifA   = netip.MustParseAddr("192.0.2.1")
	offVifB   = netip.MustParseAddr("198.51.100.1")
)

// offloadNet is three hosts on one segment: a and b run vifs with the
// offload tunnelling to each other, m sends what an attacker would.
type offloadNet struct {
	a, b, m       *Host
	aIf, bIf, mIf *nstest.Iface
	ia, ib        *Interface
	proto         uint8
}

// Host is nstest's, named short.
type Host = nstest.Host

func newOffloadNet(t *testing.T, proto uint8) *offloadNet {
	t.Helper()
	n := nstest.New(t) // skips unless root
	on := &offloadNet{a: n.Host("a"), b: n.Host("b"), m: n.Host("m"), proto: proto}
	seg := n.Segment()
	on.aIf = seg.Attach(on.a, "198.18.0.1/24")
	on.bIf = seg.Attach(on.b, "198.18.0.2/24")
	on.mIf = seg.Attach(on.m, "198.18.0.3/24")
	up := func(h *Host, slave string, addr, peer netip.Addr, route string) *Interface {
		cfg := LinkConfig{Name: "vif0", Slave: slave, Offload: true,
			Config: Config{Addrs: []netip.Prefix{netip.PrefixFrom(addr, 32)}, Peer: peer, Protocol: proto},
			Routes: []netip.Prefix{netip.MustParsePrefix(route)}}
		var ifc *Interface
		if err := h.Do(func() (err error) { ifc, err = Up(&cfg); return err }); err != nil {
			t.Fatalf("vif with offload on %v: %v", h, err)
		}
		t.Cleanup(func() { ifc.Close() })
		return ifc
	}
	on.ia = up(on.a, on.aIf.Name(), offVifA, offUnderB, "198.51.100.0/24")
	on.ib = up(on.b, on.bIf.Name(), offVifB, offUnderA, "192.0.2.0/24")
	return on
}

// loopCounts returns what the userspace loop itself encapsulated and
// decapsulated, without the offload's.
func loopCounts(i *Interface) (tx, rx uint64) { return i.tx.pkts.Load(), i.rx.pkts.Load() }

// Both ends offloaded, protocols 94 and 4: pings both ways and a TCP
// transfer arrive intact, and the offload carried them: its counters
// rise, the loop's stay where the first packets (neighbour resolution)
// left them. Protocol 94's GSO packets are the loop's to send (the kernel
// cannot segment them); their decapsulation is offloaded.
func TestOffloadTunnel(t *testing.T) {
	for _, proto := range []uint8{94, 4} {
		t.Run(fmt.Sprint("proto ", proto), func(t *testing.T) {
			on := newOffloadNet(t, proto)
			if err := on.a.Ping(offVifB.String(), 1); err != nil { // resolves the neighbours
				t.Fatalf("first ping a -> b: %v", err)
			}
			if err := on.b.Ping(offVifA.String(), 1); err != nil {
				t.Fatalf("first ping b -> a: %v", err)
			}
			atx0, arx0 := loopCounts(on.ia)
			btx0, brx0 := loopCounts(on.ib)
			s0 := on.ia.Stats()
			if err := on.a.Ping(offVifB.String(), 5); err != nil {
				t.Fatalf("ping a -> b: %v", err)
			}
			if err := on.b.Ping(offVifA.String(), 5); err != nil {
				t.Fatalf("ping b -> a: %v", err)
			}
			atx, arx := loopCounts(on.ia)
			btx, brx := loopCounts(on.ib)
			if atx != atx0 || arx != arx0 || btx != btx0 || brx != brx0 {
				t.Errorf("the loops carried pings: a tx %d rx %d, b tx %d rx %d; want none",
					atx-atx0, arx-arx0, btx-btx0, brx-brx0)
			}
			s := on.ia.Stats()
			if s.Encapsulated-s0.Encapsulated != 10 || s.Decapsulated-s0.Decapsulated != 10 {
				t.Errorf("a's stats after 10 pings each way: encapsulated +%d, decapsulated +%d; want +10, +10 (%v)",
					s.Encapsulated-s0.Encapsulated, s.Decapsulated-s0.Decapsulated, on.ia.offloadPassed())
			}

			sum := tcpTransfer(t, on.a, on.b, offVifB, 16<<20)
			t.Logf("16 MiB a -> b, sha256 %x", sum[:8])
			atx2, _ := loopCounts(on.ia)
			_, brx2 := loopCounts(on.ib)
			if proto == 4 && atx2-atx > 100 {
				t.Errorf("a's loop encapsulated %d packets of the transfer; want the offload to", atx2-atx)
			}
			if brx2-brx > 100 {
				t.Errorf("b's loop decapsulated %d packets of the transfer; want the offload to", brx2-brx)
			}
			p := on.ib.Peers()
			if len(p) != 1 || p[0].Decapsulated < 1000 || p[0].DecapsulatedBytes < 16<<20 {
				t.Errorf("b's peer counters %+v; want the transfer", p)
			}
			t.Logf("a passed to the loop: %v; b: %v", on.ia.offloadPassed(), on.ib.offloadPassed())
		})
	}
}

// tcpTransfer sends n random bytes from host from to to's address dst over
// TCP and returns their sha256, failing the test unless the same arrived.
func tcpTransfer(t *testing.T, from, to *Host, dst netip.Addr, n int) [32]byte {
	t.Helper()
	var ln net.Listener
	if err := to.Do(func() (err error) { ln, err = net.Listen("tcp4", net.JoinHostPort(dst.String(), "0")); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		defer c.Close()
		h := sha256.New()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	var c net.Conn
	if err := from.Do(func() (err error) { c, err = net.DialTimeout("tcp4", ln.Addr().String(), 10*time.Second); return err }); err != nil {
		t.Fatalf("connect to %v: %v", ln.Addr(), err)
	}
	data := make([]byte, n)
	rand.Read(data)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.Close()
	want := sha256.Sum256(data)
	if g, ok := <-got; !ok || g != want {
		t.Fatalf("TCP transfer: received sha256 %x, sent %x", g, want)
	}
	return want
}

// sendIntoVif sends the IPv4 packet pkt out of host h's interface ifname
// with an AF_PACKET socket: on a TUN it enters the device's egress, where
// the offload's program sees it as if the kernel had routed it there.
func sendIntoVif(t *testing.T, h *Host, ifname string, pkts ...[]byte) {
	t.Helper()
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, p := range pkts {
			if err := unix.Sendto(fd, p, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(unix.ETH_P_IP)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send into %s on %v: %v", ifname, h, err)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForIn(t, 5*time.Second, what, cond)
}

func waitForIn(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Hostile packets on the wire, to a from m, with each protocol: the
// offload delivers none of them and passes each to the loop, which drops
// and counts it under its own reason, as without the offload. Nothing of
// them enters a's vif0 (captured there).
func TestOffloadHostile(t *testing.T) {
	for _, proto := range []uint8{94, 4} {
		t.Run(fmt.Sprint("proto ", proto), func(t *testing.T) {
			on := newOffloadNet(t, proto)
			if err := on.a.Ping(offVifB.String(), 1); err != nil {
				t.Fatalf("tunnel: %v", err)
			}
			if err := on.m.Ping(offUnderA.String(), 1); err != nil { // m learns a's MAC
				t.Fatalf("m cannot reach a: %v", err)
			}
			var raw *craft.RawConn
			if err := on.m.Do(func() (err error) { raw, err = craft.ListenRaw(on.mIf.Name()); return err }); err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			spoofed := func(tos uint8, inner []byte) []byte { return craft.Encap(proto, offUnderB, offUnderA, tos, inner) }
			ping := func(src, dst netip.Addr, tos uint8, id uint16) []byte { return craft.Ping(src, dst, tos, id, 1) }
			underM := on.mIf.Addr()
			frags := func(pkt []byte) [][]byte {
				craft.SetID(pkt, 0x7777)
				f, err := craft.Fragment(pkt, 60)
				if err != nil {
					t.Fatal(err)
				}
				return f
			}
			for _, tt := range []struct {
				name   string
				pkts   [][]byte
				passed string // the offload's reason
				drop   string // the loop's
			}{
				{"from a non-peer", [][]byte{craft.Encap(proto, underM, offUnderA, 0, ping(offVifB, offVifA, 0, 0xba01))}, "rx_not_peer", "rx_not_peer"},
				{"spoofed inner source (a's own)", [][]byte{spoofed(0, ping(offVifA, offVifA, 0, 0xba02))}, "rx_bad_source", "rx_bad_source"},
				{"spoofed inner source (loopback)", [][]byte{spoofed(0, ping(netip.MustParseAddr("127.0.0.1"), offVifA, 0, 0xba03))}, "rx_bad_source", "rx_bad_source"},
				{"inner destination not ours", [][]byte{spoofed(0, ping(offVifB, netip.MustParseAddr("203.0.113.9"), 0, 0xba04))}, "rx_not_local", "rx_not_local"},
				{"nested", [][]byte{spoofed(0, craft.Encap(proto, offVifB, offVifA, 0, ping(offVifB, offVifA, 0, 0xba05)))}, "rx_nested", "rx_nested"},
				{"outer CE over inner Not-ECT", [][]byte{spoofed(craft.CE, ping(offVifB, offVifA, craft.NotECT, 0xba06))}, "rx_ecn", "rx_ecn"},
				{"inner TTL 0", [][]byte{spoofed(0, craft.IPv4{ZeroTTL: true, Protocol: craft.ProtoICMP, Src: offVifB, Dst: offVifA}.Packet(craft.ICMPEcho(0xba07, 1, nil)))}, "rx_ttl", "rx_inner_ttl"},
				{"fragments of a spoofed source", frags(spoofed(0, craft.IPv4{Protocol: craft.ProtoICMP, Src: offVifA, Dst: offVifA}.Packet(craft.ICMPEcho(0xba08, 1, make([]byte, 100))))), "rx_outer", "rx_bad_source"},
			} {
				t.Run(tt.name, func(t *testing.T) {
					capt := on.a.Capture("vif0", "icmp")
					p0, d0 := on.ia.offloadPassed()[tt.passed], on.ia.Stats().Drops[tt.drop]
					for _, p := range tt.pkts {
						if err := raw.Send(p); err != nil {
							t.Fatalf("m sending: %v", err)
						}
					}
					waitFor(t, tt.drop+" counted by a's loop", func() bool { return on.ia.Stats().Drops[tt.drop] > d0 })
					if p := on.ia.offloadPassed()[tt.passed]; p <= p0 {
						t.Errorf("offload passed %s %d times, before %d; want more", tt.passed, p, p0)
					}
					if pkts := capt.Stop(); len(pkts) != 0 {
						t.Errorf("%d packets entered a's vif0: %v", len(pkts), pkts[0])
					}
				})
			}
			// Controls: what b may send is delivered by the offload, and
			// seen where the hostile packets were not; outer CE over
			// inner ECT(0) arrives as CE (RFC 6040 section 4.2).
			for _, tt := range []struct {
				name         string
				outer, inner uint8
				wantECN      uint8
			}{
				{"valid", 0, 0, 0},
				{"outer CE over inner ECT(0)", craft.CE, craft.ECT0, craft.CE},
				{"outer ECT(1) over inner ECT(0)", craft.ECT1, craft.ECT0, craft.ECT1},
			} {
				t.Run(tt.name, func(t *testing.T) {
					capt := on.a.Capture("vif0", "icmp")
					s0, loop0 := on.ia.Stats(), on.ia.rx.pkts.Load()
					if err := raw.Send(spoofed(tt.outer, ping(offVifB, offVifA, 0x20|tt.inner, 0xc0de))); err != nil {
						t.Fatal(err)
					}
					waitFor(t, "the offload delivering it", func() bool { return on.ia.Stats().Decapsulated > s0.Decapsulated })
					if on.ia.rx.pkts.Load() != loop0 {
						t.Error("the loop delivered it, not the offload")
					}
					pkts := capt.Stop()
					var got []uint8
					for _, p := range pkts {
						if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && ip.SrcIP.Equal(offVifB.AsSlice()) {
							got = append(got, ip.TOS)
							if !craft.ChecksumValid(ip.Contents) {
								t.Errorf("inner checksum invalid: %x", ip.Contents)
							}
						}
					}
					if len(got) != 1 || got[0] != 0x20|tt.wantECN {
						t.Errorf("entered vif0 with TOS %#x; want one with %#x", got, 0x20|tt.wantECN)
					}
				})
			}
			// The tunnel still works, through the offload.
			if err := on.a.Ping(offVifB.String(), 2); err != nil {
				t.Errorf("tunnel after the attack: %v", err)
			}
		})
	}
}

// What the offload leaves to the loop still works: a packet for the
// vif's own address is looped back, a TTL-0 packet or one for a peer's
// underlay address is not sent, and a DF packet larger than the path MTU
// to the peer is answered with "fragmentation needed" (RFC 2003 section
// 5.1), after which the offload carries packets that fit.
func TestOffloadSlowPath(t *testing.T) {
	on := newOffloadNet(t, 4)
	if err := on.a.Ping(offVifB.String(), 1); err != nil {
		t.Fatalf("tunnel: %v", err)
	}
	s0, p0 := on.ia.Stats(), on.ia.offloadPassed()
	sendIntoVif(t, on.a, "vif0", craft.Ping(offVifA, offVifA, 0, 0x1001, 1))
	waitFor(t, "the loop looping a packet back", func() bool { return on.ia.Stats().Looped > s0.Looped })
	if p := on.ia.offloadPassed(); p["tx_loopback"] <= p0["tx_loopback"] {
		t.Errorf("offload passed %v; want a tx_loopback", p)
	}
	sendIntoVif(t, on.a, "vif0", craft.IPv4{ZeroTTL: true, Protocol: craft.ProtoICMP, Src: offVifA, Dst: offVifB}.Packet(craft.ICMPEcho(0x1002, 1, nil)))
	waitFor(t, "tx_inner_ttl", func() bool { return on.ia.Stats().Drops["tx_inner_ttl"] > s0.Drops["tx_inner_ttl"] })
	// A peer's own underlay address routed into the tunnel would loop
	// (RFC 2003 section 4).
	sendIntoVif(t, on.a, "vif0", craft.Ping(offVifA, offUnderB, 0, 0x1003, 1))
	waitFor(t, "tx_loop", func() bool { return on.ia.Stats().Drops["tx_loop"] > s0.Drops["tx_loop"] })
	if p := on.ia.offloadPassed(); p["tx_to_peer"] <= p0["tx_to_peer"] {
		t.Errorf("offload passed %v; want a tx_to_peer", p)
	}

	// The path to b shrinks to 1000 bytes (a route MTU the kernel's
	// lookup sees, as it would see one learnt from a router).
	on.a.MustRun("ip", "route", "add", offUnderB.String()+"/32", "dev", on.aIf.Name(), "mtu", "1000")
	// The offload learns it from the kernel within pmtuProbeInterval.
	waitForIn(t, 2*pmtuProbeInterval, "the path MTU in the offload", func() bool {
		p := on.ia.Peers()
		return len(p) == 1 && p[0].PathMTU == 980
	})
	out, err := on.a.Run("ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1200", offVifB.String())
	if err == nil {
		t.Fatalf("a DF ping larger than the path went through:\n%s", out)
	}
	waitFor(t, "ICMP fragmentation needed from the loop", func() bool {
		s := on.ia.Stats()
		return s.ICMPSent > s0.ICMPSent && s.Drops["tx_too_big"] > s0.Drops["tx_too_big"]
	})
	if p := on.ia.offloadPassed(); p["tx_too_big"] <= p0["tx_too_big"] {
		t.Errorf("offload passed %v; want a tx_too_big", p)
	}
	out, err = on.a.Run("ping", "-c", "2", "-W", "2", "-M", "do", "-s", "1200", offVifB.String())
	if !strings.Contains(out, "mtu = 980") && !strings.Contains(out, "mtu=980") {
		t.Errorf("ping after the ICMP error does not know the tunnel MTU 980 (%v):\n%s", err, out)
	}
	tx0, _ := loopCounts(on.ia)
	if out, err := on.a.Run("ping", "-c", "3", "-M", "do", "-s", "900", offVifB.String()); err != nil {
		t.Fatalf("ping that fits: %v\n%s", err, out)
	}
	if tx, _ := loopCounts(on.ia); tx != tx0 {
		t.Errorf("the loop sent %d packets that fit the path; want the offload to", tx-tx0)
	}
}

// The offload's own drop reason is the one Stats documents.
func TestOffloadDropName(t *testing.T) {
	if DropOffloadError != offload.DropError {
		t.Errorf("vif says %q, the offload %q", DropOffloadError, offload.DropError)
	}
}

// tcxPrograms returns how many programs are attached with TCX to ifname's
// ingress and egress in host h, as the kernel lists them.
func tcxPrograms(t *testing.T, h *Host, ifname string) int {
	t.Helper()
	n := 0
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			r, err := link.QueryPrograms(link.QueryOptions{Target: ifi.Index, Attach: at})
			if err != nil {
				return err
			}
			n += len(r.Programs)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("query TCX programs of %s on %v: %v", ifname, h, err)
	}
	return n
}

// Close detaches both programs; so does SIGKILL of the process that
// attached them (their links die with its file descriptors). Nothing is
// pinned.
func TestOffloadLeavesNothing(t *testing.T) {
	n := nstest.New(t)
	a, b := n.Host("a"), n.Host("b")
	aIf, _ := n.Link(a, b, "198.18.0.1/24", "198.18.0.2/24")
	cfg := LinkConfig{Name: "vif0", Slave: aIf.Name(), Offload: true,
		Config: Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Peer: offUnderB}}
	var ifc *Interface
	if err := a.Do(func() (err error) { ifc, err = Up(&cfg); return err }); err != nil {
		t.Fatal(err)
	}
	if got := tcxPrograms(t, a, aIf.Name()) + tcxPrograms(t, a, "vif0"); got != 2 {
		t.Errorf("%d programs attached; want 2", got)
	}
	ifc.Close()
	if got := tcxPrograms(t, a, aIf.Name()); got != 0 {
		t.Errorf("after Close %d programs on the slave", got)
	}

	// A helper process attaches them and is killed.
	cmd := a.Command(context.Background(), os.Args[0], "-test.run=^TestOffloadHelperProcess$")
	cmd.Env = append(os.Environ(), "VIF_OFFLOAD_HELPER="+aIf.Name())
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 64)
	k, _ := io.ReadAtLeast(stdout, line, 3)
	if !bytes.HasPrefix(line[:k], []byte("up")) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %q", line[:k])
	}
	if got := tcxPrograms(t, a, aIf.Name()); got != 1 {
		t.Errorf("helper attached %d programs to the slave; want 1", got)
	}
	// ip netns exec runs the helper as its child: kill the helper
	// itself with SIGKILL.
	pids, _ := a.Run("pgrep", "-P", fmt.Sprint(cmd.Process.Pid))
	if pid := strings.TrimSpace(pids); pid != "" {
		exec.Command("kill", "-KILL", pid).Run()
	} else {
		cmd.Process.Signal(unix.SIGKILL)
	}
	cmd.Wait()
	waitFor(t, "the programs to go with the killed process", func() bool { return tcxPrograms(t, a, aIf.Name()) == 0 })
	waitFor(t, "vif1 to go with the killed process", func() bool { return !a.LinkExists("vif1") })
}

// TestOffloadHelperProcess is TestOffloadLeavesNothing's helper: it brings
// a vif up with the offload on the slave its environment names, says
// "up" and waits to be killed.
func TestOffloadHelperProcess(t *testing.T) {
	slave := os.Getenv("VIF_OFFLOAD_HELPER")
	if slave == "" {
		t.Skip("a helper process of TestOffloadLeavesNothing")
	}
	cfg := LinkConfig{Name: "vif1", Slave: slave, Offload: true,
		Config: Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32")}, Peer: offUnderB}}
	ifc, err := Up(&cfg)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("up")
	time.Sleep(time.Minute)
	ifc.Close()
}

// The maps follow the interface's changes: an address added is delivered
// to by the offload, one removed is not (the loop drops it as not ours);
// a peer removed is no peer to the offload either; a paused tunnel
// (SetLocal) sends nothing from the offload.
func TestOffloadFollowsChanges(t *testing.T) {
	on := newOffloadNet(t, 4)
	extra := netip.MustParsePrefix("192.0.2.7/32")
	if err := on.ia.AddAddr(extra); err != nil {
		t.Fatal(err)
	}
	s0 := on.ia.Stats()
	_, rx0 := loopCounts(on.ia)
	if err := on.b.Ping(extra.Addr().String(), 2); err != nil {
		t.Fatalf("ping of an added address: %v", err)
	}
	if _, rx := loopCounts(on.ia); rx != rx0 || on.ia.Stats().Decapsulated-s0.Decapsulated < 2 {
		t.Errorf("the added address was not delivered to by the offload (loop rx +%d)", rx-rx0)
	}
	if err := on.ia.RemoveAddr(extra); err != nil {
		t.Fatal(err)
	}
	p0 := on.ia.offloadPassed()["rx_not_local"]
	if err := on.b.Ping(extra.Addr().String(), 1); err == nil {
		t.Error("a removed address still answers")
	}
	waitFor(t, "rx_not_local from the loop", func() bool { return on.ia.Stats().Drops["rx_not_local"] > s0.Drops["rx_not_local"] })
	if p := on.ia.offloadPassed()["rx_not_local"]; p <= p0 {
		t.Errorf("offload passed rx_not_local %d times, before %d", p, p0)
	}

	// b pauses its tunnel: its offload sends nothing, its loop drops.
	sb := on.ib.Stats()
	if err := on.ib.SetLocal(netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if err := on.b.Ping(offVifA.String(), 1); err == nil {
		t.Error("a paused tunnel carried a ping")
	}
	if s := on.ib.Stats(); s.Encapsulated != sb.Encapsulated || s.Drops["tx_no_local"] == sb.Drops["tx_no_local"] {
		t.Errorf("paused: encapsulated +%d, tx_no_local +%d; want 0 and more", s.Encapsulated-sb.Encapsulated, s.Drops["tx_no_local"]-sb.Drops["tx_no_local"])
	}
	if err := on.ib.SetLocal(offUnderB); err != nil {
		t.Fatal(err)
	}
	if err := on.b.Ping(offVifA.String(), 1); err != nil {
		t.Errorf("after SetLocal back: %v", err)
	}

	// a forgets b: b's packets are not decapsulated, by either path.
	if err := on.ia.RemovePeer(offUnderB); err != nil {
		t.Fatal(err)
	}
	s1 := on.ia.Stats()
	if err := on.b.Ping(offVifA.String(), 1); err == nil {
		t.Error("a decapsulated from a removed peer")
	}
	waitFor(t, "rx_not_peer from the loop", func() bool { return on.ia.Stats().Drops["rx_not_peer"] > s1.Drops["rx_not_peer"] })
	if s := on.ia.Stats(); s.Decapsulated != s1.Decapsulated {
		t.Errorf("decapsulated %d from a removed peer", s.Decapsulated-s1.Decapsulated)
	}
	// And back, with a prefix: the offload carries it again.
	if err := on.ia.SetPeer(Peer{Addr: offUnderB, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}); err != nil {
		t.Fatal(err)
	}
	s2 := on.ia.Stats()
	tx0, rx0 := loopCounts(on.ia)
	if err := on.a.Ping(offVifB.String(), 2); err != nil {
		t.Fatalf("after SetPeer: %v", err)
	}
	if tx, rx := loopCounts(on.ia); tx != tx0 || rx != rx0 || on.ia.Stats().Encapsulated-s2.Encapsulated != 2 {
		t.Errorf("after SetPeer the loop carried tx %d rx %d; want the offload to", tx-tx0, rx-rx0)
	}
	if p := on.ia.Peers(); len(p) != 1 || p[0].Encapsulated < 2 {
		t.Errorf("peer counters after SetPeer: %+v", p)
	}
	// No peer has 203.0.113.0/24 now: the loop answers "host
	// unreachable".
	s3, p3 := on.ia.Stats(), on.ia.offloadPassed()
	sendIntoVif(t, on.a, "vif0", craft.Ping(offVifA, netip.MustParseAddr("203.0.113.5"), 0, 0x1004, 1))
	waitFor(t, "tx_no_peer and its ICMP", func() bool {
		s := on.ia.Stats()
		return s.Drops["tx_no_peer"] > s3.Drops["tx_no_peer"] && s.ICMPSent > s3.ICMPSent
	})
	if p := on.ia.offloadPassed(); p["tx_no_peer"] <= p3["tx_no_peer"] {
		t.Errorf("offload passed %v; want a tx_no_peer", p)
	}
}

// Two vifs with the offload on one slave, each with its own peer: their
// programs sit in one TCX chain on the slave, and each leaves the other's
// packets to the next (TCX_NEXT). Both tunnels are offloaded; a packet
// from one vif's peer for the other vif's address is delivered by
// neither.
func TestOffloadTwoVifsOneSlave(t *testing.T) {
	n := nstest.New(t)
	seg := n.Segment()
	a, b, c := n.Host("a"), n.Host("b"), n.Host("c")
	aIf := seg.Attach(a, "198.18.0.1/24")
	bIf := seg.Attach(b, "198.18.0.2/24")
	cIf := seg.Attach(c, "198.18.0.4/24")
	up := func(h *Host, name, slave string, addr, peer netip.Addr, route string) *Interface {
		cfg := LinkConfig{Name: name, Slave: slave, Offload: true,
			Config: Config{Addrs: []netip.Prefix{netip.PrefixFrom(addr, 32)}, Peer: peer, Protocol: 4},
			Routes: []netip.Prefix{netip.MustParsePrefix(route)}}
		var ifc *Interface
		if err := h.Do(func() (err error) { ifc, err = Up(&cfg); return err }); err != nil {
			t.Fatalf("%s on %v: %v", name, h, err)
		}
		t.Cleanup(func() { ifc.Close() })
		return ifc
	}
	a0 := up(a, "vif0", aIf.Name(), offVifA, bIf.Addr(), "198.51.100.0/24")
	a1 := up(a, "vif1", aIf.Name(), netip.MustParseAddr("192.0.2.2"), cIf.Addr(), "203.0.113.0/24")
	up(b, "vif0", bIf.Name(), offVifB, aIf.Addr(), "192.0.2.0/24")
	up(c, "vif0", cIf.Name(), netip.MustParseAddr("203.0.113.1"), aIf.Addr(), "192.0.2.0/24")
	if got := tcxPrograms(t, a, aIf.Name()); got != 2 {
		t.Fatalf("%d programs on a's slave; want 2", got)
	}
	for _, h := range []*Host{b, c} {
		if err := h.Ping("198.18.0.1", 1); err != nil { // neighbours
			t.Fatal(err)
		}
	}
	_, rx0 := loopCounts(a0)
	_, rx1 := loopCounts(a1)
	if err := b.Ping("192.0.2.1", 3); err != nil {
		t.Errorf("b -> vif0: %v", err)
	}
	if err := c.Ping("192.0.2.2", 3); err != nil {
		t.Errorf("c -> vif1: %v", err)
	}
	if _, rx := loopCounts(a0); rx != rx0 {
		t.Errorf("vif0's loop decapsulated %d packets", rx-rx0)
	}
	if _, rx := loopCounts(a1); rx != rx1 {
		t.Errorf("vif1's loop decapsulated %d packets", rx-rx1)
	}
	if s0, s1 := a0.Stats(), a1.Stats(); s0.Decapsulated < 3 || s1.Decapsulated < 3 {
		t.Errorf("decapsulated by vif0 %d, vif1 %d; want 3 each", s0.Decapsulated, s1.Decapsulated)
	}
	// c's packet for vif0's address: not vif1's address, not vif0's peer.
	d0, d1 := a0.Stats().Drops["rx_not_peer"], a1.Stats().Drops["rx_not_local"]
	if err := c.Ping("192.0.2.1", 1); err == nil {
		t.Error("c reached vif0's address through vif1's tunnel")
	}
	waitFor(t, "both loops to drop it", func() bool {
		return a0.Stats().Drops["rx_not_peer"] > d0 && a1.Stats().Drops["rx_not_local"] > d1
	})
}

// The offload's outer header follows the loop's rules, seen on the wire
// at the peer: the tunnel's protocol from the local to the peer's
// address, the default TTL, a valid checksum, the inner DF bit (RFC 2003
// section 3.1) and TOS byte, ECN included (RFC 6040 section 4.1), and the
// inner packet unchanged.
func TestOffloadOuterHeader(t *testing.T) {
	for _, proto := range []uint8{94, 4} {
		t.Run(fmt.Sprint("proto ", proto), func(t *testing.T) {
			on := newOffloadNet(t, proto)
			if err := on.a.Ping(offVifB.String(), 1); err != nil {
				t.Fatal(err)
			}
			wire := on.bIf.Capture(fmt.Sprintf("ip proto %d and src %s", proto, offUnderA))
			tx0, _ := loopCounts(on.ia)
			for _, df := range []string{"do", "dont"} {
				if out, err := on.a.Run("ping", "-c", "1", "-Q", "0xb9", "-M", df, offVifB.String()); err != nil {
					t.Fatalf("ping -M %s: %v\n%s", df, err, out)
				}
			}
			pkts := wire.Stop()
			if tx, _ := loopCounts(on.ia); tx != tx0 {
				t.Errorf("the loop sent %d of them; want the offload", tx-tx0)
			}
			if len(pkts) != 2 {
				t.Fatalf("captured %d packets; want 2", len(pkts))
			}
			for k, p := range pkts {
				ips := p.Layers()
				var outer, inner *layers.IPv4
				for _, l := range ips {
					if ip, ok := l.(*layers.IPv4); ok {
						if outer == nil {
							outer = ip
						} else if inner == nil {
							inner = ip
						}
					}
				}
				if outer == nil {
					t.Fatalf("packet %d: no IPv4 header", k)
				}
				if inner == nil { // gopacket does not decode protocol 94
					ip := &layers.IPv4{}
					if err := ip.DecodeFromBytes(outer.Payload, nil); err != nil {
						t.Fatalf("packet %d: inner: %v", k, err)
					}
					inner = ip
				}
				wantDF := k == 0
				switch {
				case uint8(outer.Protocol) != proto, !outer.SrcIP.Equal(offUnderA.AsSlice()), !outer.DstIP.Equal(offUnderB.AsSlice()):
					t.Errorf("packet %d: protocol %d %v -> %v", k, outer.Protocol, outer.SrcIP, outer.DstIP)
				case outer.TTL != 64:
					t.Errorf("packet %d: outer TTL %d; want 64", k, outer.TTL)
				case !craft.ChecksumValid(outer.Contents):
					t.Errorf("packet %d: outer checksum invalid", k)
				case outer.Flags&layers.IPv4DontFragment != 0 != wantDF, inner.Flags&layers.IPv4DontFragment != 0 != wantDF:
					t.Errorf("packet %d: outer flags %v, inner %v; want DF %v in both", k, outer.Flags, inner.Flags, wantDF)
				case outer.TOS != 0xb9 || inner.TOS != 0xb9:
					t.Errorf("packet %d: outer TOS %#x, inner %#x; want 0xb9 in both", k, outer.TOS, inner.TOS)
				case int(outer.Length) != 20+int(inner.Length) || !inner.SrcIP.Equal(offVifA.AsSlice()) || !inner.DstIP.Equal(offVifB.AsSlice()):
					t.Errorf("packet %d: outer length %d, inner %d %v -> %v", k, outer.Length, inner.Length, inner.SrcIP, inner.DstIP)
				}
			}
		})
	}
}
