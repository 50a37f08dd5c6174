package daemon

import (
	"encoding/json"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vif-project/vif/internal/control"
)

// Handler returns the control.Handler that serves requests with d. info
// describes the daemon process in show answers. Every up and down is
// logged with the caller's uid and pid, as the kernel recorded them.
func (d *Daemon) Handler(info Info) control.Handler {
	return func(p control.Peer, b []byte) []byte {
		resp := d.answer(p, b, info)
		out, err := json.Marshal(resp)
		if err != nil { // cannot happen with these types; say so rather than hang
			out, _ = json.Marshal(Response{Error: "encoding the answer: " + err.Error()})
		}
		return out
	}
}

func (d *Daemon) answer(p control.Peer, b []byte, info Info) Response {
	req, err := DecodeRequest(b)
	if err != nil {
		return failed(err)
	}
	if !req.Deadline.IsZero() && time.Now().After(req.Deadline) {
		// The command gave up waiting (the daemon was stopped or slow):
		// acting now would do what it reported as failed.
		return Response{Error: "request expired before the daemon took it; nothing was done"}
	}
	switch req.Op {
	case OpUp:
		d.log.Info("control request", "op", req.Op, "vif", req.Up.Name, "uid", p.UID, "pid", p.PID)
		st, err := d.Up(Spec{LinkConfig: *req.Up, Force: req.Force, OuterFragments: req.OuterFragments})
		if err == nil && !req.Deadline.IsZero() && time.Now().After(req.Deadline) {
			// Its command has given up and reports a failure: make
			// that true.
			d.Down(req.Up.Name)
			err = errors.New("the vif came up after the command's deadline and was removed again; raise --timeout")
		}
		if err != nil {
			d.log.Info("control request failed", "op", req.Op, "vif", req.Up.Name, "uid", p.UID, "pid", p.PID, "err", err)
			return failed(err)
		}
		return Response{OK: true, Vifs: []VifStatus{st}, Daemon: &info}
	case OpDown:
		d.log.Info("control request", "op", req.Op, "vif", req.Name, "uid", p.UID, "pid", p.PID)
		if err := d.Down(req.Name); err != nil {
			d.log.Info("control request failed", "op", req.Op, "vif", req.Name, "uid", p.UID, "pid", p.PID, "err", err)
			return failed(err)
		}
		return Response{OK: true}
	case OpSet:
		d.log.Info("control request", "op", req.Op, "vif", req.Name, "peer", req.Peer, "addr", req.Addr, "route", req.Route,
			"mtu", req.MTU, "remove", req.Remove, "uid", p.UID, "pid", p.PID)
		var err error
		switch {
		case req.Peer != nil && req.Remove:
			err = d.RemovePeer(req.Name, req.Peer.Addr)
		case req.Peer != nil:
			err = d.SetPeer(req.Name, *req.Peer)
		case req.Addr != nil:
			err = d.ChangeAddr(req.Name, *req.Addr, req.Remove, req.Force)
		case req.Route != nil:
			err = d.ChangeRoute(req.Name, *req.Route, req.Remove)
		default:
			err = d.SetMTU(req.Name, req.MTU, req.OuterFragments)
		}
		if err != nil {
			d.log.Info("control request failed", "op", req.Op, "vif", req.Name, "uid", p.UID, "pid", p.PID, "err", err)
			return failed(err)
		}
		vifs, _ := d.Show(req.Name)
		return Response{OK: true, Vifs: vifs, Daemon: &info}
	case OpApply:
		d.log.Info("control request", "op", req.Op, "vifs", len(req.Vifs), "uid", p.UID, "pid", p.PID)
		changes, err := d.Apply(req.Vifs)
		for _, c := range changes {
			d.log.Info("applied", "change", c)
		}
		if err != nil {
			d.log.Info("control request failed", "op", req.Op, "uid", p.UID, "pid", p.PID, "err", err)
			r := failed(err)
			r.Changes = changes
			return r
		}
		return Response{OK: true, Changes: changes, Daemon: &info}
	case OpCapture:
		return Response{Error: "capture is served by a daemon's StreamHandler only"}
	default: // OpShow
		vifs, err := d.show(req.Name, req.Config)
		if err != nil {
			return failed(err)
		}
		info.Goroutines = runtime.NumGoroutine()
		info.RSSKiB = selfRSS()
		return Response{OK: true, Vifs: vifs, Daemon: &info}
	}
}

// failed answers a request that failed with err.
func failed(err error) Response {
	return Response{Error: err.Error(), Refused: Refused(err)}
}

// selfRSS returns this process's resident set size in KiB (0 if unknown).
func selfRSS() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}
