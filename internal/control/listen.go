package control

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRunning is returned by Listen when another daemon serves the network
// namespace.
var ErrRunning = errors.New("a vif daemon already serves this network namespace")

// lockWait bounds how long Listen waits for a daemon that is exiting (it
// holds the lock but has already removed its socket) to be gone.
const lockWait = 5 * time.Second

// A Listener is the control socket of a running daemon, together with the
// lock that makes it the only one of its network namespace. Its methods
// are safe for concurrent use.
type Listener struct {
	paths Paths

	mu     sync.Mutex
	u      *net.UnixListener
	sock   os.FileInfo // p.Socket as bound, to know it is still ours
	lock   *os.File
	beacon *net.UnixListener // nil if its name was taken
	closed bool
}

// Listen makes this process the daemon of the network namespace that p
// names: it creates p.Dir if needed (mode 0700, owned by the caller),
// takes p.Lock, removes a socket left by a daemon that died and binds
// p.Socket. It returns ErrRunning if another daemon serves. Close removes
// the socket and the lock file; the kernel releases the lock if the
// process dies first, and the next Listen in the directory removes the
// files such a daemon left, its log too once its namespace is gone
// (sweep).
func Listen(p Paths) (*Listener, error) {
	if err := ensureDir(p.Dir); err != nil {
		return nil, err
	}
	lock, err := takeLock(p)
	if err != nil {
		return nil, err
	}
	// The lock and socket may have been removed from under a live daemon
	// (rm -rf /run/vif), which puts them back shortly; its beacon says it
	// runs meanwhile.
	if pid := beaconHolder(p); pid != 0 {
		lock.Close()
		return nil, fmt.Errorf("%w: pid %d, restoring its files in %s", ErrRunning, pid, p.Dir)
	}
	sweep(p)
	l := &Listener{paths: p, lock: lock}
	l.beacon = listenBeacon(p)
	if err := l.bind(); err != nil {
		os.Remove(p.Lock)
		lock.Close()
		return nil, err
	}
	return l, nil
}

// bind binds p.Socket, replacing whatever the path holds (the caller holds
// the lock: any socket there is a dead daemon's, or one it lost).
func (l *Listener) bind() error {
	p := l.paths
	if err := os.Remove(p.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control: removing a stale socket: %w", err)
	}
	u, err := net.ListenUnix("unix", &net.UnixAddr{Name: p.Socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	u.SetUnlinkOnClose(false) // Close removes the file only if it is still ours
	// The directory already keeps others out; the mode says so too.
	fi, err := os.Lstat(p.Socket)
	if err == nil {
		err = os.Chmod(p.Socket, 0o600)
	}
	if err != nil {
		u.Close()
		os.Remove(p.Socket)
		return fmt.Errorf("control: %w", err)
	}
	old := l.u
	l.u, l.sock = u, fi
	if old != nil {
		old.Close() // its queued connections are dropped ungreeted: they retry
	}
	return nil
}

// Paths returns the files of the listener's daemon.
func (l *Listener) Paths() Paths { return l.paths }

// AcceptUnix waits for the next connection, across a Heal that replaced
// the socket.
func (l *Listener) AcceptUnix() (*net.UnixConn, error) {
	for {
		l.mu.Lock()
		u, closed := l.u, l.closed
		l.mu.Unlock()
		if closed {
			return nil, net.ErrClosed
		}
		c, err := u.AcceptUnix()
		if err != nil && errors.Is(err, net.ErrClosed) {
			l.mu.Lock()
			replaced := l.u != u && !l.closed
			l.mu.Unlock()
			if replaced {
				continue
			}
		}
		return c, err
	}
}

// Heal puts back the socket and lock files if someone removed them (as
// "rm -rf /run/vif" would) while the daemon runs, so that commands find it
// again. It returns what it did, or an error when another process has
// taken this namespace's lock meanwhile (a second daemon): then commands
// reach that one, not this one.
func (l *Listener) Heal() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return "", nil
	}
	p := l.paths
	var did []string
	if same, _ := samePath(l.lock, p.Lock); !same {
		if err := ensureDir(p.Dir); err != nil {
			return "", err
		}
		f, err := tryLock(p.Lock, true)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return "", fmt.Errorf("control: %s was replaced and another process holds it now: a second vif daemon serves this namespace", p.Lock)
		}
		if err != nil {
			return "", fmt.Errorf("control: %w", err)
		}
		l.lock.Close()
		l.lock = f
		did = append(did, "lock file restored")
	}
	if fi, err := os.Lstat(p.Socket); err != nil || !os.SameFile(fi, l.sock) {
		if err := l.bind(); err != nil {
			return strings.Join(did, ", "), err
		}
		did = append(did, "socket restored")
	}
	return strings.Join(did, ", "), nil
}

