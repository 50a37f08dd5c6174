package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where Serve answers.
const Path = "/metrics"

// Limits of the HTTP server: a scrape is a small request answered from
// memory, so anything slower or larger is a client to be rid of.
const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = time.Minute
	maxHeaderBytes    = 8 << 10
	maxInFlight       = 4
	gatherTimeout     = 10 * time.Second
	shutdownTimeout   = 5 * time.Second
)

// ErrAddress is wrapped by the errors Listen and ListenAddress return for
// an address that is not [HOST]:PORT or PORT.
var ErrAddress = errors.New("metrics: bad listen address")

// Handler returns an http.Handler serving the metrics of g in the format
// the client negotiates. A failed collection answers 500 and is logged on
// log (nil: discarded), so that a scrape fails rather than lose series
// silently. At most a few requests are served at once; the others are
// answered 503.
func Handler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:            errorLog{log},
		ErrorHandling:       promhttp.HTTPErrorOnError,
		MaxRequestsInFlight: maxInFlight,
		Timeout:             gatherTimeout,
	})
}

// errorLog is a promhttp.Logger on a slog.Logger.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) {
	l.log.Warn("serving metrics failed", "err", fmt.Sprint(v...))
}

// ListenAddress returns the address Listen listens on for addr: addr
// itself if it names a host, 127.0.0.1:PORT for a bare PORT or :PORT.
// The endpoint is loopback unless an address says otherwise, as
// 0.0.0.0:9477 or [::]:9477 do.
func ListenAddress(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = "", addr // a bare port, or else not an address
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || port != strconv.FormatUint(n, 10) {
		return "", fmt.Errorf("%w: %q: want [HOST]:PORT or PORT, PORT a number up to 65535", ErrAddress, addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Listen opens the TCP listener Serve takes, on ListenAddress(addr):
// loopback unless addr names another host. Listening apart from serving
// lets a caller report a port in use before it goes on.
//
// The endpoint has no authentication and no TLS: on an address other
// hosts reach, anyone there can read the counters (names of vifs and
// slaves, peer addresses, traffic volumes). Restrict it with a firewall,
// or keep it on loopback behind a proxy that authenticates.
func Listen(addr string) (net.Listener, error) {
	a, err := ListenAddress(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ln, nil
}

// Serve serves the metrics of g on ln at Path, until ctx is done; then it
// closes ln, lets the scrapes under way finish (for a few seconds, then
// closes them) and returns nil. Otherwise it returns the error that stopped it.
// Errors of collection are logged on log (nil: discarded).
func Serve(ctx context.Context, ln net.Listener, g prometheus.Gatherer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, Handler(g, log))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	stopped := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			stopped <- nil
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("metrics scrapes still under way at shutdown; closing them", "err", err)
			srv.Close()
		}
		stopped <- nil
	}()
	log.Info("serving metrics", "addr", ln.Addr().String(), "path", Path)
	err := srv.Serve(ln)
	close(done)
	if !errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return fmt.Errorf("metrics: %w", err)
	}
	<-stopped
	return nil
}
