// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/logging"
	"github.com/xpra-proxy/xpra-proxy/logind"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
)

func TestSessionBook(t *testing.T) {
	proxy := func(id string) logind.Session {
		return logind.Session{ID: id, Service: logind.ServiceName, User: "u" + id}
	}
	other := logind.Session{ID: "9", Service: "sshd"}
	ids := func(ss []logind.Session) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.ID)
		}
		slices.Sort(out)
		return out
	}
	b := sessionBook{}
	if gone := b.listed([]logind.Session{proxy("1"), proxy("2"), other}); len(gone) != 0 {
		t.Errorf("first list: gone %v", ids(gone))
	}
	if _, ok := b.removed("9"); ok {
		t.Error("another service's session is in the book")
	}
	b.add(proxy("3"))
	b.add(logind.Session{ID: "4", Service: "login"})
	if s, ok := b.removed("3"); !ok || s.User != "u3" {
		t.Errorf("removed 3: %v %v", s, ok)
	}
	if _, ok := b.removed("3"); ok {
		t.Error("3 removed twice")
	}
	if _, ok := b.removed("4"); ok {
		t.Error("another service's session added")
	}
	// The watch was lost: 1 ended meanwhile, 5 began.
	if gone := b.listed([]logind.Session{proxy("2"), proxy("5")}); !slices.Equal(ids(gone), []string{"1"}) {
		t.Errorf("relisted: gone %v, want [1]", ids(gone))
	}
	if _, ok := b.removed("5"); !ok {
		t.Error("a session listed later is not in the book")
	}
}

// TestSessionEndedRecord: the record's fields, through the real handler.
func TestSessionEndedRecord(t *testing.T) {
	var got map[string]string
	h := logging.NewHandler(&bytes.Buffer{}, logging.Options{Journal: true,
		Send: func(_ string, _ logging.Priority, f map[string]string) error { got = f; return nil }})
	since := time.Now().Add(-90 * time.Second)
	sessionEnded(slog.New(h), logind.Session{ID: "c7", User: "alice", UID: 1000, Display: ":100",
		RemoteHost: "192.0.2.1", Service: logind.ServiceName, Since: since}, since.Add(90*time.Second))
	want := map[string]string{"MESSAGE_ID": string(audit.SessionEnded), "USER": "alice", "UID": "1000",
		"DISPLAY": ":100", "SESSION": "c7", "REMOTE_HOST": "192.0.2.1", "DURATION_SEC": "90.000"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q (%v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) || strings.Contains(got["DURATION_SEC"], "s") {
		t.Errorf("fields %v, want %v", got, want)
	}
}
