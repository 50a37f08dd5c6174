//go:build linux

package soak

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vif-project/vif/internal/craft"
)

// FloodConfig configures a Flood. A zero field selects its default.
type FloodConfig struct {
	// Rate is the number of requests sent per second: 2000 by default.
	Rate int
	// Targets is the network the target addresses of most requests are
	// drawn from at random (never an Owned one): 192.0.2.0/24 by default.
	Targets netip.Prefix
	// Owned are addresses the proxies under test answer for. Every
	// OwnedEvery-th request asks for one of them, in turn.
	Owned []netip.Addr
	// OwnedEvery is 16 by default.
	OwnedEvery int
	// Senders is the network the sender addresses are drawn from:
	// 198.19.0.0/16 by default, off the segment's subnet, so that no
	// request rewrites a kernel's existing neighbour entry (RFC 826
	// merge): the flood is aimed at the proxies, not at the kernels.
	Senders netip.Prefix
}

// FloodStats counts what a Flood did.
type FloodStats struct {
	Sent    uint64 // requests sent
	Owned   uint64 // requests sent for an Owned address
	Replies uint64 // replies seen from an Owned address to a requester other than us
	Dropped uint64 // requests the local kernel refused to send (ENOBUFS)
}

// A Flood sends ARP requests, each from a random locally administered MAC
// so that no per-requester rate limit applies, at a fixed rate on one
// interface, and counts the replies for owned addresses it sees there.
// Its methods are safe for concurrent use; Run runs once.
type Flood struct {
	conn  *packet.Conn
	mac   net.HardwareAddr
	cfg   FloodConfig
	owned map[netip.Addr]bool

	sent, asked, replies, dropped atomic.Uint64
	readDone                      chan struct{}
}

// ListenFlood opens a Flood on the interface ifname of the calling
// thread's network namespace (call it inside nstest's Host.Do); it may be
// run and closed from any goroutine. A nil cfg applies the defaults. It
// needs CAP_NET_RAW.
func ListenFlood(ifname string, cfg *FloodConfig) (*Flood, error) {
	c := FloodConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.Rate <= 0 {
		c.Rate = 2000
	}
	if !c.Targets.IsValid() {
		c.Targets = netip.MustParsePrefix("192.0.2.0/24")
	}
	if c.OwnedEvery <= 0 {
		c.OwnedEvery = 16
	}
	if !c.Senders.IsValid() {
		c.Senders = netip.MustParsePrefix("198.19.0.0/16")
	}
	if !c.Targets.Addr().Is4() || !c.Senders.Addr().Is4() || c.Targets.Bits() > 30 || c.Senders.Bits() > 30 {
		return nil, fmt.Errorf("soak: flood needs IPv4 networks of at least 4 addresses, not %v and %v", c.Targets, c.Senders)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("soak: interface %s: %w", ifname, err)
	}
	conn, err := packet.Listen(ifi, packet.Raw, int(craft.EtherTypeARP), nil)
	if err != nil {
		return nil, fmt.Errorf("soak: packet socket on %s: %w", ifname, err)
	}
	// Replies go to the random requesters' MACs.
	if err := conn.SetPromiscuous(true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("soak: promiscuous mode on %s: %w", ifname, err)
	}
	f := &Flood{conn: conn, mac: ifi.HardwareAddr, cfg: c, owned: map[netip.Addr]bool{}, readDone: make(chan struct{})}
	for _, a := range c.Owned {
		f.owned[a] = true
	}
	go f.read()
	return f, nil
}

// Run sends requests at the configured rate until ctx is done, and then
// returns nil; it returns early on a send error other than ENOBUFS, which
// it counts as Dropped. A stalled sender does not catch up with a burst:
// at most 20 ms worth of requests go out at once.
func (f *Flood) Run(ctx context.Context) error {
	rate := float64(f.cfg.Rate)
	maxBurst := uint64(max(1, f.cfg.Rate/50))
	bcast := &packet.Addr{HardwareAddr: craft.Broadcast}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var k uint64
	for {
		due := uint64(time.Since(start).Seconds() * rate)
		if due > k+maxBurst {
			k = due - maxBurst
		}
		for ; k < due; k++ {
			tpa := randAddr(f.cfg.Targets, f.owned)
			if n := len(f.cfg.Owned); n > 0 && k%uint64(f.cfg.OwnedEvery) == 0 {
				tpa = f.cfg.Owned[(k/uint64(f.cfg.OwnedEvery))%uint64(n)]
				f.asked.Add(1)
			}
			frame := craft.ARPRequestFrame(randMAC(), randAddr(f.cfg.Senders, nil), tpa)
			if _, err := f.conn.WriteTo(frame, bcast); err != nil {
				if errors.Is(err, syscall.ENOBUFS) {
					f.dropped.Add(1)
					continue
				}
				return fmt.Errorf("soak: flood: %w", err)
			}
			f.sent.Add(1)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Stats returns the counters so far.
func (f *Flood) Stats() FloodStats {
	return FloodStats{Sent: f.sent.Load(), Owned: f.asked.Load(), Replies: f.replies.Load(), Dropped: f.dropped.Load()}
}

// Close closes the socket and waits for the reader to finish.
func (f *Flood) Close() error {
	err := f.conn.Close()
	<-f.readDone
	return err
}

// read counts ARP replies (RFC 826 opcode 2) from owned addresses to
// anyone but this interface, until the socket is closed.
func (f *Flood) read() {
	defer close(f.readDone)
	buf := make([]byte, 1500)
	for {
		n, _, err := f.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		b := buf[:n]
		if n < 42 || binary.BigEndian.Uint16(b[12:]) != craft.EtherTypeARP || binary.BigEndian.Uint16(b[20:]) != craft.ARPReply {
			continue
		}
		spa := netip.AddrFrom4([4]byte(b[28:32]))
		if f.owned[spa] && net.HardwareAddr(b[32:38]).String() != f.mac.String() {
			f.replies.Add(1)
		}
	}
}

// randMAC returns a random unicast, locally administered MAC address.
func randMAC() net.HardwareAddr {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	b[0] = b[0]&^1 | 2
	return net.HardwareAddr(b[:6])
}

// randAddr returns a random host address of p (neither its network nor
// its broadcast address) that is not in not.
func randAddr(p netip.Prefix, not map[netip.Addr]bool) netip.Addr {
	base := p.Masked().Addr().As4()
	size := uint32(1) << (32 - p.Bits())
	for {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(base[:])+1+rand.Uint32N(size-2))
		if a := netip.AddrFrom4(b); !not[a] {
			return a
		}
	}
}
