package xdp

import (
	"sync/atomic"
	"unsafe"
)

// A ring is one side of an AF_XDP ring shared with the kernel: this
// process is the producer of the fill and tx rings and the consumer of
// the completion and rx rings. Indices run free over the 32-bit range and
// are masked by size-1 (a power of two) to address an entry; the number of
// entries in use is producer-consumer, in modulo 2^32 arithmetic. A ring
// is used by one goroutine.
type ring struct {
	producer *uint32 // shared with the kernel
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32

	// own is the index this side moves (the producer's or the
	// consumer's); other is the last value read of the other side's.
	own   uint32
	other uint32
}

// newRing returns a ring over the shared words producer, consumer and
// flags, with size entries (a power of two).
func newRing(producer, consumer, flags *uint32, size uint32, isProducer bool) ring {
	r := ring{producer: producer, consumer: consumer, flags: flags, mask: size - 1, size: size}
	if isProducer {
		r.own = atomic.LoadUint32(producer)
		r.other = atomic.LoadUint32(consumer)
	} else {
		r.own = atomic.LoadUint32(consumer)
		r.other = atomic.LoadUint32(producer)
	}
	return r
}

// free returns the number of entries a producer at prod may fill in a ring
// of size entries whose consumer is at cons.
func free(prod, cons, size uint32) uint32 { return size - (prod - cons) }

// filled returns the number of entries a consumer at cons may take from a
// ring whose producer is at prod.
func filled(prod, cons uint32) uint32 { return prod - cons }

// reserve returns how many of n entries, from index r.own on, the
// producer may fill; it reads the consumer's index only when the last
// value read leaves too little room.
func (r *ring) reserve(n uint32) uint32 {
	f := free(r.own, r.other, r.size)
	if f < n {
		r.other = atomic.LoadUint32(r.consumer)
		f = free(r.own, r.other, r.size)
	}
	return min(f, n)
}

// submit makes n filled entries visible to the kernel.
func (r *ring) submit(n uint32) {
	r.own += n
	atomic.StoreUint32(r.producer, r.own)
}

// peek returns how many entries, up to n, from index r.own on, the
// consumer may take.
func (r *ring) peek(n uint32) uint32 {
	a := filled(r.other, r.own)
	if a < n {
		r.other = atomic.LoadUint32(r.producer)
		a = filled(r.other, r.own)
	}
	return min(a, n)
}

// release gives n taken entries back to the kernel.
func (r *ring) release(n uint32) {
	r.own += n
	atomic.StoreUint32(r.consumer, r.own)
}

// needWakeup reports whether the kernel asks to be woken (sendto, or
// poll for the fill ring) to go on with the ring (XDP_USE_NEED_WAKEUP).
func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&xdpRingNeedWakeup != 0
}

// pending reports whether a producer ring has entries the kernel has not
// consumed yet.
func (r *ring) pending() bool {
	r.other = atomic.LoadUint32(r.consumer)
	return r.other != r.own
}

// xdpRingNeedWakeup is XDP_RING_NEED_WAKEUP (linux/if_xdp.h).
const xdpRingNeedWakeup = 1

// word returns the uint32 at offset off of m.
func word(m []byte, off uint64) *uint32 {
	return (*uint32)(unsafe.Pointer(&m[off]))
}
