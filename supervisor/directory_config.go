// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
)

// DirectoryConfig is the directory several proxies share (issue 16,
// package pgdir): users, where sessions run, penalties and relay counts
// in PostgreSQL. Without directory-uri-file the proxy keeps all of it to
// itself, as a single host does.
type DirectoryConfig struct {
	// DirectoryURIFile holds the connection URI, password included:
	// root-only, like password files (never on the command line).
	DirectoryURIFile string   `toml:"directory-uri-file"`
	DirectoryTimeout Duration `toml:"directory-timeout"` // one call, connecting included
	DirectoryRetry   Duration `toml:"directory-retry"`   // a failed database is not tried again for this long
	// ProxyName is this proxy's name in the directory; the host name by
	// default. Proxies sharing a database need distinct names.
	ProxyName string `toml:"proxy-name"`
}

func directoryDefaults() DirectoryConfig {
	return DirectoryConfig{DirectoryTimeout: Duration{pgdir.DefaultTimeout}, DirectoryRetry: Duration{pgdir.DefaultRetry}}
}

func registerDirectoryFlags(fs *flag.FlagSet, c *DirectoryConfig) {
	fs.StringVar(&c.DirectoryURIFile, "directory-uri-file", "", "root-only file holding the PostgreSQL URI of the directory shared by several proxies (default none)")
	fs.DurationVar(&c.DirectoryTimeout.Duration, "directory-timeout", 0, "bound of one call to the shared directory, connecting included (default 2s)")
	fs.DurationVar(&c.DirectoryRetry.Duration, "directory-retry", 0, "how long an unreachable shared directory is not tried again (default 5s)")
	fs.StringVar(&c.ProxyName, "proxy-name", "", "this proxy's name in the shared directory (default the host name)")
}

func mergeDirectory(c *DirectoryConfig, cli DirectoryConfig) {
	if cli.DirectoryURIFile != "" {
		c.DirectoryURIFile = cli.DirectoryURIFile
	}
	if cli.DirectoryTimeout.Duration > 0 {
		c.DirectoryTimeout = cli.DirectoryTimeout
	}
	if cli.DirectoryRetry.Duration > 0 {
		c.DirectoryRetry = cli.DirectoryRetry
	}
	if cli.ProxyName != "" {
		c.ProxyName = cli.ProxyName
	}
}

func (c DirectoryConfig) checkDirectory() error {
	if c.DirectoryTimeout.Duration <= 0 || c.DirectoryTimeout.Duration > time.Minute {
		return fmt.Errorf("directory-timeout %s: must be positive and at most 1m (a login waits that long on a dead database)", c.DirectoryTimeout.Duration)
	}
	if c.DirectoryRetry.Duration <= 0 {
		return fmt.Errorf("directory-retry %s: must be positive", c.DirectoryRetry.Duration)
	}
	return nil
}

// openDirectory starts the shared directory's helper (which does not
// connect yet: the database may be down at start-up), nil without
// directory-uri-file.
func openDirectory(c Config, log *slog.Logger) (*pgdir.DB, error) {
	if c.DirectoryURIFile == "" {
		return nil, nil
	}
	acfg := auth.Config{}
	if c.AuthFileOwner != "" {
		uid, err := auth.LookupUID(c.AuthFileOwner)
		if err != nil {
			return nil, fmt.Errorf("auth-file-owner: %w", err)
		}
		acfg.FileOwnerUID = uid
	}
	uri, err := auth.ReadSecret(c.DirectoryURIFile, acfg)
	if err != nil {
		return nil, fmt.Errorf("directory-uri-file: %w", err)
	}
	name := c.ProxyName
	if name == "" {
		if name, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("proxy-name: none set and no host name: %w", err)
		}
	}
	db, err := auth.StartDirectory(pgdir.Config{URI: string(uri), Timeout: c.DirectoryTimeout.Duration,
		Retry: c.DirectoryRetry.Duration, Name: name, Log: log.With("directory", "postgresql")}, c.helperForbiddenUIDs())
	if err != nil {
		return nil, fmt.Errorf("directory-uri-file %s: %w", c.DirectoryURIFile, err)
	}
	return db, nil
}

// directoryStatus is the shared directory's part of the status line: an
// outage says since when and why, so `systemctl status` shows why logins
// go to the fallback.
func directoryStatus(st pgdir.Status, fallbacks uint64) string {
	if st.Up {
		return fmt.Sprintf("shared directory up, %d fallback logins since start", fallbacks)
	}
	return fmt.Sprintf("shared directory DOWN since %s (%s), %d fallback logins since start",
		st.Since.UTC().Format(time.RFC3339), st.Err, fallbacks)
}
