// Package demo builds the throwaway network namespaces of "vif demo" and
// observes them: an Ethernet segment (a bridge) with hosts attached, ICMP
// echo from inside a host, its neighbour table, and a count of IPIP packets
// on a host's interface. Everything goes through netlink and sockets; no
// external command is needed. (It is not vif/nstest, which tests and the
// other tools use: that package decodes captures with gopacket, whose
// tables would cost the vif daemon, which is the same binary as "vif
// demo", some 10 MiB of memory.)
package demo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Prefix starts the names of every namespace the demo creates.
const Prefix = "vifdemo-"

// Lab is a set of namespaces: one segment (a bridge) and hosts on it.
type Lab struct {
	id    string
	seg   string
	hosts []*Host
}

// Host is a network namespace attached to the lab's segment by eth0.
type Host struct {
	Name  string // short name, such as "a"
	Netns string // the namespace's name in /run/netns
	Addr  netip.Prefix
	MAC   net.HardwareAddr
}

// NewLab creates the segment's namespace and its bridge.
func NewLab() (*Lab, error) {
	b := make([]byte, 3)
	rand.Read(b)
	l := &Lab{id: hex.EncodeToString(b)}
	l.seg = Prefix + l.id + "-seg"
	if err := newNamed(l.seg); err != nil {
		return nil, err
	}
	err := in(l.seg, func() error {
		if err := upByName("lo"); err != nil {
			return err
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		return netlink.LinkSetUp(br)
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// AddHost creates a host namespace with eth0 on the segment at addr.
func (l *Lab) AddHost(name, addr string) (*Host, error) {
	p, err := netip.ParsePrefix(addr)
	if err != nil {
		return nil, err
	}
	h := &Host{Name: name, Netns: Prefix + l.id + "-" + name, Addr: p}
	if err := newNamed(h.Netns); err != nil {
		return nil, err
	}
	l.hosts = append(l.hosts, h)
	hns, err := netns.GetFromName(h.Netns)
	if err != nil {
		return nil, err
	}
	defer hns.Close()
	port := "p-" + name
	err = in(l.seg, func() error {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: port},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(int(hns)),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth for %s: %w", name, err)
		}
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMaster(veth, br); err != nil {
			return err
		}
		return netlink.LinkSetUp(veth)
	})
	if err != nil {
		return nil, err
	}
	err = h.Do(func() error {
		// Keep the demo's wire quiet and to the point: IPv4 only.
		os.WriteFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", []byte("1"), 0)
		os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
		if err := upByName("lo"); err != nil {
			return err
		}
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		h.MAC = eth.Attrs().HardwareAddr
		ipnet := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
		if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: ipnet}); err != nil {
			return err
		}
		return netlink.LinkSetUp(eth)
	})
	return h, err
}

// Hosts returns the lab's hosts.
func (l *Lab) Hosts() []*Host { return l.hosts }

// Close deletes every namespace of the lab. Processes still running in
// them must be stopped first, or they keep their namespace alive (unnamed).
func (l *Lab) Close() error {
	var errs []error
	for _, h := range l.hosts {
		if err := netns.DeleteNamed(h.Netns); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := netns.DeleteNamed(l.seg); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Leftovers lists namespaces of earlier demos (for cleanup after a crash).
func Leftovers() []string {
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), Prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// Do runs fn on an OS thread inside the host's namespace.
func (h *Host) Do(fn func() error) error { return in(h.Netns, fn) }

// Sysctl writes a /proc/sys/net value inside the host, such as
// ("ipv4/conf/eth0/arp_ignore", "1").
func (h *Host) Sysctl(key, value string) error {
	return h.Do(func() error {
		return os.WriteFile("/proc/sys/net/"+key, []byte(value), 0)
	})
}

// Route adds an on-link route for prefix through eth0.
func (h *Host) Route(prefix string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return err
	}
	return h.Do(func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Scope: netlink.SCOPE_LINK,
			Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}})
	})
}

// NeighborMAC returns the MAC the host's neighbour table holds for addr.
func (h *Host) NeighborMAC(addr netip.Addr) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := h.Do(func() error {
		neighs, err := netlink.NeighList(0, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if a, ok := netip.AddrFromSlice(n.IP.To4()); ok && a == addr && len(n.HardwareAddr) == 6 {
				mac = n.HardwareAddr
				return nil
			}
		}
		return fmt.Errorf("no neighbour entry for %s", addr)
	})
	return mac, err
}

// in runs fn on an OS thread inside the named namespace.
func in(name string, fn func() error) error {
	return onThread(func() error {
		h, err := netns.GetFromName(name)
		if err != nil {
			return fmt.Errorf("namespace %s: %w", name, err)
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			return err
		}
		return fn()
	})
}

// onThread runs fn on a locked OS thread of its own, which fn may switch
// to another network namespace: the thread is switched back afterwards, or
// discarded if it cannot be.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		errc <- fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return <-errc
}

// newNamed creates a named namespace without leaving the calling
// goroutine's thread in it.
func newNamed(name string) error {
	return onThread(func() error {
		ns, err := netns.NewNamed(name)
		if err != nil {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
		return ns.Close()
	})
}

func upByName(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}
