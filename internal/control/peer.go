package control

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Peer is the process at the other end of a control connection, as the
// kernel recorded it: at connect(2) for a client, at listen(2) for a
// server. UID and GID are translated into the caller's user namespace; a
// uid with no mapping there reads as the overflow uid (65534).
type Peer struct {
	PID int
	UID int
	GID int
}

// peerOf returns the credentials of c's peer (SO_PEERCRED).
func peerOf(c *net.UnixConn) (Peer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("control: peer credentials: %w", os.NewSyscallError("getsockopt", cerr))
	}
	return Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}, nil
}

// describe names process pid for a human, as "pid 1234 (sleep)". The name
// is read from /proc for the message only, never to decide anything.
func describe(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil || pid <= 0 {
		return "pid " + strconv.Itoa(pid)
	}
	return fmt.Sprintf("pid %d (%q)", pid, strings.TrimSuffix(string(b), "\n")) // quoted: any user names its process
}
