package ndpproxy

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
			r.log.Warn("NDP connection closed under the responder; stopped serving", "err", err)
			return
		}
		r.stats.readErrors.Add(1)
		if ok, suppressed := r.errLog.Allow(r.now()); ok {
			r.log.Warn("NDP read failed", "err", err, "suppressed", suppressed)
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
	self := r.self.Load()
	res := Respond(r.out, f, self, tab.set)
	if res.Verdict == VerdictDrop {
		r.stats.drops[res.Reason].Add(1)
		return
	}
	if ps := r.probing.Load(); ps != nil {
		for _, p := range *ps {
			p.check(f)
		}
	}
	if f.Type() == TypeNeighborSolicitation {
		r.stats.solicitations.Add(1)
	} else {
		r.stats.advertisements.Add(1)
	}
	if res.Conflict {
		r.conflict(f)
	}
	switch res.Verdict {
	case VerdictNotOwned:
		r.stats.notOwned.Add(1)
	case VerdictIgnore:
		r.stats.ignored.Add(1)
	case VerdictReply:
		if r.lim.Enabled() && !r.lim.Allow(r.rateKey(f), r.now()) {
			r.stats.limited.Add(1)
			return
		}
		reply := res.Reply
		if err := r.io.Write(reply, reply.EthernetDst()); err != nil {
			r.stats.writeErrors.Add(1)
			if ok, suppressed := r.errLog.Allow(r.now()); ok {
				r.log.Warn("NDP advertisement failed", "err", err, "suppressed", suppressed)
			}
			return
		}
		r.stats.replies.Add(1)
		if res.DAD {
			r.stats.dad.Add(1)
		}
	}
}

// rateKey returns the rate limit's key for an answered solicitation: the
// requester's hardware address (its Ethernet source, also for Duplicate
// Address Detection, whose answer is multicast) and the target.
func (r *Responder) rateKey(ns Frame) *ratelimit.Key {
	copy(r.limKey[:6], ns[ethSrcOffset:ethSrcOffset+6])
	copy(r.limKey[6:], ns[targetOffset:targetOffset+16])
	return &r.limKey
}

// conflict counts and logs (rate-limited) a frame from another host using
// an owned address: the source of a solicitation, the target of an
// advertisement.
func (r *Responder) conflict(f Frame) {
	r.stats.conflicts.Add(1)
	if ok, suppressed := r.conflictLog.Allow(r.now()); ok {
		addr := f.Source()
		if f.Type() == TypeNeighborAdvertisement {
			addr = f.Target()
		}
		r.log.Warn("NDP address conflict: another host uses an owned address",
			"addr", addr,
			"mac", f.EthernetSrc().String(),
			"type", f.Type().String(),
			"suppressed", suppressed)
	}
}
