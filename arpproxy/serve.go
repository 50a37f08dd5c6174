package arpproxy

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/vif-project/vif/internal/ratelimit"
)

// serve reads and answers frames until the connection is closed.
func (r *Responder) serve() {
	defer r.wg.Done()
	buf := make([]byte, readBufLen)
	var backoff time.Duration
	for {
		n, err := r.io.Read(buf)
		if n > 0 {
			r.handle(Frame(buf[:n]))
		}
		if err == nil {
			backoff = 0
			continue
		}
		if r.closing.Load() {
			return
		}
		if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
			r.log.Warn("ARP connection closed under the responder; stopped serving", "err", err)
			return
		}
		r.stats.readErrors.Add(1)
		if ok, suppressed := r.errLog.Allow(r.now()); ok {
			r.log.Warn("ARP read failed", "err", err, "suppressed", suppressed)
		}
		// Back off so that a persistent error (interface gone) does not
		// spin; a one-off error costs a millisecond.
		backoff = min(max(2*backoff, time.Millisecond), time.Second)
		t := time.NewTimer(backoff)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// now returns the serve goroutine's monotonic clock in nanoseconds.
func (r *Responder) now() int64 { return int64(time.Since(r.start)) }

// handle processes one frame. It does not allocate or log, except for
// rate-limited warnings. Frames is counted last, so that whoever sees
// Frames == n also sees every other counter updated for those n frames.
func (r *Responder) handle(f Frame) {
	r.process(f)
	r.stats.frames.Add(1)
}

func (r *Responder) process(f Frame) {
	tab := r.owned.Load()
	res := Respond(r.out, f, *r.mac.Load(), tab.set)
	if res.Verdict == VerdictDrop {
		r.stats.drops[res.Reason].Add(1)
		return
	}
	if ps := r.probing.Load(); ps != nil {
		for _, p := range *ps {
			p.check(f)
		}
	}
	if f.Op() == OpRequest {
		r.stats.requests.Add(1)
	}
	if res.Conflict {
		r.conflict(f, tab)
	}
	switch res.Verdict {
	case VerdictNotOwned:
		r.stats.notOwned.Add(1)
	case VerdictIgnore:
		r.stats.ignored.Add(1)
	case VerdictReply:
		reply := res.Reply
		if r.lim.Enabled() && !r.lim.Allow(r.rateKey(reply), r.now()) {
			r.stats.limited.Add(1)
			return
		}
		if err := r.io.Write(reply, reply.EthernetDst()); err != nil {
			r.stats.writeErrors.Add(1)
			if ok, suppressed := r.errLog.Allow(r.now()); ok {
				r.log.Warn("ARP reply failed", "err", err, "suppressed", suppressed)
			}
			return
		}
		r.stats.replies.Add(1)
		if res.Probe {
			r.stats.probes.Add(1)
		}
	}
}

// rateKey returns the rate limit's key for a reply: the requester's
// hardware address and the address it asked for.
func (r *Responder) rateKey(reply Frame) *ratelimit.Key {
	copy(r.limKey[:6], reply[ethDstOffset:ethDstOffset+6])
	copy(r.limKey[6:10], reply[spaOffset:spaOffset+4])
	return &r.limKey
}

// conflict counts, logs (rate-limited) and, with Config.Defend, defends
// against a frame from another host claiming an owned address.
func (r *Responder) conflict(f Frame, tab *table) {
	r.stats.conflicts.Add(1)
	now := r.now()
	addr := f.SenderIP()
	defended := false
	if r.cfg.defend {
		if i := tab.set.index(addr); i >= 0 {
			st := tab.states[i]
			if !st.defended || now-st.defendedAt >= int64(DefendInterval) {
				st.defended, st.defendedAt = true, now
				a := PutAnnouncement(r.defendBuf, *r.mac.Load(), addr)
				if err := r.io.Write(a, a.EthernetDst()); err != nil {
					r.stats.writeErrors.Add(1)
				} else {
					r.stats.announcements.Add(1)
					r.stats.defences.Add(1)
					defended = true
				}
			}
		}
	}
	if ok, suppressed := r.conflictLog.Allow(now); ok {
		r.log.Warn("ARP address conflict: another host claims an owned address",
			"addr", addr,
			"mac", f.SenderHardwareAddr().String(),
			"op", f.Op().String(),
			"defended", defended,
			"suppressed", suppressed)
	}
}
