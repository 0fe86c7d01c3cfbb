// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"log/slog"
	"testing"
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
		allow := parseUsers(tc.spec, quiet)
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
