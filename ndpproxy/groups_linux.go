//go:build linux

package ndpproxy

import (
	"runtime"

	"github.com/vishvananda/netns"
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
