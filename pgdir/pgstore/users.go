// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// User is pgdir's.
type User = pgdir.User

func fields(u *User) []any {
	return []any{&u.Username, &u.Password, &u.UID, &u.GID, &u.Displays, &u.EnvOptions, &u.SessionOptions}
}

const selectUsers = `SELECT username, password, uid, gid, displays, env_options, session_options FROM users`

// UserRows is a login's one query: all of username's rows, passwords
// included, so the caller proves the client's answer against each and
// takes the row of the one that matches, in one round trip. The order
// does not matter: (username, password) is the primary key, so one
// password selects one row.
func (db *Store) UserRows(ctx context.Context, username string) ([]User, error) {
	var out []User
	err := db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		var err error
		out, err = queryUsers(ctx, p, selectUsers+` WHERE username = $1`, username)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pgdir: user %q: %w", username, err)
	}
	return out, nil
}

// Users lists every row, by username (the admin command's list).
func (db *Store) Users(ctx context.Context) ([]User, error) {
	var out []User
	err := db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		var err error
		out, err = queryUsers(ctx, p, selectUsers+` ORDER BY username, password`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pgdir: listing users: %w", err)
	}
	return out, nil
}

func queryUsers(ctx context.Context, p *pgxpool.Pool, q string, args ...any) ([]User, error) {
	rows, err := p.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var out []User
	var u User
	if _, err := pgx.ForEachRow(rows, fields(&u), func() error { out = append(out, u); return nil }); err != nil {
		return nil, err
	}
	return out, nil
}

// AddUser inserts a row; the same username and password twice is an
// error (the primary key).
func (db *Store) AddUser(ctx context.Context, u User) error {
	err := db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := p.Exec(ctx, `INSERT INTO users (username, password, uid, gid, displays, env_options, session_options)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, u.Username, u.Password, u.UID, u.GID, u.Displays, u.EnvOptions, u.SessionOptions)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgdir: adding user %q: %w", u.Username, err)
	}
	return nil
}

// RemoveUser deletes username's rows, only the one with password unless
// it is empty, and says how many went.
func (db *Store) RemoveUser(ctx context.Context, username, password string) (int64, error) {
	var n int64
	err := db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		q, args := `DELETE FROM users WHERE username = $1`, []any{username}
		if password != "" {
			q, args = q+` AND password = $2`, append(args, password)
		}
		tag, err := p.Exec(ctx, q, args...)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgdir: removing user %q: %w", username, err)
	}
	return n, nil
}

// SetUser sets one column (not username) of all username's rows and says
// how many it changed.
func (db *Store) SetUser(ctx context.Context, username, column, value string) (int64, error) {
	if err := pgdir.CheckColumn(column); err != nil {
		return 0, err
	}
	var n int64
	err := db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		// column is one of UserColumns: never the caller's text.
		tag, err := p.Exec(ctx, `UPDATE users SET `+pgx.Identifier{column}.Sanitize()+` = $2 WHERE username = $1`, username, value)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgdir: setting %s of user %q: %w", column, username, err)
	}
	return n, nil
}
