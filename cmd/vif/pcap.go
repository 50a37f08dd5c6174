package main

import (
	"encoding/binary"
	"io"
	"time"
)

// The pcap file format (libpcap's, with microsecond time stamps), written
// here rather than with gopacket's pcapgo: importing gopacket/layers,
// which pcapgo needs, fills tables at start-up that cost every vif
// process, the daemon included, some 20 MB of memory.
const (
	pcapMagic      = 0xa1b2c3d4 // microsecond time stamps
	pcapHeaderLen  = 24
	pcapRecordLen  = 16
	linkTypeRaw    = 101 // LINKTYPE_RAW: the packet starts with its IPv4 or IPv6 header
	pcapMajor      = 2
	pcapMinor      = 4
	pcapMaxSnapLen = 262144
)

// pcapWriter writes a pcap file of LINKTYPE_RAW packets.
type pcapWriter struct {
	w   io.Writer
	hdr [pcapHeaderLen]byte
}

// writeHeader writes the file header.
func (p *pcapWriter) writeHeader() error {
	h := p.hdr[:pcapHeaderLen]
	binary.LittleEndian.PutUint32(h[0:], pcapMagic)
	binary.LittleEndian.PutUint16(h[4:], pcapMajor)
	binary.LittleEndian.PutUint16(h[6:], pcapMinor)
	binary.LittleEndian.PutUint32(h[8:], 0)  // time zone: UTC
	binary.LittleEndian.PutUint32(h[12:], 0) // accuracy
	binary.LittleEndian.PutUint32(h[16:], pcapMaxSnapLen)
	binary.LittleEndian.PutUint32(h[20:], linkTypeRaw)
	_, err := p.w.Write(h)
	return err
}

// writePacket writes one packet of length bytes on the wire, of which
// data was kept, taken at t.
func (p *pcapWriter) writePacket(t time.Time, data []byte, length int) error {
	h := p.hdr[:pcapRecordLen]
	us := t.UnixMicro()
	binary.LittleEndian.PutUint32(h[0:], uint32(us/1e6))
	binary.LittleEndian.PutUint32(h[4:], uint32(us%1e6))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(h[12:], uint32(max(length, len(data))))
	if _, err := p.w.Write(h); err != nil {
		return err
	}
	_, err := p.w.Write(data)
	return err
}
