// SPDX-License-Identifier: GPL-2.0-or-later

// Package stats is the supervisor's counters for Prometheus (issue 15):
// counted in root at the points where things happen, handed as a
// Snapshot over ipc (Metrics → MetricsReply) to xpra-proxy-metrics,
// which serves them. Root keeps only numbers and names it chose itself;
// it never serves HTTP or parses a scrape. Stdlib only: the supervisor
// links it.
//
// The counters live as long as the supervisor process: a restart starts
// them at zero, and StartTime says when, so that Prometheus's rate() and
// increase() see a counter reset (as for any restarted exporter). The
// gauges (live relays) are right after a restart, since the new
// supervisor adopts the relays the old one started.
package stats

import (
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// Connection results (Stats.Connection).
const (
	Relayed = "relayed" // authenticated, handed to a relay worker
	Denied  = "denied"  // a refusal was sent (wrong password, no session, too many relays...)
	Closed  = "closed"  // ended without a verdict: a version request, a bad or silent client, a dead pre-auth process
	// Refused at the accept by the limits, before any process: "refused-"
	// and the limit (full, dropped, per-source, penalty, rate, per-uid).
	RefusedPrefix = "refused-"
)

// Login results (Stats.Login; OK and Failed also for Stats.Session).
const (
	OK        = "ok"        // a relay started
	Failed    = "failed"    // refused: wrong password, account or user not allowed, no session for the user
	Error     = "error"     // authenticated, but no relay: too many relays, a failure of ours
	Abandoned = "abandoned" // the client or its pre-auth process went away before a verdict
)

// SetupBounds are the setup latency histogram's upper bounds in seconds:
// from the accept to the relay worker's start, login included, so a
// person typing a password shows in the upper buckets.
var SetupBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// maxSeries bounds each labelled family: its labels are names the
// supervisor chose (listener types, transports it checked, configured
// module names, fixed results), so this is a guard, not a limit anyone
// should reach. Beyond it, new label sets count as "other".
const maxSeries = 256

// Stats counts. The zero value is not usable: use New. Safe for
// concurrent use.
type Stats struct {
	start time.Time

	mu       sync.Mutex
	conns    map[string]uint64 // key: labels joined by \x00
	logins   map[string]uint64
	sessions map[string]uint64
	setup    []uint64 // per bucket, not cumulative; the last is +Inf
	setupSum float64
	setupN   uint64
	// Bytes of relays that ended, as their workers reported them.
	fromClient, fromServer uint64
}

// New starts counting at start (the supervisor's start).
func New(start time.Time) *Stats {
	return &Stats{start: start, conns: map[string]uint64{}, logins: map[string]uint64{},
		sessions: map[string]uint64{}, setup: make([]uint64, len(SetupBounds)+1)}
}

func add(m map[string]uint64, labels ...string) {
	k := strings.Join(labels, "\x00")
	if _, ok := m[k]; !ok && len(m) >= maxSeries {
		for i := range labels {
			labels[i] = "other"
		}
		k = strings.Join(labels, "\x00")
	}
	m[k]++
}

// Connection counts a connection's end: transport is what arrived
// (tcp, ssl, ws, wss, unix), or the listener's type when nothing said;
// result one of the constants above.
func (s *Stats) Connection(transport, result string) {
	s.mu.Lock()
	add(s.conns, transport, result)
	s.mu.Unlock()
}

// Login counts a login attempt (a client that sent its hello) by the
// module that judged it ("" when none did: "none") and its result.
func (s *Stats) Login(transport, module, result string) {
	if module == "" {
		module = "none"
	}
	s.mu.Lock()
	add(s.logins, transport, module, result)
	s.mu.Unlock()
}

// Session counts a session started on demand (OK) or a start that failed.
func (s *Stats) Session(result string) {
	s.mu.Lock()
	add(s.sessions, result)
	s.mu.Unlock()
}

// Setup observes one connection's time from the accept to its relay.
func (s *Stats) Setup(d time.Duration) {
	v := d.Seconds()
	i := sort.SearchFloat64s(SetupBounds, v) // first bound >= v
	s.mu.Lock()
	s.setup[i]++
	s.setupSum += v
	s.setupN++
	s.mu.Unlock()
}

// RelayBytes counts the bytes an ended relay reported moving each way.
// They are a user's process's figures: negatives count as 0, and the
// sums saturate rather than wrap.
func (s *Stats) RelayBytes(fromClient, fromServer int64) {
	s.mu.Lock()
	s.fromClient = addClipped(s.fromClient, fromClient)
	s.fromServer = addClipped(s.fromServer, fromServer)
	s.mu.Unlock()
}

func addClipped(sum uint64, v int64) uint64 {
	if v <= 0 {
		return sum
	}
	if n := sum + uint64(v); n >= sum {
		return n
	}
	return math.MaxUint64
}

// Count is one labelled counter's value; Labels in the family's order
// (Snapshot's field comments).
type Count struct {
	Labels []string `json:"labels"`
	Value  uint64   `json:"value"`
}

// Histogram is cumulative, as Prometheus's buckets: Buckets[i] counts
// the observations <= Bounds[i]; Count all of them.
type Histogram struct {
	Bounds  []float64 `json:"bounds"`
	Buckets []uint64  `json:"buckets"`
	Count   uint64    `json:"count"`
	Sum     float64   `json:"sum"`
}

// Gauges are figures the supervisor reads elsewhere at snapshot time.
type Gauges struct {
	Relays    int64  // relay workers alive, adopted ones included
	Preauth   int64  // unauthenticated connections now
	Penalized int64  // sources serving a penalty now
	Penalties uint64 // penalties imposed since start (limits.Stats)
	// Directory is the shared directory's state (pgdir), nil without
	// directory-uri-file.
	Directory *Directory
}

// Directory is the shared directory (PostgreSQL) as this proxy sees it.
type Directory struct {
	Up bool `json:"up"`
	// FallbackLogins counts the logins a fallback module decided while
	// the directory was unreachable, whatever their result.
	FallbackLogins uint64 `json:"fallback_logins"`
	// PenaltiesHeard counts the penalties learnt from other proxies
	// that changed this proxy's (limits.Stats.Imposed).
	PenaltiesHeard uint64 `json:"penalties_heard"`
}

// Snapshot is what the metrics process gets. Families in a stable order.
type Snapshot struct {
	StartTime   float64   `json:"start_time"`  // unix seconds: the counters count from here
	Connections []Count   `json:"connections"` // transport, result
	Logins      []Count   `json:"logins"`      // transport, module, result
	Sessions    []Count   `json:"sessions"`    // result
	Setup       Histogram `json:"setup"`
	Relays      int64     `json:"relays"`
	Preauth     int64     `json:"preauth"`
	Penalized   int64     `json:"penalized"`
	Penalties   uint64    `json:"penalties"`
	// Bytes of relays that ended (a live relay's count at its end).
	BytesFromClient uint64     `json:"bytes_from_client"`
	BytesFromServer uint64     `json:"bytes_from_server"`
	Directory       *Directory `json:"directory,omitempty"`
}

func counts(m map[string]uint64) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{Labels: strings.Split(k, "\x00"), Value: v})
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.Join(out[i].Labels, "\x00") < strings.Join(out[j].Labels, "\x00")
	})
	return out
}

