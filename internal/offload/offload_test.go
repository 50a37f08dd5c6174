//go:build linux

package offload

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// The verifier of the running kernel accepts both programs.
func TestLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root (CAP_BPF)")
	}
	var objs offloadObjects
	if err := loadOffloadObjects(&objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("verifier: %+v", ve)
		}
		t.Fatal(err)
	}
	objs.Close()
}

// passNames names every reason of the programs.
func TestPassNames(t *testing.T) {
	spec, err := loadOffload()
	if err != nil {
		t.Fatal(err)
	}
	if n := spec.Maps["passed"].MaxEntries; int(n) != len(passNames) {
		t.Errorf("%d reasons in the program, %d names", n, len(passNames))
	}
}
