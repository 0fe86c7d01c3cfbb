// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"log/slog"
	"os/user"
	"testing"
	"time"
)

func TestParseUIDs(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		allowed []uint32
		denied  []uint32
		bad     bool
	}{
		{spec: "1000-59999", allowed: []uint32{1000, 59999}, denied: []uint32{0, 999, 60000, 65534}},
		{spec: "1000-1999,65534", allowed: []uint32{1500, 65534}, denied: []uint32{2000, 0}},
		{spec: "any", allowed: []uint32{1, 1000, 65534}, denied: []uint32{0}},
		{spec: "0", allowed: []uint32{0}, denied: []uint32{1}}, // root only when named
		{spec: "5-3", bad: true},
		{spec: "x", bad: true},
		{spec: "", bad: true},
		{spec: "1000-", bad: true},
	} {
		allow, err := parseUIDs(tc.spec)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted", tc.spec)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.spec, err)
		}
		for _, u := range tc.allowed {
			if !allow(u) {
				t.Errorf("%q refuses %d", tc.spec, u)
			}
		}
		for _, u := range tc.denied {
			if allow(u) {
				t.Errorf("%q allows %d", tc.spec, u)
			}
		}
	}
}

func TestParseUsers(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		spec    string
		allowed []uint32
		denied  []uint32
	}{
		{spec: "", denied: []uint32{0, 65534}},
		{spec: "nobody", allowed: []uint32{65534}, denied: []uint32{0, 1000}},
		{spec: "65534, no-such-user-here", allowed: []uint32{65534}, denied: []uint32{0}},
		{spec: "root,0", denied: []uint32{0}}, // never root
	} {
		allow := parseUsers(tc.spec, quiet).allowed
		for _, u := range tc.allowed {
			if !allow(u) {
				t.Errorf("%q refuses %d", tc.spec, u)
			}
		}
		for _, u := range tc.denied {
			if allow(u) {
				t.Errorf("%q allows %d", tc.spec, u)
			}
		}
	}
}

// A name not found at start is looked up again when a uid outside the
// list connects, at most every retryEvery, so a user created after the
// encoder started (xpra-proxy installed after xpra-proxy-encode) is
// admitted without a restart. The user database here is a map, to
// create the user at a chosen moment.
func TestStatsUsersLater(t *testing.T) {
	now := time.Unix(1700000000, 0)
	db := map[string]string{}
	u := parseUsers("", slog.New(slog.DiscardHandler))
	u.now = func() time.Time { return now }
	lookups := 0
	u.lookup = func(name string) (*user.User, error) {
		lookups++
		if uid, ok := db[name]; ok {
			return &user.User{Username: name, Uid: uid}, nil
		}
		return nil, user.UnknownUserError(name)
	}
	u.missing = []string{"xpra-proxy-control"}
	u.resolve()
	if u.allowed(990) || lookups != 1 {
		t.Fatalf("admitted before the user exists (%d lookups)", lookups)
	}
	db["xpra-proxy-control"] = "990"
	now = now.Add(retryEvery / 2)
	if u.allowed(990) || lookups != 1 {
		t.Errorf("looked up again within retryEvery (%d lookups)", lookups)
	}
	now = now.Add(retryEvery / 2)
	if !u.allowed(990) || lookups != 2 {
		t.Errorf("not admitted after retryEvery (%d lookups)", lookups)
	}
	now = now.Add(time.Hour)
	if u.allowed(991) || lookups != 2 {
		t.Errorf("looked up again with nothing missing (%d lookups)", lookups)
	}
}
