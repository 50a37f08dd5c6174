package ipip

import "encoding/binary"

// FragmentCount returns how many fragments of at most mtu bytes Fragment
// cuts a packet of size bytes (header without options included) into; 0
// when mtu leaves no room for 8 bytes of payload.
func FragmentCount(size, mtu int) int {
	per := (mtu - IPv4MinLen) &^ 7
	switch {
	case per < 8:
		return 0
	case size <= mtu:
		return 1
	}
	return (size - IPv4MinLen + per - 1) / per
}

// Fragment splits pkt, a valid IPv4 packet with Don't Fragment clear and
// no options (an outer header Encap wrote), into fragments of at most mtu
// bytes (RFC 791 section 3.2, "fragmentation"): each carries pkt's header
// with its Total Length, More Fragments flag and Fragment Offset set and
// its checksum computed, and a part of the payload, a multiple of 8 bytes
// but for the last. Fragment k is written at bufs[k][off:] and bufs[k] is
// resliced to its end; it returns how many it wrote. A pkt of at most mtu
// bytes is one fragment, a copy. It fails with ErrTooBig when pkt has DF
// set, when mtu leaves no room for 8 bytes of payload, or when bufs are
// too few or too short. It does not allocate.
func Fragment(pkt IPv4, mtu int, bufs [][]byte, off int) (int, error) {
	if pkt.Valid() != nil || pkt.HeaderLen() != IPv4MinLen || pkt.DF() {
		return 0, ErrTooBig
	}
	payload := pkt[IPv4MinLen:pkt.TotalLen()]
	n := FragmentCount(len(pkt[:pkt.TotalLen()]), mtu)
	if n == 0 {
		return 0, ErrTooBig
	}
	per := (mtu - IPv4MinLen) &^ 7
	if n == 1 {
		per = len(payload) // one fragment: the packet
	}
	if n > len(bufs) {
		return 0, ErrTooBig
	}
	// The packet may itself be a fragment (an inner one forwarded):
	// offsets are relative to its own, and its MF stays on the last.
	base := pkt.FragmentOffset()
	lastMF := pkt.MF()
	for k := range n {
		part := payload[k*per : min((k+1)*per, len(payload))]
		size := IPv4MinLen + len(part)
		if len(bufs[k]) < off+size {
			return 0, ErrTooBig
		}
		f := IPv4(bufs[k][off : off+size])
		copy(f, pkt[:IPv4MinLen])
		copy(f[IPv4MinLen:], part)
		binary.BigEndian.PutUint16(f[totalLenOffset:], uint16(size))
		flags := base + uint16(k*per/8)
		if k < n-1 || lastMF {
			flags |= flagMF
		}
		binary.BigEndian.PutUint16(f[flagsOffset:], flags)
		f.SetChecksum()
		bufs[k] = bufs[k][:off+size]
	}
	return n, nil
}

// FragmentHeaderLen is the length of an IPv6 Fragment header (RFC 8200
// section 4.5).
const FragmentHeaderLen = 8

// FragmentCountIPv6 returns how many fragments of at most mtu bytes
// FragmentIPv6 cuts an IPv6 packet of size bytes (fixed header included,
// no extension header) into; 0 when mtu leaves no room for 8 bytes of
// payload.
func FragmentCountIPv6(size, mtu int) int {
	per := (mtu - IPv6HeaderLen - FragmentHeaderLen) &^ 7
	switch {
	case per < 8:
		return 0
	case size <= mtu:
		return 1
	}
	return (size - IPv6HeaderLen + per - 1) / per
}

// FragmentIPv6 splits pkt, a valid IPv6 packet without extension headers
// (an outer header Encap or EncapIPv6 wrote), into fragments of at most
// mtu bytes (RFC 8200 section 4.5), as a tunnel entry point does with a
// tunnel packet larger than the path MTU (RFC 2473 section 7): each
// carries pkt's header with its Payload Length set and Next Header 44,
// then a Fragment header naming pkt's Next Header, the offset, the M flag
// and id, and a part of the payload, a multiple of 8 bytes but for the
// last. Fragment k is written at bufs[k][off:] and bufs[k] is resliced to
// its end; it returns how many it wrote. A pkt of at most mtu bytes is one
// packet, a copy without a Fragment header. It fails with ErrTooBig when
// pkt is not such a packet, when mtu leaves no room for 8 bytes of
// payload, or when bufs are too few or too short. It does not allocate.
func FragmentIPv6(pkt IPv6, mtu int, id uint32, bufs [][]byte, off int) (int, error) {
	if pkt.Valid() != nil || isExtensionHeader(pkt.NextHeader()) {
		return 0, ErrTooBig
	}
	pkt = pkt[:pkt.Len()]
	n := FragmentCountIPv6(len(pkt), mtu)
	switch {
	case n == 0 || n > len(bufs):
		return 0, ErrTooBig
	case n == 1:
		if len(bufs[0]) < off+len(pkt) {
			return 0, ErrTooBig
		}
		bufs[0] = bufs[0][:off+copy(bufs[0][off:], pkt)]
		return 1, nil
	}
	payload := pkt[IPv6HeaderLen:]
	per := (mtu - IPv6HeaderLen - FragmentHeaderLen) &^ 7
	for k := range n {
		part := payload[k*per : min((k+1)*per, len(payload))]
		size := IPv6HeaderLen + FragmentHeaderLen + len(part)
		if len(bufs[k]) < off+size {
			return 0, ErrTooBig
		}
		f := bufs[k][off : off+size]
		copy(f, pkt[:IPv6HeaderLen])
		binary.BigEndian.PutUint16(f[v6PayloadLenOffset:], uint16(size-IPv6HeaderLen))
		f[v6NextHeaderOffset] = nhFragment
		fh := f[IPv6HeaderLen:]
		fh[0], fh[1] = pkt.NextHeader(), 0
		om := uint16(k * per) // a multiple of 8: the offset in 8-byte units, shifted by 3
		if k < n-1 {
			om |= 1 // M: more fragments
		}
		binary.BigEndian.PutUint16(fh[2:], om)
		binary.BigEndian.PutUint32(fh[4:], id)
		copy(fh[FragmentHeaderLen:], part)
		bufs[k] = bufs[k][:off+size]
	}
	return n, nil
}
