package ndpproxy

import "errors"

// Errors returned by the Responder.
var (
	// ErrClosed is returned by Add, AddRange, Announce, SetHardwareAddr,
	// SetSourceAddr and Probe after Close.
	ErrClosed = errors.New("ndpproxy: responder closed")
	// ErrInvalidAddr is wrapped by the error Add returns for an address
	// a host cannot publish: not IPv6, unspecified, loopback, multicast,
	// IPv4-mapped or link-local; by the error AddRange returns for a
	// prefix it does not take; and by the error SetSourceAddr returns for
	// an address that is not an IPv6 unicast address.
	ErrInvalidAddr = errors.New("ndpproxy: invalid address")
	// ErrNotOwned is returned by Announce for an address that was not
	// added.
	ErrNotOwned = errors.New("ndpproxy: address not owned")
	// ErrInterface is wrapped by the error New and Listen return for an
	// interface without a unicast 6-byte Ethernet hardware address or,
	// when Config.SourceAddr is not set, without an IPv6 link-local
	// address.
	ErrInterface = errors.New("ndpproxy: not an Ethernet interface with IPv6")
)
