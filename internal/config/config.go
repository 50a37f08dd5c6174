// Package config reads and writes vif's configuration files: the vifs of
// one network namespace, in TOML, as "vif apply" and "vif serve" take
// them and "vif show --config" prints them.
//
//	# /etc/vif/vif.toml
//	[vif.vif0]
//	addresses = ["192.0.2.1", "192.0.2.2/32"]
//	slave = "eth0"
//	routes = ["198.51.100.0/24"]
//
//	[[vif.vif0.peer]]
//	address = "198.18.0.2"
//	allowed-ips = ["198.51.100.0/24"]
//
// Each key is the long flag of "vif up" it stands for; README.md lists
// them all. Errors name the file, line and column of what is wrong.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/internal/inet"
	"github.com/vif-project/vif/ipip"
	"github.com/vif-project/vif/vif"
)

// file is the TOML shape of a configuration file.
type file struct {
	Vif map[string]vifTable `toml:"vif"`
}

type vifTable struct {
	Addresses    []address `toml:"addresses,omitempty"`
	Ranges       []prefix  `toml:"ranges,omitempty"`
	Slave        string    `toml:"slave,omitempty"`
	Local        unicast   `toml:"local,omitzero"`
	Protocol     int       `toml:"protocol,omitempty"`
	MTU          int       `toml:"mtu,omitempty"`
	Routes       []prefix  `toml:"routes,omitempty"`
	Forward      []prefix  `toml:"forward,omitempty"`
	ARPProxy     *bool     `toml:"arp-proxy,omitempty"`
	Force        bool      `toml:"force,omitempty"`
	DefaultRoute bool      `toml:"default-route,omitempty"`
	OuterFrags   bool      `toml:"outer-fragments,omitempty"`
	Underlay     string    `toml:"underlay,omitempty"`
	Offload      bool      `toml:"offload,omitempty"`
	Peer         []peer    `toml:"peer,omitempty"`
}

type peer struct {
	Address    unicast  `toml:"address"`
	AllowedIPs []prefix `toml:"allowed-ips,omitempty"`
}

// address is a vif address: ADDR (a /32) or ADDR/LEN.
type address netip.Prefix

func (a *address) UnmarshalText(b []byte) error {
	p, err := ParseAddr(string(b))
	*a = address(p)
	return err
}

// ParseAddr parses a vif address: ADDR (a /32 or /128 host address) or
// ADDR/LEN, IPv4 or IPv6, that vif.IsHostAddr accepts.
func ParseAddr(s string) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var ip netip.Addr
		if ip, err = netip.ParseAddr(s); err == nil && ip.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("bad address %q: a vif address has no zone: leave out %%%s", s, ip.Zone())
		}
		if err == nil {
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
	}
	switch {
	case err != nil:
		return netip.Prefix{}, fmt.Errorf("bad address %q: give an address such as 192.0.2.1, 192.0.2.1/32 or 2001:db8::1", s)
	case p.Addr().Is4In6():
		return netip.Prefix{}, fmt.Errorf("bad address %q: give an IPv4 address as such (%s)", s, p.Addr().Unmap())
	case p.Addr().Is6() && !vif.IsHostAddr(p.Addr()):
		return netip.Prefix{}, fmt.Errorf("bad address %q: a vif address must be unicast (not ::, ::1, multicast or link-local)", s)
	case p.Addr().Is6() && p.Bits() != 128:
		return netip.Prefix{}, fmt.Errorf("bad address %q: give an IPv6 address as /128 (networks behind a peer are its prefixes)", s)
	case !vif.IsHostAddr(p.Addr()):
		return netip.Prefix{}, fmt.Errorf("bad address %q: a vif address must be unicast (not 0/8, 127/8, multicast or broadcast)", s)
	}
	return p, nil
}

func (a address) MarshalText() ([]byte, error) {
	p := netip.Prefix(a)
	if p.Bits() == 32 {
		return p.Addr().MarshalText()
	}
	return p.MarshalText()
}

// prefix is a prefix whose host bits are zero.
type prefix netip.Prefix

func (x *prefix) UnmarshalText(b []byte) error {
	p, err := ParsePrefix("prefix", string(b))
	*x = prefix(p)
	return err
}

// ParsePrefix parses an IPv4 or IPv6 prefix whose host bits are zero (a
// route, a forward prefix, allowed-ips); errors name it as what
// ("--route"). IPv4-mapped IPv6 prefixes are refused.
func ParsePrefix(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("bad %s %q: give a prefix such as 198.51.100.0/24 or 2001:db8:b::/64", what, s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("bad %s %q: host bits are set; did you mean %s?", what, s, p.Masked())
	}
	return p, nil
}

