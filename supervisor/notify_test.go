// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestNotify sends each message to a real datagram socket standing where
// systemd's would be, and reads back exactly what systemd would parse.
func TestNotify(t *testing.T) {
	tests := []struct {
		name string
		send func() error
		want string
	}{
		{"ready", notifyReady, "READY=1"},
		{"stopping", notifyStopping, "STOPPING=1"},
		{"status", func() error { return notifyStatus("%d relays, %d logging in", 3, 1) }, "STATUS=3 relays, 1 logging in"},
		{"status stays one assignment", func() error { return notifyStatus("user %s", "eve\nMAINPID=1\r\x00") }, "STATUS=user eve MAINPID=1  "},
	}
	path := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	buf := make([]byte, 4096)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.send(); err != nil {
				t.Fatal(err)
			}
			sock.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := sock.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != tt.want {
				t.Errorf("sent %q, want %q", got, tt.want)
			}
		})
	}
}

// TestNotifyWithoutSystemd: outside systemd every message is a silent no-op.
func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	for _, f := range []func() error{notifyReady, notifyStopping, func() error { return notifyStatus("x") }} {
		if err := f(); err != nil {
			t.Errorf("without NOTIFY_SOCKET: %v", err)
		}
	}
}

// TestNotifyUnreachable: a NOTIFY_SOCKET that leads nowhere is an error the
// caller sees, not silence.
func TestNotifyUnreachable(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	if err := notifyReady(); err == nil {
		t.Fatal("no error for a missing notify socket")
	}
}
