// SPDX-License-Identifier: GPL-2.0-or-later

package packet

import (
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func TestParseAliases(t *testing.T) {
	// The first entries of a real 3.1.3 client's table (traces/a1-version-direct).
	real := value.Dict{
		{Key: []byte("hello"), Value: int64(1)}, {Key: []byte("info"), Value: int64(2)},
		{Key: []byte("ping"), Value: int64(13)}, {Key: []byte("draw"), Value: int64(35)},
	}
	tests := []struct {
		name string
		in   any
		err  string
		n    int
	}{
		{"absent", nil, "", 0},
		{"real 3.1.3 table", real, "", 4},
		{"not a dict", []any{int64(1)}, "want a dict", 0},
		{"negative id", value.Dict{{Key: "hello", Value: int64(-1)}}, "non-negative", 0},
		{"string id", value.Dict{{Key: "hello", Value: "1"}}, "non-negative", 0},
		{"int key", value.Dict{{Key: int64(1), Value: int64(1)}}, "not a packet name", 0},
		{"huge id", value.Dict{{Key: "x", Value: int64(1) << 40}}, "non-negative", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseAliases(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || a.Len() != tt.n {
				t.Fatalf("got %d aliases, err %v", a.Len(), err)
			}
		})
	}
	a, _ := ParseAliases(real)
	if n, ok := a.Name(35); !ok || n != "draw" {
		t.Errorf("Name(35) = %q %v", n, ok)
	}
	if id, ok := a.ID("ping"); !ok || id != 13 {
		t.Errorf("ID(ping) = %d %v", id, ok)
	}
	if d := a.Dict(); len(d) != 4 || !value.KeyEquals(d[3].Key, "draw") || d[3].Value != int64(35) {
		t.Errorf("Dict() = %v", d)
	}
	big := make(value.Dict, MaxAliases+1)
	for i := range big {
		big[i] = value.Item{Key: "x", Value: int64(i)}
	}
	if _, err := ParseAliases(big); err == nil {
		t.Error("oversized table accepted")
	}
}

func TestType(t *testing.T) {
	announced := NewAliases("hello", "info")
	tests := []struct {
		p    []any
		want string
		err  string
	}{
		{[]any{"hello"}, "hello", ""},
		{[]any{[]byte("draw"), int64(1)}, "draw", ""},
		{[]any{int64(1), value.Dict{}}, "hello", ""},
		{[]any{int64(9)}, "", "unknown packet type alias 9"},
		{[]any{}, "", "empty packet"},
		{[]any{1.5}, "", "invalid packet type: float"},
	}
	for _, tt := range tests {
		got, err := Type(tt.p, announced)
		if got != tt.want || (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Type(%v) = %q, %v; want %q, %q", tt.p, got, err, tt.want, tt.err)
		}
	}
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"window-draw": "draw", "window-draw-ack": "damage-sequence", "connection-close": "disconnect",
		"pointer-motion": "pointer", "audio-data": "sound-data", "draw": "draw", "hello": "hello",
	} {
		if got := Canonical(in); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDisconnect(t *testing.T) {
	p := NewDisconnect(ReasonSessionNotFound, "no sessions found")
	r, d := DisconnectReason(p)
	if r != "session not found error" || len(d) != 1 || d[0] != "no sessions found" {
		t.Fatalf("%q %q", r, d)
	}
	// Decoded from legacy rencode, strings are bytes.
	r, d = DisconnectReason([]any{[]byte("disconnect"), []byte("authentication failed")})
	if r != ReasonAuthFailed || d != nil {
		t.Fatalf("%q %q", r, d)
	}
	if r, _ := DisconnectReason([]any{"disconnect"}); r != "" {
		t.Fatalf("reason of a bare disconnect: %q", r)
	}
}