func (x prefix) MarshalText() ([]byte, error) { return netip.Prefix(x).MarshalText() }

// unicast is an underlay address: a unicast IPv4 or IPv6 address.
type unicast netip.Addr

func (u *unicast) UnmarshalText(b []byte) error {
	a, err := ParseUnderlay("address", string(b))
	*u = unicast(a)
	return err
}

// ParseUnderlay parses an underlay address (a peer, the local address):
// a unicast IPv4 or IPv6 address (a tunnel over IPv6, RFC 2473), not
// IPv4-mapped, link-local nor zoned; errors name it as what ("--peer").
func ParseUnderlay(what, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is4In6() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("bad %s %q: give an IPv4 or IPv6 address such as 198.18.0.2 or 2001:db8:ffff::2", what, s)
	}
	if !vif.IsHostAddr(a) {
		why := inet.Why(a)
		if a.Is6() {
			why = inet.Why6(a)
		}
		return netip.Addr{}, fmt.Errorf("bad %s %q: the address is %s; a tunnel endpoint is a unicast address of the underlay, such as 198.18.0.2 or 2001:db8:ffff::2", what, s, why)
	}
	return a, nil
}

func (u unicast) MarshalText() ([]byte, error) { return netip.Addr(u).MarshalText() }
func (u unicast) IsZero() bool                 { return !netip.Addr(u).IsValid() }

// Parse reads the configuration file named name whose content is data,
// and returns its vifs sorted by name. An error names the file, line and
// column and says what is wrong and how to fix it, in one line:
// "vif.toml:4:9: bad address "192.0.2": give an IPv4 address such as
// 192.0.2.1 or 192.0.2.1/32".
func Parse(name string, data []byte) ([]daemon.Spec, error) {
	var f file
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, decodeError(name, err)
	}
	lines := keyLines(data)
	specs := make([]daemon.Spec, 0, len(f.Vif))
	for n, v := range f.Vif {
		s, err := v.spec(n)
		if err != nil {
			var ke *keyError
			if errors.As(err, &ke) {
				return nil, fmt.Errorf("%s:%d: vif %s: %v", name, lines.find("vif", n, ke.key), n, ke.err)
			}
			return nil, fmt.Errorf("%s:%d: vif %s: %v", name, lines.find("vif", n), n, err)
		}
		specs = append(specs, s)
	}
	slices.SortFunc(specs, func(a, b daemon.Spec) int { return strings.Compare(a.Name, b.Name) })
	if err := distinct(specs); err != nil {
		return nil, fmt.Errorf("%s:%d: %v", name, lines.find("vif", err.vif, "addresses"), err)
	}
	return specs, nil
}

// keyError is an error about one key of a vif's table.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return e.key + ": " + e.err.Error() }

func keyErrorf(key, format string, args ...any) error {
	return &keyError{key, fmt.Errorf(format, args...)}
}

