// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	// modernc.org/sqlite is a pure Go translation of SQLite: no cgo, so
	// the proxy stays a static binary. It registers the driver "sqlite".
	_ "modernc.org/sqlite"
)

// Defaults of xpra's sqlite module; the queries can be overridden.
const (
	sqliteDefaultFile          = "sqlite.sdb"
	sqliteDefaultPasswordQuery = "SELECT password FROM users WHERE username=(?)"
	sqliteDefaultSessionsQuery = "SELECT uid, gid, displays, env_options, session_options FROM users WHERE username=(?) AND password=(?)"
)

// sqliteTimeout bounds one authentication's queries, so a locked or huge
// database cannot hold up the supervisor.
const sqliteTimeout = 5 * time.Second

// sqliteModule is xpra's "sqlite" module: the password query lists the
// user's passwords, and the one the client proved selects its session row.
type sqliteModule struct {
	path          string
	dsn           string
	passwordQuery string
	sessionsQuery string

	owners []uint32 // who may own the database (checkSecretFile)

	mu   sync.Mutex
	db   *sql.DB     // open on the file below
	file os.FileInfo // what db was opened on, to notice a replaced file
}

func newSQLite(spec Spec, cfg Config) (Module, error) {
	name := spec.Options["filename"]
	if name == "" {
		name = sqliteDefaultFile
	}
	// Resolved now (as the reference joins it with the start directory), so
	// a later chdir cannot change which database is read.
	path, err := filepath.Abs(name)
	if err != nil {
		return nil, fmt.Errorf("auth: module sqlite: filename %q: %w", name, err)
	}
	owners := fileOwners(cfg)
	if err := checkSecretPath(path, owners); err != nil {
		return nil, fmt.Errorf("auth: module sqlite: %w", err)
	}
	m := &sqliteModule{
		owners:        owners,
		path:          path,
		dsn:           sqliteDSN(path, "ro"),
		passwordQuery: spec.Options["password_query"],
		sessionsQuery: spec.Options["sessions_query"],
	}
	if m.passwordQuery == "" {
		m.passwordQuery = sqliteDefaultPasswordQuery
	}
	if m.sessionsQuery == "" {
		m.sessionsQuery = sqliteDefaultSessionsQuery
	}
	return m, nil
}

// sqliteDSN is a SQLite URI for path opened in mode (ro, rw, rwc). The
// characters a URI gives meaning to are escaped so any file name works;
// the busy timeout lets a read wait out a concurrent admin write.
func sqliteDSN(path, mode string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?mode=" + mode + "&_pragma=busy_timeout(2000)"
}

func (m *sqliteModule) Name() string         { return "sqlite" }
func (m *sqliteModule) NeedsChallenge() bool { return true }

func (m *sqliteModule) Authenticate(r Request) (*Session, error) {
	if r.Verify == nil && r.Plain == nil {
		return nil, fmt.Errorf("%w: sqlite: no challenge answered", ErrDenied)
	}
	db, err := m.open()
	if err != nil {
		return nil, fmt.Errorf("%w: sqlite: opening %s: %w", ErrDenied, m.path, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sqliteTimeout)
	defer cancel()

	passwords, err := m.passwords(ctx, db, r.Username)
	if err != nil {
		return nil, fmt.Errorf("%w: sqlite: %s: password query: %w", ErrDenied, m.path, err)
	}
	i := provedPassword(r, passwords)
	switch {
	case len(passwords) == 0:
		return nil, fmt.Errorf("%w: sqlite: user %q not found in %s", ErrDenied, r.Username, m.path)
	case i < 0:
		return nil, fmt.Errorf("%w: sqlite: wrong password for user %q", ErrDenied, r.Username)
	}
	// The password is passed as a string: SQLite never finds a TEXT
	// column equal to a BLOB parameter.
	row := db.QueryRowContext(ctx, m.sessionsQuery, r.Username, passwords[i])
	var uid, gid, displays, env, opts sql.NullString
	if err := row.Scan(&uid, &gid, &displays, &env, &opts); err != nil {
		if err == sql.ErrNoRows {
			return nil, fmt.Errorf("%w: sqlite: no session row for user %q", ErrDenied, r.Username)
		}
		return nil, fmt.Errorf("%w: sqlite: %s: sessions query: %w", ErrDenied, m.path, err)
	}
	return rowSession("sqlite", r.Username, uid.String, gid.String, displays.String, env.String, opts.String)
}

// open returns a handle on the database. The reference opens the file
// for every attempt, so that edits and replacements by the admin command
// are seen; opening costs a login 0.3 ms, so the handle is kept instead:
// SQLite itself sees changes made in place at each query, and a file
// replaced by another (a new inode) or removed is noticed here, before
// each attempt. Read-only mode means a missing file is an error instead
// of a new empty database.
func (m *sqliteModule) open() (*sql.DB, error) {
	fi, err := os.Stat(m.path)
	if err != nil {
		return nil, err
	}
	if err := checkSecretFile(m.path, fi, m.owners); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.db != nil && os.SameFile(fi, m.file) {
		return m.db, nil
	}
	db, err := sql.Open("sqlite", m.dsn)
	if err != nil {
		return nil, err
	}
	if old := m.db; old != nil {
		// An attempt may still be reading the old file: its queries end
		// within sqliteTimeout.
		time.AfterFunc(sqliteTimeout+time.Second, func() { old.Close() })
	}
	m.db, m.file = db, fi
	return db, nil
}

// Close lets the database go: a reload that replaced the module calls it
// once no login uses the module any more.
func (m *sqliteModule) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.db == nil {
		return nil
	}
	err := m.db.Close()
	m.db, m.file = nil, nil
	return err
}

// passwords runs the password query. NULL passwords are skipped: they
// match nothing.
func (m *sqliteModule) passwords(ctx context.Context, db *sql.DB, username string) ([]string, error) {
	rows, err := db.QueryContext(ctx, m.passwordQuery, username)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p sql.NullString
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		if p.Valid {
			out = append(out, p.String)
		}
	}
	return out, rows.Err()
}
