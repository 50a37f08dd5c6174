package demo

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// Ping sends an ICMP echo request from the host to dst and returns the
// round-trip time of the first reply; it tries three times (a busy machine
// can lose the first while ARP resolves).
func (h *Host) Ping(dst netip.Addr, seq int) (rtt time.Duration, err error) {
	for try := 0; try < 3; try++ {
		if rtt, err = h.ping(dst, seq); err == nil {
			return rtt, nil
		}
	}
	return 0, err
}

// PingOnce sends one ICMP echo request and waits up to 2 s for the reply;
// for checks that expect none.
func (h *Host) PingOnce(dst netip.Addr, seq int) (time.Duration, error) { return h.ping(dst, seq) }

func (h *Host) ping(dst netip.Addr, seq int) (time.Duration, error) {
	var rtt time.Duration
	err := h.Do(func() error {
		c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer c.Close()
		id := os.Getpid() & 0xffff
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("vif demo")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return err
		}
		c.SetReadDeadline(start.Add(2 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("no echo reply from %s", dst)
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.Seq == seq && from.String() == dst.String() {
				rtt = time.Since(start)
				return nil
			}
		}
	})
	return rtt, err
}

// Tap counts IPv4 packets of one IP protocol on a segment's port.
type Tap struct {
	conn  *packet.Conn
	n     atomic.Int64
	done  chan struct{}
	proto uint8
}

// Tap starts counting packets of IP protocol proto that h sends and
// receives, on the segment's port facing h: on the wire, as a switch sees
// them. The host's own eth0 would not show what its AF_XDP sockets move.
func (l *Lab) Tap(h *Host, proto uint8) (*Tap, error) {
	t := &Tap{done: make(chan struct{}), proto: proto}
	err := in(l.seg, func() error {
		ifi, err := net.InterfaceByName("p-" + h.Name)
		if err != nil {
			return err
		}
		// ETH_P_ALL: only such sockets also see outgoing frames.
		t.conn, err = packet.Listen(ifi, packet.Raw, 0x0003, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(t.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := t.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			const eth = 14
			if n >= eth+20 && buf[12] == 0x08 && buf[13] == 0x00 && buf[eth]>>4 == 4 && buf[eth+9] == t.proto {
				t.n.Add(1)
			}
		}
	}()
	return t, nil
}

// Stop stops counting and returns the count. Frames already queued on
// the socket are still counted: on a busy machine the reader lags.
func (t *Tap) Stop() int {
	t.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	<-t.done
	t.conn.Close()
	return int(t.n.Load())
}
