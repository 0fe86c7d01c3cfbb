// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheck is --check-config: what New would refuse, refused without
// touching the run directory.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	worker := filepath.Join(dir, "xpra-proxy-worker")
	for _, p := range []string{worker, filepath.Join(dir, "xpra-proxy-preauth")} {
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A pre-auth program without a worker beside it.
	alone := t.TempDir()
	if err := os.WriteFile(filepath.Join(alone, "xpra-proxy-preauth"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	base := []string{"--worker=" + worker, "--run-dir=" + run, "--control-socket=off", "--html=off"}
	for _, tc := range []struct {
		name  string
		flags []string
		want  string // in the error; "" for none
	}{
		{"fine", []string{"--auth=password,value=x"}, ""},
		{"two modules asking for a password", []string{"--auth=password,value=x", "--auth=password,value=y"}, "at most one module may ask for a password"},
		{"an unknown module", []string{"--auth=no-such-module"}, `unknown module "no_such_module"`},
		{"no worker program", []string{"--auth=none", "--worker=" + filepath.Join(alone, "xpra-proxy-worker")}, "worker program"},
		{"an unknown auth file owner", []string{"--auth=none", "--auth-file-owner=no-such-user-x"}, "auth-file-owner"},
		{"an encoder user that does not exist", []string{"--auth=none", "--encoder-socket=/run/x.sock", "--encoder-user=no-such-user-x"}, `encoder-user "no-such-user-x"`},
		{"a certificate that is not one", []string{"--auth=none", "--ssl-cert=" + notPEM}, "ssl-cert"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			cfg, err := ParseFlags(append(append([]string{}, base...), tc.flags...))
			if err == nil {
				err = Check(cfg, slog.New(slog.DiscardHandler))
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
			if _, err := os.Stat(run); err == nil {
				t.Errorf("--check-config made the run directory")
			}
		})
	}
}

// TestListenerType: systemd's socket names pick the auth modules; any
// other name goes by the socket's family.
func TestListenerType(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	ul, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	for _, tc := range []struct {
		name string
		l    net.Listener
		want string
	}{
		{"tcp", ul, "tcp"}, {"TCP", ul, "tcp"}, {"unix", tl, "unix"}, {"Unix", tl, "unix"},
		{"xpra-proxy.socket", tl, "tcp"}, {"xpra-proxy.socket", ul, "unix"}, {"", ul, "unix"},
	} {
		if got := listenerType(tc.name, tc.l); got != tc.want {
			t.Errorf("%q on %s: %q, want %q", tc.name, tc.l.Addr().Network(), got, tc.want)
		}
	}
}
