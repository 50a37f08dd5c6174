package offload

// The programs are compiled by clang through bpf2go; the generated Go
// files and objects are committed, so that building vif needs no clang.
// Regenerate with `go generate ./internal/offload` (needs clang and
// libbpf-dev).
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go@v0.22.0 -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel,bpfeb -type tunnel -type peer -type counters -type lpm_key offload bpf/offload.c
