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
  sqlite FILENAME list
UID and GID default to the invoking user's; DISPLAYS is a comma-separated
list; ENV_OPTIONS and SESSION_OPTIONS are "k=v;k2=v2". list masks passwords.
`

// Admin manages the databases of the sqlite module (xpra's sqlite_auth.py
// helper commands). It returns the exit code: 0 done, 1 failed (the reason
// is on stderr), 2 bad usage.
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
	if args[0] != "sqlite" {
		return usage(fmt.Sprintf("unknown module %q (only sqlite has an admin command)", args[0]))
	}
	file, cmd, rest := args[1], args[2], args[3:]
	var err error
	switch cmd {
	case "create":
		if len(rest) != 0 {
			return usage("create takes no arguments")
		}
		err = adminCreate(file)
	case "add":
		if len(rest) < 2 || len(rest) > 7 {
			return usage("add takes 2 to 7 arguments")
		}
		err = adminAdd(file, rest)
	case "remove":
		if len(rest) < 1 || len(rest) > 2 {
			return usage("remove takes USERNAME [PASSWORD]")
		}
		var n int64
		if n, err = adminRemove(file, rest); err == nil {
			if n == 0 {
				err = errors.New("no matching rows")
			} else {
				fmt.Fprintf(stdout, "%d rows removed\n", n)
			}
		}
	case "list":
		if len(rest) != 0 {
			return usage("list takes no arguments")
		}
		err = adminList(file, stdout)
	default:
		return usage(fmt.Sprintf("unknown command %q", cmd))
	}
	if err != nil {
		fmt.Fprintf(stderr, "sqlite %s %s: %v\n", file, cmd, err)
		return 1
	}
	return 0
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

func adminAdd(file string, rest []string) error {
	// username, password, uid, gid, displays, env_options, session_options
	vals := []any{rest[0], rest[1], strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid()), "", "", ""}
	for i, v := range rest[2:] {
		vals[2+i] = v
	}
	db, err := adminOpen(file, "rw")
	if err != nil {
		return err
	}
	defer db.Close()
	q := "INSERT INTO users(" + strings.Join(sqliteColumns, ", ") + ") VALUES(?, ?, ?, ?, ?, ?, ?)"
	if _, err := db.Exec(q, vals...); err != nil {
		return err
	}
	return db.Close()
}

func adminRemove(file string, rest []string) (int64, error) {
	db, err := adminOpen(file, "rw")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	q, qargs := "DELETE FROM users WHERE username=?", []any{rest[0]}
	if len(rest) == 2 && rest[1] != "" {
		q, qargs = q+" AND password=?", append(qargs, rest[1])
	}
	res, err := db.Exec(q, qargs...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func adminList(file string, stdout io.Writer) error {
	db, err := adminOpen(file, "ro")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.Query("SELECT " + strings.Join(sqliteColumns, ", ") + " FROM users")
	if err != nil {
		return err
	}
	defer rows.Close()
	var out strings.Builder
	out.WriteString(strings.Join(sqliteColumns, "|") + "\n")
	vals := make([]sql.NullString, len(sqliteColumns))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		cols := make([]string, len(vals))
		for i, v := range vals {
			cols[i] = v.String // NULL shows as empty
		}
		// Passwords stay off the terminal (and out of scrollback and logs).
		cols[1] = "***"
		out.WriteString(strings.Join(cols, "|") + "\n")
	}
	if err := rows.Err(); err != nil {
		return err
	}
	_, err = io.WriteString(stdout, out.String())
	return err
}
