package control

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// entryName matches the names of the files a daemon keeps in Dir, by
// network namespace: net-ID.sock, net-ID.lock, net-ID.log and net-ID.log.old
// (the log of the namespace's previous daemon).
var entryName = regexp.MustCompile(`^net-([0-9]{1,20})\.(sock|lock|log|log\.old)$`)

// Sweep removes, from the listener's directory, what other namespaces'
// daemons left behind (see sweep). The daemon calls it now and then, so
// that a long-lived daemon clears the files of namespaces that come and go.
func (l *Listener) Sweep() {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if !closed {
		sweep(l.paths)
	}
}

// sweep removes from p.Dir the files of other namespaces' daemons that no
// one can use any more:
//
//   - the socket and lock file of a daemon that was killed (SIGKILL, a
//     crash): a lock that no process holds is a dead daemon's;
//   - every file of a network namespace that is gone, logs included.
//
// The logs of a namespace that still exists are kept: they tell why its
// daemon died, and its next daemon keeps them as .old. A namespace is
// gone when no process or thread is in it and no mount names it (as ip
// netns names one): a daemon keeps its namespace, so no live daemon's
// files are ever taken. Each namespace's lock is taken first and the
// namespaces looked for again, which makes this safe against a daemon
// starting meanwhile: it checks that its lock file is still in place once
// it holds it, and opens its log only then. Only the caller's own regular
// files and sockets with those exact names are removed; symbolic links,
// other users' files and other names are left alone. When the namespaces
// cannot be listed, only killed daemons' sockets and locks go.
func sweep(p Paths) {
	ents, err := os.ReadDir(p.Dir)
	if err != nil {
		return
	}
	files := map[uint64]map[string]bool{} // by namespace: the suffixes present
	for _, e := range ents {
		m := entryName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		id, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil || PathsFor(p.Dir, id).Lock == p.Lock {
			continue
		}
		if files[id] == nil {
			files[id] = map[string]bool{}
		}
		files[id][m[2]] = true
	}
	if len(files) == 0 {
		return
	}
	live, err := liveNetns()
	listed := err == nil
	type locked struct {
		id      uint64
		f       *os.File
		existed bool // the lock file was there: a killed daemon's
	}
	var held []locked
	for id, has := range files {
		gone := listed && !live[id]
		if !has["lock"] && !gone {
			continue // a daemon that exited cleanly, its namespace still there
		}
		q := PathsFor(p.Dir, id)
		f, err := tryLock(q.Lock, true)
		if err != nil {
			continue // held: its daemon runs (or the name is not a file of ours)
		}
		if same, _ := samePath(f, q.Lock); !same || !ours(q.Lock, 0) {
			f.Close()
			continue
		}
		held = append(held, locked{id, f, has["lock"]})
	}
	if len(held) == 0 {
		return
	}
	// Look again, holding the locks: a namespace made meanwhile with a
	// reused inode number has its files kept.
	live, err = liveNetns()
	listed = err == nil
	for _, h := range held {
		q := PathsFor(p.Dir, h.id)
		gone := listed && !live[h.id]
		if h.existed || gone {
			// Its daemon is dead (the lock was free) or its namespace
			// is: the socket answers no one. A socket whose lock file
			// is missing may be a live daemon's whose lock was removed
			// (it restores it): kept while its namespace is there.
			removeOurs(q.Socket, fs.ModeSocket)
		}
		if gone {
			removeOurs(q.Log, 0)
			removeOurs(q.Log+".old", 0)
		}
		if same, _ := samePath(h.f, q.Lock); same {
			os.Remove(q.Lock)
		}
		h.f.Close()
	}
}

// ours reports whether path is, without following a symbolic link, a
// file of type typ (0: a regular file) owned by the caller's effective
// uid.
func ours(path string, typ fs.FileMode) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != typ {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// removeOurs removes path if it is ours (ours(path, typ)).
func removeOurs(path string, typ fs.FileMode) {
	if ours(path, typ) {
		os.Remove(path)
	}
}

// liveNetns returns the inode numbers of the network namespaces that
// exist for the caller: those a process or a thread is in, and those a
// mount of this mount namespace names (ip netns keeps one per name in
// /run/netns). A namespace kept only by an open file descriptor is not
// listed. It fails when /proc cannot be read.
func liveNetns() (map[uint64]bool, error) {
	live := map[uint64]bool{}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	add := func(link string) {
		if v, err := os.Readlink(link); err == nil {
			if id, ok := netnsInode(v); ok {
				live[id] = true
			}
		}
	}
	for _, pe := range procs {
		if _, err := strconv.Atoi(pe.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", pe.Name())
		add(filepath.Join(dir, "ns", "net"))
		tasks, _ := os.ReadDir(filepath.Join(dir, "task"))
		for _, te := range tasks {
			if te.Name() != pe.Name() {
				add(filepath.Join(dir, "task", te.Name(), "ns", "net"))
			}
		}
	}
	if len(live) == 0 {
		return nil, errors.New("control: no process found in /proc")
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "36 35 0:4 net:[4026532177] /run/netns/blue rw - nsfs nsfs rw":
		// the fourth field is the mount's root, the namespace for nsfs.
		fields := strings.Fields(sc.Text())
		if len(fields) >= 4 {
			if id, ok := netnsInode(fields[3]); ok {
				live[id] = true
			}
		}
	}
	return live, sc.Err()
}

// netnsInode parses "net:[4026531840]", the name of a network namespace's
// nsfs file.
func netnsInode(s string) (uint64, bool) {
	n, ok := strings.CutPrefix(s, "net:[")
	if !ok {
		return 0, false
	}
	n, ok = strings.CutSuffix(n, "]")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(n, 10, 64)
	return id, err == nil
}
