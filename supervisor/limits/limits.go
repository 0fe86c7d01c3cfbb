// SPDX-License-Identifier: GPL-2.0-or-later

// Package limits bounds the unauthenticated work the root supervisor takes
// on, in the spirit of sshd: a global cap with random early drop
// (MaxStartups), a cap per source address block (PerSourceMaxStartups,
// PerSourceNetBlockSize) and growing penalties for sources whose logins
// fail (PerSourcePenalties). It is pure bookkeeping: the caller passes the
// clock and the randomness, and closes what is refused.
//
// Unix-socket peers count toward the global cap and, by the uid the kernel
// gives for them, toward a cap and a rate per uid (one local user must not
// take every slot from the network's users); they have no address, so no
// penalties. A peer of unknown identity (an invalid netip.Addr through
// Admit) counts toward the global cap only.
package limits

import (
	"container/list"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Config sets the limits. Zero values are not defaults: see Defaults.
type Config struct {
	MaxStartups Startups     // global cap on unauthenticated connections
	PerSource   int          // unauthenticated connections per source block; 0: no limit
	NetBlock    NetBlockSize // how addresses group into source blocks
	// A failed login bars its source from new connections for PenaltyMin,
	// doubling with each consecutive failure up to PenaltyMax. 0: no
	// penalties.
	PenaltyMin, PenaltyMax time.Duration
	PenaltyForget          time.Duration // a source without failures for this long is forgotten
	PenaltyTable           int           // most sources remembered (penalties, and rate buckets)
	// PerUID caps the unauthenticated connections of one local uid on
	// unix sockets; 0: no limit.
	PerUID int
	// Rate and Burst are a token bucket per source block (or local uid):
	// new connections per second, and how many may come at once. MaxStartups
	// bounds how many wait at a time, not how fast root forks and execs for
	// them. Rate 0: no limit.
	Rate  float64
	Burst int
}

// Defaults are sshd's shape with the proxy's numbers: the reference proxy
// refuses at 200 unauthenticated connections.
func Defaults() Config {
	return Config{
		MaxStartups: Startups{Start: 50, Rate: 30, Full: 200},
		PerSource:   10,
		// IPv6: a /64 is what one subscriber gets (sshd's default of 128
		// would make one /64 2^64 sources).
		NetBlock:      NetBlockSize{IPv4: 32, IPv6: 64},
		PenaltyMin:    time.Second,
		PenaltyMax:    30 * time.Second,
		PenaltyForget: 10 * time.Minute,
		PenaltyTable:  65536,
		PerUID:        10,
		Rate:          10,
		Burst:         30,
	}
}

// Check reports the first setting that makes no sense.
func (c Config) Check() error {
	if err := c.MaxStartups.check(); err != nil {
		return fmt.Errorf("max-startups %s: %w", c.MaxStartups, err)
	}
	if c.PerSource < 0 {
		return fmt.Errorf("per-source-max-startups %d: must be 0 (no limit) or more", c.PerSource)
	}
	if err := c.NetBlock.check(); err != nil {
		return fmt.Errorf("per-source-net-block-size %s: %w", c.NetBlock, err)
	}
	if c.PerUID < 0 {
		return fmt.Errorf("per-uid-max-startups %d: must be 0 (no limit) or more", c.PerUID)
	}
	if c.Rate < 0 || (c.Rate > 0 && c.Burst < 1) {
		return fmt.Errorf("per-source-rate %g with per-source-burst %d: the rate must be 0 (no limit) or more, with a burst of at least 1", c.Rate, c.Burst)
	}
	if c.PenaltyMin == 0 {
		return nil // penalties off: the rest does not matter
	}
	switch {
	case c.PenaltyMin < 0:
		return fmt.Errorf("per-source-penalty %s: must not be negative", c.PenaltyMin)
	case c.PenaltyMax < c.PenaltyMin:
		return fmt.Errorf("per-source-penalty-max %s is below per-source-penalty %s", c.PenaltyMax, c.PenaltyMin)
	case c.PenaltyForget < c.PenaltyMax:
		// Otherwise a source would be forgotten, and so freed, while its
		// penalty still runs.
		return fmt.Errorf("per-source-penalty-forget %s is below per-source-penalty-max %s", c.PenaltyForget, c.PenaltyMax)
	case c.PenaltyTable <= 0:
		return fmt.Errorf("per-source-penalty-table %d: must be positive", c.PenaltyTable)
	}
	return nil
}

// Reasons a connection is refused.
const (
	ReasonFull      = "full"              // MaxStartups' full reached
	ReasonDrop      = "random early drop" // between start and full, by chance
	ReasonPerSource = "per-source limit"  // the source block's PerSource reached
	ReasonPenalty   = "penalty"           // the source block failed a login recently
	ReasonRate      = "per-source rate"   // the source block (or uid) came too often
	ReasonPerUID    = "per-uid limit"     // the local uid's PerUID reached
)

// Refusal is the error of a refused connection.
type Refusal struct {
	Reason string
	Until  time.Time // for ReasonPenalty: when the penalty ends
}

func (r *Refusal) Error() string {
	if r.Reason == ReasonPenalty {
		return fmt.Sprintf("connection refused: penalty until %s", r.Until.Format(time.RFC3339))
	}
	return "connection refused: " + r.Reason
}

// Stats are counts for logs and the service manager's status line.
type Stats struct {
	Startups  int // unauthenticated connections now
	Sources   int // source blocks with unauthenticated connections now
	Tracked   int // source blocks in the penalty table
	Penalized int // of which barred now
	Admitted  uint64
	// Refused by reason, since start.
	Full, Dropped, PerSource, Penalty, Rate, PerUID uint64
	Evicted                                         uint64 // penalty records pushed out of a full table
	Penalties                                       uint64 // penalties imposed (one per failed login of a TCP source)
	Imposed                                         uint64 // penalties learnt from other proxies (Impose)
}

// Limiter admits or refuses connections. It is safe for concurrent use.
type Limiter struct {
	cfg Config
	now func() time.Time
	rnd func() float64

	mu        sync.Mutex
	startups  int
	perSource map[netip.Prefix]int // only blocks with connections: at most Full entries
	perUID    map[uint32]int       // local peers' uids with connections
	buckets   map[source]*list.Element
	byUse     *list.List // of *bucket, most recently used first
	penalties map[netip.Prefix]*list.Element
	byFailure *list.List // of *record, most recent failure first
	stats     Stats
}

// record is what the penalty table knows of one source block.
type record struct {
	block    netip.Prefix
	failures int       // consecutive, since the last success or forgetting
	last     time.Time // of the last failure
	until    time.Time // end of the penalty
}

// source is what a rate bucket belongs to: a source block, or a local uid.
type source struct {
	block netip.Prefix
	uid   uint32
	local bool
}

type bucket struct {
	src    source
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// Source is where a connection comes from: a TCP peer's address, or the
// uid of a unix-socket peer (SO_PEERCRED).
type Source struct {
	Addr  netip.Addr
	UID   uint32
	Local bool // a unix-socket peer: UID counts, Addr does not
}

// New makes a Limiter. now and rnd (uniform in [0, 1)) are injected for
// tests; nil means the real clock and math/rand.
func New(cfg Config, now func() time.Time, rnd func() float64) (*Limiter, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	return &Limiter{cfg: cfg, now: now, rnd: rnd, perSource: map[netip.Prefix]int{}, perUID: map[uint32]int{},
		buckets: map[source]*list.Element{}, byUse: list.New(),
		penalties: map[netip.Prefix]*list.Element{}, byFailure: list.New()}, nil
}

// block is the source block of src; false for unix peers (invalid src).
// Called with l.mu held: a reload may change the block size.
func (l *Limiter) block(src netip.Addr) (netip.Prefix, bool) {
	if !src.IsValid() {
		return netip.Prefix{}, false
	}
	src = src.Unmap().WithZone("") // ::ffff:a.b.c.d is an IPv4 peer on a dual-stack socket
	bits := l.cfg.NetBlock.IPv6
	if src.Is4() {
		bits = l.cfg.NetBlock.IPv4
	}
	p, err := src.Prefix(bits)
	if err != nil {
		panic(err) // bits were checked against the family's size
	}
	return p, true
}

// Admit decides on a new connection from src (invalid for a unix peer),
// checking as sshd does: penalty, then the source's limit, then the global
// one. On admission the caller must call release once the connection is
// authenticated or gone; on refusal err is a *Refusal and the caller closes
// the connection. A refusal never lengthens a penalty: only failed logins
// do.
func (l *Limiter) Admit(src netip.Addr) (release func(), err error) {
	return l.AdmitFrom(Source{Addr: src})
}

// AdmitFrom is Admit for a TCP peer or a unix-socket peer of known uid:
// penalty, then the rate, then the source's (or uid's) limit, then the
// global one.
func (l *Limiter) AdmitFrom(from Source) (release func(), err error) {
	release, _, err = l.AdmitRanked(from)
	return release, err
}

// AdmitRanked is AdmitFrom that also says how many unauthenticated
// connections the source's block (a unix peer: its uid) has now, this one
// included: 1 for a source's only connection. The supervisor serves a
// source's further connections after other sources' (Supervisor.handle).
// A peer with neither block nor uid ranks 1.
func (l *Limiter) AdmitRanked(from Source) (release func(), rank int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	block, hasBlock := netip.Prefix{}, false
	if !from.Local {
		block, hasBlock = l.block(from.Addr)
	}
	now := l.now()
	if hasBlock {
		if r := l.penalized(block, now); r != nil {
			l.stats.Penalty++
			return nil, 0, r
		}
	}
	if hasBlock || from.Local {
		if !l.take(source{block: block, uid: from.UID, local: from.Local}, now) {
			l.stats.Rate++
			return nil, 0, &Refusal{Reason: ReasonRate}
		}
	}
	if hasBlock && l.cfg.PerSource > 0 && l.perSource[block] >= l.cfg.PerSource {
		l.stats.PerSource++
		return nil, 0, &Refusal{Reason: ReasonPerSource}
	}
	if from.Local && l.cfg.PerUID > 0 && l.perUID[from.UID] >= l.cfg.PerUID {
		l.stats.PerUID++
		return nil, 0, &Refusal{Reason: ReasonPerUID}
	}
	if reason := l.drop(); reason != "" {
		if reason == ReasonFull {
			l.stats.Full++
		} else {
			l.stats.Dropped++
		}
		return nil, 0, &Refusal{Reason: reason}
	}
	l.startups++
	rank = 1
	if hasBlock {
		l.perSource[block]++
		rank = l.perSource[block]
	}
	if from.Local {
		l.perUID[from.UID]++
		rank = l.perUID[from.UID]
	}
	l.stats.Admitted++
	var once sync.Once
	return func() { once.Do(func() { l.release(block, hasBlock, from) }) }, rank, nil
}

// AdmitProxied applies a source's own limits to a connection that was
// admitted from a trusted load balancer (proxy-protocol-from) and so
// counted toward the global cap only: src is the client's address as the
// balancer's PROXY header reported it. Penalty, then the rate, then the
// source block's cap, as AdmitRanked; the global cap is not counted
// again. The release gives back the block's slot only.
func (l *Limiter) AdmitProxied(src netip.Addr) (release func(), rank int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	block, ok := l.block(src)
	if !ok {
		return nil, 0, fmt.Errorf("proxied source %v: not an IP address", src)
	}
	now := l.now()
	if r := l.penalized(block, now); r != nil {
		l.stats.Penalty++
		return nil, 0, r
	}
	if !l.take(source{block: block}, now) {
		l.stats.Rate++
		return nil, 0, &Refusal{Reason: ReasonRate}
	}
	if l.cfg.PerSource > 0 && l.perSource[block] >= l.cfg.PerSource {
		l.stats.PerSource++
		return nil, 0, &Refusal{Reason: ReasonPerSource}
	}
	l.perSource[block]++
	rank = l.perSource[block]
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.perSource[block]--; l.perSource[block] <= 0 {
				delete(l.perSource, block)
			}
		})
	}, rank, nil
}