// spec checks the vif table v of the vif name and returns its Spec.
func (v vifTable) spec(name string) (daemon.Spec, error) {
	var s daemon.Spec
	if err := vif.CheckName(name); err != nil {
		return s, fmt.Errorf("bad name %q: use 1 to 15 letters, digits, '.', '-' or '_', such as vif0", name)
	}
	s.Name, s.Slave, s.MTU, s.Force, s.OuterFragments = name, v.Slave, v.MTU, v.Force, v.OuterFrags
	s.Publish = v.ARPProxy == nil || *v.ARPProxy
	s.Local = netip.Addr(v.Local)
	for _, a := range v.Addresses {
		s.Addrs = append(s.Addrs, netip.Prefix(a))
	}
	s.Ranges = prefixes(v.Ranges)
	s.Routes = prefixes(v.Routes)
	s.Forward = prefixes(v.Forward)
	if len(s.Addrs)+len(s.Ranges) == 0 {
		return s, errors.New(`it has no address: give addresses = ["192.0.2.1"] or ranges = ["203.0.113.0/24"]`)
	}
	switch v.Underlay {
	case vif.UnderlayAuto, vif.UnderlayXDP, vif.UnderlayRaw:
		s.Underlay, s.Offload = v.Underlay, v.Offload
	default:
		return s, keyErrorf("underlay", "bad underlay %q: use \"xdp\" (AF_XDP) or \"raw\" (raw IP sockets), or leave it out to choose", v.Underlay)
	}
	switch v.Protocol {
	case 0, 94, 4:
		s.Protocol = uint8(v.Protocol)
	default:
		return s, keyErrorf("protocol", "bad protocol %d: use 94 (IPIP, the default) or 4 (RFC 2003)", v.Protocol)
	}
	if v.MTU != 0 && (v.MTU < vif.MinMTU || v.MTU > vif.MaxMTU) {
		return s, keyErrorf("mtu", "bad mtu %d: use a number from %d to %d, or leave it out for the slave's MTU minus 20 (40 over IPv6)", v.MTU, vif.MinMTU, vif.MaxMTU)
	}
	if !v.DefaultRoute {
		for _, p := range slices.Concat(s.Routes, s.Addrs) {
			if p.Bits() == 0 {
				key := "routes"
				if slices.Contains(s.Addrs, p) {
					key = "addresses"
				}
				return s, keyErrorf(key, "%s routes 0.0.0.0/0 into the vif: all of the host's traffic without a better route would go into the tunnel; set default-route = true if that is what you want", p)
			}
		}
	}
	for _, p := range v.Peer {
		a := netip.Addr(p.Address)
		if !a.IsValid() {
			return s, keyErrorf("peer", "a peer has no address: give address = \"198.18.0.2\"")
		}
		if slices.ContainsFunc(s.Peers, func(q vif.Peer) bool { return q.Addr == a }) || s.Peer == a {
			return s, keyErrorf("peer", "peer %s is given twice", a)
		}
		if a == s.Local {
			return s, keyErrorf("peer", "peer %s is the local address: a peer is the other end of the tunnel", a)
		}
		if len(p.AllowedIPs) == 0 {
			if s.Peer.IsValid() {
				return s, keyErrorf("peer", "peers %s and %s both lack allowed-ips: only one peer may take every destination the others don't", s.Peer, a)
			}
			s.Peer = a
			continue
		}
		s.Peers = append(s.Peers, vif.Peer{Addr: a, Prefixes: prefixes(p.AllowedIPs)})
	}
	// A tunnel runs over one family, that of its local address (RFC
	// 2473 over IPv6), where protocol 94, an IPv4 encapsulation, is not
	// used.
	first := s.Local
	for _, p := range v.Peer {
		a := netip.Addr(p.Address)
		switch {
		case !first.IsValid():
			first = a
		case a.Is6() != first.Is6():
			return s, keyErrorf("peer", "peer %s and %s are not of one family: a tunnel runs over IPv4 or over IPv6, not both (make another vif for the other)", a, first)
		}
	}
	if first.Is6() && s.Protocol == ipip.ProtoIPIP {
		return s, keyErrorf("protocol", "protocol 94 is defined over IPv4 only; over IPv6 (%s) IPv4 is carried as protocol 4 (RFC 2473): use protocol = 4, or leave it out", first)
	}
	if err := s.CheckUnderlay(); err != nil {
		key := "underlay"
		if s.Offload {
			key = "offload"
		}
		return s, keyErrorf(key, "%s", strings.TrimPrefix(err.Error(), "vif: "))
	}
	return s, nil
}

// clash is two vifs of one file claiming one address.
type clash struct {
	vif, other string
	addr       netip.Prefix
}

func (c *clash) Error() string {
	return fmt.Sprintf("vif %s: address %s is also vif %s's: give each address to one vif", c.vif, c.addr, c.other)
}

// distinct returns a clash if two vifs of specs claim one address.
func distinct(specs []daemon.Spec) *clash {
	owner := map[netip.Addr]string{}
	for _, s := range specs {
		for _, p := range s.Addrs {
			if o, ok := owner[p.Addr()]; ok {
				return &clash{vif: s.Name, other: o, addr: p}
			}
			owner[p.Addr()] = s.Name
		}
	}
	for k, s := range specs {
		for _, r := range s.Ranges {
			for j, o := range specs {
				if j == k {
					continue
				}
				for _, q := range o.Addrs {
					if r.Contains(q.Addr()) {
						return &clash{vif: o.Name, other: s.Name, addr: q}
					}
				}
				for _, q := range o.Ranges {
					if j > k && r.Overlaps(q) {
						return &clash{vif: o.Name, other: s.Name, addr: q}
					}
				}
			}
		}
	}
	return nil
}

func prefixes(ps []prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		out = append(out, netip.Prefix(p))
	}
	return out
}

