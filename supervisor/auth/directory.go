// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"fmt"
	"os/user"
	"strconv"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// StartDirectory opens the shared directory through its helper,
// xpra-proxy-directory, run as its own system user (never the pre-auth
// or control user: forbidden): root never speaks PostgreSQL itself. A
// variable so that tests run the helper's server in their own process
// (pgstore.Local).
var StartDirectory = func(cfg pgdir.Config, forbidden []int) (*pgdir.DB, error) {
	path := pgdir.FindProgram()
	cred, err := helperCredential(pgdir.DefaultUser, forbidden)
	if err != nil {
		return nil, fmt.Errorf("the directory helper: %w", err)
	}
	return pgdir.Start(cfg, pgdir.Helper{Path: path, Cred: cred})
}

// defaultForbiddenUIDs are the uids of the default pre-auth and control
// users and nobody, for the admin command (which has no configuration).
func defaultForbiddenUIDs() []int {
	var out []int
	for _, name := range []string{"xpra-proxy", "nobody", "xpra-proxy-control"} {
		if u, err := user.Lookup(name); err == nil {
			if uid, err := strconv.Atoi(u.Uid); err == nil {
				out = append(out, uid)
			}
		}
	}
	return out
}
