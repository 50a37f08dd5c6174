//go:build linux

package main

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vif-project/vif/vif/nstest"
)

// arpBurst sends n requests for target from c, paced at rate per second,
// each from its own random MAC (so per-requester limits do not apply), and
// returns how many replies from wantMAC came back.
func arpBurst(t *testing.T, c *nstest.Host, ifname string, target net.IP, wantMAC net.HardwareAddr, n, rate int) int {
	t.Helper()
	var got int
	err := c.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		conn, err := packet.Listen(ifi, packet.Raw, 0x0806, nil)
		if err != nil {
			return err
		}
		defer conn.Close()
		// Replies go to the random requesters' MACs: listen promiscuously.
		if err := conn.SetPromiscuous(true); err != nil {
			return err
		}
		done := make(chan int)
		go func() {
			buf := make([]byte, 128)
			count := 0
			for {
				m, _, err := conn.ReadFrom(buf)
				if err != nil {
					done <- count
					return
				}
				f := buf[:m]
				if m >= 42 && binary.BigEndian.Uint16(f[20:]) == 2 && net.HardwareAddr(f[22:28]).String() == wantMAC.String() {
					count++
				}
			}
		}()
		bcast := &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		gap := time.Second / time.Duration(rate)
		start := time.Now()
		for k := 0; k < n; k++ {
			mac := make(net.HardwareAddr, 6)
			rand.Read(mac)
			mac[0] = mac[0]&^1 | 2 // unicast, locally administered
			ip := net.IP{198, 18, 1, byte(100 + k%100)}
			if _, err := conn.WriteTo(arpRequest(t, mac, ip, target), bcast); err != nil {
				return err
			}
			if d := time.Until(start.Add(time.Duration(k+1) * gap)); d > 0 {
				time.Sleep(d)
			}
		}
		time.Sleep(500 * time.Millisecond)
		conn.SetReadDeadline(time.Now())
		got = <-done
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestARPResponderRate measures how many requests per second one responder
// answers without loss, and requires at least 1000/s.
func TestARPResponderRate(t *testing.T) {
	s := newSegment(t)
	vifCmd(t, s.a, "up", "vif0", "192.0.2.1", "--slave", s.aIf.Name())
	best := 0
	for _, rate := range []int{1000, 2000, 4000, 8000, 16000} {
		n := rate // one second of requests
		got := arpBurst(t, s.c, s.cIf.Name(), net.IP{192, 0, 2, 1}, s.aIf.MAC(), n, rate)
		t.Logf("%d requests/s for 1 s: %d of %d answered", rate, got, n)
		if got == n {
			best = rate
		}
	}
	st := vifStatus(t, s.a, "vif0")
	t.Logf("responder counters: %d requests, %d replies, %d rate limited, %d lost in the socket", st.ARP.Requests, st.ARP.Replies, st.ARP.RateLimited, st.ARP.SocketDrops)
	if best < 1000 {
		t.Errorf("the responder lost requests at 1000/s")
	}
	t.Logf("answered without loss up to %d requests/s", best)
}
