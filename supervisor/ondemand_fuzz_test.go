// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/xpra-proxy/xpra-proxy/ipc"
)

// FuzzStartRequest: a relay runs as the connection's user and may send
// any StartSession; root turns it into the command line of a session it
// starts as that user. Each message is decoded as the ipc channel does
// (JSON) and checked by the real start checks (mode, options, display);
// whatever passes must put only allowed options, as single --name=value
// arguments of plain text, between the admin's arguments and the proxy's
// own last ones.
func FuzzStartRequest(f *testing.F) {
	st := testStarter(f, func(c *SessionConfig) { c.SessionDisplays = "100-109" })
	for _, s := range []string{
		`{"kind":"start-session","mode":"start","display":":100","options":{"start":["xterm","xclock"],"dpi":["96"]}}`,
		`{"kind":"start-session","mode":"desktop","options":{"tcp-auth":["none"],"title":["t"]}}`,
		`{"kind":"start-session","options":{"start":["xterm\n--bind-tcp=0.0.0.0:1"]}}`,
		`{"kind":"start-session","options":{"--daemon":["yes"],"compression_level":["9"]}}`,
		`{"kind":"start-session","mode":"shadow","display":":5.0"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var m ipc.Message
		if json.Unmarshal(in, &m) != nil {
			return
		}
		mode, err := startMode(m.Mode)
		if err != nil {
			return
		}
		opts, ignored, err := st.options(m.Options)
		if err != nil {
			return
		}
		display := ":100"
		if m.Display != "" {
			n, err := displayNumber(m.Display)
			if err != nil {
				return
			}
			if n < 0 || n > 999999999 {
				t.Fatalf("display %q read as %d", m.Display, n)
			}
		}
		for _, k := range ignored {
			if st.overrides[k] {
				t.Fatalf("allowed option %q ignored", k)
			}
		}
		cmd := st.command(mode, display, opts)
		head := append(append(slices.Clone(st.cfg.SessionCommand), mode, display), st.cfg.SessionArgs...)
		tail := []string{"--daemon=no", "--systemd-run=no", "--start-via-proxy=no"}
		if len(cmd) < len(head)+len(tail) || !slices.Equal(cmd[:len(head)], head) || !slices.Equal(cmd[len(cmd)-len(tail):], tail) {
			t.Fatalf("command %q lost the admin's or the proxy's arguments", cmd)
		}
		n := 0
		for _, vs := range opts {
			n += len(vs)
		}
		client := cmd[len(head) : len(cmd)-len(tail)]
		if len(client) != n {
			t.Fatalf("%d client arguments for %d values: %q", len(client), n, client)
		}
		for _, a := range client {
			name, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if name == "compress" {
				name = "compression_level"
			}
			if !strings.HasPrefix(a, "--") || !ok || !st.overrides[name] || !utf8.ValidString(v) ||
				strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				t.Fatalf("client argument %q", a)
			}
		}
	})
}
