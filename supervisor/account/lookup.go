// SPDX-License-Identifier: GPL-2.0-or-later

package account

import (
	"fmt"
	"os/user"
	"strconv"
)

// Lookup builds the Account a module granted: the passwd name of uid and
// the names and ids of its groups (initgroups' view, primary included).
// An uid without a passwd entry is refused: the relay needs its home and
// groups, and an admin cannot have meant it.
func Lookup(uid, gid int) (Account, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return Account{}, fmt.Errorf("%w: uid %d has no passwd entry: %v", ErrRefused, uid, err)
	}
	a := Account{Name: u.Username, UID: uid, GID: gid}
	ids, err := u.GroupIds()
	if err != nil {
		return Account{}, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	for _, id := range ids {
		n, err := strconv.Atoi(id)
		if err != nil {
			continue
		}
		a.GIDs = append(a.GIDs, n)
		if g, err := user.LookupGroupId(id); err == nil {
			a.Groups = append(a.Groups, g.Name)
		}
	}
	return a, nil
}