// Snapshot copies the counters, with g.
func (s *Stats) Snapshot(g Gauges) Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := Histogram{Bounds: append([]float64(nil), SetupBounds...), Buckets: make([]uint64, len(SetupBounds)),
		Count: s.setupN, Sum: s.setupSum}
	var cum uint64
	for i := range SetupBounds {
		cum += s.setup[i]
		h.Buckets[i] = cum
	}
	return Snapshot{
		StartTime:   float64(s.start.UnixNano()) / 1e9,
		Connections: counts(s.conns), Logins: counts(s.logins), Sessions: counts(s.sessions),
		Setup:  h,
		Relays: g.Relays, Preauth: g.Preauth, Penalized: g.Penalized, Penalties: g.Penalties,
		BytesFromClient: s.fromClient, BytesFromServer: s.fromServer,
		Directory: g.Directory,
	}
}

// Check says whether a snapshot is whole: every family's label count,
// no label set twice (Prometheus refuses the scrape), the histogram's shape (bounds rising, buckets not falling, none over
// Count), no NaN. The byte counters need no check: they are unsigned,
// so json.Unmarshal already refuses a negative or fractional one. The
// metrics process checks what it was sent before it serves it.
func (sn *Snapshot) Check() error {
	for _, f := range []struct {
		name   string
		labels int
		c      []Count
	}{{"connections", 2, sn.Connections}, {"logins", 3, sn.Logins}, {"sessions", 1, sn.Sessions}} {
		seen := make(map[string]bool, len(f.c))
		for _, c := range f.c {
			if len(c.Labels) != f.labels {
				return &badSnapshot{f.name + ": wrong number of labels"}
			}
			k := strings.Join(c.Labels, "\x00")
			if seen[k] {
				return &badSnapshot{f.name + ": a label set twice"}
			}
			seen[k] = true
		}
	}
	h := sn.Setup
	if len(h.Bounds) != len(h.Buckets) || math.IsNaN(h.Sum) || math.IsInf(h.Sum, 0) {
		return &badSnapshot{"setup histogram: malformed"}
	}
	for i := range h.Bounds {
		if math.IsNaN(h.Bounds[i]) || (i > 0 && (h.Bounds[i] <= h.Bounds[i-1] || h.Buckets[i] < h.Buckets[i-1])) || h.Buckets[i] > h.Count {
			return &badSnapshot{"setup histogram: buckets out of order"}
		}
	}
	return nil
}

type badSnapshot struct{ why string }

func (e *badSnapshot) Error() string { return "stats snapshot: " + e.why }
