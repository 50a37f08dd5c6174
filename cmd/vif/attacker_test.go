//go:build linux

package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/vif-project/vif/internal/control"
	"github.com/vif-project/vif/ipip"
	"golang.org/x/sys/unix"
)

// The control-plane tests run this test binary a second time, as an
// ordinary user (through setpriv, in a test namespace), to attack the
// daemon's control socket. attackerEnv selects the attack; the result is
// one JSON line on standard output.
const attackerEnv = "VIF_TEST_ATTACK"

// attackResult is what an attack reports.
type attackResult struct {
	Connected int    `json:"connected"` // connections the kernel let through
	Denied    int    `json:"denied"`    // connect(2) refused with EACCES/EPERM
	Refused   int    `json:"refused"`   // greeted with the daemon's refusal
	Served    int    `json:"served"`    // greeted as a client the daemon serves
	Err       string `json:"err,omitempty"`
}

// runAttack runs the attack named by $VIF_TEST_ATTACK with the test
// binary's arguments and exits.
func runAttack(mode string, args []string) {
	var res attackResult
	paths, err := control.ThisNetns()
	if err != nil {
		res.Err = err.Error()
	} else {
		switch mode {
		case "exec":
			res = attackExec(paths, args)
		case "flood":
			d, _ := time.ParseDuration(args[0])
			res = attackFlood(paths, d)
		case "idle":
			n, _ := strconv.Atoi(args[0])
			d, _ := time.ParseDuration(args[1])
			res = attackIdle(paths, n, d)
		case "impostor":
			attackImpostor()
		case "squat":
			d, _ := time.ParseDuration(args[0])
			res = attackSquat(paths, d)
		case "ipipflood":
			n, _ := strconv.Atoi(args[1])
			res = floodIPIP(netip.MustParseAddr(args[0]), n)
		case "ipipecho":
			res = sendIPIPEcho(netip.MustParseAddr(args[0]), netip.MustParseAddr(args[1]), netip.MustParseAddr(args[2]))
		default:
			res.Err = "unknown attack " + mode
		}
	}
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

// dial connects to the control socket and counts the kernel's verdict. A
// full backlog (EAGAIN) is returned uncounted.
func dial(paths control.Paths, res *attackResult) (*net.UnixConn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: paths.Socket, Net: "unix"})
	switch {
	case err == nil:
		res.Connected++
	case errorsIsPerm(err):
		res.Denied++
	case errors.Is(err, syscall.EAGAIN):
	case res.Err == "":
		res.Err = err.Error()
	}
	return c, err
}

func errorsIsPerm(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}

// greeted reads the daemon's first line on c and counts it.
func greeted(c *net.UnixConn, res *attackResult) {
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadBytes('\n')
	var g struct {
		Version int    `json:"version"`
		Error   string `json:"error"`
	}
	switch {
	case err != nil:
	case json.Unmarshal(line, &g) != nil:
	case g.Error != "":
		res.Refused++
	case g.Version > 0:
		res.Served++
	}
}

// attackExec is the exec race: queue many connections, each with an "up"
// request already written, then exec args[1:] (a setuid-root program) with
// the connections open, so that a daemon judging the peer after the exec
// would see root.
func attackExec(paths control.Paths, args []string) attackResult {
	var res attackResult
	n, _ := strconv.Atoi(args[0])
	for k := 0; k < n; k++ {
		c, err := dial(paths, &res)
		if err != nil {
			continue
		}
		fmt.Fprintf(c, `{"op":"up","up":{"name":"evil%d","addrs":["203.0.113.%d/32"]}}`+"\n", k, 100+k)
		f, err := c.File() // a dup without FD_CLOEXEC: it survives the exec
		if err == nil {
			unix.FcntlInt(f.Fd(), unix.F_SETFD, 0)
		}
	}
	json.NewEncoder(os.Stdout).Encode(res)
	err := syscall.Exec(args[1], args[1:], os.Environ())
	res.Err = "exec: " + err.Error()
	return res
}

// attackFlood connects and disconnects as fast as it can for d.
func attackFlood(paths control.Paths, d time.Duration) attackResult {
	var res attackResult
	for end := time.Now().Add(d); time.Now().Before(end) && res.Connected+res.Denied < 1_000_000; {
		if c, err := dial(paths, &res); err == nil {
			c.Close()
		}
	}
	return res
}

