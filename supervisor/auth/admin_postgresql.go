// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// postgresqlStore is the shared directory's users table (pgdir). The URI,
// password included, comes from a root-only file, never the command line,
// where every local user would read it in ps.
type postgresqlStore struct{ db *pgdir.DB }

func openPostgreSQLStore(uriFile string) (*postgresqlStore, error) {
	uri, err := ReadSecret(uriFile, Config{})
	if err != nil {
		return nil, fmt.Errorf("the URI file: %w", err)
	}
	// The helper refuses descriptors it was not given by name: the
	// admin's shell may have leaked some to us.
	if err := namedfd.CloseOnExecAll(); err != nil {
		return nil, err
	}
	// pgdir's own log speaks to a running proxy ("serving from the
	// fallback"); the command says what failed itself, on stderr.
	db, err := StartDirectory(pgdir.Config{URI: string(uri), Name: "xpra-proxy auth", Log: slog.New(slog.DiscardHandler)},
		defaultForbiddenUIDs())
	if err != nil {
		return nil, err
	}
	return &postgresqlStore{db}, nil
}

// postgresqlCreate makes the tables, as every other command and each
// proxy's first call also would: pgdir applies the schema it knows.
func postgresqlCreate(uriFile string, stdout io.Writer) error {
	st, err := openPostgreSQLStore(uriFile)
	if err != nil {
		return err
	}
	defer st.close()
	if err := st.db.Ping(context.Background()); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "schema version %d ready\n", pgdir.SchemaVersion)
	return err
}

func (s *postgresqlStore) close() { s.db.Close() }

func (s *postgresqlStore) add(row []string) error {
	return s.db.AddUser(context.Background(), pgdir.User{Username: row[0], Password: row[1], UID: row[2], GID: row[3],
		Displays: row[4], EnvOptions: row[5], SessionOptions: row[6]})
}

func (s *postgresqlStore) remove(username, password string) (int64, error) {
	return s.db.RemoveUser(context.Background(), username, password)
}

func (s *postgresqlStore) set(username, column, value string) (int64, error) {
	return s.db.SetUser(context.Background(), username, column, value)
}

func (s *postgresqlStore) list() ([][]string, error) {
	users, err := s.db.Users(context.Background())
	if err != nil {
		return nil, err
	}
	out := make([][]string, len(users))
	for i, u := range users {
		out[i] = []string{u.Username, u.Password, u.UID, u.GID, u.Displays, u.EnvOptions, u.SessionOptions}
	}
	return out, nil
}
