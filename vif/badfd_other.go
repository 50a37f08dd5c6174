//go:build !linux

package vif

// errBadFD has no counterpart outside Linux.
var errBadFD error
