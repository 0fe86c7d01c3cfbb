// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// sqliteSchema is the table xpra's sqlite_auth.py helper creates; keeping
// it identical lets either tool manage the other's databases.
const sqliteSchema = "CREATE TABLE users (" +
	"username VARCHAR(255) NOT NULL, " +
	"password VARCHAR(255), " +
	"uid VARCHAR(63), " +
	"gid VARCHAR(63), " +
	"displays VARCHAR(8191), " +
	"env_options VARCHAR(8191), " +
	"session_options VARCHAR(8191))"

var sqliteColumns = []string{"username", "password", "uid", "gid", "displays", "env_options", "session_options"}

const adminUsage = `usage:
  sqlite FILENAME create
  sqlite FILENAME add USERNAME PASSWORD [UID GID DISPLAYS ENV_OPTIONS SESSION_OPTIONS]
  sqlite FILENAME remove USERNAME [PASSWORD]
  sqlite FILENAME set USERNAME COLUMN VALUE
  sqlite FILENAME list
  postgresql URI-FILE create|add|remove|set|list ...  (the same, in the shared directory)
UID and GID default to the invoking user's; DISPLAYS is a comma-separated
list; ENV_OPTIONS and SESSION_OPTIONS are "k=v;k2=v2". set changes one
column (password, uid, gid, displays, env_options, session_options) of
all the user's rows. list masks passwords. URI-FILE is a root-only file
holding the PostgreSQL URI (as directory-uri-file); create makes the
tables there, which the other commands and the proxies also do if missing.
`

// adminStore is a users table the admin command manages: a sqlite file
// or the shared directory.
type adminStore interface {
	add(row []string) error // the seven columns
	remove(username, password string) (int64, error)
	set(username, column, value string) (int64, error)
	list() ([][]string, error) // rows of the seven columns
	close()
}

// Admin manages the users tables of the sqlite and postgresql modules
// (xpra's sqlite_auth.py helper commands). It returns the exit code: 0
// done, 1 failed (the reason is on stderr), 2 bad usage.
func Admin(args []string, stdout, stderr io.Writer) int {
	usage := func(msg string) int {
		if msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	if len(args) < 3 {
		return usage("missing arguments")
	}
	if args[0] != "sqlite" && args[0] != "postgresql" {
		return usage(fmt.Sprintf("unknown module %q (only sqlite and postgresql have an admin command)", args[0]))
	}
	file, cmd, rest := args[1], args[2], args[3:]
	switch {
	case cmd == "create" && len(rest) != 0:
		return usage("create takes no arguments")
	case cmd == "add" && (len(rest) < 2 || len(rest) > 7):
		return usage("add takes 2 to 7 arguments")
	case cmd == "remove" && (len(rest) < 1 || len(rest) > 2):
		return usage("remove takes USERNAME [PASSWORD]")
	case cmd == "set" && len(rest) != 3:
		return usage("set takes USERNAME COLUMN VALUE")
	case cmd == "list" && len(rest) != 0:
		return usage("list takes no arguments")
	case !slices.Contains([]string{"create", "add", "remove", "set", "list"}, cmd):
		return usage(fmt.Sprintf("unknown command %q", cmd))
	}
	err := adminRun(args[0], file, cmd, rest, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "%s %s %s: %v\n", args[0], file, cmd, err)
		return 1
	}
	return 0
}

