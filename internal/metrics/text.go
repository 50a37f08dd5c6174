package metrics

import (
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/vif-project/vif/internal/daemon"
)

// WriteText writes the metrics of vifs to w in the text exposition format,
// the one node_exporter's textfile collector reads, with no timestamps.
// If info is not nil, the daemon's resident memory and goroutines it
// reports are written too, as vif_daemon_resident_memory_bytes and
// vif_daemon_goroutines; the process and Go collectors' metrics are not,
// since they would describe the caller rather than the daemon.
//
// The textfile collector may read a file while it is written: write to a
// temporary file in the same directory and rename it.
func WriteText(w io.Writer, vifs []daemon.VifStatus, info *daemon.Info) error {
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewCollector(func() ([]daemon.VifStatus, error) { return vifs, nil })); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if info != nil {
		if err := reg.Register(newInfoCollector(info)); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("metrics: writing %s: %w", mf.GetName(), err)
		}
	}
	return nil
}

// infoCollector collects the figures of a daemon.Info. An RSS of 0 means
// the daemon could not read it, and is left out.
type infoCollector struct {
	info            *daemon.Info
	rss, goroutines *prometheus.Desc
}

func newInfoCollector(info *daemon.Info) infoCollector {
	return infoCollector{
		info: info,
		rss: prometheus.NewDesc("vif_daemon_resident_memory_bytes",
			"Resident memory of the vif daemon, as it reported it.", nil, nil),
		goroutines: prometheus.NewDesc("vif_daemon_goroutines",
			"Goroutines of the vif daemon, as it reported them.", nil, nil),
	}
}

func (c infoCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.rss
	ch <- c.goroutines
}

func (c infoCollector) Collect(ch chan<- prometheus.Metric) {
	if c.info.RSSKiB > 0 {
		ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, float64(c.info.RSSKiB)*1024)
	}
	ch <- prometheus.MustNewConstMetric(c.goroutines, prometheus.GaugeValue, float64(c.info.Goroutines))
}
