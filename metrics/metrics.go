// SPDX-License-Identifier: GPL-2.0-or-later

// Package metrics serves the supervisor's counters to Prometheus (issue
// 15), in xpra-proxy-metrics: an unprivileged, sandboxed process on a
// listener of its own (metrics-bind, or xpra-proxy-metrics.socket),
// never the root supervisor. Each scrape asks the supervisor for a
// stats.Snapshot over ipc (Metrics → MetricsReply; at most once a second,
// however often it is scraped), checks it, and writes it in Prometheus's
// text format with github.com/prometheus/client_golang. With
// encoder-socket set, it also asks the shared encoder for its counters
// (encproto Stats, EncoderAsker), at most once a second too.
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/stats"
)

// Source returns the supervisor's counters now.
type Source func() (stats.Snapshot, error)

const ns = "xpra_proxy"

var (
	descUp = prometheus.NewDesc(ns+"_up",
		"1 when the supervisor answered this scrape; 0 and nothing else when it did not.", nil, nil)
	descStart = prometheus.NewDesc(ns+"_start_time_seconds",
		"When the supervisor started, in unix seconds: every counter here counts from then (a restart starts them at 0; relays and their gauge live on).", nil, nil)
	descConns = prometheus.NewDesc(ns+"_connections_total",
		"Connections ended, by transport (tcp, ssl, ws, wss, unix; the listener's type when refused or silent) and result (relayed, denied, closed, refused-<limit>).",
		[]string{"transport", "result"}, nil)
	descLogins = prometheus.NewDesc(ns+"_logins_total",
		"Login attempts (a client's hello reached the supervisor), by transport, the auth module that judged (none: no module got that far) and result (ok, failed, error: authenticated but no relay, abandoned: gone before a verdict).",
		[]string{"transport", "module", "result"}, nil)
	descPenalties = prometheus.NewDesc(ns+"_penalties_total",
		"Penalties imposed on a source address after a failed login.", nil, nil)
	descPenalized = prometheus.NewDesc(ns+"_penalized_sources",
		"Source addresses (blocks) serving a penalty now.", nil, nil)
	descPreauth = prometheus.NewDesc(ns+"_preauth_connections",
		"Unauthenticated connections now (logging in).", nil, nil)
	descRelays = prometheus.NewDesc(ns+"_relays",
		"Relay workers alive now (attached clients), those adopted from an earlier supervisor included.", nil, nil)
	descSessions = prometheus.NewDesc(ns+"_sessions_started_total",
		"Sessions started on demand (start-session), by result (ok, failed).", []string{"result"}, nil)
	descSetup = prometheus.NewDesc(ns+"_setup_duration_seconds",
		"Time from a connection's accept to its relay worker's start, login included.", nil, nil)
	descBytes = prometheus.NewDesc(ns+"_relayed_bytes_total",
		"Bytes relayed by relays that ended, by direction (from_client, from_server), as each worker reported at its end: a live relay's bytes show when it ends; a killed worker's are not counted.",
		[]string{"direction"}, nil)
	descDirUp = prometheus.NewDesc(ns+"_directory_up",
		"1 when the shared directory (PostgreSQL, directory-uri-file) answered this proxy's last call, 0 while it is unreachable; absent without a directory.", nil, nil)
	descDirFallback = prometheus.NewDesc(ns+"_directory_fallback_logins_total",
		"Logins the postgresql module's fallback decided, whatever their result, because the shared directory was unreachable.", nil, nil)
	descDirPenalties = prometheus.NewDesc(ns+"_directory_penalties_heard_total",
		"Penalties of sources learnt from other proxies through the shared directory that lengthened this proxy's (its own count in xpra_proxy_penalties_total).", nil, nil)
)

// Collector turns a Source's snapshot into metrics, one read per scrape,
// and the encoder's counters when it has an EncoderSource.
type Collector struct {
	src Source
	enc EncoderSource // nil: no encoder-socket, no encoder families
	log *slog.Logger
}

// NewCollector collects from src, and from enc unless it is nil.
func NewCollector(src Source, enc EncoderSource, log *slog.Logger) *Collector {
	return &Collector{src: src, enc: enc, log: log}
}

// Describe sends every family's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descStart, descConns, descLogins, descPenalties,
		descPenalized, descPreauth, descRelays, descSessions, descSetup, descBytes, descDirUp, descDirFallback, descDirPenalties} {
		ch <- d
	}
	if c.enc != nil {
		for _, d := range []*prometheus.Desc{descEncUp, descEncStart, descEncFrames, descEncRefused,
			descEncConns, descEncContexts, descEncQueue} {
			ch <- d
		}
	}
}

