package ndpproxy

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/packet"
)

// startAnnouncer starts announcing st.addr unless announcements are
// disabled. r.mu must be held and no announcer of st may be running.
func (r *Responder) startAnnouncer(st *addrState) {
	if r.cfg.announceCount <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	st.stopAnnounce, st.announceDone = cancel, done
	r.wg.Add(1)
	go r.announce(ctx, st.addr, done)
}

// stopAnnouncer stops the announcer of st, if any, and waits for it. r.mu
// must be held (announcers never take it).
func (r *Responder) stopAnnouncer(st *addrState) {
	if st.stopAnnounce == nil {
		return
	}
	st.stopAnnounce()
	<-st.announceDone
	st.stopAnnounce, st.announceDone = nil, nil
}

// announce sends the unsolicited advertisements of addr (RFC 4861 section
// 7.2.6) until done or ctx is canceled: to the all-nodes address, with
// the Solicited flag clear, Config.AnnounceInterval apart and at least
// AnnounceGap after any other address's.
func (r *Responder) announce(ctx context.Context, addr netip.Addr, done chan struct{}) {
	defer r.wg.Done()
	defer close(done)
	self := r.self.Load()
	f := PutAdvertisement(make([]byte, ReplyLen), self.HardwareAddr, self.Addr, addr, self.Flags())
	dst := &packet.Addr{HardwareAddr: f.EthernetDst()}
	var t *time.Timer
	for i := range r.cfg.announceCount {
		if i > 0 {
			if t == nil {
				t = time.NewTimer(r.cfg.announceInterval)
				defer t.Stop()
			} else {
				t.Reset(r.cfg.announceInterval)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if !r.pace.wait(ctx) {
			return
		}
		if _, err := r.conn.WriteTo(f, dst); err != nil {
			r.stats.writeErrors.Add(1)
			if !r.closing.Load() {
				r.log.Warn("NDP announcement failed", "addr", addr, "err", err)
			}
			continue
		}
		r.stats.announcements.Add(1)
	}
}

// pacer spaces the announcements of different addresses AnnounceGap
// apart. Safe for concurrent use.
type pacer struct {
	mu   sync.Mutex
	next time.Time
}

// wait waits for the next free slot; it reports false if ctx ended first.
func (p *pacer) wait(ctx context.Context) bool {
	p.mu.Lock()
	now := time.Now()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(AnnounceGap)
	p.mu.Unlock()
	d := at.Sub(now)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
