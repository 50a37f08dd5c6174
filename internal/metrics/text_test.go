package metrics_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vif-project/vif/internal/daemon"
	"github.com/vif-project/vif/internal/metrics"
)

// parseText parses the text exposition format as node_exporter's textfile
// collector does.
func parseText(t *testing.T, b []byte) samples {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parsing the text: %v\n%s", err, b)
	}
	var list []*dto.MetricFamily
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.TimestampMs != nil {
				t.Errorf("%s has a timestamp, which the textfile collector refuses", mf.GetName())
			}
		}
		list = append(list, mf)
	}
	return index(t, list)
}

// TestWriteText checks that the text dump parses and holds what the
// registry serves, but the process and Go metrics, plus the daemon's.
func TestWriteText(t *testing.T) {
	vifs := fixture()
	var buf bytes.Buffer
	if err := metrics.WriteText(&buf, vifs, &daemon.Info{PID: 42, Goroutines: 17, RSSKiB: 8192}); err != nil {
		t.Fatal(err)
	}
	got := parseText(t, buf.Bytes())

	want := gather(t, metrics.NewRegistry(snapshotOf(vifs)))
	for k := range want {
		if !strings.HasPrefix(k, "vif_") {
			delete(want, k)
		}
	}
	want["vif_daemon_goroutines{}"] = 17
	want["vif_daemon_resident_memory_bytes{}"] = 8192 * 1024
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WriteText (-want +got):\n%s", diff)
	}
	for _, s := range []string{"# HELP vif_looped_packets_total ", "# TYPE vif_looped_packets_total counter", "# TYPE vif_mtu_bytes gauge"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("no %q in the text", s)
		}
	}
}

// TestWriteTextNoInfo checks the dump without the daemon's figures, and
// that an RSS of 0 (unknown) is left out.
func TestWriteTextNoInfo(t *testing.T) {
	for _, tt := range []struct {
		name string
		info *daemon.Info
		want []string
	}{
		{"nil", nil, nil},
		{"rss unknown", &daemon.Info{Goroutines: 5}, []string{"vif_daemon_goroutines{}"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := metrics.WriteText(&buf, fixture(), tt.info); err != nil {
				t.Fatal(err)
			}
			var daemonKeys []string
			for k := range parseText(t, buf.Bytes()) {
				if strings.HasPrefix(k, "vif_daemon_") {
					daemonKeys = append(daemonKeys, k)
				}
			}
			if diff := cmp.Diff(tt.want, daemonKeys); diff != "" {
				t.Errorf("daemon metrics (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWriteTextEmpty checks that no vifs and no daemon make an empty,
// valid file.
func TestWriteTextEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := metrics.WriteText(&buf, nil, nil); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("WriteText(nil, nil) wrote %q, want nothing", buf.String())
	}
}
