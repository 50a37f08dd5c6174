//go:build !linux

package packetio

import (
	"log/slog"
	"net"
)

// New returns NewConn(conn): only Linux has a cheaper way.
func New(conn net.PacketConn, _ *slog.Logger) IO { return NewConn(conn) }