func (l *Limiter) release(block netip.Prefix, hasBlock bool, from Source) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.startups--
	if hasBlock {
		if l.perSource[block]--; l.perSource[block] <= 0 {
			delete(l.perSource, block)
		}
	}
	if from.Local {
		if l.perUID[from.UID]--; l.perUID[from.UID] <= 0 {
			delete(l.perUID, from.UID)
		}
	}
}

// bucketTable bounds the rate buckets as the penalty table is bounded
// (65536 where penalties are off).
func (l *Limiter) bucketTable() int {
	if l.cfg.PenaltyTable > 0 {
		return l.cfg.PenaltyTable
	}
	return 65536
}

// take spends one token of src's bucket, refilled at Rate up to Burst,
// and reports whether there was one. Buckets live in a table of at most
// PenaltyTable entries; the least recently used is pushed out first, and
// it is the one most likely to be full again anyway (a full bucket is the
// same as none).
func (l *Limiter) take(src source, now time.Time) bool {
	if l.cfg.Rate <= 0 {
		return true
	}
	var b *bucket
	if e, ok := l.buckets[src]; ok {
		b = e.Value.(*bucket)
		l.byUse.MoveToFront(e)
		b.tokens = min(float64(l.cfg.Burst), b.tokens+now.Sub(b.at).Seconds()*l.cfg.Rate)
		b.at = now
	} else {
		if l.byUse.Len() >= l.bucketTable() {
			old := l.byUse.Back()
			l.byUse.Remove(old)
			delete(l.buckets, old.Value.(*bucket).src)
		}
		b = &bucket{src: src, tokens: float64(l.cfg.Burst), at: now}
		l.buckets[src] = l.byUse.PushFront(b)
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// drop is sshd's should_drop_connection, integer percentages included,
// for the connections held now: "" admits.
func (l *Limiter) drop() string {
	s, n := l.cfg.MaxStartups, l.startups
	switch {
	case n < s.Start:
		return ""
	case n >= s.Full:
		return ReasonFull
	}
	p := s.Rate + (100-s.Rate)*(n-s.Start)/(s.Full-s.Start)
	if r := int(l.rnd() * 100); r < p {
		return ReasonDrop
	}
	return ""
}

// Check refuses src while it is under penalty. The supervisor asks before
// verifying a password on a connection admitted earlier: without it, each
// of a source's PerSource parallel connections would get its guess during
// the penalty. (Two answers verified in the same instant can still both
// pass; the next failure then lengthens the penalty.)
func (l *Limiter) Check(src netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	block, ok := l.block(src)
	if !ok {
		return nil
	}
	if r := l.penalized(block, l.now()); r != nil {
		l.stats.Penalty++
		return r
	}
	return nil
}

// penalized returns the refusal for a block under penalty, after
// forgetting the records that are due.
func (l *Limiter) penalized(block netip.Prefix, now time.Time) *Refusal {
	l.forget(now)
	e, ok := l.penalties[block]
	if !ok {
		return nil
	}
	if r := e.Value.(*record); now.Before(r.until) {
		return &Refusal{Reason: ReasonPenalty, Until: r.until}
	}
	return nil
}

// forget drops the records whose last failure is PenaltyForget old. The
// list is in order of last failure, so they are all at its back.
func (l *Limiter) forget(now time.Time) {
	for e := l.byFailure.Back(); e != nil; e = l.byFailure.Back() {
		r := e.Value.(*record)
		if now.Sub(r.last) < l.cfg.PenaltyForget {
			return
		}
		l.byFailure.Remove(e)
		delete(l.penalties, r.block)
	}
}

// Failed records a failed login from src: the source may not connect again
// for PenaltyMin, doubled for each consecutive failure, up to PenaltyMax.
// Failures of connections admitted before the penalty count too: each was
// a guess. It returns the end of the penalty and the source's failures
// so far (zero: no penalty, for an exempt source or with penalties off),
// for the audit record.
func (l *Limiter) Failed(src netip.Addr) (until time.Time, failures int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	block, ok := l.block(src)
	if !ok || l.cfg.PenaltyMin == 0 {
		return time.Time{}, 0
	}
	now := l.now()
	l.forget(now)
	var r *record
	if e, ok := l.penalties[block]; ok {
		r = e.Value.(*record)
		l.byFailure.MoveToFront(e)
	} else {
		// The table is full: push out the source whose last failure is the
		// oldest. Trade-off: an attacker holding many source blocks can
		// flush the table, and so shorten the penalty of its own oldest
		// blocks, but that costs it one failed login per entry (65536 by
		// default, each a full pre-auth exchange within the global cap),
		// and nobody innocent is ever refused because of the table. The
		// other choice, refusing every source not in a full table (sshd's
		// overflow=deny-all), would let that same attacker lock everyone
		// out.
		if l.byFailure.Len() >= l.cfg.PenaltyTable {
			old := l.byFailure.Back()
			l.byFailure.Remove(old)
			delete(l.penalties, old.Value.(*record).block)
			l.stats.Evicted++
		}
		r = &record{block: block}
		l.penalties[block] = l.byFailure.PushFront(r)
	}
	r.failures++
	r.last = now
	r.until = now.Add(l.penalty(r.failures))
	l.stats.Penalties++
	return r.until, r.failures
}

// penalty is PenaltyMin doubled for each failure after the first, at most
// PenaltyMax.
func (l *Limiter) penalty(failures int) time.Duration {
	d := l.cfg.PenaltyMin
	for i := 1; i < failures && d < l.cfg.PenaltyMax; i++ {
		d *= 2
	}
	return min(d, l.cfg.PenaltyMax)
}

// Succeeded records a successful login from src: the source's record,
// penalty included, is cleared.
func (l *Limiter) Succeeded(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	block, ok := l.block(src)
	if !ok {
		return
	}
	if e, ok := l.penalties[block]; ok {
		l.byFailure.Remove(e)
		delete(l.penalties, block)
	}
}

// Reconfigure applies new settings (a reload) and keeps what the limiter
// knows: the connections admitted (their release still counts them off),
// the penalty records and the rate buckets, cut down to a smaller table
// if need be. Records were kept by source block: under a new block size,
// those of the old one match no new connection and age out.
func (l *Limiter) Reconfigure(cfg Config) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
	for cfg.PenaltyTable > 0 && l.byFailure.Len() > cfg.PenaltyTable {
		old := l.byFailure.Back()
		l.byFailure.Remove(old)
		delete(l.penalties, old.Value.(*record).block)
		l.stats.Evicted++
	}
	for l.byUse.Len() > l.bucketTable() {
		old := l.byUse.Back()
		l.byUse.Remove(old)
		delete(l.buckets, old.Value.(*bucket).src)
	}
	return nil
}

// Stats returns the current counts. It walks the penalty table, so call it
// for a log line or a status update, not per connection.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.forget(now)
	s := l.stats
	s.Startups, s.Sources, s.Tracked = l.startups, len(l.perSource), l.byFailure.Len()
	for e := l.byFailure.Front(); e != nil; e = e.Next() {
		if now.Before(e.Value.(*record).until) {
			s.Penalized++
		}
	}
	return s
}

