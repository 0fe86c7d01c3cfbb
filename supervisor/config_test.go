package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The shipped file parses and holds the defaults.
func TestShippedConfig(t *testing.T) {
	c := Defaults()
	if err := c.LoadFile("../etc/xpra-proxy.toml"); err != nil {
		t.Fatal(err)
	}
	d := Defaults()
	if c.PreauthUser != d.PreauthUser || c.MaxPreauth != d.MaxPreauth || c.LoginTimeout != d.LoginTimeout ||
		c.PreauthPacketLimit != d.PreauthPacketLimit || len(c.BindTCP) != 0 {
		t.Fatalf("shipped config %+v differs from the defaults %+v", c, d)
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.toml")
	worker := filepath.Join(dir, "worker")
	os.WriteFile(worker, nil, 0o755)
	tests := []struct {
		name    string
		toml    string
		args    []string
		check   func(Config) bool
		wantErr string
	}{
		{"flags", "", []string{"--bind-tcp=127.0.0.1:1", "--bind-tcp=127.0.0.1:2", "--tcp-auth=none", "--login-timeout=5s"},
			func(c Config) bool {
				return len(c.BindTCP) == 2 && c.TCPAuth[0] == "none" && c.LoginTimeout.Duration == 5*time.Second
			}, ""},
		{"file", `bind-tcp = ["0.0.0.0:14500"]` + "\n" + `tcp-auth = ["sqlite,filename=/x.sdb"]` + "\nmax-preauth = 7\n", nil,
			func(c Config) bool { return c.BindTCP[0] == "0.0.0.0:14500" && c.MaxPreauth == 7 }, ""},
		{"flags override the file", `bind-tcp = ["0.0.0.0:14500"]`, []string{"--bind-tcp=127.0.0.1:9"},
			func(c Config) bool { return len(c.BindTCP) == 1 && c.BindTCP[0] == "127.0.0.1:9" }, ""},
		{"xpra's --bind", "", []string{"--bind=/run/x.sock"}, func(c Config) bool { return c.BindUnix[0] == "/run/x.sock" }, ""},
		{"unknown key", "tcp-auht = [\"none\"]\n", nil, nil, "unknown keys: tcp-auht"},
		{"bad duration", "login-timeout = \"soon\"\n", nil, nil, "invalid duration"},
		{"unknown flag", "", []string{"--no-such-flag"}, nil, "not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--worker=" + worker}, tc.args...)
			if tc.toml != "" {
				os.WriteFile(file, []byte(tc.toml), 0o600)
				args = append(args, "--config="+file)
			}
			c, err := ParseFlags(args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("%+v %v", c, err)
			}
		})
	}
}
