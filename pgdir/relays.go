// SPDX-License-Identifier: GPL-2.0-or-later

package pgdir

import "context"

// AddRelay records a live relay of this proxy (worker pid, for user).
func (db *DB) AddRelay(ctx context.Context, pid int, user string) error {
	return db.call(ctx, OpAddRelay, RelayArgs{PID: pid, User: user}, nil)
}

// RemoveRelay deletes the record of this proxy's relay pid.
func (db *DB) RemoveRelay(ctx context.Context, pid int) error {
	return db.call(ctx, OpRemoveRelay, RelayArgs{PID: pid}, nil)
}

// OtherRelays counts user's live relays through the other proxies (this
// one counts its own in memory).
func (db *DB) OtherRelays(ctx context.Context, user string) (int, error) {
	var n Count
	err := db.call(ctx, OpOtherRelays, RelayArgs{User: user}, &n)
	return int(n.N), err
}

// SyncRelays replaces this proxy's records with live (pid: user): at
// start-up (the rows an earlier run left are stale) and after an outage
// (starts and ends went unrecorded).
func (db *DB) SyncRelays(ctx context.Context, live map[int]string) error {
	return db.call(ctx, OpSyncRelays, SyncArgs{Live: live}, nil)
}
