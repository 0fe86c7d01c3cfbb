// SPDX-License-Identifier: GPL-2.0-or-later

package pgdir

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// User is one row of xpra's users table, every column text as the sqlite
// module has it. A user may have several rows, one per password: the
// password a client proves selects its row (its uid, displays, options).
type User struct {
	Username       string
	Password       string
	UID            string
	GID            string
	Displays       string // comma-separated
	EnvOptions     string // k=v;k2=v2
	SessionOptions string // k=v;k2=v2
}

// UserColumns are the users table's columns, in User's order.
var UserColumns = []string{"username", "password", "uid", "gid", "displays", "env_options", "session_options"}

// ErrNoSuchColumn is SetUser's error for a column it may not set.
var ErrNoSuchColumn = errors.New("pgdir: no such column of users")

// CheckColumn refuses a column SetUser may not set.
func CheckColumn(column string) error {
	if column == "username" || !slices.Contains(UserColumns, column) {
		return fmt.Errorf("%w: %q", ErrNoSuchColumn, column)
	}
	return nil
}

// UserRows is a login's one query: all of username's rows, passwords
// included, so the caller proves the client's answer against each and
// takes the row of the one that matches, in one round trip.
func (db *DB) UserRows(ctx context.Context, username string) ([]User, error) {
	var out []User
	err := db.call(ctx, OpUserRows, UserArgs{Username: username}, &out)
	return out, err
}

// Users lists every row, by username (the admin command's list).
func (db *DB) Users(ctx context.Context) ([]User, error) {
	var out []User
	err := db.call(ctx, OpUsers, nil, &out)
	return out, err
}

// AddUser inserts a row; the same username and password twice is an
// error (the primary key).
func (db *DB) AddUser(ctx context.Context, u User) error {
	return db.call(ctx, OpAddUser, u, nil)
}

// RemoveUser deletes username's rows, only the one with password unless
// it is empty, and says how many went.
func (db *DB) RemoveUser(ctx context.Context, username, password string) (int64, error) {
	var n Count
	err := db.call(ctx, OpRemoveUser, UserArgs{Username: username, Password: password}, &n)
	return n.N, err
}

// SetUser sets one column (not username) of all username's rows and says
// how many it changed.
func (db *DB) SetUser(ctx context.Context, username, column, value string) (int64, error) {
	if err := CheckColumn(column); err != nil {
		return 0, err
	}
	var n Count
	err := db.call(ctx, OpSetUser, UserArgs{Username: username, Column: column, Value: value}, &n)
	return n.N, err
}
