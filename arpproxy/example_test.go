package arpproxy_test

import (
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vif-project/vif/arpproxy"
)

// The core: answer a request read from the wire, without a Responder.
func ExampleRespond() {
	slaveMAC, _ := net.ParseMAC("02:00:00:00:00:01")
	owned := arpproxy.NewAddrSet(netip.MustParseAddr("192.0.2.1"))

	// Who has 192.0.2.1? Tell 198.51.100.2 (02:00:00:00:00:02).
	neighbour, _ := net.ParseMAC("02:00:00:00:00:02")
	req := arpproxy.PutRequest(make([]byte, arpproxy.FrameLen), neighbour,
		netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.1"))

	res := arpproxy.Respond(make([]byte, arpproxy.FrameLen), req, slaveMAC, owned)
	fmt.Println(res.Verdict)
	r := res.Reply
	fmt.Printf("%v > %v: %v is-at %v (to %v)\n", r.EthernetSrc(), r.EthernetDst(), r.SenderIP(), r.SenderHardwareAddr(), r.TargetIP())
	// Output:
	// reply
	// 02:00:00:00:00:01 > 02:00:00:00:00:02: 192.0.2.1 is-at 02:00:00:00:00:01 (to 198.51.100.2)
}

// A Responder over any net.PacketConn: here an in-memory one, as in tests.
func ExampleNew() {
	conn := newMemConn() // an in-memory net.PacketConn
	slaveMAC, _ := net.ParseMAC("02:00:00:00:00:01")
	slave := &net.Interface{Index: 2, Name: "eth0", HardwareAddr: slaveMAC}
	r, err := arpproxy.New(slave, conn, &arpproxy.Config{
		AnnounceCount: -1, // no gratuitous ARP, to keep the output short
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Add(netip.MustParseAddr("192.0.2.1")); err != nil {
		log.Fatal(err)
	}

	// A neighbour asks who has 192.0.2.1.
	neighbour, _ := net.ParseMAC("02:00:00:00:00:02")
	conn.in <- arpproxy.PutRequest(make([]byte, 60), neighbour,
		netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.1"))

	w := <-conn.out
	reply := arpproxy.Frame(w.frame)
	fmt.Printf("%v %v is-at %v, sent to %v\n", reply.Op(), reply.SenderIP(), reply.SenderHardwareAddr(), w.addr)

	r.Close() // stops serving; the counters are final
	fmt.Println(r.Addrs(), r.Stats().Replies)
	// Output:
	// reply 192.0.2.1 is-at 02:00:00:00:00:01, sent to 02:00:00:00:00:02
	// [192.0.2.1] 1
}

// The common case: answer for the vif addresses on the slave interface.
// This needs CAP_NET_RAW, so the example is compiled but not run.
func ExampleListen() {
	slave, err := net.InterfaceByName("eth0")
	if err != nil {
		log.Fatal(err)
	}
	r, err := arpproxy.Listen(slave, &arpproxy.Config{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	// Every vif on eth0 registers its addresses; each is announced twice,
	// 2 seconds apart (RFC 5227), and answered from now on.
	for _, a := range []string{"198.4.3.1", "198.4.3.2"} {
		if err := r.Add(netip.MustParseAddr(a)); err != nil {
			log.Fatal(err)
		}
	}
	time.Sleep(time.Minute)
	s := r.Stats()
	fmt.Println(s.Requests, s.Replies, s.Conflicts, s.Drops)
}
