package control

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// thisNetns returns the inode of the test's network namespace.
func thisNetns(t *testing.T) uint64 {
	t.Helper()
	id, err := netnsID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// deadNetns returns an inode number no network namespace has.
func deadNetns(t *testing.T, n uint64) uint64 {
	t.Helper()
	live, err := liveNetns()
	if err != nil {
		t.Fatal(err)
	}
	for ; live[n]; n++ {
	}
	return n
}

// leave creates what a daemon of namespace id leaves in dir: a socket
// file (bound, then closed without removing it), an unheld lock file and
// logs, as each of want asks ("sock", "lock", "log", "log.old").
func leave(t *testing.T, dir string, id uint64, want ...string) Paths {
	t.Helper()
	q := PathsFor(dir, id)
	for _, w := range want {
		switch w {
		case "sock":
			u, err := net.ListenUnix("unix", &net.UnixAddr{Name: q.Socket, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			u.SetUnlinkOnClose(false)
			u.Close()
		case "lock":
			writeFile(t, q.Lock, "")
		case "log":
			writeFile(t, q.Log, "time=... msg=\"vif daemon exits\"\n")
		case "log.old":
			writeFile(t, q.Log+".old", "an older daemon's log\n")
		}
	}
	return q
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// Listen and Close sweep the directory: the files of a namespace that is
// gone go, logs included; of a namespace that exists, only a killed
// daemon's socket and lock go; a running daemon's files, symbolic links,
// other users' files and other names stay, and a link's target is not
// touched.
func TestSweepGoneNamespaces(t *testing.T) {
	p := testPaths(t)
	if err := ensureDir(p.Dir); err != nil {
		t.Fatal(err)
	}
	here := thisNetns(t)
	gone := deadNetns(t, 7_000_001)
	goneHeld := deadNetns(t, gone+1) // its lock held: no sweep may touch it
	goneOther := deadNetns(t, goneHeld+1)
	goneLink := deadNetns(t, goneOther+1)
	// Logs of a gone namespace whose daemon exited cleanly (no lock, no
	// socket), and the sock, lock and logs of one whose daemon was killed.
	g := leave(t, p.Dir, gone, "sock", "lock", "log", "log.old")
	gc := leave(t, p.Dir, gone+1_000_000, "log")
	if live, _ := liveNetns(); live[gone+1_000_000] {
		t.Skip("inode in use by a network namespace; run again")
	}
	// A live namespace: a killed daemon's socket and lock go, its log stays.
	h := leave(t, p.Dir, here, "sock", "lock", "log", "log.old")
	// A held lock: a daemon runs (whatever /proc says).
	hd := leave(t, p.Dir, goneHeld, "sock", "lock", "log")
	f, err := tryLock(hd.Lock, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Another user's log, a symbolic link to a file elsewhere, and names
	// that are not ours.
	o := leave(t, p.Dir, goneOther, "log")
	if err := os.Chown(o.Log, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "precious")
	writeFile(t, target, "keep me\n")
	l := PathsFor(p.Dir, goneLink)
	if err := os.Symlink(target, l.Log); err != nil {
		t.Fatal(err)
	}
	others := []string{filepath.Join(p.Dir, "net-1.log.1"), filepath.Join(p.Dir, "notes"), filepath.Join(p.Dir, "net-x.log")}
	for _, n := range others {
		writeFile(t, n, "")
	}

	ln := listen(t, p)
	for _, f := range []string{g.Socket, g.Lock, g.Log, g.Log + ".old", gc.Log, gc.Lock, h.Socket, h.Lock} {
		if exists(f) {
			t.Errorf("%s not swept", f)
		}
	}
	keep := append([]string{h.Log, h.Log + ".old", hd.Socket, hd.Lock, hd.Log, o.Log, l.Log, target}, others...)
	for _, f := range append(keep, p.Socket, p.Lock) {
		if !exists(f) {
			t.Errorf("%s swept", f)
		}
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "keep me\n" {
		t.Errorf("the symbolic link's target: %q, %v", b, err)
	}

	// Close sweeps too: what a daemon of a namespace since gone left
	// while this one ran goes when it exits.
	later := leave(t, p.Dir, deadNetns(t, goneLink+1), "log", "log.old")
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{later.Log, later.Log + ".old", p.Socket, p.Lock} {
		if exists(f) {
			t.Errorf("%s left after Close", f)
		}
	}
	for _, f := range keep {
		if !exists(f) {
			t.Errorf("%s swept by Close", f)
		}
	}
}

// liveNetns finds the test's own network namespace, and one that a mount
// alone keeps (as ip netns add makes).
func TestLiveNetns(t *testing.T) {
	live, err := liveNetns()
	if err != nil {
		t.Fatal(err)
	}
	if !live[thisNetns(t)] {
		t.Errorf("the test's own network namespace %d is not listed", thisNetns(t))
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/1/ns/net", &st); err == nil && !live[st.Ino] {
		t.Errorf("init's network namespace %d is not listed", st.Ino)
	}
	for _, s := range []string{"net:[", "net:[x]", "mnt:[4026531840]", "net:[4026531840"} {
		if _, ok := netnsInode(s); ok {
			t.Errorf("netnsInode(%q) ok", s)
		}
	}
	if id, ok := netnsInode("net:[4026531840]"); !ok || id != 4026531840 {
		t.Errorf("netnsInode: %d, %v", id, ok)
	}
}