// decodeError turns the TOML decoder's error into one line naming the
// file, line and column.
func decodeError(name string, err error) error {
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return fmt.Errorf("%s: %v", name, err)
	}
	row, col := de.Position()
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	if k := de.Key(); len(k) > 0 && strings.HasPrefix(msg, "unknown field") {
		msg = fmt.Sprintf("unknown key %q (the keys are the long flags of \"vif up\"; see \"vif apply --help\")", k[len(k)-1])
	}
	if k := de.Key(); len(k) > 0 && strings.HasPrefix(msg, "cannot decode TOML") {
		msg = fmt.Sprintf("%s: %s", k[len(k)-1], typeMismatch(msg))
	}
	return fmt.Errorf("%s:%d:%d: %s", name, row, col, msg)
}

var mismatchRE = regexp.MustCompile(`^cannot decode TOML (\w+) into (?:struct field \S+ of type|a Go value of type) (\S+)`)

// typeMismatch says the decoder's "cannot decode TOML string into struct
// field config.vifTable.Offload of type bool" in the file's terms.
func typeMismatch(msg string) string {
	m := mismatchRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	var want string
	switch t := m[2]; {
	case t == "bool":
		want = "true or false"
	case t == "int" || strings.HasPrefix(t, "uint"):
		want = "a number"
	case strings.HasPrefix(t, "[]"):
		want = `a list, such as ["192.0.2.1"]`
	case t == "string":
		want = `a string in quotes`
	default:
		want = "an address or prefix in quotes"
	}
	return fmt.Sprintf("give %s, not a TOML %s", want, m[1])
}

// lines maps dotted key paths ("vif.vif0.mtu") to the line they are on.
type lines map[string]int

// keyLines returns the lines of data's keys and table headers; data
// has decoded already.
func keyLines(data []byte) lines {
	m := lines{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		var path []string
		line := 0
		for it := e.Key(); it.Next(); {
			k := it.Node()
			path = append(path, string(k.Data))
			if line == 0 {
				line = p.Shape(k.Raw).Start.Line
				if k.Raw.Length == 0 {
					line = p.Shape(p.Range(k.Data)).Start.Line
				}
			}
		}
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = path
		case unstable.KeyValue:
			path = slices.Concat(table, path)
		}
		key := strings.Join(path, ".")
		if _, ok := m[key]; !ok {
			m[key] = line
		}
	}
	return m
}

// find returns the line of the longest known prefix of path.
func (l lines) find(path ...string) int {
	for n := len(path); n > 0; n-- {
		if line, ok := l[strings.Join(path[:n], ".")]; ok {
			return line
		}
	}
	return 1
}

// MaxSize bounds a configuration file's size.
const MaxSize = 1 << 20

// Load reads and parses the configuration file path (see Parse): a
// regular file of at most MaxSize bytes.
func Load(path string) ([]daemon.Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file: give the path of a configuration file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%s: larger than %d bytes: a configuration file is far smaller", path, MaxSize)
	}
	return Parse(path, b)
}

// Format returns specs as a configuration file that Parse reads back to
// the same specs.
func Format(specs []daemon.Spec) ([]byte, error) {
	f := file{Vif: map[string]vifTable{}}
	for _, s := range specs {
		v := vifTable{Slave: s.Slave, Local: unicast(s.Local), Protocol: int(s.Protocol), MTU: s.MTU, Force: s.Force, OuterFrags: s.OuterFragments, Underlay: s.Underlay, Offload: s.Offload}
		for _, p := range s.Addrs {
			v.Addresses = append(v.Addresses, address(p))
			v.DefaultRoute = v.DefaultRoute || p.Bits() == 0
		}
		for _, p := range s.Routes {
			v.DefaultRoute = v.DefaultRoute || p.Bits() == 0
		}
		v.Ranges, v.Routes, v.Forward = toTOML(s.Ranges), toTOML(s.Routes), toTOML(s.Forward)
		if !s.Publish {
			v.ARPProxy = new(bool)
		}
		for _, p := range s.Peers {
			v.Peer = append(v.Peer, peer{Address: unicast(p.Addr), AllowedIPs: toTOML(p.Prefixes)})
		}
		if s.Peer.IsValid() {
			v.Peer = append(v.Peer, peer{Address: unicast(s.Peer)})
		}
		f.Vif[s.Name] = v
	}
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.SetIndentTables(false)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	// The encoder opens the parent table of [vif.NAME] too: say what
	// the file is instead.
	out := bytes.TrimPrefix(b.Bytes(), []byte("[vif]\n"))
	return append([]byte("# vif configuration: \"vif apply FILE\" brings a network namespace to it\n\n"), out...), nil
}

func toTOML(ps []netip.Prefix) []prefix {
	var out []prefix
	for _, p := range ps {
		out = append(out, prefix(p))
	}
	return out
}