// attackIdle opens up to n connections, says nothing on them, and holds
// them for d.
func attackIdle(paths control.Paths, n int, d time.Duration) attackResult {
	var res attackResult
	var conns []*net.UnixConn
	for k, end := 0, time.Now().Add(d); k < n && time.Now().Before(end); k++ {
		c, err := dial(paths, &res)
		if errors.Is(err, syscall.EAGAIN) {
			time.Sleep(time.Millisecond) // the backlog is full: let the daemon drain it
			continue
		}
		if res.Err != "" {
			break // out of file descriptors, or the like
		}
		if err == nil {
			conns = append(conns, c)
		}
	}
	time.Sleep(d)
	if len(conns) > 0 {
		greeted(conns[0], &res)
	}
	for _, c := range conns {
		c.Close()
	}
	return res
}

// attackImpostor listens on the bound socket passed as fd 3 and answers
// every request as if it had brought the vif up.
func attackImpostor() {
	if err := syscall.Listen(3, 16); err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	ln, err := net.FileListener(os.NewFile(3, "impostor"))
	if err != nil {
		fmt.Println("listener:", err)
		os.Exit(1)
	}
	fmt.Println("impostor listening")
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(0)
		}
		fmt.Fprintf(c, "{\"version\":1,\"pid\":%d}\n", os.Getpid())
		bufio.NewReader(c).ReadBytes('\n')
		fmt.Fprintln(c, `{"ok":true,"vifs":[{"name":"vif0","addrs":["192.0.2.1/32"],"slave":"eth0","protocol":94,"mtu":1480,"routes":[],"arp_proxy":false,"counters":{}}]}`)
		c.Close()
	}
}

// attackSquat takes the abstract name vif 0.1 listened on, tries to take
// the real socket's name, and holds what it got for d.
func attackSquat(paths control.Paths, d time.Duration) attackResult {
	var res attackResult
	abstract, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@vif/control", Net: "unix"})
	if err != nil {
		res.Err = "abstract: " + err.Error()
	} else {
		defer abstract.Close()
		res.Connected++ // the abstract name was ours: no permission guards it
	}
	real, err := net.ListenUnix("unix", &net.UnixAddr{Name: paths.Socket, Net: "unix"})
	if err == nil {
		res.Served++ // must never happen: we hold the daemon's socket
		defer real.Close()
	} else if errorsIsPerm(err) {
		res.Denied++
	}
	json.NewEncoder(os.Stdout).Encode(res)
	time.Sleep(d)
	return res
}

// floodIPIP sends n protocol-94 packets of 1400 bytes to dst as fast as
// the kernel takes them, from a raw socket (root), to fill a tunnel
// endpoint's receive queue. Connected counts the packets sent.
func floodIPIP(dst netip.Addr, n int) attackResult {
	pkt := make([]byte, 1420)
	ipip.IPv4(pkt).Encode(&ipip.IPv4Fields{TotalLen: uint16(len(pkt)), TTL: 64, Protocol: ipip.ProtoIPIP, Dst: dst.As4()})
	return sendRaw(dst, pkt, n)
}

// sendIPIPEcho sends to the tunnel endpoint dst one protocol-94 packet
// carrying an ICMP echo request from innerSrc to innerDst: what a peer
// spoofing a source, or aiming at a destination it may not reach, sends.
func sendIPIPEcho(dst, innerSrc, innerDst netip.Addr) attackResult {
	pkt := make([]byte, 2*ipip.IPv4MinLen+8)
	inner := pkt[ipip.IPv4MinLen:]
	ipip.IPv4(inner).Encode(&ipip.IPv4Fields{TotalLen: uint16(len(inner)), TTL: 64, Protocol: 1, Src: innerSrc.As4(), Dst: innerDst.As4()})
	icmp := inner[ipip.IPv4MinLen:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[2:], ipip.Checksum(icmp))
	ipip.IPv4(pkt).Encode(&ipip.IPv4Fields{TotalLen: uint16(len(pkt)), TTL: 64, Protocol: ipip.ProtoIPIP, Dst: dst.As4()})
	return sendRaw(dst, pkt, 1)
}

// sendRaw sends the IPv4 packet pkt (its source left to the kernel) to dst
// n times from a raw socket; Connected counts the packets sent.
func sendRaw(dst netip.Addr, pkt []byte, n int) attackResult {
	var res attackResult
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	for range n {
		if err := unix.Sendto(fd, pkt, 0, to); err != nil {
			res.Err = err.Error()
		} else {
			res.Connected++
		}
	}
	return res
}