func adminRun(module, file, cmd string, rest []string, stdout io.Writer) error {
	if cmd == "create" {
		if module == "postgresql" {
			return postgresqlCreate(file, stdout)
		}
		return adminCreate(file)
	}
	var st adminStore
	var err error
	if module == "postgresql" {
		st, err = openPostgreSQLStore(file)
	} else {
		st, err = openSQLiteStore(file, cmd == "list")
	}
	if err != nil {
		return err
	}
	defer st.close()
	var n int64
	switch cmd {
	case "add":
		// username, password, uid, gid, displays, env_options, session_options
		row := []string{rest[0], rest[1], strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid()), "", "", ""}
		copy(row[2:], rest[2:])
		return st.add(row)
	case "remove":
		password := ""
		if len(rest) == 2 {
			password = rest[1]
		}
		n, err = st.remove(rest[0], password)
	case "set":
		if rest[1] == "username" || !slices.Contains(sqliteColumns, rest[1]) {
			return fmt.Errorf("no column %q to set (password, uid, gid, displays, env_options, session_options)", rest[1])
		}
		n, err = st.set(rest[0], rest[1], rest[2])
	case "list":
		rows, err := st.list()
		if err != nil {
			return err
		}
		var out strings.Builder
		out.WriteString(strings.Join(sqliteColumns, "|") + "\n")
		for _, cols := range rows {
			// Passwords stay off the terminal (and out of scrollback and logs).
			cols[1] = "***"
			out.WriteString(strings.Join(cols, "|") + "\n")
		}
		_, err = io.WriteString(stdout, out.String())
		return err
	}
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("no matching rows")
	}
	verb := map[string]string{"remove": "removed", "set": "changed"}[cmd]
	_, err = fmt.Fprintf(stdout, "%d rows %s\n", n, verb)
	return err
}

// adminOpen opens the database at file; mode "rwc" may create it, the
// others require it to exist, so a typo does not make a new empty one.
func adminOpen(file, mode string) (*sql.DB, error) {
	path, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	if mode != "rwc" {
		if _, err := os.Stat(path); err != nil {
			return nil, err
		}
	}
	db, err := sql.Open("sqlite", sqliteDSN(path, mode))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return db, nil
}

func adminCreate(file string) error {
	path, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	// The database holds passwords: made 0600 whatever the umask, never
	// through a name another user could have placed (O_EXCL, O_NOFOLLOW),
	// and never in a directory where others could swap it.
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return err
	}
	if di.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("directory %s is world-writable (mode %04o): put the database where only root can write",
			filepath.Dir(path), di.Mode().Perm())
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists", path)
	}
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil { // the umask may have taken bits away, never added: this is for clarity
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	db, err := adminOpen(path, "rw")
	if err != nil {
		return err
	}
	defer db.Close()
	// Plain CREATE TABLE (no IF NOT EXISTS): an existing table is an error
	// ("table users already exists") rather than silently kept.
	if _, err := db.Exec(sqliteSchema); err != nil {
		return err
	}
	return db.Close()
}

// sqliteStore is a sqlite module's database file.
type sqliteStore struct{ db *sql.DB }

func openSQLiteStore(file string, readOnly bool) (adminStore, error) {
	mode := "rw"
	if readOnly {
		mode = "ro"
	}
	db, err := adminOpen(file, mode)
	if err != nil {
		return nil, err
	}
	return sqliteStore{db}, nil
}

func (s sqliteStore) close() { s.db.Close() }

func (s sqliteStore) add(row []string) error {
	vals := make([]any, len(row))
	for i, v := range row {
		vals[i] = v
	}
	q := "INSERT INTO users(" + strings.Join(sqliteColumns, ", ") + ") VALUES(?, ?, ?, ?, ?, ?, ?)"
	if _, err := s.db.Exec(q, vals...); err != nil {
		return err
	}
	return s.db.Close()
}

func (s sqliteStore) remove(username, password string) (int64, error) {
	q, qargs := "DELETE FROM users WHERE username=?", []any{username}
	if password != "" {
		q, qargs = q+" AND password=?", append(qargs, password)
	}
	return s.exec(q, qargs...)
}

func (s sqliteStore) set(username, column, value string) (int64, error) {
	// column is one of sqliteColumns (Admin checked): never free text.
	return s.exec("UPDATE users SET "+column+"=? WHERE username=?", value, username)
}

func (s sqliteStore) exec(q string, args ...any) (int64, error) {
	res, err := s.db.Exec(q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqliteStore) list() ([][]string, error) {
	rows, err := s.db.Query("SELECT " + strings.Join(sqliteColumns, ", ") + " FROM users")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]string
	vals := make([]sql.NullString, len(sqliteColumns))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		cols := make([]string, len(vals))
		for i, v := range vals {
			cols[i] = v.String // NULL shows as empty
		}
		out = append(out, cols)
	}
	return out, rows.Err()
}
