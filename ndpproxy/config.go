package ndpproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"
)

// Defaults applied by a nil *Config or by zero Config fields.
const (
	// DefaultAnnounceCount is MAX_NEIGHBOR_ADVERTISEMENT of RFC 4861
	// section 10: the number of unsolicited advertisements sent for an
	// address when it is added or announced again.
	DefaultAnnounceCount = 3
	// DefaultAnnounceInterval is RETRANS_TIMER of RFC 4861 section 10:
	// section 7.2.6 wants unsolicited advertisements of an address
	// "separated by at least RetransTimer seconds".
	DefaultAnnounceInterval = time.Second
	// AnnounceGap is the least time between two unsolicited
	// advertisements of different addresses: RFC 4861 section 7.2.6 asks
	// a node with several addresses to "introduce a small delay between
	// the sending of each advertisement", so that adding many addresses
	// at once, or a new hardware address, does not burst.
	AnnounceGap = 2 * time.Millisecond

	// DefaultRequesterRate is the sustained number of replies per second
	// to one requester (its hardware address) for one target address. A
	// Linux neighbour sends at most one solicitation per second per
	// address while resolving (RETRANS_TIMER) and a few unicast ones when
	// it confirms an entry, so the default leaves a wide margin.
	DefaultRequesterRate = 5
	// DefaultRequesterBurst is the number of replies one requester may
	// get for one address at once before DefaultRequesterRate applies.
	DefaultRequesterBurst = 10
	// DefaultRateLimitSlots is the number of buckets of the per-requester
	// rate limit table (about 40 bytes each).
	DefaultRateLimitSlots = 1024
	// DefaultGlobalRate is the sustained number of replies per second for
	// the whole Responder, as for the ARP proxy: it bounds the CPU a
	// flood from random hardware addresses costs, and advertisements are
	// no larger than the solicitations they answer, so answering amplifies
	// nothing; the per-requester limit still stops any one asker.
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
// frame of the usual MTU. Longer frames are truncated, and dropped as
// DropShort if their IPv6 payload no longer fits.
const readBufLen = 1600

// Config contains options for a Responder. A nil *Config, and the zero
// value of each field, apply the defaults.
type Config struct {
	// Logger receives lifecycle messages (Info), rate-limited warnings
	// about conflicts and I/O errors (Warn) and address changes (Debug).
	// Nothing is logged per frame. Nil discards everything.
	Logger *slog.Logger

	// SourceAddr is the address advertisements are sent from. RFC 4861
	// section 4.4 wants an address of the interface; the zero value
	// means its link-local address, which Listen and New look up (and
	// fail without one: IPv6 is disabled on the interface).
	SourceAddr netip.Addr

	// Router sets the Router flag in advertisements: set it when the host
	// forwards IPv6 on the interface (RFC 4861 section 7.2.4).
	Router bool
	// Proxy makes advertisements carry Override 0, for addresses that
	// belong to nodes that may be on the link themselves (RFC 4861
	// section 7.2.8: "All solicited proxy Neighbor Advertisement messages
	// MUST have the Override flag set to zero"). Off by default: a vif's
	// addresses are this host's own, and their advertisements carry
	// Override 1 (section 7.2.4), so that neighbours take a new hardware
	// address at once.
	Proxy bool

	// AnnounceCount is the number of unsolicited advertisements sent
	// when an address is added or announced again. Zero means
	// DefaultAnnounceCount; a negative value disables announcements.
	AnnounceCount int
	// AnnounceInterval is the time between two unsolicited
	// advertisements of an address. Zero or negative means
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
}

// config is Config with the defaults applied.
type config struct {
	log                 *slog.Logger
	source              netip.Addr
	router, proxy       bool
	announceCount       int
	announceInterval    time.Duration
	requesterRate       float64
	requesterBurst      int
	slots               int
	globalRate          float64
	globalBurst         int
	conflictLogInterval time.Duration
}

func (c *Config) resolve() (config, error) {
	if c == nil {
		c = &Config{}
	}
	r := config{
		log:                 c.Logger,
		source:              c.SourceAddr,
		router:              c.Router,
		proxy:               c.Proxy,
		announceCount:       c.AnnounceCount,
		announceInterval:    c.AnnounceInterval,
		requesterRate:       c.RequesterRate,
		requesterBurst:      c.RequesterBurst,
		slots:               c.RateLimitSlots,
		globalRate:          c.GlobalRate,
		globalBurst:         c.GlobalBurst,
		conflictLogInterval: c.ConflictLogInterval,
	}
	if math.IsNaN(r.requesterRate) || math.IsNaN(r.globalRate) {
		return config{}, errors.New("ndpproxy: invalid config: rate is NaN")
	}
	if r.source.IsValid() {
		if err := checkSource(r.source); err != nil {
			return config{}, fmt.Errorf("ndpproxy: invalid config: %w", err)
		}
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

// checkSource returns an error wrapping ErrInvalidAddr if a cannot be the
// source of advertisements: it must be an IPv6 unicast address (a
// link-local one is the usual choice).
func checkSource(a netip.Addr) error {
	if !a.Is6() || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
		return fmt.Errorf("%w: source %v: want an IPv6 unicast address of the interface", ErrInvalidAddr, a)
	}
	return nil
}
