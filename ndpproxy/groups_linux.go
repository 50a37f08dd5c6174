//go:build linux

package ndpproxy

import (
	"fmt"
	"runtime"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inListenNetns returns open made to run in the network namespace of the
// calling thread, and a function releasing that namespace. Listen may run
// on a thread switched into another namespace (as tests and multi-namespace
// daemons do), while the sockets for more groups are opened later, from
// whatever thread calls Add: without this they would land in the
// process's namespace, on another interface or none.
func inListenNetns(open func() (groupConn, error)) (func() (groupConn, error), func() error) {
	h, err := netns.Get()
	if err != nil {
		return open, func() error { return nil }
	}
	return func() (groupConn, error) {
		var c groupConn
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread()
			cur, e := netns.Get()
			if e != nil {
				err = e
				return // the thread stays locked and exits with the goroutine
			}
			defer cur.Close()
			if e := netns.Set(h); e != nil {
				err = e
				return
			}
			c, err = open()
			if netns.Set(cur) == nil {
				runtime.UnlockOSThread()
			}
		}()
		<-done
		return c, err
	}, h.Close
}

// allMulticast returns a function that turns the reception of all
// multicast frames on ifindex on or off for the packet socket c, as a
// membership of the socket (PACKET_ADD_MEMBERSHIP with
// PACKET_MR_ALLMULTI, which mdlayher/packet does not offer): the kernel
// counts it with the interface's other all-multicast users ("ip link"
// shows ALLMULTI while any holds it) and releases it when the socket is
// closed, even by a crash.
func allMulticast(c *packet.Conn, ifindex int) func(on bool) error {
	return func(on bool) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		op := unix.PACKET_DROP_MEMBERSHIP
		if on {
			op = unix.PACKET_ADD_MEMBERSHIP
		}
		mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_ALLMULTI}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptPacketMreq(int(fd), unix.SOL_PACKET, op, &mreq)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setsockopt PACKET_MR_ALLMULTI: %w", serr)
		}
		return nil
	}
}
