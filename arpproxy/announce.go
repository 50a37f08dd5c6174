package arpproxy

import (
	"bytes"
	"context"
	"net/netip"
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

// announce sends the announcements of addr (RFC 5227 section 2.3) until
// done or ctx is canceled.
func (r *Responder) announce(ctx context.Context, addr netip.Addr, done chan struct{}) {
	defer r.wg.Done()
	defer close(done)
	f := PutAnnouncement(make([]byte, FrameLen), *r.mac.Load(), addr)
	dst := &packet.Addr{HardwareAddr: bytes.Clone(broadcast[:])}
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
		if ctx.Err() != nil {
			return
		}
		if _, err := r.conn.WriteTo(f, dst); err != nil {
			r.stats.writeErrors.Add(1)
			if !r.closing.Load() {
				r.log.Warn("ARP announcement failed", "addr", addr, "err", err)
			}
			continue
		}
		r.stats.announcements.Add(1)
	}
}
