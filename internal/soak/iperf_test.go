package soak

import (
	"errors"
	"testing"
)

func TestParseIperf(t *testing.T) {
	r, err := ParseIperf([]byte(`{"end":{"sum_received":{"bytes":1048576,"bits_per_second":8.5e8}}}`))
	if err != nil || r.Bytes != 1<<20 || r.BitsPerSecond != 8.5e8 {
		t.Errorf("ParseIperf = %+v, %v", r, err)
	}
	var ie IperfError
	if _, err := ParseIperf([]byte(`{"error":"unable to connect to server"}`)); !errors.As(err, &ie) || string(ie) != "unable to connect to server" {
		t.Errorf("reported error: %v", err)
	}
	if _, err := ParseIperf([]byte("iperf3: error")); err == nil || errors.As(err, &ie) {
		t.Errorf("non-JSON output: %v, want a parse error", err)
	}
}
