//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The underlay ceiling: how fast one thread can push MTU-sized IP packets
// through a raw socket from namespace a to a raw socket in namespace b,
// doing nothing else. Every packet a vif tunnels takes that path (on top
// of the TUN device on each side), so no raw-socket tunnel can carry more
// on this machine. The probe uses IP protocol 253 (RFC 3692, for
// experiments), so the vifs' protocol-94 sockets do not see it.
const (
	ceilingProto = 253
	ceilingSize  = 1500 // bytes per packet, the veth's MTU
	ceilingBatch = 64
)

// ceilingResult is what the receiving side reports.
type ceilingResult struct {
	Packets int     `json:"packets"`
	Seconds float64 `json:"seconds"`
}

// runRole runs a hidden role of vifbench inside a namespace (started by
// measureCeiling through ip netns exec). It reports whether role was one.
func runRole(role string, dur time.Duration) bool {
	var err error
	switch role {
	case "":
		return false
	case "ceiling-send":
		err = ceilingSend(dur)
	case "ceiling-recv":
		err = ceilingRecv(dur)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vifbench:", err)
		os.Exit(1)
	}
	return true
}

func ceilingSend(dur time.Duration) error {
	runtime.LockOSThread()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "eth0"); err != nil {
		return err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 7<<20)
	peer := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte{198, 18, 0, 2}}
	hdrs := make([]unix.Mmsghdr, ceilingBatch)
	iovs := make([]unix.Iovec, ceilingBatch)
	for i := range hdrs {
		b := make([]byte, ceilingSize)
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], ceilingSize)
		b[6] = 0x40 // DF
		b[8] = 64
		b[9] = ceilingProto
		copy(b[12:], []byte{198, 18, 0, 1})
		copy(b[16:], []byte{198, 18, 0, 2})
		binary.BigEndian.PutUint16(b[10:], ipChecksum(b[:20]))
		iovs[i].Base = &b[0]
		iovs[i].SetLen(len(b))
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
		hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&peer))
		hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
	}
	for end := time.Now().Add(dur); time.Now().Before(end); {
		_, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), ceilingBatch, 0, 0, 0)
		if e != 0 && e != unix.EINTR && e != unix.ENOBUFS {
			return os.NewSyscallError("sendmmsg", e)
		}
	}
	return nil
}

func ceilingRecv(dur time.Duration) error {
	runtime.LockOSThread()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, ceilingProto)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 7<<20)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	hdrs := make([]unix.Mmsghdr, ceilingBatch)
	iovs := make([]unix.Iovec, ceilingBatch)
	for i := range hdrs {
		b := make([]byte, 2048)
		iovs[i].Base = &b[0]
		iovs[i].SetLen(len(b))
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
	}
	fmt.Fprintln(os.Stderr, "ready")
	var res ceilingResult
	var first, last time.Time
	deadline := time.Now().Add(dur + 5*time.Second)
	for time.Now().Before(deadline) {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), ceilingBatch,
			unix.MSG_WAITFORONE, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			if res.Packets > 0 {
				break // the sender is done
			}
			continue
		}
		if e != 0 {
			return os.NewSyscallError("recvmmsg", e)
		}
		now := time.Now()
		if res.Packets == 0 {
			first = now
		} else {
			last = now
		}
		res.Packets += int(r)
	}
	if res.Packets > 0 {
		res.Seconds = last.Sub(first).Seconds()
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func ipChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// measureCeiling runs one ceiling measurement between the namespaces of tb
// and returns the delivered rate in Gbit/s (outer bytes).
func measureCeiling(ctx context.Context, tb *testbed, o *options) (float64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	secs := strconv.FormatFloat(o.dur.Seconds(), 'f', -1, 64)
	recv := tb.b.Command(ctx, self, "-role", "ceiling-recv", "-time", secs+"s")
	recv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := &syncBuffer{}
	errOut := &syncBuffer{}
	recv.Stdout, recv.Stderr = out, errOut
	if err := recv.Start(); err != nil {
		return 0, err
	}
	defer recv.Process.Kill()
	for deadline := time.Now().Add(5 * time.Second); errOut.String() == ""; {
		if time.Now().After(deadline) {
			return 0, errors.New("ceiling receiver did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	send := tb.a.Command(ctx, self, "-role", "ceiling-send", "-time", secs+"s")
	send.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if b, err := send.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("ceiling sender: %v: %s", err, b)
	}
	if err := recv.Wait(); err != nil {
		return 0, fmt.Errorf("ceiling receiver: %v: %s", err, errOut)
	}
	var res ceilingResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil || res.Seconds == 0 {
		return 0, fmt.Errorf("ceiling receiver said %q (%v)", out, err)
	}
	return float64(res.Packets) * ceilingSize * 8 / res.Seconds / 1e9, nil
}

// syncBuffer is a bytes.Buffer that a process writes while it is read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
