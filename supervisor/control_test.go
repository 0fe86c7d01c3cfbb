// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"bytes"
	"log/slog"
	"strings"
	"syscall"
	"testing"
)

// TestControlCredential: the control process gets a uid of its own when
// its user exists; without it, the pre-auth user's, with a warning that
// names the shared uid; never root.
func TestControlCredential(t *testing.T) {
	preauth := &syscall.Credential{Uid: 4242, Gid: 4242, Groups: []uint32{}}
	for _, tc := range []struct {
		name, user string
		wantUID    uint32
		wantErr    bool
		wantWarn   string
	}{
		{"own user", "nobody", 65534, false, ""},
		{"missing user: shared uid", "no-such-user-xpra-proxy-test", 4242, false, "shared_uid=4242"},
		{"root refused", "root", 0, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			cred, err := controlCredential(tc.user, preauth, slog.New(slog.NewTextHandler(&buf, nil)))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got uid %d, want an error", cred.Uid)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cred.Uid != tc.wantUID {
				t.Errorf("uid %d, want %d", cred.Uid, tc.wantUID)
			}
			if tc.wantWarn != "" && (!strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), tc.wantWarn)) {
				t.Errorf("log %q lacks a warning with %q", buf.String(), tc.wantWarn)
			}
			if tc.wantWarn == "" && buf.Len() > 0 {
				t.Errorf("unexpected log: %s", buf.String())
			}
		})
	}
}
