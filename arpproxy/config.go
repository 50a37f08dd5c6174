package arpproxy

import (
	"errors"
	"log/slog"
	"math"
	"time"
)

// Defaults applied by a nil *Config or by zero Config fields.
const (
	// DefaultAnnounceCount is ANNOUNCE_NUM of RFC 5227: the number of
	// announcements sent for an address when it is added.
	DefaultAnnounceCount = 2
	// DefaultAnnounceInterval is ANNOUNCE_INTERVAL of RFC 5227: the time
	// between announcements.
	DefaultAnnounceInterval = 2 * time.Second
	// DefendInterval is DEFEND_INTERVAL of RFC 5227: with Config.Defend,
	// the minimum time between two defensive announcements of an address.
	DefendInterval = 10 * time.Second

	// DefaultRequesterRate is the sustained number of replies per second
	// to one requester for one address. A Linux neighbour sends at most
	// about one request per second per address while resolving and one
	// every few tens of seconds to confirm an entry, so the default
	// leaves a wide margin.
	DefaultRequesterRate = 5
	// DefaultRequesterBurst is the number of replies one requester may
	// get for one address at once before DefaultRequesterRate applies.
	DefaultRequesterBurst = 10
	// DefaultRateLimitSlots is the number of buckets of the per-requester
	// rate limit table (about 40 bytes each).
	DefaultRateLimitSlots = 1024
	// DefaultGlobalRate is the sustained number of replies per second for
	// the whole Responder. It bounds the CPU a flood from random hardware
	// addresses costs (a reply is a lookup and a sendto, a few µs: about
	// a fifth of a core at this rate), not what neighbours get: a
	// tighter global budget is shared with the flood, and neighbours that
	// must resolve an address lose to it (5000/s lost 4 of 10 fresh
	// resolutions to a 20 000/s flood). Replies are unicast and no larger
	// than requests, so answering a flood amplifies nothing; the
	// per-requester limit still stops any one asker.
	DefaultGlobalRate = 100000
	// DefaultGlobalBurst is the number of replies the Responder may send
	// at once before DefaultGlobalRate applies.
	DefaultGlobalBurst = 20000
	// DefaultConflictLogInterval is the minimum time between two conflict
	// warnings in the log; conflicts in between are counted and reported
	// as "suppressed" with the next warning.
	DefaultConflictLogInterval = 10 * time.Second
)

// maxRateLimitSlots bounds Config.RateLimitSlots.
const maxRateLimitSlots = 1 << 20

// readBufLen is the size of the serve loop's read buffer: an Ethernet
// frame of the usual MTU; ARP needs 42 bytes, longer frames are truncated
// harmlessly.
const readBufLen = 1600

// Config contains options for a Responder. A nil *Config, and the zero
// value of each field, apply the defaults.
type Config struct {
	// Logger receives lifecycle messages (Info), rate-limited warnings
	// about conflicts and I/O errors (Warn) and address changes (Debug).
	// Nothing is logged per frame. Nil discards everything.
	Logger *slog.Logger

	// AnnounceCount is the number of gratuitous ARP announcements sent
	// when an address is added (RFC 5227 ANNOUNCE_NUM). Zero means
	// DefaultAnnounceCount; a negative value disables announcements.
	AnnounceCount int
	// AnnounceInterval is the time between two announcements of an
	// address (RFC 5227 ANNOUNCE_INTERVAL). Zero or negative means
	// DefaultAnnounceInterval.
	AnnounceInterval time.Duration

	// RequesterRate is the sustained number of replies per second to one
	// requester (its hardware address) for one target address. Zero means
	// DefaultRequesterRate; a negative value or +Inf disables the
	// per-requester limit.
	RequesterRate float64
	// RequesterBurst is the number of replies one requester may get for
	// one address at once. Zero or negative means DefaultRequesterBurst.
	RequesterBurst int
	// RateLimitSlots is the size of the fixed table holding per-requester
	// buckets, rounded up to a power of two (at most 1<<20). Zero or
	// negative means DefaultRateLimitSlots. A requester whose slot is
	// taken over by another starts again with a full bucket.
	RateLimitSlots int
	// GlobalRate is the sustained number of replies per second for the
	// whole Responder. Zero means DefaultGlobalRate; a negative value or
	// +Inf disables the global limit.
	GlobalRate float64
	// GlobalBurst is the number of replies the Responder may send at
	// once. Zero or negative means DefaultGlobalBurst.
	GlobalBurst int

	// ConflictLogInterval is the minimum time between two conflict
	// warnings. Zero means DefaultConflictLogInterval; a negative value
	// disables conflict warnings (they are still counted).
	ConflictLogInterval time.Duration

	// Defend makes the Responder defend owned addresses against conflicts
	// indefinitely, as RFC 5227 section 2.4 (c) allows a host that must
	// not give up its address: when another host sends ARP with an owned
	// address as sender IP, broadcast one announcement of the address, at
	// most once per DefendInterval per address. Off by default: the
	// probes of other hosts are always answered (that defence needs no
	// option), but a host that already uses the address wins or loses by
	// the last announcement, and announcing back and forth makes it worse.
	Defend bool
}

// config is Config with the defaults applied.
type config struct {
	log                 *slog.Logger
	announceCount       int
	announceInterval    time.Duration
	requesterRate       float64
	requesterBurst      int
	slots               int
	globalRate          float64
	globalBurst         int
	conflictLogInterval time.Duration
	defend              bool
}

func (c *Config) resolve() (config, error) {
	if c == nil {
		c = &Config{}
	}
	r := config{
		log:                 c.Logger,
		announceCount:       c.AnnounceCount,
		announceInterval:    c.AnnounceInterval,
		requesterRate:       c.RequesterRate,
		requesterBurst:      c.RequesterBurst,
		slots:               c.RateLimitSlots,
		globalRate:          c.GlobalRate,
		globalBurst:         c.GlobalBurst,
		conflictLogInterval: c.ConflictLogInterval,
		defend:              c.Defend,
	}
	if math.IsNaN(r.requesterRate) || math.IsNaN(r.globalRate) {
		return config{}, errors.New("arpproxy: invalid config: rate is NaN")
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.announceCount == 0 {
		r.announceCount = DefaultAnnounceCount
	}
	if r.announceInterval <= 0 {
		r.announceInterval = DefaultAnnounceInterval
	}
	if r.requesterRate == 0 {
		r.requesterRate = DefaultRequesterRate
	}
	if r.requesterBurst <= 0 {
		r.requesterBurst = DefaultRequesterBurst
	}
	if r.slots <= 0 {
		r.slots = DefaultRateLimitSlots
	}
	r.slots = min(r.slots, maxRateLimitSlots)
	if r.globalRate == 0 {
		r.globalRate = DefaultGlobalRate
	}
	if r.globalBurst <= 0 {
		r.globalBurst = DefaultGlobalBurst
	}
	if r.conflictLogInterval == 0 {
		r.conflictLogInterval = DefaultConflictLogInterval
	}
	return r, nil
}
