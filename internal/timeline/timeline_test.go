// SPDX-License-Identifier: GPL-2.0-or-later

package timeline

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestNewFollowsTheLevel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level slog.Level
		want  bool
	}{
		{"debug", slog.LevelDebug, true},
		{"info", slog.LevelInfo, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: tc.level}))
			if got := New(log, time.Now()) != nil; got != tc.want {
				t.Fatalf("timeline made: %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stages []string
		want   []string
	}{
		{"stages in order", []string{"accept", "handover", "hello"}, []string{"worker=7", "accept=", "handover=", "hello="}},
		{"none", nil, []string{"worker=7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			tl := At(time.Now().Add(-2 * time.Millisecond))
			for _, s := range tc.stages {
				tl.Mark(s)
			}
			tl.Log(log, slog.LevelDebug, "setup timeline", "worker", 7)
			line := buf.String()
			last := -1
			for _, w := range tc.want {
				i := strings.Index(line, w)
				if i < 0 || i < last {
					t.Fatalf("line %q: %q missing or out of order", line, w)
				}
				last = i
			}
			if len(tc.stages) > 0 && strings.Contains(line, "accept=0 ") {
				t.Fatalf("line %q: offsets not from the origin", line)
			}
		})
	}
}

func TestNilRecordsNothing(t *testing.T) {
	var tl *Timeline
	tl.Mark("accept")
	if tl.Attrs() != nil || !tl.Origin().IsZero() {
		t.Fatal("a nil timeline reported stages")
	}
	tl.Log(nil, slog.LevelDebug, "never") // must not touch the nil logger
}
