package main

import (
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// The vif's MTU raised from outside (ip link set mtu) while a TCP stream
// runs to a peer that advertised a larger MSS: the kernel at once sends
// GSO super-packets of the new segment size, which the loop may read with
// buffers of the old MTU. wireguard's GSO split panicked on them, which
// ended the daemon and every vif; now the super-packet is lost (TCP sends
// it again), the loop grows its buffers, and daemon and stream go on.
func TestHostVifMTURaisedMidStream(t *testing.T) {
	a, b, _, _ := daemonTunnel(t, 9000)
	pidA, logA := daemonPID(t, a)
	defer func() {
		if t.Failed() {
			lg, _ := os.ReadFile(logA)
			t.Logf("a's daemon alive %v; its log:\n%s", alive(pidA), lg)
		}
	}()
	b.IP("link", "set", "vif0", "mtu", "8980") // b advertises an MSS of 8940
	var ln net.Listener
	if err := b.Do(func() (err error) {
		ln, err = net.Listen("tcp4", "198.51.100.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	var c net.Conn
	if err := a.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := time.Now().Add(3 * time.Second)
	raised := false
	buf := make([]byte, 256<<10)
	var sent int64
	c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	for time.Now().Before(stop) {
		n, err := c.Write(buf)
		sent += int64(n)
		if err != nil {
			t.Fatalf("after %d bytes: %v", sent, err)
		}
		if !raised && sent > 4<<20 {
			raised = true
			a.IP("link", "set", "vif0", "mtu", "8980") // what is queued flows meanwhile
		}
	}
	if !raised {
		t.Fatalf("only %d bytes sent in 3s: the MTU was not raised mid-stream", sent)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case n := <-got:
		if n != sent {
			t.Errorf("received %d bytes, sent %d", n, sent)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("the stream stalled")
	}
	if !alive(pidA) {
		t.Fatalf("a's daemon died when its vif's MTU was raised mid-stream")
	}
}
