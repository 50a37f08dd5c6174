package metrics_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/internal/metrics"
)

func TestListenAddress(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		err      bool
	}{
		{in: "9477", want: "127.0.0.1:9477"},
		{in: ":9477", want: "127.0.0.1:9477"},
		{in: "0", want: "127.0.0.1:0"},
		{in: "127.0.0.1:9477", want: "127.0.0.1:9477"},
		{in: "[::1]:9477", want: "[::1]:9477"},
		{in: "0.0.0.0:9477", want: "0.0.0.0:9477"},
		{in: "[::]:9477", want: "[::]:9477"},
		{in: "192.0.2.1:9477", want: "192.0.2.1:9477"},
		{in: "localhost:9477", want: "localhost:9477"},
		{in: "", err: true},
		{in: "127.0.0.1", err: true},
		{in: "65536", err: true},
		{in: "-1", err: true},
		{in: "+80", err: true},
		{in: "080", err: true},
		{in: "http", err: true},
		{in: "127.0.0.1:", err: true},
		{in: "::1", err: true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := metrics.ListenAddress(tt.in)
			if tt.err {
				if !errors.Is(err, metrics.ErrAddress) {
					t.Errorf("ListenAddress(%q) = %q, %v; want an error wrapping ErrAddress", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ListenAddress(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestServe scrapes a served registry over HTTP, checks its values, then
// stops it and checks that nothing is left running.
func TestServe(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := metrics.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	vifs := fixture()
	go func() { served <- metrics.Serve(ctx, ln, metrics.NewRegistry(snapshotOf(vifs)), nil) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := client.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	resp, body := get("/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	got := parseText(t, body)
	for k, want := range map[string]float64{
		`vif_looped_packets_total{vif="vif0"}`:                                    101,
		`vif_dropped_packets_total{reason="rx_checksum",vif="vif0"}`:              110,
		`vif_peer_path_mtu_bytes{peer="192.0.2.21",vif="vif0"}`:                   1380,
		`vif_arp_requests_total{slave="eth0"}`:                                    401,
		`vif_arp_dropped_frames_total{reason="arp_from_the_future",slave="eth2"}`: 509,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	for _, k := range []string{"process_resident_memory_bytes{}", "go_goroutines{}"} {
		if got[k] <= 0 {
			t.Errorf("%s = %v, want > 0", k, got[k])
		}
	}
	if resp, _ := get("/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /: %s, want 404", resp.Status)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10 s after its context was cancelled")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("the listener still accepts after Serve returned")
	}
}

// TestServeSnapshotError checks that a failed snapshot fails the scrape.
func TestServeSnapshotError(t *testing.T) {
	ln, err := metrics.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	reg := metrics.NewRegistry(func() ([]daemon.VifStatus, error) { return nil, errors.New("no show today") })
	go func() { served <- metrics.Serve(ctx, ln, reg, nil) }()
	defer func() { cancel(); <-served }()

	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + metrics.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("GET /metrics with a failing snapshot: %s, want 500", resp.Status)
	}
}

// TestListenInUse checks that a port in use is reported by Listen.
func TestListenInUse(t *testing.T) {
	ln, err := metrics.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln2, err := metrics.Listen(ln.Addr().String()); err == nil {
		ln2.Close()
		t.Errorf("Listen(%s) twice succeeded", ln.Addr())
	}
}