// Collect reads the snapshot. Without one, only xpra_proxy_up 0: a gap
// in the counters is better than values that are not the supervisor's.
// The encoder's families stand apart: its own up, asked whatever the
// supervisor said.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.enc != nil {
		c.collectEncoder(ch)
	}
	sn, err := c.src()
	if err == nil {
		err = sn.Check()
	}
	if err != nil {
		c.log.Warn("metrics: no figures from the supervisor", "err", err)
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(descStart, prometheus.GaugeValue, sn.StartTime)
	for _, f := range []struct {
		d *prometheus.Desc
		c []stats.Count
	}{{descConns, sn.Connections}, {descLogins, sn.Logins}, {descSessions, sn.Sessions}} {
		for _, v := range f.c {
			ch <- prometheus.MustNewConstMetric(f.d, prometheus.CounterValue, float64(v.Value), v.Labels...)
		}
	}
	ch <- prometheus.MustNewConstMetric(descPenalties, prometheus.CounterValue, float64(sn.Penalties))
	ch <- prometheus.MustNewConstMetric(descPenalized, prometheus.GaugeValue, float64(sn.Penalized))
	ch <- prometheus.MustNewConstMetric(descPreauth, prometheus.GaugeValue, float64(sn.Preauth))
	ch <- prometheus.MustNewConstMetric(descRelays, prometheus.GaugeValue, float64(sn.Relays))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(sn.BytesFromClient), "from_client")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(sn.BytesFromServer), "from_server")
	if d := sn.Directory; d != nil {
		up := 0.0
		if d.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descDirUp, prometheus.GaugeValue, up)
		ch <- prometheus.MustNewConstMetric(descDirFallback, prometheus.CounterValue, float64(d.FallbackLogins))
		ch <- prometheus.MustNewConstMetric(descDirPenalties, prometheus.CounterValue, float64(d.PenaltiesHeard))
	}
	buckets := make(map[float64]uint64, len(sn.Setup.Bounds))
	for i, b := range sn.Setup.Bounds {
		buckets[b] = sn.Setup.Buckets[i]
	}
	ch <- prometheus.MustNewConstHistogram(descSetup, sn.Setup.Count, sn.Setup.Sum, buckets)
}

// Asker asks the supervisor over ipc, one request at a time, and reuses
// an answer younger than MinInterval: scrapes, however many, cost root
// at most one small JSON message a second.
type Asker struct {
	Conn        *ipc.Conn
	MinInterval time.Duration
	Timeout     time.Duration // of one request (0: 5 s)

	mu   sync.Mutex
	last stats.Snapshot
	at   time.Time
	now  func() time.Time
}

// Snapshot is a Source.
func (a *Asker) Snapshot() (stats.Snapshot, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now
	if a.now != nil {
		now = a.now
	}
	if !a.at.IsZero() && now().Sub(a.at) < a.MinInterval {
		return a.last, nil
	}
	timeout := a.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	if err := a.Conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return stats.Snapshot{}, fmt.Errorf("asking the supervisor: %w", err)
	}
	if err := a.Conn.Send(ipc.Message{Kind: ipc.Metrics}, nil); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			err = fmt.Errorf("%w (%v)", ipc.ErrClosed, err) // the supervisor is gone
		}
		return stats.Snapshot{}, err
	}
	m, f, _, err := a.Conn.Recv()
	if f != nil {
		f.Close()
	}
	if err != nil {
		return stats.Snapshot{}, err
	}
	if m.Kind != ipc.MetricsReply {
		return stats.Snapshot{}, fmt.Errorf("supervisor answered %q to %q", m.Kind, ipc.Metrics)
	}
	var sn stats.Snapshot
	if err := json.Unmarshal(m.Stats, &sn); err != nil {
		return stats.Snapshot{}, fmt.Errorf("supervisor's figures: %w", err)
	}
	a.last, a.at = sn, now()
	return sn, nil
}

// MaxConns bounds the scrapes served at once; more wait in the kernel's
// queue. Prometheus scrapes one at a time.
const MaxConns = 8

// Handler is /metrics over src and enc (nil: no encoder).
func Handler(src Source, enc EncoderSource, log *slog.Logger) http.Handler {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(src, enc, log))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn), ErrorHandling: promhttp.HTTPErrorOnError,
		MaxRequestsInFlight: MaxConns, Timeout: 10 * time.Second,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "xpra-proxy metrics: /metrics")
	})
	return mux
}

// Serve serves Handler(src, enc) on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, src Source, enc EncoderSource, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           Handler(src, enc, log),
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 8 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	err := srv.Serve(netutil.LimitListener(l, MaxConns))
	if errors.Is(err, http.ErrServerClosed) && ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("metrics: %w", err)
}
