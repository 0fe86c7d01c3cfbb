// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
)

// The shipped file parses and holds the defaults.
func TestShippedConfig(t *testing.T) {
	c := Defaults()
	if err := c.LoadFile("../etc/xpra-proxy.toml"); err != nil {
		t.Fatal(err)
	}
	d := Defaults()
	if c.PreauthUser != d.PreauthUser || c.Limits() != d.Limits() || c.LoginTimeout != d.LoginTimeout ||
		c.FirstPacketTimeout != d.FirstPacketTimeout || c.ServerHelloTimeout != d.ServerHelloTimeout ||
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
		{"first-packet-timeout off", "", []string{"--first-packet-timeout=0s", "--server-hello-timeout=3s"},
			func(c Config) bool {
				return c.FirstPacketTimeout.Duration == 0 && c.ServerHelloTimeout.Duration == 3*time.Second
			}, ""},
		{"first-packet-timeout within login-timeout", "", []string{"--login-timeout=5s"},
			func(c Config) bool { return c.FirstPacketTimeout.Duration == 5*time.Second }, ""},
		{"file", `bind-tcp = ["0.0.0.0:14500"]` + "\n" + `tcp-auth = ["sqlite,filename=/x.sdb"]` + "\nmax-startups = \"7\"\n", nil,
			func(c Config) bool {
				return c.BindTCP[0] == "0.0.0.0:14500" && c.MaxStartups == limits.Startups{Start: 7, Rate: 100, Full: 7}
			}, ""},
		{"limits from the file", "max-startups = \"10:30:100\"\nper-source-max-startups = 0\nper-source-net-block-size = \"24:64\"\n" +
			"per-source-penalty = \"2s\"\nper-source-penalty-max = \"1m\"\nper-source-penalty-forget = \"1h\"\nper-source-penalty-table = 100\n" +
			"per-source-rate = 2.5\nper-source-burst = 4\nper-uid-max-startups = 3\n", nil,
			func(c Config) bool {
				return c.Limits() == limits.Config{MaxStartups: limits.Startups{Start: 10, Rate: 30, Full: 100}, PerSource: 0,
					NetBlock: limits.NetBlockSize{IPv4: 24, IPv6: 64}, PenaltyMin: 2 * time.Second, PenaltyMax: time.Minute,
					PenaltyForget: time.Hour, PenaltyTable: 100, Rate: 2.5, Burst: 4, PerUID: 3}
			}, ""},
		{"limit flags override the file, zero included", "per-source-max-startups = 3\nper-source-penalty = \"5s\"\n",
			[]string{"--max-startups=5:50:20", "--per-source-max-startups=0", "--per-source-net-block-size=16", "--per-source-penalty=0",
				"--per-source-rate=0", "--per-uid-max-startups=0"},
			func(c Config) bool {
				l := c.Limits()
				return l.MaxStartups == limits.Startups{Start: 5, Rate: 50, Full: 20} && l.PerSource == 0 &&
					l.NetBlock == limits.NetBlockSize{IPv4: 16, IPv6: 64} && l.PenaltyMin == 0 && l.PenaltyMax == 30*time.Second &&
					l.Rate == 0 && l.PerUID == 0
			}, ""},
		{"limit defaults", "", nil, func(c Config) bool { return c.Limits() == limits.Defaults() }, ""},
		{"bad max-startups", "max-startups = \"100:30:10\"\n", nil, nil, "start 100 is above full 10"},
		{"max-startups as a number", "max-startups = 200\n", nil,
			func(c Config) bool { return c.MaxStartups == limits.Startups{Start: 200, Rate: 100, Full: 200} }, ""},
		{"bad max-startups flag", "", []string{"--max-startups=1:2"}, nil, "want start:rate:full"},
		{"bad net block", "", []string{"--per-source-net-block-size=33:64"}, nil, "IPv4 block size 33"},
		{"forget below max", "per-source-penalty-forget = \"5s\"\n", nil, nil, "per-source-penalty-forget 5s is below"},
		{"max-preauth is gone", "max-preauth = 7\n", nil, nil, "unknown keys: max-preauth"},
		{"flags override the file", `bind-tcp = ["0.0.0.0:14500"]`, []string{"--bind-tcp=127.0.0.1:9"},
			func(c Config) bool { return len(c.BindTCP) == 1 && c.BindTCP[0] == "127.0.0.1:9" }, ""},
		{"xpra's --bind", "", []string{"--bind=/run/x.sock"}, func(c Config) bool { return c.BindUnix[0] == "/run/x.sock" }, ""},
		{"unknown key", "tcp-auht = [\"none\"]\n", nil, nil, "unknown keys: tcp-auht"},
		{"bad duration", "login-timeout = \"soon\"\n", nil, nil, "invalid duration"},
		{"unknown flag", "", []string{"--no-such-flag"}, nil, "not defined"},
		{"proxy-protocol-from off by default", "", nil,
			func(c Config) bool {
				p, err := c.proxyFrom()
				return err == nil && len(p) == 0 && c.ProxyProtocolTimeout.Duration == 5*time.Second
			}, ""},
		{"proxy-protocol-from in the file", `proxy-protocol-from = ["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"]` + "\nproxy-protocol-timeout = \"2s\"\n", nil,
			func(c Config) bool {
				p, err := c.proxyFrom()
				return err == nil && len(p) == 3 && p[1] == netip.MustParsePrefix("127.0.0.1/32") && c.ProxyProtocolTimeout.Duration == 2*time.Second
			}, ""},
		{"proxy-protocol-from flags override the file", `proxy-protocol-from = ["10.0.0.0/8"]`, []string{"--proxy-protocol-from=192.0.2.1/32", "--proxy-protocol-timeout=1s"},
			func(c Config) bool {
				return len(c.ProxyProtocolFrom) == 1 && c.ProxyProtocolFrom[0] == "192.0.2.1/32" && c.ProxyProtocolTimeout.Duration == time.Second
			}, ""},
		{"proxy-protocol-timeout within login-timeout", "", []string{"--proxy-protocol-timeout=1m", "--login-timeout=5s"},
			func(c Config) bool { return c.ProxyProtocolTimeout.Duration == 5*time.Second }, ""},
		{"bad proxy-protocol-from", `proxy-protocol-from = ["10.0.0.0/33"]`, nil, nil, `proxy-protocol-from "10.0.0.0/33": want a CIDR`},
		{"proxy-protocol-from a name", "", []string{"--proxy-protocol-from=haproxy.example"}, nil, `proxy-protocol-from "haproxy.example"`},
		{"proxy-protocol-from with host bits", "", []string{"--proxy-protocol-from=10.1.2.3/8"}, nil, "host bits set; did you mean 10.0.0.0/8?"},
		{"proxy-protocol-timeout negative", "proxy-protocol-timeout = \"-1s\"\n", nil, nil, "proxy-protocol-timeout -1s: must be positive"},
		{"session-hosts in the file", `session-hosts = ["h1=tcp://10.0.0.1:14500", "h2=tcp://10.0.0.2:14500"]` + "\nsession-host-key-file = \"/etc/k\"\n", nil,
			func(c Config) bool { return len(c.SessionHosts) == 2 && c.SessionHostKeyFile == "/etc/k" }, ""},
		{"session-hosts flags", "", []string{"--session-hosts=h1=tcp://10.0.0.1:14500", "--session-hosts=h2=tcp://10.0.0.2:14500", "--session-host-key-file=/etc/k"},
			func(c Config) bool { return len(c.SessionHosts) == 2 && c.SessionHosts[1] == "h2=tcp://10.0.0.2:14500" }, ""},
		{"session-hosts without a key", "", []string{"--session-hosts=h1=tcp://10.0.0.1:14500"}, nil, "session-hosts needs session-host-key-file"},
		{"session-hosts without a name", "", []string{"--session-hosts=tcp://10.0.0.1:14500", "--session-host-key-file=/etc/k"}, nil, "want NAME=tcp://ADDR:PORT"},
		{"session-hosts with a display", "", []string{"--session-hosts=h1=tcp://10.0.0.1:14500/100", "--session-host-key-file=/etc/k"}, nil, "nothing more"},
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

func TestTrustedProxy(t *testing.T) {
	from := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("2001:db8::/32")}
	tests := []struct {
		peer string
		want bool
	}{
		{"10.1.2.3", true},
		{"11.0.0.1", false},
		{"127.0.0.1", true},
		{"127.0.0.7", false},
		{"::ffff:127.0.0.1", true}, // a dual-stack listener's IPv4 peer
		{"2001:db8::1", true},
		{"2001:db9::1", false},
		{"fe80::1%eth0", false},
	}
	for _, tc := range tests {
		if got := trustedProxy(from, netip.MustParseAddr(tc.peer)); got != tc.want {
			t.Errorf("trustedProxy(%s) = %v, want %v", tc.peer, got, tc.want)
		}
	}
	if trustedProxy(nil, netip.MustParseAddr("127.0.0.1")) {
		t.Error("with no proxy-protocol-from, a peer is trusted")
	}
}

// The example session host configuration loads and builds its module
// options as documented.
func TestSessionHostExampleConfig(t *testing.T) {
	c := Defaults()
	if err := c.LoadFile("../etc/session-host.toml"); err != nil {
		t.Fatal(err)
	}
	if len(c.TCPAuth) != 1 || c.StartSession != "auto" || c.ProxyName != "sh1" || c.Limits().PenaltyMin != 0 || c.PerSourceMaxStartups != 0 {
		t.Fatalf("etc/session-host.toml: %+v", c)
	}
	spec, err := auth.ParseSpec(c.TCPAuth[0])
	if err != nil || spec.Name != "session_host" || spec.Options["from"] != "10.0.0.0/24" || spec.Options["key_file"] == "" {
		t.Fatalf("etc/session-host.toml's module: %+v, %v", spec, err)
	}
}
