// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
)

// TestPenaltyNote: the line says what happened and how long to wait,
// within what xpra 3.1 shows as text (under 128 printable bytes).
func TestPenaltyNote(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		left time.Duration
		want string
	}{{7 * time.Second, "wait 7 s"}, {6500 * time.Millisecond, "wait 7 s"}, {0, "wait 1 s"}, {-time.Second, "wait 1 s"}, {30 * time.Second, "wait 30 s"}} {
		line := penaltyNote(now.Add(tc.left), now)
		if !strings.HasPrefix(line, "disconnect: too many failed logins") || !strings.Contains(line, tc.want) || !strings.HasSuffix(line, "\n") {
			t.Errorf("%s: %q", tc.left, line)
		}
		if len(line) >= 128 {
			t.Errorf("%s: %d bytes", tc.left, len(line))
		}
	}
}

// TestRefuseWithNote: over real loopback TCP, a penalised xpra client
// (first byte 'P') reads the line and then the end, with no reset; a TLS
// client, or a refusal other than a penalty, gets a bare close.
func TestRefuseWithNote(t *testing.T) {
	s := &Supervisor{log: slog.New(slog.DiscardHandler), notes: make(chan struct{}, noteSlots)}
	penalty := &limits.Refusal{Reason: limits.ReasonPenalty, Until: time.Now().Add(5 * time.Second)}
	for _, tc := range []struct {
		name  string
		first []byte
		err   error
		want  string // what the client reads before the end
	}{
		{"xpra client", append([]byte("P\x00\x00\x00"), make([]byte, 3000)...), penalty, "disconnect: too many failed logins from your address, wait 5 s and try again\n"},
		{"tls client", []byte{0x16, 3, 1, 0, 5}, penalty, ""},
		{"full, not a penalty", []byte("P\x00\x00\x00"), &limits.Refusal{Reason: limits.ReasonFull}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.first); err != nil {
				t.Fatal(err)
			}
			sc, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // the bytes are in (as TCP_DEFER_ACCEPT ensures)
			if !s.refuseWithNote(sc, tc.err) {
				sc.Close()
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil && tc.want != "" {
				t.Fatalf("reading the note: %v (got %q)", err, got)
			}
			if tc.want != "" {
				// The seconds left depend on how fast this ran.
				if pre, _, _ := strings.Cut(tc.want, "wait "); strings.HasPrefix(string(got), pre) && strings.HasSuffix(string(got), " s and try again\n") {
					return
				}
			}
			if string(got) != tc.want {
				t.Fatalf("read %q, want %q", got, tc.want)
			}
		})
	}
	s.wg.Wait()
}
