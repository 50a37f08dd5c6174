package soak

import (
	"encoding/json"
	"fmt"
)

// IperfResult is what an "iperf3 -J" client run received, from the
// server's side (end.sum_received).
type IperfResult struct {
	Bytes         uint64
	BitsPerSecond float64
}

// IperfError is an error iperf3 reported in its JSON output.
type IperfError string

func (e IperfError) Error() string { return string(e) }

// ParseIperf reads the JSON output of an "iperf3 -J" client run. An error
// iperf3 reported in its output is returned as an IperfError; output that
// is not iperf3's JSON gives another error.
func ParseIperf(out []byte) (IperfResult, error) {
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Bytes         uint64  `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	err := json.Unmarshal(out, &res)
	r := IperfResult{Bytes: res.End.SumReceived.Bytes, BitsPerSecond: res.End.SumReceived.BitsPerSecond}
	switch {
	case res.Error != "":
		return r, IperfError(res.Error)
	case err != nil:
		return r, fmt.Errorf("iperf3 -J output: %w", err)
	}
	return r, nil
}
