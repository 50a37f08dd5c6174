// Package logattr adds to log lines an attribute whose value is looked up
// when each line is logged: the name of an interface that may be renamed
// while it is logged about. (slog's handlers format the attributes of
// Logger.With once, so a name given there goes stale.)
package logattr

import (
	"context"
	"log/slog"
)

// Dynamic returns a handler that passes each record to h with the
// attribute key set to value(), called at that moment. value must be
// cheap enough for a log line and safe for concurrent use.
func Dynamic(h slog.Handler, key string, value func() string) slog.Handler {
	return handler{h, key, value}
}

type handler struct {
	slog.Handler
	key   string
	value func() string
}

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(slog.String(h.key, h.value()))
	return h.Handler.Handle(ctx, r)
}

func (h handler) WithAttrs(as []slog.Attr) slog.Handler {
	return handler{h.Handler.WithAttrs(as), h.key, h.value}
}

func (h handler) WithGroup(g string) slog.Handler {
	return handler{h.Handler.WithGroup(g), h.key, h.value}
}
