//go:build !linux

package vif

// offloadState has no counterpart outside Linux: there is no offload.
type offloadState struct{}

func (i *Interface) syncOffload() error               { return nil }
func (i *Interface) offloadChanged()                  {}
func (i *Interface) closeOffload()                    {}
func (i *Interface) addOffloadStats(*Stats)           {}
func (i *Interface) addOffloadPeer(*PeerStats)        {}
func (i *Interface) offloadPassed() map[string]uint64 { return nil }
