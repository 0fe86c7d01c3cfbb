// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"flag"
	"os/user"
	"strconv"

	"github.com/xpra-proxy/xpra-proxy/supervisor/account"
)

// AccountConfig is who may be proxied to, whichever module granted the
// login (package supervisor/account): sshd's AllowUsers, DenyUsers,
// AllowGroups and DenyGroups, and the uid range of ordinary accounts.
type AccountConfig struct {
	MinUID      int      `toml:"min-uid"`      // default login.defs' UID_MIN (1000)
	MaxUID      int      `toml:"max-uid"`      // default login.defs' UID_MAX (60000)
	AllowUsers  []string `toml:"allow-users"`  // patterns (* and ?); empty: all
	DenyUsers   []string `toml:"deny-users"`   // patterns; deny wins
	AllowGroups []string `toml:"allow-groups"` // patterns; empty: all
	DenyGroups  []string `toml:"deny-groups"`  // patterns; deny wins
	// MaxRelaysPerUser bounds one uid's live relays (0: no limit): each
	// is a process of several MB that the supervisor execs as root.
	MaxRelaysPerUser int `toml:"max-relays-per-user"`
	// WarmRelays bounds the relays started ahead of their logins, one per
	// identity that logged in lately (warm.go; 0: none).
	WarmRelays int `toml:"warm-relays"`
}

func accountDefaults() AccountConfig {
	p := account.Defaults()
	return AccountConfig{MinUID: p.MinUID, MaxUID: p.MaxUID, MaxRelaysPerUser: 50, WarmRelays: 32}
}

func registerAccountFlags(fs *flag.FlagSet, c *AccountConfig) {
	fs.IntVar(&c.MinUID, "min-uid", 0, "lowest uid a relay may run as (default login.defs' UID_MIN)")
	fs.IntVar(&c.MaxUID, "max-uid", 0, "highest uid a relay may run as (default login.defs' UID_MAX)")
	fs.Var(newCountFlag(&c.MaxRelaysPerUser), "max-relays-per-user", "live connections one user may have through the proxy (default 50; 0: no limit)")
	fs.Var(newCountFlag(&c.WarmRelays), "warm-relays", "relays kept started ahead of their logins, one per user who logged in lately (default 32; 0: none)")
	fs.Var(listFlag{&c.AllowUsers}, "allow-users", "only these users (patterns with * and ?; repeatable)")
	fs.Var(listFlag{&c.DenyUsers}, "deny-users", "never these users (patterns; repeatable)")
	fs.Var(listFlag{&c.AllowGroups}, "allow-groups", "only members of these groups (patterns; repeatable)")
	fs.Var(listFlag{&c.DenyGroups}, "deny-groups", "never members of these groups (patterns; repeatable)")
}

func mergeAccount(c *AccountConfig, cli AccountConfig) {
	if cli.MinUID != 0 {
		c.MinUID = cli.MinUID
	}
	if cli.MaxUID != 0 {
		c.MaxUID = cli.MaxUID
	}
	if cli.MaxRelaysPerUser >= 0 {
		c.MaxRelaysPerUser = cli.MaxRelaysPerUser
	}
	if cli.WarmRelays >= 0 {
		c.WarmRelays = cli.WarmRelays
	}
	for _, p := range []struct{ dst, src *[]string }{
		{&c.AllowUsers, &cli.AllowUsers}, {&c.DenyUsers, &cli.DenyUsers},
		{&c.AllowGroups, &cli.AllowGroups}, {&c.DenyGroups, &cli.DenyGroups},
	} {
		if len(*p.src) > 0 {
			*p.dst = *p.src
		}
	}
}

// policy is the account policy of c; the proxy's own system users are
// always reserved.
func (c Config) policy() account.Policy {
	return account.Policy{
		MinUID: c.MinUID, MaxUID: c.MaxUID,
		AllowUsers: c.AllowUsers, DenyUsers: c.DenyUsers,
		AllowGroups: c.AllowGroups, DenyGroups: c.DenyGroups,
		Reserved: []string{c.PreauthUser, c.EncoderUser, "xpra-proxy", "xpra-proxy-control", "xpra-proxy-encode", "xpra-proxy-ldap", "xpra-proxy-directory"},
	}
}

// helperForbiddenUIDs are the uids the ldap module's helper must not run
// as: the pre-auth user (or nobody, its fallback) and the control user,
// whose processes read what anyone sends.
func (c Config) helperForbiddenUIDs() []int {
	var out []int
	for _, name := range []string{c.PreauthUser, "nobody", c.ControlUser} {
		if u, err := user.Lookup(name); err == nil {
			if uid, err := strconv.Atoi(u.Uid); err == nil {
				out = append(out, uid)
			}
		}
	}
	return out
}
