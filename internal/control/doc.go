// Package control is the control socket of a network namespace's vif
// daemon: where it lives, who may use it, and how one request and one
// answer cross it.
//
// Authorisation is the kernel's. The socket is a file in Dir (/run/vif),
// a directory only root may enter (mode 0700, owned by root), so an
// ordinary user — also one who is "root" inside a user namespace of his
// own, whose uid the kernel maps back to his real one — cannot connect at
// all. The daemon checks in addition that the peer's uid, which the kernel
// records at connect(2) and reports through SO_PEERCRED translated into
// the daemon's user namespace, is its own (root): no identity is ever read
// from /proc, so an exec after connect changes nothing. The client, in
// turn, trusts an answer only from a socket in a directory owned by itself
// (root) and bound by a process of its own uid (SO_PEERCRED on the
// client's side reports the credentials the server had at listen(2)).
//
// One daemon serves a network namespace: files are named after the
// namespace's inode, and a daemon holds an flock(2) on its lock file for
// as long as it runs, which the kernel releases when it dies, however it
// dies.
//
// The exchange on a connection is three newline-terminated lines: the
// server's greeting (JSON, {"version":1,"pid":N} or {"error":"..."}), the
// client's request and the server's response. A connection that closes
// before the greeting was never served, so the client may safely retry it
// (the daemon was exiting); once the greeting is sent the server answers
// before it exits. A request the server answers with a Stream (such as a
// packet capture) goes on after the response with the stream, until the
// client closes its writing half (CallStream, Conn.CloseWrite) or the
// server ends it.
package control
