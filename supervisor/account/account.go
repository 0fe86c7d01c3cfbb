// SPDX-License-Identifier: GPL-2.0-or-later

// Package account decides which accounts the proxy may run a relay as,
// whichever module granted the login: a shared secret (password, env,
// file) or a row naming a uid (multifile, sqlite) must never make root
// exec a worker as a system account (daemon, nobody, the proxy's own
// users). It also checks client-sent usernames before anything looks them
// up, since cgo's getpwnam stops at a NUL ("alice\x00junk" is "alice").
//
// The rules follow sshd's AllowUsers/DenyUsers/AllowGroups/DenyGroups
// (shell patterns with * and ?; deny wins) and login.defs' UID_MIN and
// UID_MAX for the range of ordinary accounts.
package account

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// ErrRefused is what every refusal wraps: the client is told only
// "authentication failed", as for a wrong password, so that the policy
// does not reveal which accounts exist.
var ErrRefused = errors.New("account refused by policy")

// MaxUsernameLen bounds a client-sent username (useradd's own limit is
// 32; sqlite and multifile names are not system names, so allow more).
const MaxUsernameLen = 64

// ValidUsername reports whether a client-sent username may be looked up:
// printable ASCII letters, digits, '.', '_', '-', '@' and a trailing '$'
// (Samba machine accounts), not starting with '-' (it would read as an
// option to the tools an admin runs), at most MaxUsernameLen bytes. This
// is useradd's default rule widened only by upper case, '.' and '@',
// which directories (and sqlite rows) use. The empty name is valid: it
// means the client gave none, and modules that need one refuse it.
func ValidUsername(name string) error {
	if len(name) > MaxUsernameLen {
		return fmt.Errorf("%w: username of %d bytes (at most %d)", ErrRefused, len(name), MaxUsernameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9', c == '.', c == '@':
			if i == 0 && c == '.' {
				return fmt.Errorf("%w: username %q starts with '.'", ErrRefused, name)
			}
		case c == '-':
			if i == 0 {
				return fmt.Errorf("%w: username %q starts with '-'", ErrRefused, name)
			}
		case c == '$' && i == len(name)-1 && i > 0:
		default:
			return fmt.Errorf("%w: username has byte 0x%02x at %d", ErrRefused, c, i)
		}
	}
	return nil
}

// Account is the passwd view of whom a relay would run as.
type Account struct {
	Name   string   // passwd name of UID
	UID    int      // as granted by the module
	GID    int      // as granted by the module
	Groups []string // names of the account's groups, primary included
	GIDs   []int    // the same groups' ids, primary included
}

// Policy is the admin's rule for who may be proxied to. The zero value
// refuses everyone (MinUID 0, MaxUID 0 lets only root through, and root
// is always refused); use Defaults.
type Policy struct {
	MinUID, MaxUID int
	AllowUsers     []string // patterns; empty: every user
	DenyUsers      []string
	AllowGroups    []string // patterns; empty: every group
	DenyGroups     []string
	// Reserved names the proxy's own system users (pre-auth, control,
	// encoder): refused whatever their uid, since a relay as one of them
	// could reach the processes of every other connection.
	Reserved []string
}

// Defaults are login.defs' UID_MIN and UID_MAX (1000 and 60000 where the
// file or the keys are missing).
func Defaults() Policy {
	lo, hi := 1000, 60000
	if f, err := os.Open("/etc/login.defs"); err == nil {
		lo, hi = ParseLoginDefs(f, lo, hi)
		f.Close()
	}
	return Policy{MinUID: lo, MaxUID: hi}
}

// ParseLoginDefs reads UID_MIN and UID_MAX from a login.defs, keeping
// the given values for keys that are missing or malformed.
func ParseLoginDefs(r io.Reader, uidMin, uidMax int) (int, int) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 0 {
			continue
		}
		switch f[0] {
		case "UID_MIN":
			uidMin = n
		case "UID_MAX":
			uidMax = n
		}
	}
	return uidMin, uidMax
}

// Check refuses an account the policy does not allow. The error wraps
// ErrRefused and says why, for the log only.
func (p Policy) Check(a Account) error {
	switch {
	case a.UID == 0 || a.GID == 0:
		return fmt.Errorf("%w: %q: uid %d gid %d: never as root", ErrRefused, a.Name, a.UID, a.GID)
	case slices.Contains(p.Reserved, a.Name):
		return fmt.Errorf("%w: %q is one of the proxy's own system users", ErrRefused, a.Name)
	case a.UID < p.MinUID || a.UID > p.MaxUID:
		return fmt.Errorf("%w: %q: uid %d outside min-uid..max-uid (%d..%d)", ErrRefused, a.Name, a.UID, p.MinUID, p.MaxUID)
	case !slices.Contains(a.GIDs, a.GID):
		// A row may name a gid, but only one the account has: a gid of
		// its own choosing (shadow, disk) would be a privilege.
		return fmt.Errorf("%w: %q is not a member of gid %d", ErrRefused, a.Name, a.GID)
	case matchAny(p.DenyUsers, a.Name):
		return fmt.Errorf("%w: %q matches deny-users", ErrRefused, a.Name)
	case len(p.AllowUsers) > 0 && !matchAny(p.AllowUsers, a.Name):
		return fmt.Errorf("%w: %q matches no allow-users pattern", ErrRefused, a.Name)
	}
	for _, g := range a.Groups {
		if matchAny(p.DenyGroups, g) {
			return fmt.Errorf("%w: %q is in group %q (deny-groups)", ErrRefused, a.Name, g)
		}
	}
	if len(p.AllowGroups) > 0 && !slices.ContainsFunc(a.Groups, func(g string) bool { return matchAny(p.AllowGroups, g) }) {
		return fmt.Errorf("%w: %q is in no allow-groups group", ErrRefused, a.Name)
	}
	return nil
}

// CheckPatterns reports a malformed pattern, for the configuration check.
func (p Policy) CheckPatterns() error {
	for _, set := range [][]string{p.AllowUsers, p.DenyUsers, p.AllowGroups, p.DenyGroups} {
		for _, pat := range set {
			if _, err := path.Match(pat, ""); err != nil {
				return fmt.Errorf("account pattern %q: %w", pat, err)
			}
		}
	}
	if p.MinUID < 1 || p.MaxUID < p.MinUID {
		return fmt.Errorf("min-uid %d and max-uid %d: need 1 <= min-uid <= max-uid", p.MinUID, p.MaxUID)
	}
	return nil
}

func matchAny(patterns []string, name string) bool {
	for _, pat := range patterns {
		if ok, err := path.Match(pat, name); err == nil && ok {
			return true
		}
	}
	return false
}
