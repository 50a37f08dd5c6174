//go:build !linux

package arpproxy

import (
	"log/slog"
	"net"
)

func newFrameIO(conn net.PacketConn, _ *slog.Logger) frameIO { return newConnIO(conn) }
