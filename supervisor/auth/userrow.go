// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import "fmt"

// The users table of xpra's sqlite module, which the postgresql module
// shares: a login lists the user's passwords, the one the client proves
// selects a row, and the row's columns make the Session.

// provedPassword is the index of the first candidate the request proves,
// -1 if none. With no candidates (an unknown user) it does the work of
// one, so that a stranger's refusal takes as long as a wrong password's.
func provedPassword(r Request, candidates []string) int {
	if len(candidates) == 0 {
		verifies(dummyPassword)(r)
		return -1
	}
	for i, p := range candidates {
		if verifies([]byte(p))(r) {
			return i
		}
	}
	return -1
}

// rowSession is the Session of a users row: uid and gid by name or number
// (empty: nobody), displays comma-separated (none listed: no display,
// not "username matters"), env and session options "k=v;k2=v2".
func rowSession(module, username, uid, gid, displays, env, opts string) (*Session, error) {
	s := Session{Displays: []string{}, Env: ParseOptions(env), SessionOptions: ParseOptions(opts)}
	var err error
	if s.UID, err = LookupUID(uid); err != nil {
		return nil, fmt.Errorf("%w: %s: user %q: uid: %w", ErrDenied, module, username, err)
	}
	if s.GID, err = LookupGID(gid); err != nil {
		return nil, fmt.Errorf("%w: %s: user %q: gid: %w", ErrDenied, module, username, err)
	}
	if d := ParseDisplays(displays); d != nil {
		s.Displays = d
	}
	return &s, nil
}
