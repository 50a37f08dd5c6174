package ndpproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// groupConn joins and leaves IPv6 multicast groups on one interface: an
// *ndp.Conn, whose ICMPv6 socket the kernel counts as a listener of the
// groups it joined.
type groupConn interface {
	JoinGroup(group netip.Addr) error
	LeaveGroup(group netip.Addr) error
	Close() error
}

var _ groupConn = (*ndp.Conn)(nil)

// memberships holds the solicited-node multicast groups the owned
// addresses need (RFC 4861 section 7.2.8: "A proxy MUST join the
// solicited-node multicast address(es) that correspond to the IP
// address(es) assigned to the node for which it is proxying. This SHOULD
// be done using a multicast listener discovery protocol"). Joining through
// an IPv6 socket does both: the kernel programs the interface's multicast
// filter, so the frames reach the packet socket, and it reports the group
// with MLD, so that snooping switches forward them. Addresses sharing
// their low 24 bits share a group; it is counted and left with the last
// of them.
//
// A socket holds a bounded number of groups (net.core.optmem_max pays for
// them): when one is full, another is opened. Not safe for concurrent use:
// the Responder's mu guards it.
//
// Ranges shorter than GroupRangeBits have too many addresses to join a
// group for each (a /64 would need all 2^24 solicited-node groups):
// while one is owned, the interface receives all multicast instead
// (allMulti, counted by wide).
type memberships struct {
	open    func() (groupConn, error) // nil: no groups are joined (New)
	release func() error              // releases what open holds; may be nil
	conns   []groupConn
	refs    map[netip.Addr]int // group: number of users
	conn    map[netip.Addr]int // group: index in conns of the socket holding it

	// allMulti turns the interface's all-multicast reception on or off
	// for the Responder's packet socket; nil: never (New).
	allMulti func(on bool) error
	wide     int // ranges that need all-multicast reception
}

// newMemberships returns the memberships that open sockets with open and
// release what open holds with release (which may be nil) when closed.
func newMemberships(open func() (groupConn, error), release func() error) *memberships {
	return &memberships{open: open, release: release, refs: map[netip.Addr]int{}, conn: map[netip.Addr]int{}}
}

// join takes one more reference on the solicited-node group of a,
// joining it if it is the first.
func (m *memberships) join(a netip.Addr) error {
	if m.open == nil {
		return nil
	}
	g := SolicitedNode(a)
	if m.refs[g] > 0 {
		m.refs[g]++
		return nil
	}
	if len(m.conns) > 0 {
		i := len(m.conns) - 1
		err := m.conns[i].JoinGroup(g)
		if err == nil {
			m.refs[g], m.conn[g] = 1, i
			return nil
		}
		if !errors.Is(err, syscall.ENOBUFS) && !errors.Is(err, syscall.ENOMEM) {
			return fmt.Errorf("ndpproxy: join %v: %w", g, err)
		}
	}
	c, err := m.open()
	if err != nil {
		return fmt.Errorf("ndpproxy: open a socket to join %v: %w", g, err)
	}
	if err := c.JoinGroup(g); err != nil {
		c.Close()
		return fmt.Errorf("ndpproxy: join %v: %w", g, err)
	}
	m.conns = append(m.conns, c)
	m.refs[g], m.conn[g] = 1, len(m.conns)-1
	return nil
}

// leave drops one reference on the solicited-node group of a, leaving it
// with the last one. It returns the error of leaving, which changes
// nothing for the caller: the group is forgotten either way.
func (m *memberships) leave(a netip.Addr) error {
	if m.open == nil {
		return nil
	}
	g := SolicitedNode(a)
	switch m.refs[g] {
	case 0:
		return nil
	case 1:
	default:
		m.refs[g]--
		return nil
	}
	i := m.conn[g]
	delete(m.refs, g)
	delete(m.conn, g)
	if err := m.conns[i].LeaveGroup(g); err != nil {
		return fmt.Errorf("ndpproxy: leave %v: %w", g, err)
	}
	return nil
}

// groups returns the number of groups joined.
func (m *memberships) groups() int { return len(m.refs) }

// joinAll takes one more reference on all-multicast reception, turning
// it on with the first.
func (m *memberships) joinAll() error {
	if m.allMulti == nil {
		return nil
	}
	if m.wide == 0 {
		if err := m.allMulti(true); err != nil {
			return fmt.Errorf("ndpproxy: receive all multicast: %w", err)
		}
	}
	m.wide++
	return nil
}

// leaveAll drops one reference on all-multicast reception, turning it off
// with the last. Its error changes nothing for the caller: the reference
// is gone either way.
func (m *memberships) leaveAll() error {
	if m.allMulti == nil || m.wide == 0 {
		return nil
	}
	if m.wide--; m.wide == 0 {
		if err := m.allMulti(false); err != nil {
			return fmt.Errorf("ndpproxy: stop receiving all multicast: %w", err)
		}
	}
	return nil
}

// allMulticast reports whether all-multicast reception is on.
func (m *memberships) allMulticast() bool { return m.allMulti != nil && m.wide > 0 }

// close closes the sockets, which leaves their groups.
func (m *memberships) close() error {
	var errs []error
	for _, c := range m.conns {
		errs = append(errs, c.Close())
	}
	if m.release != nil {
		errs = append(errs, m.release())
		m.release = nil
	}
	m.conns = nil
	clear(m.refs)
	clear(m.conn)
	// All-multicast reception belongs to the packet socket, which the
	// Responder has closed: the kernel released it then.
	m.wide = 0
	return errors.Join(errs...)
}

// openGroupConn returns a function opening an ICMPv6 socket on ifi that
// only joins groups: its ICMPv6 filter blocks every message, so nothing
// ever waits in it to be read (the Responder reads frames from its packet
// socket). The sockets are opened in the network namespace of the caller
// of openGroupConn, and the second result releases it.
func openGroupConn(ifi *net.Interface) (func() (groupConn, error), func() error) {
	return inListenNetns(func() (groupConn, error) {
		c, _, err := ndp.Listen(ifi, ndp.Unspecified)
		if err != nil {
			return nil, err
		}
		var f ipv6.ICMPFilter
		f.SetAll(true)
		if err := c.SetICMPFilter(&f); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	})
}
