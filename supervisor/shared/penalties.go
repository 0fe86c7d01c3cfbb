// SPDX-License-Identifier: GPL-2.0-or-later

package shared

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
)

// publishMax bounds the penalties a proxy keeps to publish after an
// outage (one transaction, within directory-timeout).
const publishMax = 256

// Penalties shares one limiter's penalties through the directory.
//
// How failures from several proxies combine: each proxy counts a
// source's failures in its own limiter, which also takes in every count
// it hears (Limiter.Impose keeps the larger). A failure's shared count is
// the larger of the local count (this failure included) and the shared
// row's count plus one, written with the row locked, so two proxies
// failing one source at the same moment count two failures; if the
// shared count is the larger, the local penalty is lengthened to match.
// The penalty's end is the later of the local one and the shared one.
// A row whose penalty ended more than per-source-penalty-forget ago
// counts as no row, as the limiter forgets. Proxies sharing penalties
// need the same per-source-net-block-size (a block of another size is
// ignored) and clocks in step (ends are absolute times).
type Penalties struct {
	db     *pgdir.DB
	lim    *limits.Limiter
	log    *slog.Logger
	forget func() time.Duration // per-source-penalty-forget, as reloaded
	w      *writer
	heard  atomic.Uint64

	mu     sync.Mutex
	unsent map[string]pgdir.Penalty // by source: failures whose write failed
}

// NewPenalties shares lim's penalties through db. forget is the current
// per-source-penalty-forget.
func NewPenalties(db *pgdir.DB, lim *limits.Limiter, forget func() time.Duration, log *slog.Logger) *Penalties {
	log = log.With("shared", "penalties")
	return &Penalties{db: db, lim: lim, log: log, forget: forget, w: newWriter(db, log, "penalties"),
		unsent: map[string]pgdir.Penalty{}}
}

// Heard counts the penalties learnt from other proxies (notifications and
// loads) that applied.
func (p *Penalties) Heard() uint64 { return p.heard.Load() }

// Failed shares a failed login of src that the limiter penalised with
// failures and until (Limiter.Failed's results). It does not wait for
// the database.
func (p *Penalties) Failed(src netip.Addr, failures int, until time.Time) {
	block, ok := p.lim.Block(src)
	if !ok || until.IsZero() {
		return
	}
	if !p.w.post(func(ctx context.Context) error {
		rule := pgdir.FailureRule{Failures: failures, Until: until, Forget: p.forget(), Penalties: p.penaltySteps()}
		rec, err := p.db.AddFailure(ctx, block.String(), rule)
		if err == nil && rec.Failures > failures {
			// Other proxies saw failures of this block too: the record
			// the directory kept (rule.Combine) counts them.
			p.lim.Impose(block, rec.Failures, rec.Until)
			p.log.Info("penalty lengthened by the failures other proxies saw", audit.KeySource, block.String(),
				"failures", rec.Failures, "until", rec.Until.UTC().Format(time.RFC3339))
		}
		if err != nil {
			p.lost(pgdir.Penalty{Source: block.String(), Failures: failures, Until: until})
		}
		return err
	}) {
		p.lost(pgdir.Penalty{Source: block.String(), Failures: failures, Until: until})
	}
}

// penaltySteps is the limiter's penalty per failure count, up to where
// it stops growing (its maximum), for FailureRule.
func (p *Penalties) penaltySteps() []time.Duration {
	var steps []time.Duration
	for f := 1; f <= pgdir.MaxPenaltySteps; f++ {
		d := p.lim.PenaltyFor(f)
		if f > 1 && d == steps[f-2] {
			break
		}
		steps = append(steps, d)
	}
	return steps
}

// Succeeded shares a successful login from src: the other proxies clear
// the block's record, as this one's limiter did.
func (p *Penalties) Succeeded(src netip.Addr) {
	block, ok := p.lim.Block(src)
	if !ok {
		return
	}
	p.w.post(func(ctx context.Context) error { return p.db.ClearPenalty(ctx, block.String()) })
}

// Run writes and listens until ctx ends.
func (p *Penalties) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.w.run(ctx, func(ok bool) {
			if ok {
				p.publish(ctx)
			}
		})
	}()
	p.db.Listen(ctx, pgdir.PenaltyChannel, p.load, p.hear)
	<-done
}

// load imposes the penalties running now: those announced while this
// proxy was not listening.
func (p *Penalties) load(ctx context.Context) error {
	rows, err := p.db.Penalties(ctx, p.forget())
	if err != nil {
		return err
	}
	n := 0
	for _, r := range rows {
		if block, err := netip.ParsePrefix(r.Source); err == nil && p.lim.Impose(block, r.Failures, r.Until) {
			n++
		}
	}
	p.heard.Add(uint64(n))
	p.log.Info("penalties loaded from the shared directory", "running", len(rows), "applied", n)
	// The writer publishes what it could not write, if anything, after
	// the next write that works: this one.
	p.w.post(func(context.Context) error { return nil })
	return nil
}

// lost keeps a penalty whose write failed, to publish when writes work
// again; at most publishMax of them.
func (p *Penalties) lost(r pgdir.Penalty) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.unsent[r.Source]; ok {
		r.Failures = max(r.Failures, old.Failures)
		if old.Until.After(r.Until) {
			r.Until = old.Until
		}
	} else if len(p.unsent) >= publishMax {
		return
	}
	p.unsent[r.Source] = r
}

// publish writes the penalties whose writes failed, merged with the
// shared records (the larger count, the later end), so that failures
// made during an outage limit the source at the other proxies too. They
// were never counted in the directory: none counts twice.
func (p *Penalties) publish(ctx context.Context) {
	p.mu.Lock()
	ps := make([]pgdir.Penalty, 0, len(p.unsent))
	for _, r := range p.unsent {
		if time.Now().Before(r.Until) {
			ps = append(ps, r)
		}
	}
	clear(p.unsent)
	p.mu.Unlock()
	if len(ps) == 0 {
		return
	}
	n, err := p.db.PublishPenalties(ctx, ps)
	if err != nil {
		for _, r := range ps {
			p.lost(r)
		}
		p.w.failed(err)
		return
	}
	p.log.Info("penalties imposed while the shared directory was unreachable published", "penalties", len(ps), "changed", n)
}

// hear applies one notification (another proxy's; this proxy's own are
// applied already).
func (p *Penalties) hear(payload string) {
	r, err := pgdir.ParsePenalty(payload)
	if err != nil {
		p.log.Warn("shared penalty", "err", err)
		return
	}
	if r.Proxy == p.db.Name() {
		return
	}
	block, err := netip.ParsePrefix(r.Source)
	if err != nil {
		p.log.Warn("shared penalty", "source", r.Source, "err", err)
		return
	}
	if r.Cleared {
		p.lim.Clear(block)
		p.log.Info("source cleared by a login through another proxy", audit.KeySource, r.Source, "proxy", r.Proxy)
		return
	}
	if !p.lim.Impose(block, r.Failures, r.Until) {
		p.log.Debug("shared penalty not applied (ended, or another block size)", audit.KeySource, r.Source, "proxy", r.Proxy)
		return
	}
	p.heard.Add(1)
	p.log.Warn("source penalized by another proxy", audit.Event(audit.Penalty), audit.KeySource, r.Source, "proxy", r.Proxy,
		"failures", r.Failures, "penalty_sec", audit.Seconds(time.Until(r.Until)), "until", r.Until.UTC().Format(time.RFC3339))
}
