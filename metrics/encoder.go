// SPDX-License-Identifier: GPL-2.0-or-later

package metrics

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/peercred"
)

// EncoderSource returns the shared encoder's counters now; nil when no
// encoder-socket is set (the encoder families are then absent).
type EncoderSource func() (encproto.StatsReply, error)

var (
	descEncUp = prometheus.NewDesc(ns+"_encoder_up",
		"1 when the shared encoder (encoder-socket) answered this scrape, 0 when not. Absent, with every xpra_proxy_encoder_ family, when encoder-socket is unset.", nil, nil)
	descEncStart = prometheus.NewDesc(ns+"_encoder_start_time_seconds",
		"When the shared encoder started, in unix seconds: its counters count from then.", nil, nil)
	descEncFrames = prometheus.NewDesc(ns+"_encoder_frames_total",
		"Frames the shared encoder was given, by backend (x264, nvenc, jpeg; none: no such context) and result (ok, failed: the backend failed, rejected: a bad frame or no such context).",
		[]string{"backend", "result"}, nil)
	descEncRefused = prometheus.NewDesc(ns+"_encoder_contexts_refused_total",
		"Encoding contexts the shared encoder's pool refused (the session sends those windows without it).", nil, nil)
	descEncConns = prometheus.NewDesc(ns+"_encoder_sessions",
		"Connections to the shared encoder now (relays and xpra servers using it; this scrape's own included).", nil, nil)
	descEncContexts = prometheus.NewDesc(ns+"_encoder_contexts",
		"Encoding contexts (one per window being encoded) open in the shared encoder now.", nil, nil)
	descEncQueue = prometheus.NewDesc(ns+"_encoder_queue",
		"Frames in the shared encoder now: received and not yet encoded.", nil, nil)
)

var (
	frameBackends = [encproto.NumBackends]string{"none", "x264", "nvenc", "jpeg"}
	frameResults  = [encproto.NumResults]string{"ok", "failed", "rejected"}
)

func (c *Collector) collectEncoder(ch chan<- prometheus.Metric) {
	st, err := c.enc()
	if err != nil {
		c.log.Warn("metrics: no figures from the encoder", "err", err)
		ch <- prometheus.MustNewConstMetric(descEncUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descEncUp, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(descEncStart, prometheus.GaugeValue, float64(st.Start))
	for b, row := range st.Frames {
		for r, n := range row {
			ch <- prometheus.MustNewConstMetric(descEncFrames, prometheus.CounterValue, float64(n), frameBackends[b], frameResults[r])
		}
	}
	ch <- prometheus.MustNewConstMetric(descEncRefused, prometheus.CounterValue, float64(st.OpensRefused))
	ch <- prometheus.MustNewConstMetric(descEncConns, prometheus.GaugeValue, float64(st.Conns))
	ch <- prometheus.MustNewConstMetric(descEncContexts, prometheus.GaugeValue, float64(st.Contexts))
	ch <- prometheus.MustNewConstMetric(descEncQueue, prometheus.GaugeValue, float64(st.InFlight))
}

// EncoderAsker asks the shared encoder for its counters (encproto
// Stats), on a connection of its own each time, and reuses an answer,
// or a failure, younger than MinInterval: however often Prometheus
// scrapes, the encoder is asked at most once per MinInterval.
type EncoderAsker struct {
	Path string
	// UID the encoder must run as (SO_PEERCRED), so another local user
	// cannot stand in for it; < 0: unknown, so never asked (down).
	UID         int
	MinInterval time.Duration
	Timeout     time.Duration // of one request, connection included (0: 1 s)

	mu   sync.Mutex
	last encproto.StatsReply
	err  error
	at   time.Time
}

// Stats is an EncoderSource.
func (a *EncoderAsker) Stats() (encproto.StatsReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.at.IsZero() && time.Since(a.at) < a.MinInterval {
		return a.last, a.err
	}
	a.last, a.err = a.ask()
	a.at = time.Now()
	return a.last, a.err
}

func (a *EncoderAsker) ask() (encproto.StatsReply, error) {
	if a.UID < 0 {
		return encproto.StatsReply{}, errors.New("the encoder's user is unknown")
	}
	timeout := a.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	nc, err := net.DialTimeout("unix", a.Path, timeout)
	if err != nil {
		return encproto.StatsReply{}, fmt.Errorf("encoder: %w", err)
	}
	defer nc.Close()
	cred, err := peercred.Of(nc)
	if err != nil {
		return encproto.StatsReply{}, fmt.Errorf("encoder: %w", err)
	}
	if cred.Uid != uint32(a.UID) {
		return encproto.StatsReply{}, fmt.Errorf("encoder: %s is served by uid %d, not the encoder's %d", a.Path, cred.Uid, a.UID)
	}
	if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return encproto.StatsReply{}, fmt.Errorf("encoder: %w", err)
	}
	return AskStats(nc.(*net.UnixConn))
}

// AskStats sends Stats on uc and reads the reply: a reply type other
// than StatsReply or Error, a body over encproto.StatsSize, or a
// descriptor is refused before its body is read (the encoder runs as a
// user of its own, so its answer is input like any other).
func AskStats(uc *net.UnixConn) (encproto.StatsReply, error) {
	const seq = 1
	req := encproto.AppendHeader(nil, encproto.Header{Type: encproto.TStats, Seq: seq})
	if _, err := uc.Write(req); err != nil {
		return encproto.StatsReply{}, fmt.Errorf("encoder: asking for stats: %w", err)
	}
	var hb [encproto.HeaderSize]byte
	if _, err := readFull(uc, hb[:]); err != nil {
		return encproto.StatsReply{}, fmt.Errorf("encoder: reading its stats: %w", err)
	}
	h, err := encproto.ParseHeader(hb[:])
	if err != nil {
		return encproto.StatsReply{}, fmt.Errorf("encoder: %w", err)
	}
	if h.Seq != seq || (h.Type != encproto.TStatsReply && h.Type != encproto.TError) {
		return encproto.StatsReply{}, fmt.Errorf("encoder: %v (seq %d) to stats", h.Type, h.Seq)
	}
	// The budget: a stats reply's fixed size, or an error's u16 code and
	// bounded string.
	if h.Len > max(encproto.StatsSize, 2+2+encproto.MaxString) {
		return encproto.StatsReply{}, fmt.Errorf("encoder: %v of %d bytes", h.Type, h.Len)
	}
	body := make([]byte, h.Len)
	if _, err := readFull(uc, body); err != nil {
		return encproto.StatsReply{}, fmt.Errorf("encoder: reading its stats: %w", err)
	}
	rep, err := encproto.ParseReply(h, body)
	if err != nil {
		return encproto.StatsReply{}, fmt.Errorf("encoder: %w", err)
	}
	switch v := rep.(type) {
	case encproto.StatsReply:
		return v, nil
	case *encproto.Error:
		return encproto.StatsReply{}, v
	}
	return encproto.StatsReply{}, fmt.Errorf("encoder: %T to stats", rep)
}

// readFull reads with read(2), not recvmsg: a descriptor the peer sends
// is discarded by the kernel rather than installed here.
func readFull(uc *net.UnixConn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := uc.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
