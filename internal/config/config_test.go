package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"net/netip"
)

var seedDir = filepath.Join("..", "..", "testdata", "config")

func readSeed(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(seedDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var cmpSpecs = cmp.Options{cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}), cmpopts.EquateEmpty()}

func TestParseExample(t *testing.T) {
	specs, err := Parse("example.toml", readSeed(t, "example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].Name != "hosting" || specs[1].Name != "vif0" {
		t.Fatalf("specs %+v", specs)
	}
	v := specs[1]
	if len(v.Addrs) != 2 || v.Addrs[0].String() != "192.0.2.1/32" || v.Slave != "eth0" || !v.Publish ||
		len(v.Peers) != 1 || v.Peers[0].Prefixes[0].String() != "198.51.100.0/24" || v.Peer.IsValid() {
		t.Errorf("vif0: %+v", v)
	}
	if h := specs[0]; len(h.Ranges) != 1 || len(h.Addrs) != 0 {
		t.Errorf("hosting: %+v", h)
	}
}

// Format writes what Parse reads back the same, for every key.
func TestFormatRoundTrip(t *testing.T) {
	for _, name := range []string{"example.toml", "all-keys.toml", "ipv6.toml", "over-ipv6.toml"} {
		specs, err := Parse(name, readSeed(t, name))
		if err != nil {
			t.Fatal(err)
		}
		out, err := Format(specs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse("formatted", out)
		if err != nil {
			t.Fatalf("%s: the formatted file does not parse: %v\n%s", name, err, out)
		}
		if d := cmp.Diff(specs, again, cmpSpecs); d != "" {
			t.Errorf("%s: round trip (-parsed +formatted):\n%s\n%s", name, d, out)
		}
	}
	six, err := Parse("ipv6.toml", readSeed(t, "ipv6.toml"))
	if err != nil || len(six) != 2 || six[1].Addrs[0].String() != "2001:db8:a::1/128" || six[1].Peers[0].Prefixes[0].String() != "2001:db8:b::/64" ||
		six[1].Forward[0].String() != "2001:db8:f::/64" || six[1].Routes[0].String() != "2001:db8:d::/64" ||
		six[0].Name != "hosting6" || len(six[0].Ranges) != 1 || six[0].Ranges[0].String() != "2001:db8:1::/64" {
		t.Errorf("ipv6.toml: %+v, %v", six, err)
	}
	over6, err := Parse("over-ipv6.toml", readSeed(t, "over-ipv6.toml"))
	if err != nil || len(over6) != 1 || over6[0].Local.String() != "2001:db8:ffff::1" || over6[0].Peers[0].Addr.String() != "2001:db8:ffff::2" {
		t.Errorf("over-ipv6.toml: %+v, %v", over6, err)
	}
	specs, _ := Parse("all-keys.toml", readSeed(t, "all-keys.toml"))
	v := specs[0]
	if v.Protocol != 4 || v.MTU != 1400 || v.Publish || !v.Force || v.Peer.String() != "198.18.0.2" || len(v.Peers) != 1 || len(v.Forward) != 1 || v.Local.String() != "198.18.0.1" {
		t.Errorf("all keys: %+v", v)
	}
}

// Each bad file is refused in one line naming the file, the line and
// what is wrong.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"unknown-key.toml", `unknown-key.toml:3:1: unknown key "slav"`},
		{"bad-address.toml", `bad-address.toml:3:3: bad address "192.0.2": give an address such as`},
		{"default-route.toml", "default-route.toml:3: vif vif0: 0.0.0.0/0 routes 0.0.0.0/0 into the vif"},
		{"clash.toml", "clash.toml:4: vif b: address 192.0.2.1/32 is also vif a's"},
		{"two-catch-all.toml", "two-catch-all.toml:4: vif vif0: peers 198.18.0.2 and 198.18.0.3 both lack allowed-ips"},
		{"syntax.toml", "syntax.toml:1:10: expected ']'"},
	} {
		_, err := Parse(tc.file, readSeed(t, tc.file))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v\nwant one line starting %q", tc.file, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"[vif.vif0]\naddresses = []\n", "x:1: vif vif0: it has no address"},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\nmtu = 40\n", "x:3: vif vif0: bad mtu 40"},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\nprotocol = 41\n", "x:3: vif vif0: bad protocol 41"},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\nunderlay = \"dpdk\"\n", "x:3: vif vif0: bad underlay \"dpdk\""},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\noffload = true\n", "x:3: vif vif0: bad underlay: --offload needs a tunnel"},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\noffload = true\nunderlay = \"xdp\"\n[[vif.vif0.peer]]\naddress = \"2001:db8:ff::2\"\nallowed-ips = [\"192.0.2.0/28\"]\n", "x:3: vif vif0: bad underlay: --offload carries tunnels over IPv4 only"},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\nmtu = \"big\"\n", "x:3:7: mtu: give a number, not a TOML string"},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\nforce = \"yes\"\n", "x:3:9: force: give true or false, not a TOML string"},
		{"[vif.vif0]\naddresses = [\"224.0.0.1\"]\n", "x:2:14: bad address \"224.0.0.1\": a vif address must be unicast"},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\nroutes = [\"198.51.100.1/24\"]\n", "x:3:11: bad prefix \"198.51.100.1/24\": host bits are set; did you mean 198.51.100.0/24?"},
		{"[vif.\"bad name!\"]\naddresses = [\"192.0.2.1\"]\n", "x:1: vif bad name!: bad name"},
		{"[vif.a1]\naddresses = [\"203.0.113.5\"]\n[vif.a2]\nranges = [\"203.0.113.0/24\"]\n", "x:2: vif a1: address 203.0.113.5/32 is also vif a2's"},
		{"[vif.a1]\nranges = [\"203.0.113.0/25\"]\n[vif.a2]\nranges = [\"203.0.113.0/24\"]\n", "x:3: vif a2: address 203.0.113.0/24 is also vif a1's"},
		{"[vif.a1]\naddresses = [\"2001:db8:1::5\"]\n[vif.a2]\nranges = [\"2001:db8:1::/64\"]\n", "x:2: vif a1: address 2001:db8:1::5/128 is also vif a2's"},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\nlocal = \"198.18.0.1\"\n[[vif.vif0.peer]]\naddress = \"198.18.0.1\"\n", "x:4: vif vif0: peer 198.18.0.1 is the local address"},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\nlocal = \"fe80::1\"\n", "x:3:9: bad address \"fe80::1\""},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\nlocal = \"2001:db8:ffff::1\"\n[[vif.vif0.peer]]\naddress = \"198.18.0.2\"\n", "x:4: vif vif0: peer 198.18.0.2 and 2001:db8:ffff::1 are not of one family"},
		{"[vif.vif0]\naddresses = [\"192.0.2.1\"]\nprotocol = 94\n[[vif.vif0.peer]]\naddress = \"2001:db8:ffff::2\"\n", "x:3: vif vif0: protocol 94 is defined over IPv4 only"},
	} {
		_, err := Parse("x", []byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: %v\nwant %q", tc.in, err, tc.want)
		}
	}
}

// Load reads regular files of a bounded size only.
func TestLoadRefuses(t *testing.T) {
	if _, err := Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/zero: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.toml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a file over MaxSize: %v", err)
	}
	if specs, err := Load(filepath.Join(seedDir, "example.toml")); err != nil || len(specs) != 2 {
		t.Errorf("example.toml: %v, %v", specs, err)
	}
}

// An empty file is a namespace without vifs.
func TestParseEmpty(t *testing.T) {
	specs, err := Parse("empty", []byte("# nothing yet\n"))
	if err != nil || len(specs) != 0 {
		t.Errorf("empty file: %v, %v", specs, err)
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(seedDir, "*.toml"))
	for _, s := range seeds {
		f.Add(readSeed(f, filepath.Base(s)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := Parse("fuzz", data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of more than one line: %q", err)
			}
			return
		}
		out, err := Format(specs)
		if err != nil {
			t.Fatalf("Format of parsed specs: %v", err)
		}
		again, err := Parse("formatted", out)
		if err != nil {
			t.Fatalf("formatted file does not parse: %v\n%s", err, out)
		}
		if d := cmp.Diff(specs, again, cmpSpecs); d != "" {
			t.Errorf("round trip: %s", d)
		}
	})
}
