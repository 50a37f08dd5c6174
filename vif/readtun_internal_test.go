package vif

import (
	"errors"
	"testing"

	"github.com/vif-project/vif/vif/viftest"
)

// panicTUN is a TUN whose Read panics as wireguard's GSO split does on a
// segment larger than its buffer, or with what.
type panicTUN struct {
	*viftest.TUN
	what any
}

func (p panicTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if p.what != nil {
		panic(p.what)
	}
	b := bufs[0][offset:]
	_ = b[:len(b)+8980] // the segment's length past the buffer's capacity
	return 1, nil
}

// readTUN turns the bounds panic of a segment too large for the buffers
// into errSegmentTooLarge, which the loop counts and survives; any other
// panic goes on.
func TestReadTUNSegmentTooLarge(t *testing.T) {
	bufs, sizes := newBufs(4, 1480)
	if n, err := readTUN(panicTUN{}, bufs, sizes); n != 0 || !errors.Is(err, errSegmentTooLarge) {
		t.Errorf("readTUN = %d, %v; want 0, errSegmentTooLarge", n, err)
	}
	defer func() {
		if r := recover(); r != "other" {
			t.Errorf("recovered %v, want the device's own panic", r)
		}
	}()
	readTUN(panicTUN{what: "other"}, bufs, sizes)
	t.Error("another panic was swallowed")
}
