//go:build !linux

package ndpproxy

import (
	"errors"

	"github.com/mdlayher/packet"
)

// inListenNetns returns open: only Linux has network namespaces.
func inListenNetns(open func() (groupConn, error)) (func() (groupConn, error), func() error) {
	return open, func() error { return nil }
}

// allMulticast returns a function that fails: only Linux has packet
// sockets.
func allMulticast(*packet.Conn, int) func(on bool) error {
	return func(bool) error { return errors.ErrUnsupported }
}
