// SPDX-License-Identifier: GPL-2.0-or-later

package pgdir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// PenaltyChannel is the NOTIFY channel of penalties imposed and cleared.
const PenaltyChannel = "xpra_proxy_penalties"

// Penalty is one source block's shared record, and the payload of a
// notification on PenaltyChannel.
type Penalty struct {
	Source   string    `json:"source"` // the block, as netip.Prefix prints it
	Failures int       `json:"failures"`
	Until    time.Time `json:"until"`
	Proxy    string    `json:"proxy"`             // who wrote it
	Cleared  bool      `json:"cleared,omitempty"` // a success cleared the block
}

// ParsePenalty reads a notification's payload.
func ParsePenalty(payload string) (Penalty, error) {
	var p Penalty
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		return Penalty{}, fmt.Errorf("pgdir: penalty notification: %w", err)
	}
	if p.Source == "" {
		return Penalty{}, errors.New("pgdir: penalty notification without a source")
	}
	return p, nil
}

// MaxPenaltySteps bounds FailureRule.Penalties.
const MaxPenaltySteps = 64

// FailureRule is how AddFailure combines this proxy's count of a source's
// failures with the shared record, as data: it runs in the helper with
// the row locked, so two proxies recording a failure of one source at
// once count both.
type FailureRule struct {
	Failures int           `json:"failures"` // this proxy's count, this failure included
	Until    time.Time     `json:"until"`    // this proxy's penalty end
	Forget   time.Duration `json:"forget"`   // a shared record ended longer ago counts 0
	// Penalties[i] is the penalty of i+1 failures (the limiter's
	// PenaltyFor); past the end, the last one.
	Penalties []time.Duration `json:"penalties"`
}

// PenaltyFor is the penalty of failures.
func (r FailureRule) PenaltyFor(failures int) time.Duration {
	if failures < 1 || len(r.Penalties) == 0 {
		return 0
	}
	return r.Penalties[min(failures, len(r.Penalties))-1]
}

// Combine is the record to write given the shared one (0 failures:
// none): one failure more than the shared count when that is more than
// this proxy's, the later of the ends.
func (r FailureRule) Combine(now time.Time, shared int, sharedUntil time.Time) (int, time.Time) {
	if now.Sub(sharedUntil) > r.Forget {
		shared = 0
	}
	f, end := r.Failures, r.Until
	if shared+1 > f {
		f = shared + 1
		if e := now.Add(r.PenaltyFor(f)); e.After(end) {
			end = e
		}
	}
	if sharedUntil.After(end) {
		end = sharedUntil
	}
	return f, end
}

// AddFailure records one more failed login of source, combined with the
// shared record by rule, and tells the other proxies. It returns the
// record written.
func (db *DB) AddFailure(ctx context.Context, source string, rule FailureRule) (Penalty, error) {
	var out Penalty
	err := db.call(ctx, OpAddFailure, FailureArgs{Source: source, Rule: rule}, &out)
	return out, err
}

// ClearPenalty forgets source's record (a login from it succeeded) and
// tells the other proxies.
func (db *DB) ClearPenalty(ctx context.Context, source string) error {
	return db.call(ctx, OpClearPenalty, SourceArgs{Source: source}, nil)
}

// Penalties are the records of the penalties that run now, what a proxy
// loads at start and after missing notifications. Records whose penalty
// ended more than forget ago are deleted on the way.
func (db *DB) Penalties(ctx context.Context, forget time.Duration) ([]Penalty, error) {
	var out []Penalty
	err := db.call(ctx, OpPenalties, PenaltiesArgs{ForgetMS: forget.Milliseconds()}, &out)
	return out, err
}

// PublishPenalties merges penalties this proxy holds into the shared
// records (the larger count, the later end: no failure counted twice) and
// announces the records that changed. A proxy calls it after it could not
// write for a while, with its running penalties.
func (db *DB) PublishPenalties(ctx context.Context, ps []Penalty) (changed int, err error) {
	var n Count
	err = db.call(ctx, OpPublishPenalties, PublishArgs{Penalties: ps}, &n)
	return int(n.N), err
}
