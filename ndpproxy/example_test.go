package ndpproxy_test

import (
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vif-project/vif/ndpproxy"
	"github.com/vif-project/vif/vif"
)

// A Responder publishes addresses the way vif publishes them.
var _ vif.Publisher = (*ndpproxy.Responder)(nil)

// The core: answer a solicitation read from the wire, without a Responder.
func ExampleRespond() {
	slaveMAC, _ := net.ParseMAC("02:00:00:00:00:01")
	self := &ndpproxy.Self{HardwareAddr: slaveMAC, Addr: netip.MustParseAddr("fe80::1")}
	owned := ndpproxy.NewAddrSet(netip.MustParseAddr("2001:db8::10"))

	// Who has 2001:db8::10? Tell 2001:db8::2 (02:00:00:00:00:02).
	neighbour, _ := net.ParseMAC("02:00:00:00:00:02")
	ns := ndpproxy.PutSolicitation(make([]byte, ndpproxy.ReplyLen), neighbour,
		netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::10"))

	res := ndpproxy.Respond(make([]byte, ndpproxy.ReplyLen), ns, self, owned)
	fmt.Println(res.Verdict)
	na := res.Reply
	ll, _ := na.LinkLayerAddr()
	fmt.Printf("%v > %v: %v > %v: %v is-at %v, flags %v, hop limit %d\n",
		na.EthernetSrc(), na.EthernetDst(), na.Source(), na.Destination(), na.Target(), ll, na.Flags(), na.HopLimit())
	// Output:
	// reply
	// 02:00:00:00:00:01 > 02:00:00:00:00:02: fe80::1 > 2001:db8::2: 2001:db8::10 is-at 02:00:00:00:00:01, flags SO, hop limit 255
}

// A Responder over any net.PacketConn: here an in-memory one, as in tests.
func ExampleNew() {
	conn := newMemConn() // an in-memory net.PacketConn
	slaveMAC, _ := net.ParseMAC("02:00:00:00:00:01")
	slave := &net.Interface{Index: 2, Name: "eth0", HardwareAddr: slaveMAC}
	r, err := ndpproxy.New(slave, conn, &ndpproxy.Config{
		SourceAddr:    netip.MustParseAddr("fe80::1"), // eth0's link-local address
		AnnounceCount: -1,                             // no unsolicited advertisements, to keep the output short
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Add(netip.MustParseAddr("2001:db8::10")); err != nil {
		log.Fatal(err)
	}

	// A neighbour probes for 2001:db8::10 before using it (Duplicate
	// Address Detection): it is told the address is taken.
	neighbour, _ := net.ParseMAC("02:00:00:00:00:02")
	conn.in <- ndpproxy.PutSolicitation(make([]byte, ndpproxy.ReplyLen), neighbour,
		netip.IPv6Unspecified(), netip.MustParseAddr("2001:db8::10"))

	w := <-conn.out
	na := ndpproxy.Frame(w.frame)
	fmt.Printf("%v is-at %v, flags %v, sent to %v (%v)\n", na.Target(), na.EthernetSrc(), na.Flags(), na.Destination(), w.addr)

	r.Close() // stops serving; the counters are final
	fmt.Println(r.Addrs(), r.Stats().DADAnswered)
	// Output:
	// 2001:db8::10 is-at 02:00:00:00:00:01, flags O, sent to ff02::1 (33:33:00:00:00:01)
	// [2001:db8::10] 1
}

// The common case: answer for the vif addresses on the slave interface.
// This needs CAP_NET_RAW, so the example is compiled but not run.
func ExampleListen() {
	slave, err := net.InterfaceByName("eth0")
	if err != nil {
		log.Fatal(err)
	}
	r, err := ndpproxy.Listen(slave, &ndpproxy.Config{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		log.Fatal(err) // for example, IPv6 is disabled on eth0
	}
	defer r.Close()

	// Every vif on eth0 registers its addresses; each joins its
	// solicited-node group, is announced three times, a second apart
	// (RFC 4861), and is answered from now on.
	for _, a := range []string{"2001:db8::10", "2001:db8::11"} {
		if err := r.Add(netip.MustParseAddr(a)); err != nil {
			log.Fatal(err)
		}
	}
	time.Sleep(time.Minute)
	s := r.Stats()
	fmt.Println(s.Solicitations, s.Replies, s.Conflicts, s.Drops)
}
