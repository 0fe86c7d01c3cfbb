// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"github.com/xpra-proxy/xpra-proxy/pgdir"

	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
)

func TestOutageAndRecovery(t *testing.T) {
	c := pglab.Start(t)
	db, err := Open(Config{URI: c.URI(), Timeout: time.Second, Retry: 300 * time.Millisecond, Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	count := func() (int, error) {
		var n int
		err := db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
			return p.QueryRow(ctx, `SELECT count(*) FROM xpra_proxy_schema`).Scan(&n)
		})
		return n, err
	}
	if n, err := count(); err != nil || n != SchemaVersion {
		t.Fatalf("schema rows %d, %v; want %d", n, err, SchemaVersion)
	}
	// A second proxy on the same database applies nothing again.
	db2, err := Open(Config{URI: c.URI(), Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if err := db2.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := count(); n != SchemaVersion {
		t.Fatalf("after a second proxy: %d schema rows", n)
	}
	// An SQL error is not an outage.
	err = db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := p.Exec(ctx, `SELECT * FROM no_such_table`)
		return err
	})
	if err == nil || errors.Is(err, ErrUnavailable) || !db.Status().Up {
		t.Fatalf("SQL error: %v, status %+v", err, db.Status())
	}

	c.Stop()
	changed := db.Changed()
	start := time.Now()
	if _, err := count(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with the database stopped: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a call on a dead database took %v, past its 1 s bound", took)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed when the database went down")
	}
	if st := db.Status(); st.Up || st.Err == "" {
		t.Fatalf("status while down: %+v", st)
	}
	// Within the retry window the failure is immediate.
	start = time.Now()
	if _, err := count(); !errors.Is(err, ErrUnavailable) || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("second call while down: %v after %v", err, time.Since(start))
	}

	c.Start()
	// Pinged as the supervisor's Watch does, every Retry.
	deadline := time.Now().Add(15 * time.Second)
	for db.Ping(ctx) != nil || !db.Status().Up {
		if time.Now().After(deadline) {
			t.Fatalf("the database not seen back: %+v", db.Status())
		}
		time.Sleep(300 * time.Millisecond)
	}
	if n, err := count(); err != nil || n != SchemaVersion {
		t.Fatalf("after recovery: %d, %v", n, err)
	}
}

func TestBadURI(t *testing.T) {
	_, err := Open(Config{URI: "postgres://u:secretpw@[::1"})
	if err == nil {
		t.Fatal("a bad URI opened")
	}
	if got := err.Error(); strings.Contains(got, "secretpw") {
		t.Fatalf("the error shows the password: %s", got)
	}
}

func TestSchemaVersion(t *testing.T) {
	if len(schema)-1 != pgdir.SchemaVersion {
		t.Fatalf("pgstore has %d schema versions, pgdir.SchemaVersion says %d", len(schema)-1, pgdir.SchemaVersion)
	}
}
