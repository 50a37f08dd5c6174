package control

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Dir holds the daemons' control sockets, lock files and logs, one set per
// network namespace. Only root may enter it.
const Dir = "/run/vif"

// Paths names the files of one network namespace's daemon.
type Paths struct {
	Dir    string // the directory that holds the others
	Socket string // the control socket
	Lock   string // held with flock(2) by the running daemon
	Log    string // a background daemon's log
}

// PathsFor returns the files of the daemon of the network namespace with
// inode netnsID, in dir.
func PathsFor(dir string, netnsID uint64) Paths {
	base := filepath.Join(dir, "net-"+strconv.FormatUint(netnsID, 10))
	return Paths{Dir: dir, Socket: base + ".sock", Lock: base + ".lock", Log: base + ".log"}
}

// ThisNetns returns the files, in Dir, of the daemon of the calling
// thread's network namespace.
func ThisNetns() (Paths, error) {
	id, err := netnsID()
	if err != nil {
		return Paths{}, err
	}
	return PathsFor(Dir, id), nil
}

// netnsID returns the inode of the calling thread's network namespace.
// Linux reuses a namespace's inode only once the namespace is gone, and
// with it every process of its daemon.
func netnsID() (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("control: finding the network namespace: %w", os.NewSyscallError("stat", err))
	}
	return st.Ino, nil
}
