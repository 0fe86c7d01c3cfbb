// SPDX-License-Identifier: GPL-2.0-or-later

package logging

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPriority(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		want  Priority
	}{
		{slog.LevelDebug - 4, PriDebug},
		{slog.LevelDebug, PriDebug},
		{slog.LevelInfo - 1, PriDebug},
		{slog.LevelInfo, PriInfo},
		{slog.LevelInfo + 2, PriNotice},
		{slog.LevelWarn, PriWarning},
		{slog.LevelWarn + 2, PriWarning},
		{slog.LevelError, PriErr},
		{slog.LevelError + 4, PriErr},
	} {
		if got := PriorityOf(tc.level); got != tc.want {
			t.Errorf("PriorityOf(%v) = %d, want %d", tc.level, got, tc.want)
		}
	}
}

// TestFormat: one line per record in slog's text format; under the
// journal a priority prefix and no time, otherwise the time; nil values
// dropped wherever they come from.
func TestFormat(t *testing.T) {
	var nilErr error
	for _, tc := range []struct {
		name    string
		journal bool
		log     func(*slog.Logger)
		want    string // the line after the time, if any
	}{
		{"error under the journal", true, func(l *slog.Logger) { l.Error("configuration", "err", errors.New("bad key")) },
			`<3>level=ERROR msg=configuration err="bad key"`},
		{"warning under the journal", true, func(l *slog.Logger) { l.Warn("authentication failed", "user", "bob") },
			`<4>level=WARN msg="authentication failed" user=bob`},
		{"info under the journal", true, func(l *slog.Logger) { l.Info("listening", "type", "tcp") },
			`<6>level=INFO msg=listening type=tcp`},
		{"notice under the journal", true, func(l *slog.Logger) { l.Log(t.Context(), slog.LevelInfo+2, "notice") },
			`<5>level=INFO+2 msg=notice`},
		{"debug under the journal", true, func(l *slog.Logger) { l.Debug("detail") },
			`<7>level=DEBUG msg=detail`},
		{"off the journal", false, func(l *slog.Logger) { l.Warn("refused", "peer", "192.0.2.1:5") },
			`level=WARN msg=refused peer=192.0.2.1:5`},
		{"nil error dropped", false, func(l *slog.Logger) { l.Info("relay worker ended", "worker", 7, "err", nilErr) },
			`level=INFO msg="relay worker ended" worker=7`},
		{"nil dropped from With", true, func(l *slog.Logger) { l.With("err", nil, "a", 1).Info("x", "status", nil) },
			`<6>level=INFO msg=x a=1`},
		{"nil dropped in a group", false, func(l *slog.Logger) { l.WithGroup("g").Info("x", "err", nil, "b", 2) },
			`level=INFO msg=x g.b=2`},
		{"newline quoted: one line", true, func(l *slog.Logger) { l.Warn("x", "user", "a\nlevel=ERROR msg=forged") },
			`<4>level=WARN msg=x user="a\nlevel=ERROR msg=forged"`},
		{"typed nil pointer kept", false, func(l *slog.Logger) { l.Info("x", "p", (*int)(nil)) },
			`level=INFO msg=x p=<nil>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.log(slog.New(NewHandler(&buf, Options{Level: slog.LevelDebug, Journal: tc.journal})))
			line := buf.String()
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
				t.Fatalf("not one line: %q", line)
			}
			line = strings.TrimSuffix(line, "\n")
			if !tc.journal {
				m := regexp.MustCompile(`^time=(\S+) `).FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("no time off the journal: %q", line)
				}
				if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
					t.Errorf("time %q: %v", m[1], err)
				}
				line = strings.TrimPrefix(line, m[0])
			}
			if line != tc.want {
				t.Errorf("got  %q\nwant %q", line, tc.want)
			}
		})
	}
}

func TestLevel(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(NewHandler(&buf, Options{Journal: true}))
	l.Debug("hidden")
	l.Info("shown")
	if got := buf.String(); got != "<6>level=INFO msg=shown\n" {
		t.Errorf("default level Info: %q", got)
	}
}

type sent struct {
	msg    string
	prio   Priority
	fields map[string]string
}

// The ids of these tests; the real ones are supervisor/audit's.
const (
	idLogin = "48a6f68777f2474480d4c86cc3fe1d79"
	idRelay = "079f0379076d4f049bac3605b8cb47d0"
)

// TestSend: audit records (those with a message id) go to Send with
// their attributes as fields, others to the stream; a failed send falls
// back to the stream; without Send an audit record is a line.
func TestSend(t *testing.T) {
	id := func(s string) slog.Attr { return slog.String(MessageIDKey, s) }
	for _, tc := range []struct {
		name      string
		send      bool
		sendErr   error
		log       func(*slog.Logger)
		wantSent  *sent
		wantLines string
	}{
		{"audit record", true, nil, func(l *slog.Logger) {
			l.With("peer", "192.0.2.1:5", "err", nil).Warn("authentication failed", id(idLogin),
				"user", "bob", "source", "192.0.2.1", "transport", "ssl", "module", "pam", "reason", "wrong password")
		}, &sent{`level=WARN msg="authentication failed" peer=192.0.2.1:5 message_id=` + idLogin +
			` user=bob source=192.0.2.1 transport=ssl module=pam reason="wrong password"`, PriWarning,
			map[string]string{"MESSAGE_ID": idLogin, "PEER": "192.0.2.1:5",
				"USER": "bob", "SOURCE": "192.0.2.1", "TRANSPORT": "ssl", "MODULE": "pam", "REASON": "wrong password"}}, ""},
		{"groups, durations, numbers; forged journal fields dropped", true, nil, func(l *slog.Logger) {
			l.With("priority", "0").WithGroup("relay").Info("relay ended", id(idRelay), "duration", 1500*time.Millisecond,
				"bytes_from_client", int64(42), "priority", "0", "message", "forged", "syslog_identifier", "sshd")
		}, &sent{`level=INFO msg="relay ended" priority=0 relay.message_id=` + idRelay +
			` relay.duration=1.5s relay.bytes_from_client=42 relay.priority=0 relay.message=forged relay.syslog_identifier=sshd`, PriInfo,
			map[string]string{"MESSAGE_ID": idRelay,
				"RELAY_DURATION": "1.5s", "RELAY_BYTES_FROM_CLIENT": "42", "RELAY_PRIORITY": "0", "RELAY_MESSAGE": "forged",
				"RELAY_SYSLOG_IDENTIFIER": "sshd"}}, ""},
		{"top-level journal names not forwarded", true, nil, func(l *slog.Logger) {
			l.Info("x", id(idRelay), "priority", "0", "message", "forged", "syslog_identifier", "sshd")
		}, &sent{`level=INFO msg=x message_id=` + idRelay + ` priority=0 message=forged syslog_identifier=sshd`, PriInfo,
			map[string]string{"MESSAGE_ID": idRelay}}, ""},
		{"not an audit record", true, nil, func(l *slog.Logger) { l.Info("listening") }, nil, "<6>level=INFO msg=listening\n"},
		{"no Send: a line", false, nil, func(l *slog.Logger) { l.Info("x", id(idRelay)) }, nil,
			"<6>level=INFO msg=x message_id=" + idRelay + "\n"},
		{"send fails: the line instead", true, errors.New("ENOBUFS"), func(l *slog.Logger) { l.Info("x", id(idRelay)) },
			&sent{"level=INFO msg=x message_id=" + idRelay, PriInfo, map[string]string{"MESSAGE_ID": idRelay}},
			"<6>level=INFO msg=x message_id=" + idRelay + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			var got []sent
			o := Options{Journal: true}
			if tc.send {
				o.Send = func(msg string, p Priority, fields map[string]string) error {
					got = append(got, sent{msg, p, fields})
					return tc.sendErr
				}
			}
			tc.log(slog.New(NewHandler(&buf, o)))
			if buf.String() != tc.wantLines {
				t.Errorf("stream: %q, want %q", buf.String(), tc.wantLines)
			}
			if tc.wantSent == nil {
				if len(got) != 0 {
					t.Errorf("sent %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("sent %d entries", len(got))
			}
			g := got[0]
			if g.msg != tc.wantSent.msg || g.prio != tc.wantSent.prio {
				t.Errorf("sent %q at %d\nwant %q at %d", g.msg, g.prio, tc.wantSent.msg, tc.wantSent.prio)
			}
			if !maps.Equal(g.fields, tc.wantSent.fields) {
				t.Errorf("fields %v\nwant   %v", g.fields, tc.wantSent.fields)
			}
		})
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"user": "USER", "auth_module": "AUTH_MODULE", "bytes.client": "BYTES_CLIENT", "_SYSTEMD_UNIT": "X__SYSTEMD_UNIT",
		"1st": "X_1ST", "": "X_", "ünï": "X___N__", "a-b": "A_B",
	} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsJournalStream(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		want bool
	}{
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{"", false},
		{"x:y", false},
		{fmt.Sprint(st.Dev), false},
	} {
		if got := isJournalStream(tc.env, int(f.Fd())); got != tc.want {
			t.Errorf("JOURNAL_STREAM=%q: %v, want %v", tc.env, got, tc.want)
		}
	}
}
