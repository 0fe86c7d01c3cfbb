// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"github.com/xpra-proxy/xpra-proxy/pgdir"

	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
)

func TestUsers(t *testing.T) {
	c := pglab.Start(t)
	db, err := Local(Config{URI: c.URI(), Timeout: time.Second, Retry: time.Second, Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	foo := User{Username: "foo", Password: "bar", UID: "nobody", GID: "nogroup", Displays: ":10,:11"}
	foo2 := User{Username: "foo", Password: "other", UID: "1000", GID: "1000", EnvOptions: "A=1", SessionOptions: "compression=0"}
	moo := User{Username: "moo", Password: "cow"}
	for _, u := range []User{foo, foo2, moo} {
		if err := db.AddUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AddUser(ctx, foo); err == nil || errors.Is(err, pgdir.ErrUnavailable) {
		t.Fatalf("the same user and password twice: %v", err)
	}
	rows := func(name string) []User {
		t.Helper()
		got, err := db.UserRows(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	tests := []struct {
		name string
		op   func() (int64, error) // nil: look only
		n    int64
		user string
		want []User
	}{
		{"two passwords, two rows", nil, 0, "foo", []User{foo, foo2}},
		{"unknown user", nil, 0, "boo", nil},
		{"case matters", nil, 0, "FOO", nil},
		{"set a column", func() (int64, error) { return db.SetUser(ctx, "moo", "displays", ":20") }, 1, "moo",
			[]User{{Username: "moo", Password: "cow", Displays: ":20"}}},
		{"set nobody's", func() (int64, error) { return db.SetUser(ctx, "boo", "uid", "1") }, 0, "boo", nil},
		{"remove one password", func() (int64, error) { return db.RemoveUser(ctx, "foo", "other") }, 1, "foo", []User{foo}},
		{"remove a wrong password", func() (int64, error) { return db.RemoveUser(ctx, "foo", "nope") }, 0, "foo", []User{foo}},
		{"remove all", func() (int64, error) { return db.RemoveUser(ctx, "foo", "") }, 1, "foo", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.op != nil {
				n, err := tt.op()
				if err != nil || n != tt.n {
					t.Fatalf("%d rows, %v; want %d", n, err, tt.n)
				}
			}
			got := rows(tt.user)
			// Rows come in no set order.
			if len(got) == 2 && got[0].Password > got[1].Password {
				got[0], got[1] = got[1], got[0]
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("rows %+v, want %+v", got, tt.want)
			}
		})
	}
	for _, col := range []string{"username", "nope", "password; DROP TABLE users"} {
		if _, err := db.SetUser(ctx, "moo", col, "x"); !errors.Is(err, pgdir.ErrNoSuchColumn) {
			t.Errorf("SetUser column %q: %v", col, err)
		}
	}
	all, err := db.Users(ctx)
	if err != nil || len(all) != 1 || all[0].Username != "moo" {
		t.Fatalf("Users: %+v, %v", all, err)
	}

	c.Stop()
	start := time.Now()
	if _, err := db.UserRows(ctx, "moo"); !errors.Is(err, pgdir.ErrUnavailable) {
		t.Fatalf("with the database stopped: %v", err)
	}
	t.Logf("a login's query on a stopped database failed after %v", time.Since(start))
	if n := db.FallbackLogins(); n != 0 {
		t.Fatalf("fallback logins %d before any", n)
	}
	db.CountFallback()
	if n := db.FallbackLogins(); n != 1 {
		t.Fatalf("fallback logins %d, want 1", n)
	}
}
