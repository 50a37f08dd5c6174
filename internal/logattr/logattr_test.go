package logattr

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestDynamic(t *testing.T) {
	var b bytes.Buffer
	name := "vif0"
	log := slog.New(Dynamic(slog.NewTextHandler(&b, nil), "vif", func() string { return name })).With("a", 1)
	log.Info("first")
	name = "vifx"
	log.WithGroup("g").Info("second", "b", 2)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "a=1 vif=vif0") || !strings.Contains(lines[1], "g.vif=vifx") {
		t.Errorf("log:\n%s", b.String())
	}
}
