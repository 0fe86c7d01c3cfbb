// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/placement"
	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
)

// SessionHostsConfig makes this proxy a front of session hosts (issue 16,
// package placement): a login whose module grants the user's own
// sessions is relayed to the session host holding the user's session,
// else to the least-loaded one, instead of to this machine's sessions.
type SessionHostsConfig struct {
	// SessionHosts are "NAME=tcp://ADDR:PORT", NAME being the host's
	// proxy-name (its name in the directory and in its tokens).
	SessionHosts []string `toml:"session-hosts"`
	// SessionHostKeyFile is the key shared with the session hosts'
	// session-host module: root-only.
	SessionHostKeyFile string `toml:"session-host-key-file"`
}

func registerSessionHostFlags(fs *flag.FlagSet, c *SessionHostsConfig) {
	fs.Var(listFlag{&c.SessionHosts}, "session-hosts", "a session host, NAME=tcp://ADDR:PORT, that logins are relayed to (repeatable; default none: this machine's sessions)")
	fs.StringVar(&c.SessionHostKeyFile, "session-host-key-file", "", "root-only file with the key shared with the session hosts (their session-host module's key-file)")
}

func mergeSessionHosts(c *SessionHostsConfig, cli SessionHostsConfig) {
	if len(cli.SessionHosts) > 0 {
		c.SessionHosts = cli.SessionHosts
	}
	if cli.SessionHostKeyFile != "" {
		c.SessionHostKeyFile = cli.SessionHostKeyFile
	}
}

func (c SessionHostsConfig) checkSessionHosts() error {
	if _, err := placement.ParseHosts(c.SessionHosts); err != nil {
		return fmt.Errorf("session-hosts: %w", err)
	}
	if len(c.SessionHosts) > 0 && c.SessionHostKeyFile == "" {
		return fmt.Errorf("session-hosts needs session-host-key-file (the key shared with the session hosts)")
	}
	return nil
}

// router builds the session hosts' router, nil without session-hosts; it
// reads the key, so a reload takes a new one.
func (c Config) router(acfg auth.Config, dir *pgdir.DB, log *slog.Logger) (*placement.Router, error) {
	if len(c.SessionHosts) == 0 {
		return nil, nil
	}
	hosts, err := placement.ParseHosts(c.SessionHosts)
	if err != nil {
		return nil, fmt.Errorf("session-hosts: %w", err)
	}
	key, err := auth.ReadSecret(c.SessionHostKeyFile, acfg)
	if err != nil {
		return nil, fmt.Errorf("session-host-key-file: %w", err)
	}
	var d placement.Directory
	if dir != nil { // not a typed nil in the interface
		d = dir
	} else {
		log.Warn("session-hosts without directory-uri-file: each user goes to the host their name hashes to, whatever the load")
	}
	r, err := placement.New(hosts, key, d, log.With("part", "placement"))
	if err != nil {
		return nil, fmt.Errorf("session-host-key-file %s: %w", c.SessionHostKeyFile, err)
	}
	return r, nil
}

// proxyName is this proxy's name: proxy-name, else the host name.
func (c Config) proxyName() string {
	if c.ProxyName != "" {
		return c.ProxyName
	}
	name, _ := os.Hostname()
	return name
}