// Close stops accepting, removes the socket and the lock file where they
// are still this listener's, and releases the lock. It sweeps the
// directory first, as Listen does: a daemon exiting clears what the
// daemons of namespaces since gone left (its own log stays, for the next
// daemon of its namespace).
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	sweep(l.paths)
	err := l.u.Close()
	if l.beacon != nil {
		l.beacon.Close()
	}
	if fi, e := os.Lstat(l.paths.Socket); e == nil && os.SameFile(fi, l.sock) {
		os.Remove(l.paths.Socket)
	}
	if same, _ := samePath(l.lock, l.paths.Lock); same {
		os.Remove(l.paths.Lock)
	}
	l.lock.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// beaconName is the abstract unix socket a daemon holds while it runs:
// abstract names belong to the network namespace, not to the file system,
// so no one can remove it, and it goes with the process.
func beaconName(p Paths) string { return "@" + p.Socket }

// listenBeacon takes the beacon and answers whoever connects by closing
// the connection (the kernel's SO_PEERCRED is the answer). It returns nil
// if the name is taken (by an impostor: beaconHolder ignores those).
func listenBeacon(p Paths) *net.UnixListener {
	u, err := net.ListenUnix("unix", &net.UnixAddr{Name: beaconName(p), Net: "unix"})
	if err != nil {
		return nil
	}
	go func() {
		for {
			c, err := u.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return u
}

// beaconHolder returns the pid of another process of the caller's uid
// (root) holding the beacon of p, or 0.
func beaconHolder(p Paths) int {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: beaconName(p), Net: "unix"})
	if err != nil {
		return 0
	}
	defer c.Close()
	peer, err := peerOf(c)
	if err != nil || peer.UID != os.Geteuid() || peer.PID == os.Getpid() {
		return 0
	}
	return peer.PID
}

// ensureDir creates dir with mode 0700, or checks that it is a directory
// owned by the caller and closes it to others if it is open to them (as
// vif 0.1 left it).
func ensureDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("control: %w", err)
	}
	fi, err := checkDir(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("control: %w", err)
		}
	}
	return nil
}

// checkDir checks that dir is a directory (not a symbolic link) owned by
// the caller's effective uid that no one else may write to.
func checkDir(dir string) (os.FileInfo, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok {
		return nil, fmt.Errorf("control: refusing %s: it is not a directory; remove it", dir)
	}
	if int(st.Uid) != os.Geteuid() {
		if inUserNamespace() {
			return nil, fmt.Errorf("control: %s belongs to uid %d here: this process runs in a user namespace, where the host's root is not root; run vif as the host's root", dir, st.Uid)
		}
		return nil, fmt.Errorf("control: refusing %s: it belongs to uid %d, not to uid %d (root); remove it", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("control: refusing %s: others may write to it (mode %v); make it 0700", dir, fi.Mode().Perm())
	}
	return fi, nil
}

// inUserNamespace reports whether the caller's user namespace maps less
// than all uids one to one, as a namespace of "unshare -U" does (read for
// an error message only).
func inUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	return err == nil && strings.Join(strings.Fields(string(b)), " ") != "0 0 4294967295"
}

// takeLock takes the daemon lock of p. If a live daemon holds it, it
// returns ErrRunning at once while that daemon's socket exists, and waits
// up to lockWait for a daemon that is exiting (its socket already gone).
func takeLock(p Paths) (*os.File, error) {
	deadline := time.Now().Add(lockWait)
	for {
		f, err := tryLock(p.Lock, true)
		if err == nil {
			// The previous holder removes the file before it lets go: the
			// lock counts only if the path still names the locked file.
			if same, _ := samePath(f, p.Lock); same {
				return f, nil
			}
			f.Close()
			continue
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("control: locking %s: %w", p.Lock, err)
		}
		if _, err := os.Lstat(p.Socket); err == nil || time.Now().After(deadline) {
			return nil, ErrRunning
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tryLock opens path (creating it, mode 0600, with create) and takes its
// flock without waiting. It returns the locked file, or an error wrapping
// unix.EWOULDBLOCK when another process holds the lock.
func tryLock(path string, create bool) (*os.File, error) {
	flags := os.O_RDWR | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func samePath(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Lstat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}
