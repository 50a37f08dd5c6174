package vif

import "syscall"

// errBadFD is what Linux's TUN returns once its interface was deleted.
var errBadFD error = syscall.EBADFD