// Block is the source block src counts in (its address masked to the
// per-source-net-block-size); false for an invalid src. Proxies sharing
// their penalties (package supervisor/shared) key them by it.
func (l *Limiter) Block(src netip.Addr) (netip.Prefix, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.block(src)
}

// PenaltyFor is the penalty of a source's failures-th consecutive failure.
func (l *Limiter) PenaltyFor(failures int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.PenaltyMin == 0 || failures < 1 {
		return 0
	}
	return l.penalty(failures)
}

// Impose applies a penalty learnt from elsewhere (another proxy, through
// the shared directory): block keeps the larger of its own and the given
// failures, and the later of the two ends. It reports whether that changed
// the record: not with penalties off, for a block of another size than
// this limiter's (proxies sharing penalties must group addresses alike),
// for one that ended already, or for what the block has already (a
// penalty heard twice, or this proxy's own). It counts as the block's latest failure, so
// the record is remembered PenaltyForget from now.
func (l *Limiter) Impose(block netip.Prefix, failures int, until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.cfg.PenaltyMin == 0 || failures < 1 || !block.IsValid() || !until.After(now) {
		return false
	}
	if own, ok := l.block(block.Addr()); !ok || own != block {
		return false
	}
	l.forget(now)
	var r *record
	if e, ok := l.penalties[block]; ok {
		r = e.Value.(*record)
		if r.failures >= failures && !until.After(r.until) {
			return false
		}
		l.byFailure.MoveToFront(e)
	} else {
		if l.byFailure.Len() >= l.cfg.PenaltyTable {
			old := l.byFailure.Back()
			l.byFailure.Remove(old)
			delete(l.penalties, old.Value.(*record).block)
			l.stats.Evicted++
		}
		r = &record{block: block}
		l.penalties[block] = l.byFailure.PushFront(r)
	}
	r.failures = max(r.failures, failures)
	r.last = now
	if until.After(r.until) {
		r.until = until
	}
	l.stats.Imposed++
	return true
}

// Clear forgets block's record, penalty included, as a success from it
// does (Succeeded): a success through another proxy.
func (l *Limiter) Clear(block netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.penalties[block]; ok {
		l.byFailure.Remove(e)
		delete(l.penalties, block)
	}
}
