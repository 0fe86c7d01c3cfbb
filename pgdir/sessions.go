// SPDX-License-Identifier: GPL-2.0-or-later

package pgdir

import (
	"context"
	"errors"
	"time"
)

// The session directory (table xpra_proxy_sessions): which session host
// holds whose session. A front proxy places a user (Place) before its
// relay reaches the host, so that logins arriving together at several
// fronts spread; the host records the sessions it starts (SessionLive)
// and their end (SessionEnded).

// Session states.
const (
	StatePlaced = "placed" // a front sent the user there; display ''
	StateLive   = "live"
	StateEnded  = "ended"
)

// PlacedTTL is how long a placed row counts without a host confirming it
// (a session found rather than started, or a host that was down): it
// routes the user's next logins there and loads the host. Each login it
// routes renews it.
const PlacedTTL = 10 * time.Minute

// SessionRow is one row of the session directory.
type SessionRow struct {
	Username, Host, Display, State, Proxy string
	Updated                               time.Time
}

// Place returns the session host, among hosts (in the admin's order), of
// user: the host of their newest live session there (or fresh placement),
// found = true; else the host with the fewest users with live or fresh
// placed rows (ties: the first in hosts), where a placed row is recorded
// at once.
func (db *DB) Place(ctx context.Context, user string, hosts []string) (host string, found bool, err error) {
	if len(hosts) == 0 {
		return "", false, errors.New("pgdir: no session hosts to place on")
	}
	var r PlaceResult
	err = db.call(ctx, OpPlace, PlaceArgs{User: user, Hosts: hosts}, &r)
	return r.Host, r.Found, err
}

// LeastLoaded is the host of hosts with the least load, the first of
// them on a tie.
func LeastLoaded(hosts []string, load map[string]int64) string {
	best := hosts[0]
	for _, h := range hosts[1:] {
		if load[h] < load[best] {
			best = h
		}
	}
	return best
}

// SessionLive records that user's session on display runs on this proxy
// (this proxy's name is the host), replacing a placement of the user here.
func (db *DB) SessionLive(ctx context.Context, user, display string) error {
	return db.call(ctx, OpSessionLive, SessionArgs{User: user, Display: display}, nil)
}

// SessionEnded records the end of user's session on display here, and
// drops this host's rows that ended long ago.
func (db *DB) SessionEnded(ctx context.Context, user, display string) error {
	return db.call(ctx, OpSessionEnded, SessionArgs{User: user, Display: display}, nil)
}

// Sessions lists the session directory, newest first.
func (db *DB) Sessions(ctx context.Context) ([]SessionRow, error) {
	var out []SessionRow
	err := db.call(ctx, OpSessions, nil, &out)
	return out, err
}

// SessionsRunning ends this host's live rows whose session is not among
// running (logind's list, user and display): sessions that ended while no
// supervisor watched, so that they neither route users nor load the host.
func (db *DB) SessionsRunning(ctx context.Context, running []SessionRow) error {
	return db.call(ctx, OpSessionsRunning, RunningArgs{Running: running}, nil)
}
