//go:build !linux

package ndpproxy

// inListenNetns returns open: only Linux has network namespaces.
func inListenNetns(open func() (groupConn, error)) (func() (groupConn, error), func() error) {
	return open, func() error { return nil }
}
